//! Publishing new rules with a dry run first: every live session's state is
//! restored into a scratch instance of the new module, failures come back with
//! the guest's panic message, and nothing changes (`?dry_run=true`,
//! `minotaur publish --dry-run`, which exits non-zero if any session failed). A
//! `migrate` whose dry run fails is refused (409 `migration_failed`, exit 1)
//! unless forced; forced, the module becomes current and those sessions keep
//! their rules.

use std::process::Output;

use serde_json::{json, Value};

use crate::admin::{minotaur_async, text};
use crate::common::{module_path, Client, TestNode};

const V2_PANIC: &str = "chaos v2: asked to migrate from v1";

fn wasm(module: &str) -> Vec<u8> {
    std::fs::read(module_path(module)).expect("module bytes")
}

/// A seated player of a new session of `game`, and the `joined` answer.
async fn player(node: &TestNode, game: &str) -> (Client, Value) {
    let mut c = node.client().await;
    c.send(json!({"type": "create", "game": game})).await;
    let session = c.recv_type("created").await["session"].clone();
    let joined = c
        .join(json!({"type": "join", "session": session, "name": "p"}))
        .await;
    assert_eq!(joined["type"], "joined", "{joined}");
    (c, joined)
}

/// `minotaur publish <module> --game <game> <extra>` against `node`.
async fn publish_cli(node: &TestNode, module: &str, game: &str, extra: &[&str]) -> Output {
    let (admin, token) = (node.admin_http(""), node.admin_token());
    let file = module_path(module);
    let mut args = vec![
        "publish",
        file.to_str().unwrap(),
        "--game",
        game,
        "--url",
        &admin,
        "--token",
        &token,
    ];
    args.extend_from_slice(extra);
    minotaur_async(&args, &[]).await
}

/// Every listed session's rules version.
async fn rules_of_sessions(node: &TestNode) -> Vec<u64> {
    let sessions = node.admin_sessions().await;
    sessions
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["rules_version"].as_u64().unwrap())
        .collect()
}

