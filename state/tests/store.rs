//! The redb store: persistence across reopen, corrupt-session isolation, quarantine, chunked
//! appends, modules and games. Runs on a real database in a temp dir.

use minotaur_state::{GameRecord, SessionDoc, SessionMeta, Store, StoreError, SwapPolicy};
use rmpv::Value;

fn doc(session: &str, tick: u64) -> SessionDoc {
    let meta = SessionMeta {
        session: session.into(),
        game: "arena".into(),
        ..SessionMeta::default()
    };
    let mut doc = SessionDoc::new(&meta);
    doc.set_state(&state(tick)).unwrap();
    doc.commit();
    doc
}

fn state(tick: u64) -> Vec<u8> {
    let v = Value::Map(vec![
        ("tick".into(), tick.into()),
        ("name".into(), "x".into()),
    ]);
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &v).unwrap();
    out
}

#[test]
fn sessions_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/data");
    {
        let store = Store::open(&path).unwrap();
        store.save_session_full("a", &doc("a", 1).save()).unwrap();
        store.save_session_full("b", &doc("b", 2).save()).unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.list_sessions().unwrap(), vec!["a", "b"]);
    let b = store.load_session("b").unwrap().unwrap();
    assert_eq!(b.state().unwrap(), state(2));
    assert_eq!(b.meta().unwrap().session, "b");
    assert!(store.load_session("nope").unwrap().is_none());
    store.delete_session("a").unwrap();
    assert_eq!(store.list_sessions().unwrap(), vec!["b"]);
    assert!(store.load_session("a").unwrap().is_none());
}

#[test]
fn many_appended_chunks_load_to_the_live_doc() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut live = doc("s", 0);
    store.save_session_full("s", &live.save()).unwrap();
    // Another session's chunks must not mix in.
    let mut other = doc("t", 0);
    store.save_session_full("t", &other.save()).unwrap();
    for tick in 1..=300 {
        live.set_state(&state(tick)).unwrap();
        live.commit();
        store
            .append_session_changes("s", &live.save_incremental())
            .unwrap();
        other.set_state(&state(tick * 2)).unwrap();
        other.commit();
        store
            .append_session_changes("t", &other.save_incremental())
            .unwrap();
    }
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    let mut loaded = store.load_session("s").unwrap().unwrap();
    assert_eq!(loaded.state().unwrap(), state(300));
    assert_eq!(loaded.heads(), live.heads());
    assert_eq!(
        store.load_session("t").unwrap().unwrap().state().unwrap(),
        state(600)
    );

    // A full save replaces base and chunks.
    store.save_session_full("s", &live.save()).unwrap();
    let mut reloaded = store.load_session("s").unwrap().unwrap();
    assert_eq!(reloaded.heads(), live.heads());
}

#[test]
fn a_corrupt_session_fails_alone_and_can_be_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let good = doc("good", 1).save();
    let bad = doc("bad", 1).save();
    let truncated = &bad[..bad.len() / 2];
    store.save_session_full("good", &good).unwrap();
    store.save_session_full("bad", truncated).unwrap();

    let err = store.load_session("bad").err().unwrap();
    assert!(
        matches!(&err, StoreError::Corrupt { session, .. } if session == "bad"),
        "{err}"
    );
    assert_eq!(
        store
            .load_session("good")
            .unwrap()
            .unwrap()
            .state()
            .unwrap(),
        state(1)
    );

    // Startup: load everything, quarantine what fails, go on.
    for session in store.list_sessions().unwrap() {
        if let Err(StoreError::Corrupt { session, .. }) = store.load_session(&session) {
            store.quarantine_session(&session).unwrap();
        }
    }
    assert_eq!(store.list_sessions().unwrap(), vec!["good"]);
    assert!(store.load_session("bad").unwrap().is_none());
    assert_eq!(store.quarantined("bad").unwrap(), vec![truncated.to_vec()]);
    assert!(store.quarantined("good").unwrap().is_empty());
}

