//! Writes the committed seed corpus, `fuzz/corpus/<target>/`: a few real frames, guest
//! outputs and stored documents, built with the node's own encoders so that the fuzzer
//! starts from what the node really sees. Rerun after a format change:
//! `cargo run --manifest-path fuzz/Cargo.toml --features seeds --bin seeds` (a plain
//! build, no fuzzer). Files are named by content, so a rerun only adds what changed.

use std::path::Path;

use minotaur_abi::{encode, Effect, Event, GameInfo, Output};
use minotaur_protocol::{encode_client, ClientMsg, Encoding, GameValue};
use minotaur_state::{GameRecord, JournalRecord, SeatRecord, SessionDoc, SessionMeta, SwapPolicy};
use rmpv::Value;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let frames = frames();
    let outputs = outputs();
    let stored = stored();
    let modules = modules();
    for (target, seeds) in [
        ("frame_decode", frames),
        ("guest_output", outputs),
        ("stored_session", stored),
        ("admin_body", modules),
    ] {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        for seed in &seeds {
            std::fs::write(dir.join(name(seed)), seed)?;
        }
        println!("{target}: {} seeds", seeds.len());
    }
    Ok(())
}

/// A content name (FNV-1a, hex), stable across runs.
fn name(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("seed-{hash:016x}")
}

/// A game value like the example games' inputs and views.
fn game_value() -> GameValue {
    Value::Map(vec![
        ("cell".into(), 4.into()),
        ("dir".into(), Value::Array(vec![1.into(), (-1).into()])),
        ("speed".into(), Value::F64(1.5)),
        ("name".into(), "ada".into()),
        ("flags".into(), Value::Array(vec![true.into(), Value::Nil])),
    ])
}

