//! Crash takeover under load: `kill -9` of the node serving the bots' sessions. Its lease
//! runs out, the other nodes claim every one of its sessions (compare-and-set from the
//! dead owner at epoch e to themselves at e + 1, logged `activated … why=takeover`), the
//! players find their seats again through any node and play on; nobody claims the
//! sessions of the live nodes. Not one acknowledged input is lost.

use std::time::Duration;

use crate::{bots::Fleet, harness::TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_an_owner_loses_no_acknowledged_input() {
    let mut cluster = TestCluster::start(3).await;
    let mut fleet = Fleet::new(cluster.urls());
    let (n1, n2) = (cluster.nodes[0].ws_url(), cluster.nodes[1].ws_url());
    fleet.tictactoe(&n1, 3).await;
    fleet.chaos(&n1, 3).await;
    fleet.arena(&n1, 1).await;
    // Bystanders on n2: they must not move.
    fleet.tictactoe(&n2, 1).await;
    fleet.chaos(&n2, 1).await;
    fleet
        .wait_acks(60, Duration::from_secs(30), "before the kill")
        .await;

    let before = cluster.directory().await;
    cluster.kill(0);
    fleet.set_urls(cluster.urls());
    let c = &cluster;
    let took = crate::harness::wait_until(
        Duration::from_secs(20),
        "no live session is owned by the dead n1",
        || async move {
            c.directory()
                .await
                .values()
                .all(|r| r.ended || r.owner != "n1")
        },
    )
    .await;
    eprintln!("takeover: n1's sessions claimed {took:?} after kill -9 (lease 1 s)");
    fleet
        .wait_acks(60, Duration::from_secs(30), "after the takeover")
        .await;

    // Each of n1's sessions claimed at the next epoch (or handed over by a rebalancing
    // round that committed just before the kill); nobody claimed the live nodes' ones
    // (rebalancing may hand those on).
    let dead: Vec<(String, u64)> = before
        .values()
        .filter(|r| !r.ended && r.owner == "n1")
        .map(|r| (r.id.clone(), r.epoch + 1))
        .collect();
    assert!(!dead.is_empty(), "n1 owned no session");
    cluster
        .wait_activated(&dead, &["n2", "n3"], Duration::from_secs(20))
        .await;
    let acts = cluster.activations();
    for r in before.values().filter(|r| !r.ended && r.owner != "n1") {
        assert!(
            acts.iter()
                .all(|a| a.session != r.id || a.why != "takeover"),
            "session {} of the live {} was claimed: {acts:?}",
            r.id,
            r.owner
        );
    }
    let claims = cluster.count_lines("takeover: claimed sessions");
    assert!(
        !claims.is_empty() && !claims.contains_key("n1"),
        "claims: {claims:?}"
    );
    fleet.finish(&cluster).await;
}
