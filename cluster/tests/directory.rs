//! The directory against a real PostgreSQL (`testing::TestPostgres`): schema refusal,
//! fenced writes, compare-and-set claims at the same instant, hand-offs with their
//! notification, orphans by lease, a game's live sessions on other nodes (a publish's dry
//! run).

use std::{sync::Arc, time::Duration};

use minotaur_abi::Event;
use minotaur_cluster::{testing::TestPostgres, Claim, Db, DbError, FencedWrite};
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
    assert_eq!(
        to,
        minotaur_cluster::directory::Announcement::Handoff("b".into())
    );
    let mut owned = db.owned("b").await.unwrap();
    owned.sort();
    assert_eq!(owned, [("h1".to_string(), 2), ("h3".to_string(), 2)]);
    assert_eq!(db.owned("a").await.unwrap(), [("h2".to_string(), 1)]);
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
