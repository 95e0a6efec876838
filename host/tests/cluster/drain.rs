//! Drain under load: bots play tictactoe, chaos and arena sessions on the node to be
//! drained. SIGTERM hands every session to the other nodes (one `handed_over` line each,
//! the target activating it at the new epoch), the players get `moved`, resume on the
//! target and play on; the node exits 0. Then a second node is drained through the admin
//! API (`minotaur drain`), which answers with its report. At the end every session is
//! served by exactly its owner with every acknowledged input in it.

use std::{collections::BTreeSet, time::Duration};

use crate::{bots::Fleet, harness::TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drains_under_bots_lose_no_acknowledged_input() {
    // A drain is what is tested here, not a lapse: a lease long enough that a node starved
    // of CPU for a second (a busy CI machine) still renews in time; lapses and takeovers
    // are the pause and takeover tests' subject.
    let mut cluster = TestCluster::start_with(3, 3000, &[]).await;
    let mut fleet = Fleet::new(cluster.urls());
    let n1 = cluster.nodes[0].ws_url();
    fleet.tictactoe(&n1, 3).await;
    fleet.chaos(&n1, 3).await;
    fleet.arena(&n1, 2).await;
    fleet.wait_acks(60, Duration::from_secs(30), "on n1").await;

    // SIGTERM n1: everything it serves moves to n2 and n3.
    let before: BTreeSet<String> = cluster
        .sessions_on(0)
        .await
        .expect("n1 answers")
        .into_iter()
        .collect();
    assert!(!before.is_empty(), "n1 serves nothing");
    cluster.terminate(0);
    let code = cluster.wait_exit(0, Duration::from_secs(30)).await;
    assert_eq!(code, Some(0), "n1 did not exit cleanly after its drain");
    fleet.set_urls(cluster.urls());
    let handed: Vec<_> = cluster
        .handovers()
        .into_iter()
        .filter(|h| h.from == "n1")
        .collect();
    for s in &before {
        let h = handed
            .iter()
            .find(|h| &h.session == s)
            .unwrap_or_else(|| panic!("n1's session {s} was not handed over: {handed:?}"));
        assert!(h.to == "n2" || h.to == "n3", "{h:?}");
    }
    let drains = cluster.count_lines("drain finished");
    assert_eq!(drains.get("n1"), Some(&1), "{drains:?}");
    assert!(
        cluster.log_lines().iter().any(|l| l.node == "n1"
            && l.text.contains("drain finished")
            && l.text.contains("failed=0")),
        "n1's drain failed some sessions:\n{}",
        cluster.tail("n1", 30)
    );
    // The targets announced serving what they were handed (the drain paces on it).
    let confirmed: Vec<u64> = cluster
        .log_lines()
        .iter()
        .filter(|l| l.node == "n1" && l.text.contains("drain finished"))
        .filter_map(|l| {
            let v = l.text.split("confirmed=").nth(1)?;
            v.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
        })
        .collect();
    assert!(
        confirmed.first().is_some_and(|&n| n > 0),
        "no target confirmed serving a handed-over session: {confirmed:?}\n{}",
        cluster.tail("n1", 30)
    );
    fleet
        .wait_acks(60, Duration::from_secs(30), "after n1's drain")
        .await;
    assert!(fleet.moved() > 0, "no player was told to move");
    let rows = cluster.node_rows().await;
    assert_eq!(rows["n1"].1, "stopped", "{rows:?}");

    // `minotaur drain` on n2: its sessions go to n3, and the command prints the report.
    let on_n2 = cluster.sessions_on(1).await.expect("n2 answers");
    let http = cluster.nodes[1].admin_http("");
    let token = cluster.admin_token.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_minotaur"))
            .args(["drain", "--url", &http, "--token", &token])
            .output()
            .expect("run minotaur drain")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("a JSON report");
    assert_eq!(report["failed"], serde_json::json!([]), "{report}");
    let n = report["handed_over"].as_u64().expect("handed_over");
    assert!(
        n as usize >= on_n2.len(),
        "{report}; n2 served {} sessions before",
        on_n2.len()
    );
    let code = cluster.wait_exit(1, Duration::from_secs(30)).await;
    assert_eq!(code, Some(0), "n2 did not exit cleanly after its drain");
    fleet.set_urls(cluster.urls());
    fleet
        .wait_acks(60, Duration::from_secs(30), "after n2's drain")
        .await;

    let sessions = fleet.finish(&cluster).await;
    let dir = cluster.directory().await;
    for s in &sessions {
        assert_eq!(dir[&s.session].owner, "n3", "{:?}", dir[&s.session]);
    }
    eprintln!("drain: {} handed over by n1, {n} by n2", handed.len());
}
