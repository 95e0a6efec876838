//! Resident memory per idle session: starts 10,000 tictactoe sessions (a real
//! pooled `GuestInstance` after `init` and two joins, plus a `SessionDoc` holding
//! its snapshot, as the host keeps them) and reports the RSS growth per session
//! read from `/proc/self/statm`, against the 200 KiB target of DESIGN §9.
//! Run with `cargo bench -p minotaur-runtime --bench memory` (`SESSIONS=n` to change
//! the count). A measurement, not a test: it prints and never fails on a figure.

use std::path::PathBuf;

use minotaur_abi::{Event, Init};
use minotaur_runtime::{Limits, Runtime};
use minotaur_state::{SeatRecord, SessionDoc, SessionMeta};

const TARGET_KIB: f64 = 200.0;

/// Resident set size in bytes (second field of statm, in pages).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("statm has a resident field");
    // Every Linux target we run on uses 4 KiB pages.
    pages * 4096
}

fn kib(bytes: u64) -> f64 {
    bytes as f64 / 1024.0
}

fn main() {
    // `cargo bench` passes `--bench`; a bench filter makes no sense here.
    let sessions: u32 = std::env::var("SESSIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../games/dist");
    let Some(wasm) = ["tictactoe.wasm", "test/tictactoe.wasm"]
        .iter()
        .find_map(|p| std::fs::read(root.join(p)).ok())
    else {
        eprintln!("games/dist/tictactoe.wasm missing (scripts/build-games.sh): skipped");
        return;
    };

    let rt = Runtime::new(Limits {
        max_instances: sessions.max(1) + 16,
        ..Limits::default()
    })
    .expect("runtime");
    let game = rt.load(&wasm).expect("load tictactoe");
    let hash = game.hash().to_hex();

    let start = |i: u32| {
        let mut g = game.instantiate().expect("instantiate");
        g.init(&Init {
            session: format!("s{i}"),
            seed: u64::from(i),
            config: Vec::new(),
        })
        .expect("init");
        for player in 1..=2 {
            let out = g
                .event(&Event::Join {
                    player,
                    name: format!("player-{player}"),
                })
                .expect("join");
            assert!(out.reject.is_none());
        }
        let snapshot = g.snapshot().expect("snapshot");
        (g, snapshot)
    };
    let document = |i: u32, snapshot: &[u8]| {
        let mut doc = SessionDoc::new(&SessionMeta {
            session: format!("s{i}"),
            game: "tictactoe".into(),
            module_hash: hash.clone(),
            rules_version: 1,
            owner_node: "bench".into(),
            tick_hz: game.info().tick_hz,
            seed: u64::from(i),
            next_player: 3,
            ..SessionMeta::default()
        });
        for player in 1..=2 {
            doc.put_seat(&SeatRecord {
                player,
                name: format!("player-{player}"),
                token_hash: "0".repeat(64),
                connected: true,
            });
        }
        doc.set_state(snapshot).expect("set_state");
        doc.commit();
        doc
    };

    // Warm-up: the first instance maps the pool and the module image; the
    // allocator's own arenas grow on the first few sessions.
    drop(
        (0..16)
            .map(|i| {
                let (g, snap) = start(i);
                (document(i, &snap), g)
            })
            .collect::<Vec<_>>(),
    );

    // Two phases so that each half is measured on its own: the instances
    // (and their snapshots, which the actor keeps as its rollback point), then
    // one document per session.
    let before = rss_bytes();
    let mut instances = Vec::with_capacity(sessions as usize);
    for i in 0..sessions {
        instances.push(start(i));
    }
    let with_instances = rss_bytes();
    let docs: Vec<SessionDoc> = instances
        .iter()
        .enumerate()
        .map(|(i, (_, snap))| document(i as u32, snap))
        .collect();
    let after = rss_bytes();
    let mem = instances
        .iter()
        .map(|(g, _)| g.memory_bytes())
        .sum::<usize>() as u64;

    let n = u64::from(sessions.max(1));
    let per = kib(after.saturating_sub(before)) / n as f64;
    println!("sessions:                 {sessions}");
    println!("rss before:               {:.1} MiB", kib(before) / 1024.0);
    println!("rss after:                {:.1} MiB", kib(after) / 1024.0);
    println!(
        "per idle session:         {per:.1} KiB  (target {TARGET_KIB} KiB: {:.2}x of target)",
        per / TARGET_KIB
    );
    println!(
        "  GuestInstance+snapshot: {:.1} KiB",
        kib(with_instances.saturating_sub(before)) / n as f64
    );
    println!(
        "  SessionDoc:             {:.1} KiB",
        kib(after.saturating_sub(with_instances)) / n as f64
    );
    println!(
        "  guest linear memory:    {:.1} KiB declared per instance (copy-on-write: mostly never touched)",
        kib(mem) / n as f64
    );
    drop(docs);
    drop(instances);
}
