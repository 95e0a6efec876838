//! Publishing rules to a live node: arena v1 → v2 with `migrate` while bots
//! play (no connection dropped, `rules` 2, scores kept, v2's boost energy in
//! effect); a module whose restore traps leaves sessions on their rules; bad
//! modules and bad tokens are refused.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{oneshot, watch};

use crate::common::{module_path, Client, TestNode};

fn wasm(module: &str) -> Vec<u8> {
    std::fs::read(module_path(module)).expect("module bytes")
}

/// Points a bot tours when it sees no coin (the map is 1000 × 1000 and a
/// player sees 200 units around it).
const WAYPOINTS: [(f64, f64); 4] = [
    (250.0, 250.0),
    (750.0, 250.0),
    (750.0, 750.0),
    (250.0, 750.0),
];

/// Steer towards the nearest visible coin until scoring `target` (then tell
/// `scored`), keep going until `swapped`, then wait for `rules` 2 and a v2
/// view on the same connection. Returns the last v1 score and the v2 view.
async fn bot(
    mut c: Client,
    target: u64,
    scored: oneshot::Sender<()>,
    mut swapped: watch::Receiver<bool>,
) -> (u64, Value, Client) {
    let mut seq = 0;
    let mut score = 0;
    let mut scored = Some(scored);
    let mut waypoint = 0;
    while !*swapped.borrow() {
        let view = tokio::select! {
            v = c.recv_type("view") => v,
            _ = swapped.changed() => break,
        };
        if view["data"].get("boost_energy").is_some() {
            break; // already v2
        }
        score = view["data"]["score"].as_u64().unwrap_or(score);
        if score >= target {
            if let Some(s) = scored.take() {
                let _ = s.send(());
            }
        }
        let me = &view["data"]["you"];
        let (Some(x), Some(y)) = (me["x"].as_f64(), me["y"].as_f64()) else {
            continue;
        };
        let nearest = view["data"]["coins"].as_array().and_then(|coins| {
            coins
                .iter()
                .filter_map(|c| Some((c["x"].as_f64()? - x, c["y"].as_f64()? - y)))
                .min_by(|a, b| a.0.hypot(a.1).total_cmp(&b.0.hypot(b.1)))
        });
        // No coin in sight: tour the map so the view keeps changing (a bot
        // standing still gets no views, and waiting for one would time out).
        let (dx, dy) = nearest.unwrap_or_else(|| {
            let (wx, wy) = WAYPOINTS[waypoint];
            if (wx - x).hypot(wy - y) < 20.0 {
                waypoint = (waypoint + 1) % WAYPOINTS.len();
            }
            let (wx, wy) = WAYPOINTS[waypoint];
            (wx - x, wy - y)
        });
        seq += 1;
        c.send(json!({"type": "input", "data": {"dir": [dx, dy]}, "seq": seq}))
            .await;
    }
    let rules = c.recv_type("rules").await;
    assert_eq!(rules["rules_version"], 2, "{rules}");
    let v2 = c
        .recv_until(|m| m["type"] == "view" && m["data"].get("boost_energy").is_some())
        .await;
    (score, v2, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn arena_migrates_live_to_v2() {
    let node = TestNode::start_with(&["arena"], &[]);
    let mut a = node.client().await;
    let ja = a.quick_match("arena", "a").await;
    let mut b = node.client().await;
    let jb = b.quick_match("arena", "b").await;
    assert_eq!(ja["session"], jb["session"]);
    assert_eq!(ja["rules_version"], 1);
    let (swap_tx, swap_rx) = watch::channel(false);
    let (scored_a, a_scored) = oneshot::channel();
    let (scored_b, _) = oneshot::channel();
    let ta = tokio::spawn(bot(a, 1, scored_a, swap_rx.clone()));
    let tb = tokio::spawn(bot(b, 0, scored_b, swap_rx));
    tokio::time::timeout(Duration::from_secs(60), a_scored)
        .await
        .expect("bot a scored within 60 s")
        .expect("bot a alive");

    let (status, report) = node
        .publish(
            "arena",
            wasm("arena-v2"),
            "migrate",
            Some(&node.admin_token()),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["migrated"], 1, "{report}");
    assert_eq!(report["failed"], json!([]), "{report}");
    assert_eq!(report["rules_version"], 2, "{report}");
    swap_tx.send_replace(true);
    let (score_a, v2_a, mut a) = ta.await.expect("bot a");
    let _ = tb.await.expect("bot b");
    // Scores carried over; v2's boost energy is in effect (full for
    // carried-over players, and a boost spends one).
    assert!(score_a >= 1);
    assert!(v2_a["data"]["score"].as_u64().unwrap() >= score_a, "{v2_a}");
    assert_eq!(v2_a["data"]["boost_energy"], 3, "{v2_a}");
    a.clear();
    // Stand still while boosting: a coin picked up in the same tick would
    // refill the energy to 3 and the view with 2 would never be sent.
    a.input_ok(json!({"boost": true, "dir": [0.0, 0.0]}), 1_000_000)
        .await;
    a.recv_until(|m| m["type"] == "view" && m["data"]["boost_energy"] == 2)
        .await;
    let sessions = node.admin_sessions().await;
    assert_eq!(sessions[0]["rules_version"], 2, "{sessions}");

    // The published version stays current across a restart, and the
    // migrated session comes back on v2.
    let node = node.restart();
    let games: Value = reqwest::get(node.http("/api/games"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(games[0]["rules_version"], 2, "{games}");
    let sessions = node.admin_sessions().await;
    assert_eq!(sessions[0]["rules_version"], 2, "{sessions}");
}

async fn chaos_player(node: &TestNode) -> Client {
    let mut c = node.client().await;
    c.send(json!({"type": "create", "game": "chaos"})).await;
    let session = c.recv_type("created").await["session"].clone();
    let joined = c
        .join(json!({"type": "join", "session": session, "name": "c"}))
        .await;
    assert_eq!(joined["type"], "joined", "{joined}");
    c
}

#[tokio::test]
async fn a_restore_that_traps_leaves_sessions_on_their_rules() {
    let node = TestNode::start_with(&["chaos"], &[]);
    let mut c1 = chaos_player(&node).await;
    let mut c2 = chaos_player(&node).await;
    c1.input_ok(json!({"do": "echo", "n": 2}), 1).await;
    // Forced past its failed dry run (dry_run.rs), so the real swap runs and fails.
    let (status, report) = node
        .publish_query(
            "chaos",
            wasm("chaos-v2"),
            "policy=migrate&force=true",
            Some(&node.admin_token()),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["migrated"], 0, "{report}");
    let failed = report["failed"].as_array().expect("failures");
    assert_eq!(failed.len(), 2, "{report}");
    assert!(failed.iter().all(|f| f["code"] == "guest_trap"), "{report}");
    assert!(
        failed.iter().all(|f| f["panic"]
            .as_str()
            .is_some_and(|p| p.contains("asked to migrate from v1"))),
        "{report}"
    );
    // Play goes on, on v1, with the state intact.
    c1.input_ok(json!({"do": "echo", "n": 1}), 2).await;
    c1.recv_until(|m| m["type"] == "message" && m["data"]["count"] == 3)
        .await;
    c2.input_ok(json!({"do": "echo", "n": 1}), 1).await;
    assert!(c1.pending().all(|m| m["type"] != "rules"));
    let sessions = node.admin_sessions().await;
    for s in sessions.as_array().unwrap() {
        assert_eq!(s["rules_version"], 1, "{sessions}");
    }
}

#[tokio::test]
async fn bad_modules_and_bad_tokens_are_refused() {
    let node = TestNode::start_with(&["chaos"], &[]);
    let token = node.admin_token();
    // No token, wrong token: 401 with a stable code, on every admin route.
    for t in [None, Some("wrong")] {
        let (status, body) = node.publish("chaos", wasm("chaos-v2"), "new", t).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["code"], "unauthorized", "{body}");
    }
    let resp = reqwest::get(node.admin_http("/admin/sessions"))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    // Not wasm; a wasm module that is not a Minotaur game; the wrong game.
    let (status, body) = node
        .publish("chaos", b"hello".to_vec(), "new", Some(&token))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("not_wasm")),
        "{body}"
    );
    let empty_module = b"\0asm\x01\0\0\0".to_vec();
    let (status, body) = node
        .publish("chaos", empty_module, "new", Some(&token))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "missing_export", "{body}");
    let (status, body) = node
        .publish("chaos", wasm("arena-v2"), "new", Some(&token))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("game_mismatch")),
        "{body}"
    );
    // Nothing changed: still chaos v1 for new sessions.
    let mut c = chaos_player(&node).await;
    let joined = c.seen.iter().find(|m| m["type"] == "joined").unwrap();
    assert_eq!(joined["rules_version"], 1, "{joined}");
    c.input_ok(json!({"do": "echo", "n": 1}), 1).await;
}