fn session_ids(failed: &Value) -> Vec<String> {
    let mut ids: Vec<String> = failed
        .as_array()
        .expect("failed list")
        .iter()
        .map(|f| f["session"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

fn assert_panicked_restores(failed: &Value, sessions: &[String]) {
    assert_eq!(session_ids(failed), sessions, "{failed}");
    for f in failed.as_array().unwrap() {
        assert_eq!(f["code"], "guest_trap", "{f}");
        assert!(f["panic"].as_str().unwrap().contains(V2_PANIC), "{f}");
        assert!(f["message"].as_str().unwrap().contains(V2_PANIC), "{f}");
    }
}

/// Two chaos sessions, the first with some state; their ids, sorted.
async fn two_chaos_sessions(node: &TestNode) -> (Client, Client, Vec<String>) {
    let (mut c1, j1) = player(node, "chaos").await;
    let (c2, j2) = player(node, "chaos").await;
    c1.input_ok(json!({"do": "echo", "n": 2}), 1).await;
    let mut ids = vec![
        j1["session"].as_str().unwrap().to_owned(),
        j2["session"].as_str().unwrap().to_owned(),
    ];
    ids.sort();
    (c1, c2, ids)
}

#[tokio::test]
async fn a_dry_run_reports_the_sessions_that_would_fail_and_changes_nothing() {
    let node = TestNode::start_with(&["chaos"], &[]);
    let token = node.admin_token();
    let (mut c1, _c2, ids) = two_chaos_sessions(&node).await;

    let (status, report) = node
        .publish_query(
            "chaos",
            wasm("chaos-v2"),
            "policy=migrate&dry_run=true",
            Some(&token),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["dry_run"], true, "{report}");
    assert_eq!(report["current"], false, "{report}");
    assert_eq!(report["checked"], 2, "{report}");
    assert_eq!(report["migrated"], 0, "{report}");
    assert_panicked_restores(&report["failed"], &ids);

    // The CLI prints the same report, names the sessions, and exits non-zero.
    let out = publish_cli(
        &node,
        "chaos-v2",
        "chaos",
        &["--policy", "migrate", "--dry-run"],
    )
    .await;
    assert!(!out.status.success(), "{}", text(&out.stderr));
    let printed: Value = serde_json::from_slice(&out.stdout).expect("report JSON");
    assert_eq!(printed["dry_run"], true, "{printed}");
    let stderr = text(&out.stderr);
    assert!(
        ids.iter().all(|id| stderr.contains(id.as_str())) && stderr.contains(V2_PANIC),
        "{stderr}"
    );

    // Nothing changed: the sessions run v1 with their state, new ones get v1.
    assert_eq!(rules_of_sessions(&node).await, [1, 1]);
    c1.input_ok(json!({"do": "echo", "n": 1}), 2).await;
    c1.recv_until(|m| m["type"] == "message" && m["data"]["count"] == 3)
        .await;
    let (_c3, joined) = player(&node, "chaos").await;
    assert_eq!(joined["rules_version"], 1, "{joined}");
}

#[tokio::test]
async fn a_dry_run_of_rules_that_restore_exits_zero_and_changes_nothing() {
    let node = TestNode::start_with(&["arena"], &[]);
    let (_c, joined) = player(&node, "arena").await;
    let out = publish_cli(
        &node,
        "arena-v2",
        "arena",
        &["--policy", "migrate", "--dry-run"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("report JSON");
    assert_eq!(report["checked"], 1, "{report}");
    assert_eq!(report["failed"], json!([]), "{report}");
    assert_eq!(report["current"], false, "{report}");
    assert_eq!(report["rules_version"], 2, "{report}");
    assert_eq!(rules_of_sessions(&node).await, [1], "{joined}");
    let (_c2, joined) = player(&node, "arena").await;
    assert_eq!(joined["rules_version"], 1, "{joined}");
}

#[tokio::test]
async fn a_migrate_whose_dry_run_fails_is_refused_unless_forced() {
    let node = TestNode::start_with(&["chaos"], &[]);
    let token = node.admin_token();
    let (mut c1, _c2, ids) = two_chaos_sessions(&node).await;

    // Refused: 409 with the dry run's report, nothing stored or made current.
    let (status, body) = node
        .publish_query("chaos", wasm("chaos-v2"), "policy=migrate", Some(&token))
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "migration_failed", "{body}");
    assert_eq!(body["report"]["current"], false, "{body}");
    assert_panicked_restores(&body["report"]["failed"], &ids);
    let out = publish_cli(&node, "chaos-v2", "chaos", &["--policy", "migrate"]).await;
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("409"), "{}", text(&out.stderr));
    let (_c3, joined) = player(&node, "chaos").await;
    assert_eq!(joined["rules_version"], 1, "still v1 for new sessions");

    // Forced: current for new sessions; the failing sessions stay on v1, and the
    // CLI still exits non-zero because sessions failed.
    let out = publish_cli(
        &node,
        "chaos-v2",
        "chaos",
        &["--policy", "migrate", "--force"],
    )
    .await;
    assert!(!out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).expect("report JSON");
    assert_eq!(report["current"], true, "{report}");
    assert_eq!(report["migrated"], 0, "{report}");
    let mut all = ids.clone();
    all.push(joined["session"].as_str().unwrap().to_owned());
    all.sort();
    assert_panicked_restores(&report["failed"], &all);
    let (_c4, joined) = player(&node, "chaos").await;
    assert_eq!(
        joined["rules_version"], 2,
        "new sessions get the forced rules"
    );
    assert_eq!(
        rules_of_sessions(&node)
            .await
            .iter()
            .filter(|v| **v == 1)
            .count(),
        3
    );
    c1.input_ok(json!({"do": "echo", "n": 1}), 2).await;
}
