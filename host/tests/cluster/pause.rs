//! SIGSTOP: a frozen process keeps its sockets but answers nothing, and wakes up with its
//! lease long gone — the case the lease gate and the fenced writes exist for.
//!
//! First a node that owns nothing is paused for 4 s: nothing moves (no activation, no
//! `moved`, every session still at epoch 1 on its owner). Then the owner of the bots'
//! sessions is paused for 4 s: the others claim its sessions, the bots resume there —
//! except one chaos bot that stays connected to the paused node with an input queued in
//! its socket. When the old owner wakes up it must neither serve nor acknowledge anything
//! of the sessions it lost: it re-reads the directory, sends its players on and drops its
//! copies, so every session ends up served by exactly one node, never two owners at one
//! epoch, and every acknowledged input (the queued one included, if it was acknowledged)
//! is in the session.

use std::time::{Duration, Instant};

use crate::{
    bots::Fleet,
    harness::{wait_until, TestCluster},
};

/// How long a paused node stays paused (between 3 and 6 s; the lease is 1 s).
const PAUSE: Duration = Duration::from_secs(4);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_of_a_non_owner_moves_nothing_and_of_an_owner_loses_nothing() {
    let mut cluster = TestCluster::start(3).await;
    let mut fleet = Fleet::new(cluster.urls());
    // Few sessions, so that no node is loaded enough for rebalancing to move any: here
    // only the pauses may move sessions.
    fleet.ctx.tictactoe_games = 2;
    fleet.ctx.tictactoe_pace = Duration::from_millis(700);
    let (n1, n2) = (cluster.nodes[0].ws_url(), cluster.nodes[1].ws_url());
    fleet.tictactoe(&n1, 2).await;
    fleet.chaos(&n1, 2).await;
    fleet.arena(&n1, 1).await;
    fleet.tictactoe(&n2, 1).await;
    fleet.chaos(&n2, 1).await;
    // Stays with n1 through the pause (its answers may take that long).
    fleet.chaos_waiting(&n1, 1, Duration::from_secs(30)).await;
    fleet
        .wait_acks(40, Duration::from_secs(30), "before any pause")
        .await;

    // 1. n3 owns nothing: pausing it moves nothing.
    cluster.pause(2);
    let paused = Instant::now();
    fleet.set_urls(vec![n1.clone(), n2.clone()]);
    let f = &fleet;
    wait_until(
        Duration::from_secs(30),
        "n3 paused long enough, the bots playing",
        || async move { paused.elapsed() >= PAUSE && f.acked() > 0 },
    )
    .await;
    fleet
        .wait_acks(20, Duration::from_secs(20), "while n3 is paused")
        .await;
    cluster.resume(2);
    cluster.wait_ready(2, Duration::from_secs(10)).await;
    fleet.set_urls(cluster.urls());
    fleet
        .wait_acks(20, Duration::from_secs(20), "after n3 woke")
        .await;
    assert!(
        cluster.activations().is_empty(),
        "sessions moved although only a node without sessions paused: {:?}",
        cluster.activations()
    );
    assert_eq!(fleet.moved(), 0, "players were moved");
    let dir = cluster.directory().await;
    assert!(
        dir.values()
            .all(|r| r.epoch == 1 && (r.owner == "n1" || r.owner == "n2")),
        "{dir:?}"
    );

    // 2. n1 owns most sessions: paused, they are claimed by n2 and n3.
    let before = cluster.directory().await;
    cluster.pause(0);
    let paused = Instant::now();
    fleet.set_urls(vec![n2.clone(), cluster.nodes[2].ws_url()]);
    let c = &cluster;
    let took = wait_until(
        Duration::from_secs(20),
        "the paused n1's sessions are claimed",
        || async move {
            c.directory()
                .await
                .values()
                .all(|r| r.ended || r.owner != "n1")
        },
    )
    .await;
    eprintln!("pause: n1's sessions claimed {took:?} after SIGSTOP");
    fleet
        .wait_acks(20, Duration::from_secs(20), "while n1 is paused")
        .await;
    wait_until(
        Duration::from_secs(10),
        "n1 paused long enough",
        || async move { paused.elapsed() >= PAUSE },
    )
    .await;
    cluster.resume(0);
    // n1 renews its lease, finds its sessions gone and drops them; it serves again.
    cluster.wait_ready(0, Duration::from_secs(10)).await;
    fleet.set_urls(cluster.urls());
    fleet
        .wait_acks(30, Duration::from_secs(30), "after n1 woke")
        .await;
    let lost: Vec<(String, u64)> = before
        .values()
        .filter(|r| r.owner == "n1" && !r.ended)
        .map(|r| (r.id.clone(), r.epoch + 1))
        .collect();
    cluster
        .wait_activated(&lost, &["n2", "n3"], Duration::from_secs(20))
        .await;
    // Served by exactly the owner the directory names (n1 again, for those that
    // rebalancing handed back to it), every acknowledged input in place.
    fleet.finish(&cluster).await;
}

/// The owner is paused in the middle of a write: its transaction has updated (and so
/// row-locked) its sessions' rows but not committed. The database must not let that open
/// transaction hold the takeover back for as long as the process stays paused (or, over a
/// dead network, until TCP gives up): the claims commit within a few leases, and the
/// stale owner's write, if it ever commits, is fenced. A trigger slows every write of
/// n1's rows (as a stalled disk would) so that the pause lands inside a transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_paused_mid_write_does_not_hold_the_takeover_back() {
    let mut cluster = TestCluster::start(2).await;
    let mut fleet = Fleet::new(cluster.urls());
    let n1 = cluster.nodes[0].ws_url();
    fleet.chaos(&n1, 3).await;
    fleet
        .wait_acks(20, Duration::from_secs(30), "before the slow writes")
        .await;
    cluster
        .pg
        .query(
            crate::harness::DB,
            "CREATE FUNCTION minotaur_test_slow() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN IF NEW.owner = 'n1' THEN PERFORM pg_sleep(0.3); END IF; RETURN NEW; END $$;
             CREATE TRIGGER minotaur_test_slow BEFORE UPDATE ON minotaur_sessions
             FOR EACH ROW EXECUTE FUNCTION minotaur_test_slow();",
        )
        .await
        .expect("the slow-write trigger");
    fleet
        .wait_acks(3, Duration::from_secs(30), "slow writes")
        .await;

    cluster.pause(0);
    let paused = Instant::now();
    fleet.set_urls(vec![cluster.nodes[1].ws_url()]);
    let c = &cluster;
    let took = wait_until(
        Duration::from_secs(15),
        "the paused n1's sessions are claimed although it paused mid-write",
        || async move {
            c.directory()
                .await
                .values()
                .all(|r| r.ended || r.owner != "n1")
        },
    )
    .await;
    eprintln!("pause mid-write: n1's sessions claimed {took:?} after SIGSTOP");
    fleet.wait_acks(10, Duration::from_secs(20), "on n2").await;
    wait_until(
        Duration::from_secs(10),
        "n1 paused long enough",
        || async move { paused.elapsed() >= PAUSE },
    )
    .await;
    cluster.resume(0);
    cluster.wait_ready(0, Duration::from_secs(10)).await;
    fleet.set_urls(cluster.urls());
    fleet.finish(&cluster).await;
}
