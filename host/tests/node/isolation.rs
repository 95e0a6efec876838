//! Guest isolation end to end: guests spinning inside a call hold guest-pool
//! threads, never the threads that serve sockets, so another session is served
//! to its end meanwhile; and modules are refused at publish, with their typed
//! code, for a forbidden wasm feature or a compile over its time limit.

use std::time::Instant;

use serde_json::{json, Value};

use crate::common::{games_dir, tictactoe_pair, Client, TestNode, DEADLINE};

async fn chaos_player(node: &TestNode) -> Client {
    games_dir(&["chaos"]);
    let mut c = node.client().await;
    c.send(json!({"type": "create", "game": "chaos"})).await;
    let session = c.recv_type("created").await["session"].clone();
    let joined = c
        .join(json!({"type": "join", "session": session, "name": "spinner"}))
        .await;
    assert_eq!(joined["type"], "joined", "{joined}");
    c
}

/// The node's `/metrics` sample `name` (no labels).
async fn metric(node: &TestNode, name: &str) -> f64 {
    let text = reqwest::get(node.admin_http("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

#[tokio::test]
async fn spinning_guests_do_not_stop_other_sessions_from_being_served() {
    // As many spinning calls as the node has async worker threads (tokio's
    // default: one per core): were guest calls run on those threads, nothing
    // else would be answered until the spins end, a minute from now.
    let spinners = std::thread::available_parallelism().map_or(2, |n| n.get());
    let threads = (spinners + 2).to_string();
    let node = TestNode::start(&["--call-timeout-ms", "60000", "--guest-threads", &threads]);
    let mut chaos = Vec::new();
    for _ in 0..spinners {
        let mut c = chaos_player(&node).await;
        c.send(json!({"type": "input", "data": {"do": "spin"}, "seq": 1}))
            .await;
        chaos.push(c);
    }
    // Wait until every spin runs on a pool thread (the node reports its pool).
    let start = Instant::now();
    while metric(&node, "minotaur_guest_pool_busy").await < spinners as f64 {
        assert!(start.elapsed() < DEADLINE, "the spins never started");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // Meanwhile a whole tictactoe game is played: joins answered, every move
    // acknowledged (after its durable write), the end announced.
    let (mut x, mut o, _) = tictactoe_pair(&node).await;
    for (i, cell) in [0u64, 3, 1, 4, 2].into_iter().enumerate() {
        let who = if i % 2 == 0 { &mut x } else { &mut o };
        who.input_ok(json!({ "cell": cell }), 10 + i as u64).await;
    }
    let ended = x.recv_type("ended").await;
    assert_eq!(ended["winners"], json!([1]), "{ended}");
    // The lobby answers too.
    let listed: Value = reqwest::get(node.http("/api/sessions"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(listed.as_array().unwrap().len() >= spinners, "{listed}");

    // All of that happened while the spins were still running: no spinner has
    // had its answer, and the pool still holds every spin.
    for c in &chaos {
        assert!(
            c.pending()
                .chain(c.seen.iter())
                .all(|m| m["seq"] != 1 || m["type"] == "view"),
            "a spin ended before the bystander's game did"
        );
    }
    assert!(metric(&node, "minotaur_guest_pool_busy").await >= spinners as f64);
}

#[tokio::test]
async fn publish_refuses_a_forbidden_feature_before_compiling() {
    let node = TestNode::start_with(&["chaos"], &[]);
    let token = node.admin_token();
    // A module whose only content is a 64-bit memory (section 5: one memory,
    // limits flag 0x04 = memory64, minimum 1 page).
    let memory64 = b"\0asm\x01\0\0\0\x05\x03\x01\x04\x01".to_vec();
    let (status, body) = node.publish("chaos", memory64, "new", Some(&token)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "forbidden_feature", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("memory64"),
        "{body}"
    );
}

#[tokio::test]
async fn publish_refuses_a_module_that_compiles_too_slowly() {
    // No real game compiles within a millisecond (the games directory's
    // modules are refused at start the same way; the node serves regardless).
    let node = TestNode::start_with(&["chaos"], &["--compile-timeout-ms", "1"]);
    let token = node.admin_token();
    let wasm = std::fs::read(crate::common::module_path("chaos-v2")).unwrap();
    let (status, body) = node.publish("chaos", wasm, "new", Some(&token)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "compile_timeout", "{body}");
}
