//! A guest's panic message reaches the people who need it: the SDK's panic hook
//! hands it to the host (`minotaur`.`panic`), which logs it with the session,
//! game and rules version and puts it in the failing player's `session_failed`,
//! instead of a bare `guest_trap` and `<wasm function N>`.

use serde_json::json;

use crate::common::{Client, TestNode};

async fn chaos_player(node: &TestNode) -> (Client, String) {
    node.seated("chaos", "p").await
}

#[tokio::test]
async fn a_guest_panic_shows_its_message_to_the_player_and_in_the_log() {
    let node = TestNode::start_logged(&["chaos"], &[]);
    let (mut c, session) = chaos_player(&node).await;

    let answer = c.input(json!({"do": "panic"}), 1).await;
    assert_eq!(answer["code"], "session_failed", "{answer}");
    let message = answer["message"].as_str().unwrap();
    assert!(message.contains("guest_trap"), "{message}");
    assert!(
        message.contains("chaos: asked to panic at ") && message.contains("lib.rs:"),
        "the panic's text and location: {message}"
    );
    assert!(!message.contains("wasm function"), "{message}");

    // The operator's log line names the session, the game, its rules and the panic.
    let line = node
        .wait_log(|l| l.contains("guest failed") && l.contains(&session))
        .await;
    for part in ["chaos: asked to panic", "game", "chaos", "rules_version"] {
        assert!(line.contains(part), "`{part}` missing in: {line}");
    }

    // The session rolled back and plays on.
    c.input_ok(json!({"do": "echo", "n": 1}), 2).await;
}
