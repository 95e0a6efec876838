//! A full outage: `kill -9` of every node at once, then two new nodes (new ids, new
//! addresses) on the same database. The dead nodes' leases run out, the new nodes claim
//! every session (takeover at the next epoch), and the bots — told the new addresses —
//! find their seats there with every acknowledged input in place.

use std::time::Duration;

use crate::{
    bots::Fleet,
    harness::{wait_until, TestCluster},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_nodes_bring_back_every_session_after_a_full_outage() {
    let mut cluster = TestCluster::start(3).await;
    let mut fleet = Fleet::new(cluster.urls());
    for i in 0..3 {
        let url = cluster.nodes[i].ws_url();
        fleet.tictactoe(&url, 1).await;
        fleet.chaos(&url, 1).await;
    }
    fleet.arena(&cluster.nodes[1].ws_url(), 1).await;
    fleet
        .wait_acks(60, Duration::from_secs(30), "before the outage")
        .await;

    for i in 0..3 {
        cluster.kill(i);
    }
    let before = cluster.directory().await;
    cluster.add_nodes(&["n4".into(), "n5".into()]).await;
    fleet.set_urls(cluster.urls());
    let c = &cluster;
    wait_until(
        Duration::from_secs(30),
        "every live session is owned by n4 or n5",
        || async move {
            c.directory()
                .await
                .values()
                .all(|r| r.ended || r.owner == "n4" || r.owner == "n5")
        },
    )
    .await;
    let acts = cluster.activations();
    // Claimed by the sweep (`why=takeover`), or started by a player's resume that came
    // between the claim and the sweep's activation (`why=routed`).
    for r in before.values().filter(|r| !r.ended) {
        assert!(
            acts.iter().any(|a| a.session == r.id
                && a.epoch == r.epoch + 1
                && (a.node == "n4" || a.node == "n5")),
            "session {} ({} at epoch {}) was not claimed by a new node: {acts:?}",
            r.id,
            r.owner,
            r.epoch
        );
    }
    fleet
        .wait_acks(60, Duration::from_secs(60), "on the new nodes")
        .await;
    let rows = cluster.node_rows().await;
    for old in ["n1", "n2", "n3"] {
        assert!(
            !rows[old].2,
            "the dead {old} still has a live lease: {rows:?}"
        );
    }
    fleet.finish(&cluster).await;
}
