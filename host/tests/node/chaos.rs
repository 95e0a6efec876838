//! The sandbox through the whole stack: the `chaos` game traps, spins and
//! hogs memory on demand. Each failure reaches only the player who caused
//! it, the session rolls back and goes on, and other sessions never notice.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{games_dir, tictactoe_pair, Client, TestNode, DEADLINE};

async fn chaos_player(node: &TestNode) -> (Client, String) {
    games_dir(&["chaos"]);
    node.seated("chaos", "chaos").await
}

fn failed_with(answer: &Value, guest_code: &str) {
    assert_eq!(answer["type"], "error", "{answer}");
    assert_eq!(answer["code"], "session_failed", "{answer}");
    let msg = answer["message"].as_str().unwrap();
    assert!(
        msg.contains(guest_code),
        "expected {guest_code} in {answer}"
    );
}

#[tokio::test]
async fn guest_failures_roll_back_and_spare_other_sessions() {
    let node = TestNode::start(&[]);
    let (mut chaos, _) = chaos_player(&node).await;
    let (mut x, mut o, _) = tictactoe_pair(&node).await;
    chaos.input_ok(json!({"do": "echo", "n": 5}), 1).await;
    let mut count = 5;
    chaos
        .recv_until(|m| m["type"] == "message" && m["data"]["count"] == 5)
        .await;

    let cases = [
        ("panic", "guest_trap"),
        ("spin", "guest_timeout"),
        ("hog", "guest_memory_limit"),
    ];
    let mut seq = 10;
    for (i, (what, code)) in cases.into_iter().enumerate() {
        // Fire the bad input, and without waiting play tictactoe meanwhile.
        chaos
            .send(json!({"type": "input", "data": {"do": what}, "seq": seq}))
            .await;
        let mover = if i % 2 == 0 { &mut x } else { &mut o };
        let cell = [0, 3, 1][i];
        mover.input_ok(json!({ "cell": cell }), seq).await;
        let answer = chaos
            .recv_until(|m| m["seq"] == seq && (m["type"] == "error" || m["type"] == "ack"))
            .await;
        failed_with(&answer, code);
        // The tictactoe players were told nothing about it.
        for c in [&x, &o] {
            assert!(
                c.pending()
                    .chain(c.seen.iter())
                    .all(|m| m["code"] != "session_failed"),
                "tictactoe saw a chaos failure"
            );
        }
        // The chaos session rolled back (the failed input left no trace) and goes on.
        seq += 1;
        chaos.input_ok(json!({"do": "echo", "n": 5}), seq).await;
        count += 5;
        let echo = chaos.recv_until(|m| m["type"] == "message").await;
        assert_eq!(echo["data"], json!({"n": 5, "count": count}));
        seq += 1;
    }
    // And tictactoe plays on to the end.
    o.input_ok(json!({"cell": 4}), 100).await;
    x.input_ok(json!({"cell": 2}), 101).await;
    x.recv_type("ended").await;
}

#[tokio::test]
async fn three_failures_in_a_row_end_the_session() {
    let node = TestNode::start(&[]);
    let (mut chaos, session) = chaos_player(&node).await;
    for seq in 1..=2 {
        let answer = chaos.input(json!({"do": "panic"}), seq).await;
        failed_with(&answer, "guest_trap");
        assert!(
            answer["message"].as_str().unwrap().contains("rolled back"),
            "{answer}"
        );
    }
    let ended = chaos.input(json!({"do": "panic"}), 3).await;
    failed_with(&ended, "guest_trap");
    assert!(
        ended["message"].as_str().unwrap().contains("ended"),
        "{ended}"
    );
    let late = chaos.input(json!({"do": "echo", "n": 1}), 4).await;
    assert_eq!(late["code"], "session_ended", "{late}");
    // The node forgets the session once its actor has stopped (right after the last
    // answer): wait for that, then a join is told the session is unknown.
    let start = std::time::Instant::now();
    while node
        .admin_sessions()
        .await
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["id"] == session)
    {
        assert!(
            start.elapsed() < DEADLINE,
            "the ended session is still listed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut other = node.client().await;
    let e = other
        .join(json!({"type": "join", "session": session, "name": "n"}))
        .await;
    assert_eq!(e["code"], "unknown_session", "{e}");
}

#[tokio::test]
async fn a_spinning_guest_is_cut_off_by_the_call_timeout() {
    let node = TestNode::start(&["--call-timeout-ms", "50"]);
    let (mut chaos, _) = chaos_player(&node).await;
    let started = std::time::Instant::now();
    let answer = chaos.input(json!({"do": "spin"}), 1).await;
    failed_with(&answer, "guest_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    chaos.input_ok(json!({"do": "echo", "n": 2}), 2).await;
}
