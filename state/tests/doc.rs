//! SessionDoc: schema round trips, saves, corrupt input, and history compaction.

use minotaur_state::{CompactionPolicy, SeatRecord, SessionDoc, SessionMeta, StateError};
use rmpv::Value;

fn meta() -> SessionMeta {
    SessionMeta {
        session: "s-1".into(),
        game: "arena".into(),
        module_hash: "ab".repeat(32),
        rules_version: 3,
        owner_node: "node-a".into(),
        epoch: 7,
        created_at_ms: 1_700_000_000_000,
        tick: 0,
        tick_hz: 20,
        seed: u64::MAX,
        next_player: 1,
        ended: false,
        generation: 0,
    }
}

fn seat(player: u64) -> SeatRecord {
    SeatRecord {
        player,
        name: format!("p{player}"),
        token_hash: "00".repeat(32),
        connected: true,
    }
}

fn arena(tick: u64, players: u64) -> Vec<u8> {
    let players = (0..players)
        .map(|i| {
            Value::Map(vec![
                ("id".into(), i.into()),
                ("x".into(), Value::F32((tick + i) as f32)),
                ("y".into(), Value::F32(i as f32)),
                ("score".into(), (tick / 10 + i).into()),
            ])
        })
        .collect();
    let state = Value::Map(vec![
        ("tick".into(), tick.into()),
        ("players".into(), Value::Array(players)),
    ]);
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &state).unwrap();
    out
}

#[test]
fn new_doc_round_trips_meta_seats_and_state_through_a_save() {
    let mut doc = SessionDoc::new(&meta());
    doc.put_seat(&seat(2));
    doc.put_seat(&seat(10));
    doc.put_seat(&seat(1));
    doc.remove_seat(2);
    doc.remove_seat(99);
    doc.set_state(&arena(5, 3)).unwrap();
    let mut m = meta();
    m.tick = 5;
    doc.set_meta(&m);
    doc.commit();

    let loaded = SessionDoc::load(&doc.save()).unwrap();
    assert_eq!(loaded.meta().unwrap(), m);
    assert_eq!(loaded.seats().unwrap(), vec![seat(1), seat(10)]);
    assert_eq!(loaded.state().unwrap(), arena(5, 3));
}

#[test]
fn set_meta_and_put_seat_write_only_what_changed() {
    let mut doc = SessionDoc::new(&meta());
    doc.put_seat(&seat(1));
    let before = doc.commit();
    doc.set_meta(&meta());
    doc.put_seat(&seat(1));
    assert_eq!(
        doc.commit(),
        before,
        "rewriting equal values makes no change"
    );

    let mut m = meta();
    m.tick = 1;
    doc.set_meta(&m);
    doc.commit();
    let change = doc.automerge().get_last_local_change().unwrap();
    assert_eq!(change.len(), 1, "one op for one field");
}

#[test]
fn bad_msgpack_is_an_error_and_changes_nothing() {
    let mut doc = SessionDoc::new(&meta());
    doc.set_state(&arena(1, 2)).unwrap();
    let heads = doc.commit();
    // Truncated array, trailing bytes, empty input, a str whose length runs past the end.
    for bad in [
        &[0x92, 0x01][..],
        &[0x01, 0x02][..],
        &[][..],
        &[0xa5, b'a'][..],
    ] {
        let err = doc.set_state(bad).unwrap_err();
        assert!(matches!(err, StateError::InvalidMsgpack(_)), "{err}");
    }
    assert_eq!(doc.commit(), heads);
    assert_eq!(doc.state().unwrap(), arena(1, 2));
}

#[test]
fn state_is_missing_before_the_first_snapshot() {
    let doc = SessionDoc::new(&meta());
    assert!(matches!(doc.state(), Err(StateError::Missing(_))));
}

