//! The directory against a real PostgreSQL (`testing::TestPostgres`): schema refusal,
//! fenced writes, compare-and-set claims at the same instant, hand-offs with their
//! notification, orphans by lease, a game's live sessions on other nodes (a publish's dry
//! run).

use std::{sync::Arc, time::Duration};

use minotaur_abi::Event;
use minotaur_cluster::{testing::TestPostgres, Announcement, Claim, Db, DbError, FencedWrite};
use minotaur_state::{JournalRecord, SessionWrite};

async fn db(pg: &TestPostgres, name: &str) -> Db {
    let db = Db::connect_lazy(&pg.create_db(name)).expect("url");
    db.migrate().await.expect("migrate");
    db
}

fn journal(session: &str, epoch: u64, tick: u64) -> FencedWrite {
    FencedWrite {
        epoch,
        write: SessionWrite::Journal {
            session: session.into(),
            record: JournalRecord {
                tick,
                events: vec![Event::Tick { n: tick, dt_ms: 50 }],
            },
        },
    }
}

fn full(session: &str, epoch: u64, bytes: &[u8]) -> FencedWrite {
    FencedWrite {
        epoch,
        write: SessionWrite::Full {
            session: session.into(),
            bytes: bytes.to_vec(),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_once_and_a_newer_schema_is_refused() {
    let pg = TestPostgres::start();
    let db = db(&pg, "schema").await;
    assert_eq!(db.migrate().await.expect("again"), Db::known_version());
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (99999, 'from the future', true, '\\x00', 0)",
    )
    .execute(db.pool())
    .await
    .expect("fake a newer migration");
    match db.migrate().await {
        Err(DbError::SchemaTooNew { found, known }) => {
            assert_eq!(found, 99999);
            assert_eq!(known, Db::known_version());
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_owner_writes_nothing_after_a_claim() {
    let pg = TestPostgres::start();
    let db = db(&pg, "fence").await;
    assert!(db.create_session("s1", "tictactoe", "a").await.unwrap());
    assert!(
        !db.create_session("s1", "tictactoe", "b").await.unwrap(),
        "ids are unique"
    );
    assert_eq!(
        db.write_sessions("a", &[full("s1", 1, b"doc-a")])
            .await
            .unwrap(),
        [true]
    );
    assert_eq!(
        db.write_sessions("a", &[journal("s1", 1, 7)])
            .await
            .unwrap(),
        [true]
    );
    // b takes it over from (a, 1).
    let won = db
        .claim(
            "b",
            &[Claim {
                session: "s1".into(),
                owner: "a".into(),
                epoch: 1,
            }],
            Duration::ZERO,
        )
        .await
        .unwrap();
    assert_eq!(won, [("s1".to_string(), 2)]);
    // a's writes at epoch 1 are fenced; b's at 2 apply, in the same group as a fenced one.
    assert_eq!(
        db.write_sessions("a", &[journal("s1", 1, 8)])
            .await
            .unwrap(),
        [false]
    );
    assert_eq!(
        db.write_sessions("a", &[full("s1", 2, b"x")])
            .await
            .unwrap(),
        [false]
    );
    assert!(db.create_session("s2", "arena", "b").await.unwrap());
    let applied = db
        .write_sessions("b", &[journal("s1", 2, 9), full("s2", 2, b"wrong-epoch")])
        .await
        .unwrap();
    assert_eq!(applied, [true, false]);
    let s = db.load_session("s1").await.unwrap().expect("stored");
    assert_eq!((s.owner.as_str(), s.epoch), ("b", 2));
    assert_eq!(s.doc.as_deref(), Some(&b"doc-a"[..]));
    assert_eq!(
        s.journal.records.iter().map(|r| r.tick).collect::<Vec<_>>(),
        [7, 9],
        "a's records from its epoch, then b's; a's stale one is not there"
    );
    // Appends follow the base in order; a document write clears the journal.
    let append = |chunk: &[u8]| FencedWrite {
        epoch: 2,
        write: SessionWrite::Append {
            session: "s1".into(),
            chunk: chunk.to_vec(),
        },
    };
    db.write_sessions("b", &[append(b"-c1")]).await.unwrap();
    db.write_sessions("b", &[append(b"-c2")]).await.unwrap();
    let s = db.load_session("s1").await.unwrap().unwrap();
    assert_eq!(s.doc.as_deref(), Some(&b"doc-a-c1-c2"[..]));
    assert!(s.journal.is_empty(), "a document write drops the records");
    // The end of the game: a tombstone that a stale owner cannot revive.
    let delete = FencedWrite {
        epoch: 2,
        write: SessionWrite::Delete {
            session: "s1".into(),
        },
    };
    assert_eq!(db.write_sessions("b", &[delete]).await.unwrap(), [true]);
    assert_eq!(
        db.write_sessions("b", &[full("s1", 2, b"again")])
            .await
            .unwrap(),
        [false]
    );
    let s = db.load_session("s1").await.unwrap().unwrap();
    assert!(s.ended && s.doc.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claims_at_the_same_instant_have_one_winner() {
    let pg = TestPostgres::start();
    let db = db(&pg, "race").await;
    for round in 0..20 {
        let id = format!("s{round}");
        db.create_session(&id, "tictactoe", "dead").await.unwrap();
        let barrier = Arc::new(tokio::sync::Barrier::new(8));
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let (db, id, barrier) = (db.clone(), id.clone(), barrier.clone());
                tokio::spawn(async move {
                    let claim = Claim {
                        session: id,
                        owner: "dead".into(),
                        epoch: 1,
                    };
                    barrier.wait().await;
                    db.claim(&format!("n{i}"), &[claim], Duration::ZERO)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut winners = 0;
        for t in tasks {
            winners += t.await.unwrap().len();
        }
        assert_eq!(winners, 1, "round {round}");
        let at = db.locate(&id).await.unwrap().unwrap();
        assert_eq!(at.epoch, 2);
        assert!(at.owner.starts_with('n'));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_offs_move_only_what_the_sender_holds_and_notify_the_target() {
    let pg = TestPostgres::start();
    let db = db(&pg, "handoff").await;
    let mut listener = db.listener().await.unwrap();
    for id in ["h1", "h2", "h3"] {
        db.create_session(id, "arena", "a").await.unwrap();
    }
    db.create_session("other", "arena", "c").await.unwrap();
    let moved = db
        .hand_off(
            "a",
            "b",
            &[
                ("h1".into(), 1),
                ("h2".into(), 5),
                ("other".into(), 1),
                ("h3".into(), 1),
            ],
        )
        .await
        .unwrap();
    let mut ids: Vec<_> = moved.iter().map(|(s, e)| (s.as_str(), *e)).collect();
    ids.sort();
    assert_eq!(
        ids,
        [("h1", 2), ("h3", 2)],
        "wrong epoch and foreign sessions stay"
    );
    let to = tokio::time::timeout(Duration::from_secs(10), listener.recv())
        .await
        .expect("notified")
        .unwrap();
    let Announcement::Handoff {
        to,
        from,
        mut sessions,
    } = to
    else {
        panic!("expected a hand-off, got {to:?}");
    };
    sessions.sort();
    assert_eq!((to.as_str(), from.as_str()), ("b", "a"));
    assert_eq!(
        sessions,
        [("h1".to_string(), 2), ("h3".to_string(), 2)],
        "the notification lists what moved, at the target's epoch"
    );
    let mut owned = db.owned("b").await.unwrap();
    owned.sort();
    assert_eq!(owned, [("h1".to_string(), 2), ("h3".to_string(), 2)]);
    assert_eq!(db.owned("a").await.unwrap(), [("h2".to_string(), 1)]);
    // Too many to list in one notification (PostgreSQL's limit is 8000 bytes): the
    // hand-off still happens and names the target only, which then reads the directory.
    let many: Vec<(String, i64)> = (0..400)
        .map(|i| (format!("long-session-id-{i:04}"), 1))
        .collect();
    for (id, _) in &many {
        db.create_session(id, "arena", "a").await.unwrap();
    }
    assert_eq!(db.hand_off("a", "c", &many).await.unwrap().len(), 400);
    let to = tokio::time::timeout(Duration::from_secs(10), listener.recv())
        .await
        .expect("notified")
        .unwrap();
    assert_eq!(
        to,
        Announcement::Handoff {
            to: "c".into(),
            from: "a".into(),
            sessions: vec![]
        }
    );
    // A target announces what it serves now; long lists are split over notifications.
    let served: Vec<String> = many.iter().map(|(id, _)| id.clone()).collect();
    db.announce_activated(&served).await.unwrap();
    let mut heard: Vec<String> = Vec::new();
    while heard.len() < served.len() {
        match tokio::time::timeout(Duration::from_secs(10), listener.recv())
            .await
            .expect("announced")
            .unwrap()
        {
            Announcement::Activated(ids) => heard.extend(ids),
            other => panic!("expected activations, got {other:?}"),
        }
    }
    assert_eq!(heard, served);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_elsewhere_lists_a_game_s_live_sessions_of_other_owners() {
    let pg = TestPostgres::start();
    let db = db(&pg, "elsewhere").await;
    for (id, game, owner) in [
        ("s1", "chaos", "a"),
        ("s2", "chaos", "b"),
        ("s3", "chaos", "c"),
        ("s4", "arena", "b"),
        ("s5", "chaos", "b"),
    ] {
        assert!(db.create_session(id, game, owner).await.unwrap());
    }
    sqlx::query("UPDATE minotaur_sessions SET ended = true WHERE id = 's5'")
        .execute(db.pool())
        .await
        .unwrap();
    // Not a's own (s1), not another game's (s4), not an ended one (s5).
    assert_eq!(db.live_elsewhere("chaos", "a").await.unwrap(), ["s2", "s3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_are_sessions_of_expired_or_stopped_nodes() {
    let pg = TestPostgres::start();
    let db = db(&pg, "orphans").await;
    let lease = Duration::from_millis(300);
    let a = db
        .register_node("a", "127.0.0.1:1", "t", lease)
        .await
        .unwrap();
    let b = db
        .register_node("b", "127.0.0.1:2", "t", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        db.register_node("b", "127.0.0.1:2", "t", Duration::from_secs(60))
            .await
            .unwrap(),
        b + 1
    );
    assert!(
        !db.renew_lease("b", b, Duration::from_secs(60), 0)
            .await
            .unwrap(),
        "old incarnation"
    );
    db.create_session("sa", "arena", "a").await.unwrap();
    db.create_session("sb", "arena", "b").await.unwrap();
    db.create_session("sx", "arena", "gone").await.unwrap();
    let ids =
        |o: Vec<minotaur_cluster::Orphan>| o.into_iter().map(|o| o.session).collect::<Vec<_>>();
    assert_eq!(ids(db.orphans(Duration::ZERO, 100).await.unwrap()), ["sx"]);
    // a's lease runs out (database time); with a grace it is not an orphan yet.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let o = ids(db.orphans(Duration::from_millis(50), 100).await.unwrap());
        if o == ["sa", "sx"] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a's sessions never orphaned: {o:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(db
        .renew_lease("a", a, Duration::from_secs(60), 1)
        .await
        .unwrap());
    assert_eq!(ids(db.orphans(Duration::ZERO, 100).await.unwrap()), ["sx"]);
    // A claim decided on the list read before a's renewal takes nothing from a (the lease
    // is checked again at the claim), and nobody claims from itself.
    let stale = [
        Claim {
            session: "sa".into(),
            owner: "a".into(),
            epoch: 1,
        },
        Claim {
            session: "sx".into(),
            owner: "gone".into(),
            epoch: 1,
        },
        Claim {
            session: "sb".into(),
            owner: "b".into(),
            epoch: 1,
        },
    ];
    let won = db
        .claim("b", &stale, Duration::from_millis(50))
        .await
        .unwrap();
    assert_eq!(won, [("sx".to_string(), 2)]);
    // A stopped node's sessions are orphans at once.
    db.set_node_status("a", a, minotaur_cluster::NodeStatus::Stopped)
        .await
        .unwrap();
    // (sx was claimed by b above.)
    assert_eq!(
        ids(db.orphans(Duration::from_secs(5), 100).await.unwrap()),
        ["sa"]
    );
}

/// A new session's first save enters it into the directory in the writer's group: resent
/// after an ambiguous failure it applies again over its own row, but never over another
/// owner's row or an ended one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_enters_the_directory_in_the_group_and_is_fenced_elsewhere() {
    let pg = TestPostgres::start();
    let db = db(&pg, "create").await;
    let create = |session: &str, bytes: &[u8]| FencedWrite {
        epoch: 1,
        write: SessionWrite::Create {
            session: session.into(),
            game: "tictactoe".into(),
            bytes: bytes.to_vec(),
        },
    };
    let applied = db
        .write_sessions("a", &[create("n1", b"first"), journal("other", 1, 3)])
        .await
        .unwrap();
    assert_eq!(
        applied,
        [true, false],
        "the journal of an unknown session is fenced"
    );
    let s = db.load_session("n1").await.unwrap().expect("entered");
    assert_eq!((s.owner.as_str(), s.epoch), ("a", 1));
    assert_eq!(s.doc.as_deref(), Some(&b"first"[..]));
    // The same write again (its first commit's answer was lost): applies over its own row.
    assert_eq!(
        db.write_sessions("a", &[create("n1", b"again")])
            .await
            .unwrap(),
        [true]
    );
    // Another node with the same id: fenced, the row stays a's.
    assert_eq!(
        db.write_sessions("b", &[create("n1", b"b's")])
            .await
            .unwrap(),
        [false]
    );
    let s = db.load_session("n1").await.unwrap().unwrap();
    assert_eq!(
        (s.owner.as_str(), s.doc.as_deref()),
        ("a", Some(&b"again"[..]))
    );
}

/// A group mixing every kind of write is one statement: each part applies or is fenced on
/// its own, and the document writes drop what they replace (chunks, journal records).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_group_applies_each_write_or_fences_it_alone() {
    let pg = TestPostgres::start();
    let db = db(&pg, "mixed").await;
    // Set-up: s-full, s-append, s-journal, s-end live on a at epoch 1, each with a journal
    // record (and s-full a chunk) that a document write must drop; s-other is b's.
    for s in ["s-full", "s-append", "s-journal", "s-end"] {
        assert!(db.create_session(s, "arena", "a").await.unwrap());
    }
    assert!(db.create_session("s-other", "arena", "b").await.unwrap());
    let setup = [
        full("s-full", 1, b"f0"),
        full("s-append", 1, b"a0"),
        full("s-journal", 1, b"j0"),
        full("s-end", 1, b"e0"),
        full("s-other", 1, b"o0"),
    ];
    assert_eq!(
        db.write_sessions("a", &setup).await.unwrap(),
        [true, true, true, true, false],
        "s-other is b's: fenced while the rest of the group applies"
    );
    let chunk = |s: &str, c: &[u8]| FencedWrite {
        epoch: 1,
        write: SessionWrite::Append {
            session: s.into(),
            chunk: c.to_vec(),
        },
    };
    assert_eq!(
        db.write_sessions("a", &[chunk("s-full", b"-old")])
            .await
            .unwrap(),
        [true]
    );
    let records = [
        journal("s-full", 1, 1),
        journal("s-append", 1, 1),
        journal("s-journal", 1, 1),
        journal("s-end", 1, 1),
    ];
    assert_eq!(db.write_sessions("a", &records).await.unwrap(), [true; 4]);
    // The group under test: one write of every kind, plus two fenced ones (another
    // owner's session, a stale epoch).
    let group = [
        FencedWrite {
            epoch: 1,
            write: SessionWrite::Create {
                session: "s-new".into(),
                game: "tictactoe".into(),
                bytes: b"n0".to_vec(),
            },
        },
        full("s-full", 1, b"f1"),
        chunk("s-append", b"-a1"),
        journal("s-journal", 1, 2),
        FencedWrite {
            epoch: 1,
            write: SessionWrite::Delete {
                session: "s-end".into(),
            },
        },
        journal("s-other", 1, 5),
        full("s-stale", 7, b"x"),
    ];
    assert_eq!(
        db.write_sessions("a", &group).await.unwrap(),
        [true, true, true, true, true, false, false]
    );
    let load = |s: &'static str| {
        let db = db.clone();
        async move { db.load_session(s).await.unwrap() }
    };
    let new = load("s-new").await.expect("created");
    assert_eq!((new.owner.as_str(), new.epoch), ("a", 1));
    assert_eq!(new.doc.as_deref(), Some(&b"n0"[..]));
    let f = load("s-full").await.unwrap();
    assert_eq!(
        f.doc.as_deref(),
        Some(&b"f1"[..]),
        "the full save drops the chunk"
    );
    assert!(f.journal.is_empty(), "and the journal records");
    let a = load("s-append").await.unwrap();
    assert_eq!(a.doc.as_deref(), Some(&b"a0-a1"[..]));
    assert!(
        a.journal.is_empty(),
        "an incremental save drops the records too"
    );
    let j = load("s-journal").await.unwrap();
    assert_eq!(j.doc.as_deref(), Some(&b"j0"[..]));
    assert_eq!(
        j.journal.records.iter().map(|r| r.tick).collect::<Vec<_>>(),
        [1, 2]
    );
    let e = load("s-end").await.unwrap();
    assert!(e.ended && e.doc.is_none() && e.journal.is_empty());
    let o = load("s-other").await.unwrap();
    assert_eq!(o.owner, "b");
    assert!(
        o.journal.is_empty(),
        "a's record for b's session is not there"
    );
    assert!(
        load("s-stale").await.is_none(),
        "a fenced full save creates nothing"
    );
    assert_eq!(
        db.write_sessions("a", &[]).await.unwrap(),
        Vec::<bool>::new()
    );
}
