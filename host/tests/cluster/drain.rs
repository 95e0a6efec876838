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
    let c = &cluster;
    wait_until(
        Duration::from_secs(10),
        "both nodes ready and joined",
        || async move {
            c.members(0).await.is_some_and(|m| m.len() == 2)
                && c.members(1).await.is_some_and(|m| m.len() == 2)
                && c.status(0, "/readyz").await == 200
        },
    )
    .await;

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