#[test]
fn corrupt_truncated_or_schema_less_bytes_are_corrupt() {
    let mut doc = SessionDoc::new(&meta());
    doc.set_state(&arena(1, 4)).unwrap();
    let bytes = doc.save();
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0xff;
    let mut no_schema = automerge::AutoCommit::new();
    automerge::transaction::Transactable::put(&mut no_schema, automerge::ROOT, "meta", 1).unwrap();
    for bad in [
        bytes[..bytes.len() / 2].to_vec(),
        flipped,
        b"not automerge".to_vec(),
        Vec::new(),
        no_schema.save(),
    ] {
        assert!(matches!(
            SessionDoc::load(&bad),
            Err(StateError::Corrupt(_))
        ));
    }
}

#[test]
fn base_plus_incremental_saves_load_to_the_live_doc() {
    let mut doc = SessionDoc::new(&meta());
    let mut stored = doc.save();
    for tick in 0..50 {
        doc.set_state(&arena(tick, 4)).unwrap();
        doc.commit();
        let chunk = doc.save_incremental();
        assert!(!chunk.is_empty());
        stored.extend_from_slice(&chunk);
    }
    assert!(
        doc.save_incremental().is_empty(),
        "nothing new since the last save"
    );
    let mut loaded = SessionDoc::load(&stored).unwrap();
    assert_eq!(loaded.state().unwrap(), arena(49, 4));
    assert_eq!(loaded.heads(), doc.heads());
}

#[test]
fn compaction_keeps_content_and_bumps_generation() {
    let mut doc = SessionDoc::new(&meta());
    doc.put_seat(&seat(3));
    for tick in 0..20 {
        doc.set_state(&arena(tick, 8)).unwrap();
        doc.commit();
    }
    let (meta_before, seats_before, state_before) = (
        doc.meta().unwrap(),
        doc.seats().unwrap(),
        doc.state().unwrap(),
    );
    doc.compact().unwrap();
    assert!(doc.needs_full_save());
    assert_eq!(
        doc.automerge().get_changes(&[]).len(),
        1,
        "history is one change"
    );
    let mut expected = meta_before.clone();
    expected.generation += 1;
    assert_eq!(doc.meta().unwrap(), expected);
    assert_eq!(doc.seats().unwrap(), seats_before);
    assert_eq!(doc.state().unwrap(), state_before);
    let loaded = SessionDoc::load(&doc.save()).unwrap();
    assert!(!doc.needs_full_save());
    assert_eq!(loaded.state().unwrap(), state_before);
    assert_eq!(loaded.meta().unwrap(), expected);
}

/// 10,000 ticks stored the way the host does (base + appended chunks, full save after each
/// compaction): the stored bytes stay bounded and the content is always the live one.
#[test]
fn ten_thousand_ticks_with_compaction_stay_bounded() {
    let policy = CompactionPolicy::default();
    let mut doc = SessionDoc::new(&meta());
    let mut base = doc.save();
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut compactions = 0;
    let mut max_stored = 0;
    let mut m = meta();
    for tick in 0..10_000u64 {
        m.tick = tick;
        doc.set_meta(&m);
        doc.set_state(&arena(tick, 4)).unwrap();
        doc.commit();
        if doc.should_compact(&policy) {
            let before = doc.state().unwrap();
            doc.compact().unwrap();
            assert_eq!(doc.state().unwrap(), before);
            m.generation += 1;
            compactions += 1;
            base = doc.save();
            chunks.clear();
        } else {
            chunks.push(doc.save_incremental());
        }
        let stored = base.len() + chunks.iter().map(Vec::len).sum::<usize>();
        max_stored = max_stored.max(stored);
    }
    let full_msgpack = arena(9_999, 4).len();
    eprintln!("compactions {compactions}, max stored {max_stored} B, msgpack {full_msgpack} B");
    assert!(compactions >= 9, "compacted {compactions} times");
    assert!(
        max_stored < 64 * 1024,
        "stored bytes peaked at {max_stored}"
    );
    let mut stored = base;
    chunks.iter().for_each(|c| stored.extend_from_slice(c));
    let loaded = SessionDoc::load(&stored).unwrap();
    assert_eq!(loaded.state().unwrap(), arena(9_999, 4));
    assert_eq!(loaded.meta().unwrap(), m);
    assert!(full_msgpack > 0);
}
