//! Rolling restart of all three nodes under load: each in turn gets SIGTERM (it drains:
//! its sessions move to the others and the bots follow `moved`), exits 0, and comes back
//! with the same id, address and data dir, owning nothing (a clean drain leaves nothing to
//! take back). At the end every session is alive with every acknowledged input.

use std::time::Duration;

use crate::{bots::Fleet, harness::TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_under_bots_loses_nothing() {
    let mut cluster = TestCluster::start(3).await;
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

    for i in 0..3 {
        let id = cluster.nodes[i].id.clone();
        cluster.terminate(i);
        let code = cluster.wait_exit(i, Duration::from_secs(30)).await;
        assert_eq!(code, Some(0), "{id} did not exit cleanly after its drain");
        cluster.spawn(i).await;
        fleet
            .wait_acks(
                40,
                Duration::from_secs(30),
                &format!("after restarting {id}"),
            )
            .await;
    }
    fleet.finish(&cluster).await;

    for id in ["n1", "n2", "n3"] {
        let drains: Vec<String> = cluster
            .log_lines()
            .into_iter()
            .filter(|l| l.node == id && l.text.contains("drain finished"))
            .map(|l| l.text)
            .collect();
        assert_eq!(drains.len(), 1, "{id}: {drains:?}");
        assert!(drains[0].contains("failed=0"), "{id}: {}", drains[0]);
    }
    let acts = cluster.activations();
    assert!(
        acts.iter()
            .all(|a| a.why != "restart" && a.why != "takeover"),
        "a drain left sessions behind: {acts:?}"
    );
    eprintln!("rolling restart: {} hand-overs", cluster.handovers().len());
}
