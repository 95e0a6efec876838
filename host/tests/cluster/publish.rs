//! A publish with a dry run in a cluster: the node asked restores every live session of the
//! game into the new rules — its own through their actors, the other nodes' read from the
//! database — so a `migrate` that would break a session served elsewhere is refused (409
//! `migration_failed`, nothing recorded: no node makes the new rules current).

use std::time::Duration;

use serde_json::{json, Value};

use crate::{
    common::{module_path, Client, Enc},
    harness::TestCluster,
};

const V2_PANIC: &str = "chaos v2: asked to migrate from v1";

/// A seated chaos player on `url` with some state; the session id.
async fn chaos_player(url: &str) -> (Client, String) {
    let mut c = Client::connect_url(url, Enc::Json).await;
    c.send(json!({"type": "create", "game": "chaos"})).await;
    let session = c.recv_type("created").await["session"]
        .as_str()
        .expect("a session id")
        .to_owned();
    let joined = c
        .join(json!({"type": "join", "session": session, "name": "p"}))
        .await;
    assert_eq!(joined["type"], "joined", "{joined}");
    assert_eq!(joined["rules_version"], 1, "{joined}");
    c.input_ok(json!({"do": "echo", "n": 2}), 1).await;
    (c, session)
}

async fn publish(cluster: &TestCluster, i: usize, query: &str) -> (u16, Value) {
    let wasm = std::fs::read(module_path("chaos-v2")).expect("chaos-v2 bytes");
    let resp = reqwest::Client::new()
        .post(cluster.nodes[i].admin_http(&format!("/admin/games/chaos/modules?{query}")))
        .bearer_auth(&cluster.admin_token)
        .body(wasm)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("publish request");
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

fn failed_ids(report: &Value) -> Vec<String> {
    let mut ids: Vec<String> = report["failed"]
        .as_array()
        .unwrap_or_else(|| panic!("no failed list: {report}"))
        .iter()
        .map(|f| {
            assert!(f["panic"].as_str().unwrap_or("").contains(V2_PANIC), "{f}");
            f["session"].as_str().unwrap().to_owned()
        })
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_checks_the_sessions_every_node_serves() {
    let cluster = TestCluster::start(2).await;
    let (mut on_a, a) = chaos_player(&cluster.nodes[0].ws_url()).await;
    let (_on_b, b) = chaos_player(&cluster.nodes[1].ws_url()).await;
    let mut both = vec![a.clone(), b.clone()];
    both.sort();

    let (status, report) = publish(&cluster, 0, "policy=migrate&dry_run=true").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["dry_run"], true, "{report}");
    assert_eq!(report["checked"], 2, "both nodes' sessions: {report}");
    assert_eq!(failed_ids(&report), both, "{report}");

    // Without --force the migrate is refused; no node takes the new rules.
    let (status, body) = publish(&cluster, 0, "policy=migrate").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "migration_failed", "{body}");
    assert_eq!(failed_ids(&body["report"]), both, "{body}");
    // (chaos_player asserts rules_version 1 for a new session on each node.)
    for node in &cluster.nodes {
        chaos_player(&node.ws_url()).await;
    }
    // n1's session still plays on v1 with its state.
    on_a.input_ok(json!({"do": "echo", "n": 1}), 2).await;
    on_a.recv_until(|m| m["type"] == "message" && m["data"]["count"] == 3)
        .await;
}