fn frames() -> Vec<Vec<u8>> {
    let msgs = [
        ClientMsg::Create {
            game: "arena".into(),
            config: Some(game_value()),
        },
        ClientMsg::Join {
            session: Some("s-1234".into()),
            game: None,
            name: "ada".into(),
        },
        ClientMsg::Join {
            session: None,
            game: Some("tictactoe".into()),
            name: String::new(),
        },
        ClientMsg::Resume {
            token: "s-1234.0123456789abcdef".into(),
        },
        ClientMsg::Input {
            data: game_value(),
            seq: Some(7),
            player: Some(2),
        },
        ClientMsg::Input {
            data: 4.into(),
            seq: None,
            player: None,
        },
        ClientMsg::Leave,
        ClientMsg::Ping {
            nonce: Some("n1".into()),
        },
    ];
    let mut out = Vec::new();
    for msg in &msgs {
        for enc in [Encoding::Json, Encoding::MsgPack] {
            out.push(encode_client(msg, enc).expect("seed frames encode"));
        }
    }
    out.push(br#"{"type":"dance"}"#.to_vec());
    // Deep values: near the nesting bound, and past it (refused).
    for depth in [120, 300] {
        let json = format!(
            r#"{{"type":"input","seq":1,"data":{}0{}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        out.push(json.into_bytes());
        let mut packed = b"\x83\xa4type\xa5input\xa3seq\x01\xa4data".to_vec();
        packed.extend(nested(depth));
        out.push(packed);
    }
    out
}

/// `[[[…0]]]` as MessagePack, `depth` arrays deep.
fn nested(depth: usize) -> Vec<u8> {
    let mut v = vec![0x91; depth];
    v.push(0x00);
    v
}

fn outputs() -> Vec<Vec<u8>> {
    let view = rmp_value(&game_value());
    let full = Output {
        reject: None,
        effects: vec![
            Effect::View {
                to: 1,
                data: view.clone(),
            },
            Effect::Send {
                to: 2,
                msg: view.clone(),
            },
            Effect::Broadcast { msg: view.clone() },
            Effect::SetTickRate { hz: 20 },
            Effect::Log {
                level: 2,
                msg: "hello".into(),
            },
            Effect::End {
                winners: vec![1],
                detail: Vec::new(),
            },
        ],
    };
    let rejected = Output {
        reject: Some("not your turn".into()),
        effects: Vec::new(),
    };
    let info = GameInfo {
        name: "arena".into(),
        rules_version: 2,
        min_players: 1,
        max_players: 16,
        tick_hz: 20,
    };
    vec![
        encode(&full).unwrap(),
        encode(&rejected).unwrap(),
        encode(&info).unwrap(),
        view,
        encode(&Output {
            reject: None,
            effects: vec![Effect::View {
                to: 1,
                data: nested(200),
            }],
        })
        .unwrap(),
    ]
}

/// Stored forms, each behind the selector byte `stored_session` reads first.
fn stored() -> Vec<Vec<u8>> {
    let meta = SessionMeta {
        session: "s-1234".into(),
        game: "arena".into(),
        module_hash: "ab".repeat(32),
        rules_version: 1,
        owner_node: "n1".into(),
        epoch: 3,
        created_at_ms: 1_700_000_000_000,
        tick: 42,
        tick_hz: 20,
        seed: 99,
        next_player: 3,
        ended: false,
        generation: 0,
    };
    let mut doc = SessionDoc::new(&meta);
    doc.put_seat(&SeatRecord {
        player: 1,
        name: "ada".into(),
        token_hash: "cd".repeat(32),
        connected: true,
    });
    doc.set_state(&rmp_value(&game_value())).unwrap();
    doc.commit();
    let base = doc.save();
    doc.set_state(&rmp_value(&Value::Array(vec![1.into(), "two".into()])))
        .unwrap();
    doc.commit();
    let mut with_chunk = base.clone();
    with_chunk.extend(doc.save_incremental());

    let record = JournalRecord {
        tick: 43,
        events: vec![
            Event::Tick { n: 43, dt_ms: 50 },
            Event::Join {
                player: 2,
                name: "bob".into(),
            },
            Event::Input {
                player: 2,
                data: rmp_value(&game_value()),
            },
            Event::Leave { player: 2 },
        ],
    };
    let mut snapshot = 42u64.to_le_bytes().to_vec();
    snapshot.extend(rmp_value(&game_value()));
    let game = GameRecord {
        current_hash: "ab".repeat(32),
        policy: SwapPolicy::MigrateLive,
        versions: vec![(1, "ab".repeat(32))],
    };
    [
        (0, base),
        (0, with_chunk),
        (1, record.encode()),
        (2, snapshot),
        (3, game.encode()),
    ]
    .into_iter()
    .map(|(which, bytes)| [vec![which], bytes].concat())
    .collect()
}

/// Small modules: one shaped like a guest (its exports, the panic import), and one per
/// refused wasm feature (as in `runtime/tests/features.rs`).
fn modules() -> Vec<Vec<u8>> {
    let guest = r#"(module
        (import "minotaur" "panic" (func $panic (param i32 i32)))
        (memory (export "memory") 1)
        (global $top (mut i32) (i32.const 1024))
        (func (export "minotaur_abi_version") (result i32) (i32.const 1))
        (func (export "minotaur_alloc") (param i32) (result i32)
            (local $p i32)
            (local.set $p (global.get $top))
            (global.set $top (i32.add (global.get $top) (local.get 0)))
            (local.get $p))
        (func (export "minotaur_free") (param i32 i32))
        (func (export "minotaur_info") (result i64) (i64.const 0))
        (func (export "minotaur_init") (param i32 i32) (result i64) (i64.const 0))
        (func (export "minotaur_event") (param i32 i32) (result i64)
            (if (i32.eqz (local.get 1)) (then (call $panic (i32.const 0) (i32.const 4))))
            (i64.const 0))
        (func (export "minotaur_snapshot") (result i64) (i64.const 0))
        (func (export "minotaur_restore") (param i32 i32) (result i64) (i64.const 0))
        (data (i32.const 0) "oops"))"#;
    let refused = [
        "(module (memory i64 1))",
        "(module (memory 1) (memory 1))",
        "(module (memory 1 1 shared))",
        "(module (func $f (return_call $f)))",
        "(module (type (struct (field i32))))",
        "(module (type $t (func)) (func (param (ref $t))))",
        "(module (tag $e) (func (try_table (catch_all 0)) ))",
        "(module (global i32 (i32.add (i32.const 1) (i32.const 2))))",
        "(module (func (result v128) (v128.const i64x2 1 2)))",
    ];
    std::iter::once(guest)
        .chain(refused)
        .map(|wat| wat::parse_str(wat).expect("seed modules parse"))
        .collect()
}

fn rmp_value(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).expect("write to a Vec");
    out
}
