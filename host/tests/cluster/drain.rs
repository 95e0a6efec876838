//! Drain over real processes: a node given SIGTERM hands its sessions to another node; the
//! players get `moved{url}`, resume there with their tokens and find every acknowledged
//! move in place; the target logs exactly one activation at the new epoch.

use std::time::Duration;

use serde_json::json;

use crate::{
    common::{Client, Enc},
    harness::{wait_until, TestCluster},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_a_tictactoe_game_over_without_losing_a_move() {
    let mut cluster = TestCluster::start(2, &[]);
    cluster.wait_all_joined(Duration::from_secs(10)).await;

    let url = cluster.nodes[0].ws_url();
    let mut x = Client::connect_url(&url, Enc::Json).await;
    x.send(json!({"type": "create", "game": "tictactoe"})).await;
    let session = x.recv_type("created").await["session"]
        .as_str()
        .unwrap()
        .to_owned();
    let jx = x
        .join(json!({"type": "join", "session": session, "name": "x"}))
        .await;
    let mut o = Client::connect_url(&url, Enc::Json).await;
    let jo = o
        .join(json!({"type": "join", "session": session, "name": "o"}))
        .await;
    let (tx, to) = (jx["token"].clone(), jo["token"].clone());
    x.input_ok(json!({"cell": 4}), 1).await;
    o.input_ok(json!({"cell": 0}), 1).await;
    x.input_ok(json!({"cell": 8}), 2).await;

    cluster.terminate(0);
    let mx = x.recv_type("moved").await;
    let mo = o.recv_type("moved").await;
    assert_eq!(mx["session"], session.as_str());
    let target = mx["url"].as_str().unwrap().to_owned();
    assert_eq!(target, cluster.nodes[1].ws_url(), "{mx}");
    assert_eq!(mo["url"], mx["url"]);

    let mut x2 = resume(&target, &tx).await;
    let mut o2 = resume(&target, &to).await;
    let _ = &mut x2;
    // Cells 4, 0 and 8 are taken: the game went on from where it was.
    let taken = o2.input(json!({"cell": 4}), 2).await;
    assert_eq!(taken["type"], "error", "cell 4 should be taken: {taken}");
    o2.input_ok(json!({"cell": 2}), 3).await;

    assert!(
        cluster
            .wait_exit(0, Duration::from_secs(15))
            .await
            .is_some(),
        "the drained node did not exit"
    );
    let activations: Vec<String> = cluster
        .log_lines()
        .into_iter()
        .filter(|l| l.text.contains(&format!("activated session={session}")))
        .map(|l| format!("{}: {}", l.node, l.text))
        .collect();
    assert_eq!(activations.len(), 1, "{activations:?}");
    assert!(
        activations[0].starts_with("n2:") && activations[0].contains("epoch=2"),
        "{activations:?}"
    );
}

/// Resume at `url`, retrying `bad_token` while the target is still starting the session
/// (it activates right after accepting the handoff, as the players are told to move).
async fn resume(url: &str, token: &serde_json::Value) -> Client {
    let mut c = Client::connect_url(url, Enc::Json).await;
    let start = std::time::Instant::now();
    loop {
        let r = c.join(json!({"type": "resume", "token": token})).await;
        if r["type"] == "joined" {
            return c;
        }
        assert!(
            r["code"] == "bad_token" && start.elapsed() < Duration::from_secs(5),
            "resume failed: {r}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `minotaur drain` (the admin API) on a node: while it drains it refuses new sessions and
/// is not ready; its session moves to the other node, and the command prints the report.
/// The target is stopped (SIGSTOP) at first, so that the draining window is long enough to
/// observe, then continued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_command_hands_over_and_a_draining_node_takes_no_new_sessions() {
    let mut cluster = TestCluster::start(2, &[]);
    cluster.wait_all_joined(Duration::from_secs(10)).await;
    let url = cluster.nodes[0].ws_url();
    let mut p = Client::connect_url(&url, Enc::Json).await;
    p.send(json!({"type": "create", "game": "tictactoe"})).await;
    let session = p.recv_type("created").await["session"]
        .as_str()
        .unwrap()
        .to_owned();
    let joined = p
        .join(json!({"type": "join", "session": session, "name": "x"}))
        .await;

    // Without the token: refused.
    let no_token = std::process::Command::new(env!("CARGO_BIN_EXE_minotaur"))
        .args([
            "drain",
            "--url",
            &cluster.nodes[0].http(""),
            "--token",
            "wrong",
        ])
        .output()
        .unwrap();
    assert!(!no_token.status.success());
    assert!(String::from_utf8_lossy(&no_token.stdout).contains("unauthorized"));

    let target_pid = cluster.nodes[1].pid().unwrap().to_string();
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &target_pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    };
    signal("-STOP");
    let token = std::fs::read_to_string(cluster.nodes[0].data_dir.join("admin.token")).unwrap();
    let http = cluster.nodes[0].http("");
    let drain = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_minotaur"))
            .args(["drain", "--url", &http, "--token", token.trim()])
            .output()
            .unwrap()
    });
    let c = &cluster;
    wait_until(
        Duration::from_secs(10),
        "n1 draining (not ready)",
        || async move { c.status(0, "/readyz").await == 503 },
    )
    .await;
    let mut q = Client::connect_url(&url, Enc::Json).await;
    q.send(json!({"type": "create", "game": "tictactoe"})).await;
    let refused = q.recv_type("error").await;
    assert_eq!(refused["code"], "draining", "{refused}");
    let lobby = reqwest::Client::new()
        .post(cluster.nodes[0].http("/api/sessions"))
        .json(&json!({"game": "tictactoe"}))
        .send()
        .await
        .unwrap();
    assert_eq!(lobby.status().as_u16(), 503);
    signal("-CONT");

    let out = drain.await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("a JSON report");
    assert_eq!(report["handed_over"], 1, "{report}");
    assert_eq!(report["failed"], json!([]), "{report}");
    let moved = p.recv_type("moved").await;
    assert_eq!(moved["url"], cluster.nodes[1].ws_url(), "{moved}");
    // The same seat, on the other node.
    let mut p2 = Client::connect_url(moved["url"].as_str().unwrap(), Enc::Json).await;
    let again = p2
        .join(json!({"type": "resume", "token": joined["token"]}))
        .await;
    assert_eq!(again["player"], joined["player"], "{again}");
    assert!(
        cluster
            .wait_exit(0, Duration::from_secs(15))
            .await
            .is_some(),
        "the drained node did not exit"
    );
    cluster.assert_single_owner();
}
