//! Every kind of bad input gets its stable error code and changes nothing
//! else; only an oversized frame or a sustained flood closes the connection.

use serde_json::json;

use crate::common::{tictactoe_pair, Client, Enc, TestNode};

/// The connection still works: a ping gets its pong.
async fn still_alive(c: &mut Client) {
    c.send(json!({"type": "ping", "nonce": 42})).await;
    let pong = c.recv_type("pong").await;
    assert_eq!(pong["nonce"], 42);
}

#[tokio::test]
async fn malformed_frames_and_unknown_types() {
    let node = TestNode::start(&[]);
    let mut c = node.client().await;
    assert_eq!(c.welcome["protocol"], 1);
    assert!(c.welcome["node"].as_str().is_some_and(|n| !n.is_empty()));

    c.send_text("{this is not json").await;
    c.recv_error("bad_frame").await;
    c.send_text(r#"{"no_type": 1}"#).await;
    c.recv_error("bad_frame").await;
    c.send_text(r#"{"type": "dance"}"#).await;
    let e = c.recv_error("unknown_type").await;
    assert!(e["message"].as_str().unwrap().contains("dance"), "{e}");
    still_alive(&mut c).await;

    let mut b = Client::connect(&node, Enc::MsgPack).await;
    b.send_binary(vec![0xc1, 0x00, 0xff]).await;
    b.recv_error("bad_frame").await;
    // A truncated map (announces one entry, has half of it).
    b.send_binary(vec![0x81, 0xa4, b't']).await;
    b.recv_error("bad_frame").await;
    still_alive(&mut b).await;
}

#[tokio::test]
async fn unknown_game_session_and_token() {
    let node = TestNode::start(&[]);
    let mut c = node.client().await;
    c.send(json!({"type": "create", "game": "chess"})).await;
    c.recv_error("unknown_game").await;
    let e = c
        .join(json!({"type": "join", "game": "chess", "name": "n"}))
        .await;
    assert_eq!(e["code"], "unknown_game", "{e}");
    let e = c
        .join(json!({"type": "join", "session": "ffffffffffff", "name": "n"}))
        .await;
    assert_eq!(e["code"], "unknown_session", "{e}");
    let e = c
        .join(json!({"type": "resume", "token": "00".repeat(16)}))
        .await;
    assert_eq!(e["code"], "bad_token", "{e}");
    let e = c
        .join(json!({"type": "resume", "token": "not hex at all"}))
        .await;
    assert_eq!(e["code"], "bad_token", "{e}");
    // Without a seat there is nothing to act for.
    let e = c.input(json!({"cell": 0}), 5).await;
    assert_eq!(e["code"], "not_seated", "{e}");
    c.send(json!({"type": "leave"})).await;
    c.recv_error("not_seated").await;
    still_alive(&mut c).await;
}

#[tokio::test]
async fn seats_are_guarded() {
    let node = TestNode::start(&[]);
    let (mut x, mut o, session) = tictactoe_pair(&node).await;
    let px = x.seen.iter().find(|m| m["type"] == "joined").unwrap()["player"].clone();
    // O tries to move as X.
    o.send(json!({"type": "input", "data": {"cell": 0}, "player": px, "seq": 7}))
        .await;
    let e = o.recv_error("not_your_seat").await;
    assert_eq!(e["seq"], 7);
    // Naming yourself is fine.
    x.send(json!({"type": "input", "data": {"cell": 0}, "player": px, "seq": 1}))
        .await;
    x.recv_until(|m| m["type"] == "ack" && m["seq"] == 1).await;
    // A third player finds the session full.
    let mut third = node.client().await;
    let e = third
        .join(json!({"type": "join", "session": session, "name": "late"}))
        .await;
    assert_eq!(e["code"], "session_full", "{e}");
    // One seat per connection.
    let e = x
        .join(json!({"type": "join", "game": "tictactoe", "name": "twice"}))
        .await;
    assert_eq!(e["code"], "already_seated", "{e}");
    // An input the game cannot even decode is refused by the game.
    let e = o.input(json!({"cell": "middle"}), 3).await;
    assert_eq!(e["code"], "rejected", "{e}");
    // Nothing of this disturbed the game.
    o.input_ok(json!({"cell": 4}), 4).await;
}

#[tokio::test]
async fn an_oversized_frame_is_refused_then_closed() {
    let node = TestNode::start(&["--max-frame-bytes", "1024"]);
    let mut c = node.client().await;
    // Just under the limit is fine.
    let nonce = "a".repeat(900);
    c.send(json!({"type": "ping", "nonce": nonce})).await;
    c.recv_type("pong").await;
    let big = "a".repeat(4000);
    c.send(json!({"type": "ping", "nonce": big})).await;
    let e = c.recv_error("frame_too_large").await;
    assert!(e["message"].as_str().unwrap().contains("1024"), "{e}");
    let close = c.recv_close().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1009);
}

#[tokio::test]
async fn an_input_flood_is_rate_limited_then_closed() {
    let node = TestNode::start(&[
        "--rate-per-sec",
        "5",
        "--rate-burst",
        "10",
        "--rate-abuse-limit",
        "50",
    ]);
    let (mut x, _o, _) = tictactoe_pair(&node).await;
    for seq in 0..40u64 {
        x.send(json!({"type": "input", "data": {"cell": 9}, "seq": seq}))
            .await;
    }
    // The rest of the burst (create and join took 2, refills may have given
    // some back) passes and the game rejects the bad cell; the rest is dropped.
    let limited = x.recv_error("rate_limited").await;
    let first = limited["seq"].as_u64().unwrap();
    assert!((8..=10).contains(&first), "{limited}");
    let rejected = x.recv_error("rejected").await;
    assert_eq!(rejected["seq"], 0, "{rejected}");
    x.recv_until(|m| m["code"] == "rate_limited" && m["seq"] == 39)
        .await;
    // Flooding on past the abuse limit closes the connection.
    for seq in 40..120u64 {
        if !x.send_lossy(json!({"type": "ping", "nonce": seq})).await {
            break;
        }
    }
    // The node closes the connection (recv_close panics if it stays open).
    // Frames still in flight when it closes can make the kernel reset the
    // socket, so the 1008 close frame itself may be lost; when it arrives,
    // its code must say "policy violation".
    if let Some(close) = x.recv_close().await {
        assert_eq!(u16::from(close.code), 1008);
    }
}
