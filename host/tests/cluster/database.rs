//! The database restarts under load: once cleanly (`pg_ctl restart -m fast`: every
//! connection cut, the server back at once) and once as a crash with an outage longer
//! than the lease (`-m immediate`, started again only after every node has stopped
//! serving). Meanwhile the nodes hold their writes and so their acks (a pause for the
//! players), `/readyz` says 503 while the lease is gone, and afterwards everything serves
//! again with every acknowledged input in place.

use std::time::Duration;

use crate::{
    bots::Fleet,
    harness::{wait_until, TestCluster},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_restarts_pause_the_players_and_lose_nothing() {
    let cluster = TestCluster::start(3).await;
    let mut fleet = Fleet::new(cluster.urls());
    for i in 0..3 {
        let url = cluster.nodes[i].ws_url();
        fleet.tictactoe(&url, 1).await;
        fleet.chaos(&url, 1).await;
    }
    fleet.arena(&cluster.nodes[0].ws_url(), 1).await;
    fleet
        .wait_acks(40, Duration::from_secs(30), "before the restarts")
        .await;

    // 1. A clean restart.
    tokio::task::block_in_place(|| cluster.pg.restart());
    all_ready(&cluster).await;
    fleet
        .wait_acks(40, Duration::from_secs(30), "after the clean restart")
        .await;

    // 2. A crash, and the database stays away until no node holds a lease.
    tokio::task::block_in_place(|| cluster.pg.stop());
    let c = &cluster;
    wait_until(
        Duration::from_secs(15),
        "every node stopped serving (no lease without the database)",
        || async move {
            for i in 0..3 {
                if c.status(i, "/readyz").await == 200 {
                    return false;
                }
            }
            true
        },
    )
    .await;
    tokio::task::block_in_place(|| cluster.pg.start_server());
    all_ready(&cluster).await;
    fleet
        .wait_acks(40, Duration::from_secs(30), "after the crash")
        .await;

    fleet.finish(&cluster).await;
    let claimed: Vec<_> = cluster
        .activations()
        .into_iter()
        .filter(|a| a.why == "takeover")
        .collect();
    eprintln!(
        "database restarts: {} sessions claimed from live nodes on the way back: {claimed:?}",
        claimed.len()
    );
}

async fn all_ready(cluster: &TestCluster) {
    for i in 0..cluster.nodes.len() {
        cluster.wait_ready(i, Duration::from_secs(30)).await;
    }
}
