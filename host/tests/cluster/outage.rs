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
    // Claimed by the sweep (`why=takeover`), or started by a player's resume that came
    // between the claim and the sweep's activation (`why=routed`): at the next epoch.
    let expect: Vec<(String, u64)> = before
        .values()
        .filter(|r| !r.ended)
        .map(|r| (r.id.clone(), r.epoch + 1))
        .collect();
    cluster
        .wait_activated(&expect, &["n4", "n5"], Duration::from_secs(20))
        .await;
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
