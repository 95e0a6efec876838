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

    let acts = cluster.activations();
    let mut dead = 0;
    for r in before.values().filter(|r| !r.ended) {
        let moved: Vec<_> = acts.iter().filter(|a| a.session == r.id).collect();
        if r.owner == "n1" {
            dead += 1;
            // Claimed; or handed over by a rebalancing round that committed just before
            // the kill.
            assert!(
                moved
                    .iter()
                    .any(|a| a.epoch == r.epoch + 1 && a.node != "n1"),
                "session {} (n1 at epoch {}) was not taken over at epoch {}: {moved:?}",
                r.id,
                r.epoch,
                r.epoch + 1
            );
        } else {
            // Rebalancing may hand it on; nobody may claim it.
            assert!(
                moved.iter().all(|a| a.why != "takeover"),
                "session {} of the live {} was claimed: {moved:?}",
                r.id,
                r.owner
            );
        }
    }
    assert!(dead >= 5, "n1 owned only {dead} sessions");
    let claims = cluster.count_lines("takeover: claimed sessions");
    assert!(
        !claims.is_empty() && !claims.contains_key("n1"),
        "claims: {claims:?}"
    );
    fleet.finish(&cluster).await;
}