#[test]
fn modules_and_games_round_trip_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let rec = GameRecord {
        current_hash: "bb".into(),
        policy: SwapPolicy::MigrateLive,
        versions: vec![(1, "aa".into()), (2, "bb".into())],
    };
    {
        let store = Store::open(dir.path()).unwrap();
        store.put_module("aa", b"\0asm-one").unwrap();
        store.put_module("bb", b"\0asm-two").unwrap();
        store.set_game("arena", &rec).unwrap();
        let mut old = rec.clone();
        old.policy = SwapPolicy::NewSessionsOnly;
        store.set_game("tictactoe", &old).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.get_module("aa").unwrap().unwrap(), b"\0asm-one");
    assert_eq!(store.get_module("bb").unwrap().unwrap(), b"\0asm-two");
    assert!(store.get_module("cc").unwrap().is_none());
    let games = store.games().unwrap();
    assert_eq!(games.len(), 2);
    assert_eq!(games[0], ("arena".to_string(), rec));
    assert_eq!(games[1].1.policy, SwapPolicy::NewSessionsOnly);
}

#[test]
fn store_is_shared_across_threads() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let store = store.clone();
            std::thread::spawn(move || {
                let name = format!("s{i}");
                store
                    .save_session_full(&name, &doc(&name, i).save())
                    .unwrap();
            })
        })
        .collect();
    handles.into_iter().for_each(|h| h.join().unwrap());
    assert_eq!(store.list_sessions().unwrap(), vec!["s0", "s1", "s2", "s3"]);
    assert_eq!(
        store.load_session("s3").unwrap().unwrap().state().unwrap(),
        state(3)
    );
}

/// Journal records outlive a reopen, come back in append order, and are all dropped by any
/// later document write of their session (the document then holds that state or newer),
/// never by another session's.
#[test]
fn journal_records_are_newer_than_the_document_or_gone() {
    use minotaur_abi::Event;
    use minotaur_state::{Journal, JournalRecord, SessionWrite};
    let dir = tempfile::tempdir().unwrap();
    let record = |tick: u64| JournalRecord {
        tick,
        events: vec![
            Event::Tick { n: tick, dt_ms: 50 },
            Event::Input {
                player: 1,
                data: vec![tick as u8],
            },
        ],
    };
    let append = |tick| SessionWrite::Journal {
        session: "s".into(),
        record: record(tick),
    };
    {
        let store = Store::open(dir.path()).unwrap();
        let mut live = doc("s", 1);
        let base = SessionWrite::Full {
            session: "s".into(),
            bytes: live.save(),
        };
        let other = SessionWrite::Full {
            session: "t".into(),
            bytes: doc("t", 1).save(),
        };
        store.write_sessions(&[base, other]).unwrap();
        assert!(store.load_journal("s").unwrap().is_empty());
        store.write_sessions(&[append(2)]).unwrap();
        store.write_sessions(&[append(3)]).unwrap();
        let j = store.load_journal("s").unwrap();
        assert_eq!(j.records, vec![record(2), record(3)]);
        assert_eq!(j.tick(), Some(3));
        // Another session's document write leaves this journal alone.
        let mut t = store.load_session("t").unwrap().unwrap();
        t.set_state(&state(9)).unwrap();
        t.commit();
        let chunk = SessionWrite::Append {
            session: "t".into(),
            chunk: t.save_incremental(),
        };
        store.write_sessions(&[chunk]).unwrap();
        assert_eq!(store.load_journal("s").unwrap().records.len(), 2);
        // Its own document catching up drops it, in the same transaction.
        live.set_state(&state(3)).unwrap();
        live.commit();
        let catch_up = SessionWrite::Append {
            session: "s".into(),
            chunk: live.save_incremental(),
        };
        store.write_sessions(&[catch_up, append(4)]).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.load_journal("s").unwrap(),
        Journal {
            snapshot: None,
            records: vec![record(4)]
        }
    );
    assert_eq!(
        store.load_session("s").unwrap().unwrap().state().unwrap(),
        state(3)
    );
    store.delete_session("s").unwrap();
    assert!(store.load_journal("s").unwrap().is_empty());
}

#[cfg(unix)]
#[test]
fn the_data_dir_and_store_file_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    Store::open(&data).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("minotaur.redb")), 0o600);
}
