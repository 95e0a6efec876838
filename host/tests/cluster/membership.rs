//! Membership as a node shows it: three nodes see each other through `/api/cluster` and are
//! ready; a `kill -9`ed node leaves the others' lists within the detection bound; a node
//! whose seeds never answer is not ready until its join timeout.

use std::time::Duration;

use crate::harness::{wait_until, TestCluster};

/// Chitchat's detection bound with the default 100 ms gossip is 1.5 s (see
/// `docs/ARCHITECTURE.md`); allow for three busy debug processes on two cores.
const DETECTION: Duration = Duration::from_secs(4);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_see_each_other_and_a_killed_one_disappears() {
    let mut cluster = TestCluster::start(3, &[]);
    let all = vec!["n1".to_string(), "n2".into(), "n3".into()];
    for i in 0..3 {
        let c = &cluster;
        let want = all.clone();
        let took = wait_until(Duration::from_secs(10), "all three see each other", || {
            let want = want.clone();
            async move { c.members(i).await == Some(want) }
        })
        .await;
        eprintln!("n{} sees all three after {took:?}", i + 1);
        assert_eq!(cluster.status(i, "/readyz").await, 200);
    }
    let view = cluster
        .get_json(0, "/api/cluster")
        .await
        .expect("cluster view");
    assert_eq!(view["mode"], "cluster");
    let m = &view["members"][1];
    assert_eq!(m["id"], "n2");
    assert_eq!(m["addr"], cluster.nodes[1].addr.to_string());
    assert_eq!(m["status"], "serving");
    assert!(m["version"].is_string() && m["load"].is_u64(), "{view}");

    cluster.kill(2);
    let left = vec!["n1".to_string(), "n2".into()];
    for i in 0..2 {
        let c = &cluster;
        let want = left.clone();
        let took = wait_until(DETECTION, "the killed node is gone", || {
            let want = want.clone();
            async move { c.members(i).await == Some(want) }
        })
        .await;
        eprintln!("n{} dropped n3 after {took:?}", i + 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_alone_is_not_ready_until_its_join_timeout() {
    // Seeds that never answer (the other nodes are never started).
    let cluster = TestCluster::start(1, &["--join-timeout-ms", "1500", "--seeds", "127.0.0.1:9"]);
    let c = &cluster;
    assert_eq!(c.status(0, "/readyz").await, 503);
    let took = wait_until(Duration::from_secs(5), "ready alone", || async move {
        c.status(0, "/readyz").await == 200
    })
    .await;
    assert!(
        took >= Duration::from_millis(500),
        "ready too early: {took:?}"
    );
}
