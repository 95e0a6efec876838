//! Every kind of bad input gets its stable error code and changes nothing
//! else; only an oversized frame or a sustained flood closes the connection.

use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::{
    protocol::frame::{
        coding::{Data, OpCode},
        Frame,
    },
    Message,
};

use crate::common::{tictactoe_pair, Client, Enc, TestNode, DEADLINE};

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

/// A websocket the test writes raw frames to (the regular client only sends
/// well-formed messages): connected, its `welcome` read.
async fn raw_socket(
    node: &TestNode,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let (mut ws, _) =
        tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(node.ws_url()))
            .await
            .expect("connected in time")
            .expect("websocket connect");
    match tokio::time::timeout(DEADLINE, ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => assert!(t.contains("welcome"), "{t}"),
        other => panic!("no welcome: {other:?}"),
    }
    ws
}

/// Read until the server closes; the code of its close frame. Panics if the
/// connection ends without one or stays open past the deadline.
async fn close_code(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> u16 {
    let end = Instant::now() + DEADLINE;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Err(_) => panic!("not closed within {DEADLINE:?}"),
            Ok(Some(Ok(Message::Close(Some(f))))) => return u16::from(f.code),
            Ok(Some(Ok(Message::Close(None)))) => panic!("close frame without a code"),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => panic!("connection dropped without a close frame: {e}"),
            Ok(None) => panic!("connection ended without a close frame"),
        }
    }
}

/// A text frame is UTF-8 by definition (RFC 6455): one that is not closes the
/// connection with 1007, whether the bad bytes come in one frame or only in a
/// continuation. Other connections and sessions go on.
#[tokio::test]
async fn a_text_frame_that_is_not_utf8_closes_with_1007() {
    let node = TestNode::start(&[]);
    let (mut x, mut o, _) = tictactoe_pair(&node).await;
    x.input_ok(json!({"cell": 4}), 1).await;

    let mut bad = raw_socket(&node).await;
    let text = |bytes: &[u8], fin| {
        Message::Frame(Frame::message(
            bytes.to_vec(),
            OpCode::Data(Data::Text),
            fin,
        ))
    };
    bad.send(text(b"{\"type\": \"ping\", \"nonce\": \"\xff\xfe\"}", true))
        .await
        .expect("send");
    assert_eq!(close_code(&mut bad).await, 1007);

    // Valid in the first fragment (the start of a two-byte character), invalid
    // once the continuation arrives.
    let mut split = raw_socket(&node).await;
    split
        .send(text(b"{\"nonce\": \"\xc3", false))
        .await
        .expect("send");
    let rest = Frame::message(b"(\"}".to_vec(), OpCode::Data(Data::Continue), true);
    split.send(Message::Frame(rest)).await.expect("send");
    assert_eq!(close_code(&mut split).await, 1007);

    // Nothing else noticed.
    still_alive(&mut x).await;
    o.input_ok(json!({"cell": 0}), 1).await;
    x.input_ok(json!({"cell": 8}), 2).await;
}

/// Every frame is charged to the rate limit before it is decoded: a flood of
/// frames that do not even decode is limited like any other.
#[tokio::test]
async fn a_flood_of_undecodable_frames_is_rate_limited_then_closed() {
    // No refill: exactly the burst passes, whatever the timing.
    let node = TestNode::start(&[
        "--rate-per-sec",
        "0",
        "--rate-burst",
        "10",
        "--rate-abuse-limit",
        "20",
    ]);
    let mut c = node.client().await;
    let mut b = Client::connect(&node, Enc::MsgPack).await;
    // 10 pass (and are refused as bad frames), 20 are dropped, the 31st closes.
    for i in 0..31 {
        if i % 2 == 0 {
            c.send_text("{this is not json").await;
        } else {
            c.send_text(r#"{"type": "dance"}"#).await;
        }
    }
    let mut answers = Vec::new();
    for _ in 0..31 {
        answers.push(c.recv_type("error").await);
    }
    let codes: Vec<&str> = answers
        .iter()
        .map(|e| e["code"].as_str().unwrap())
        .collect();
    assert!(
        codes[..10]
            .iter()
            .all(|&c| c == "bad_frame" || c == "unknown_type"),
        "{codes:?}"
    );
    assert!(
        codes[10..].iter().all(|&c| c == "rate_limited"),
        "{codes:?}"
    );
    // Dropped undecoded: no `seq` to name.
    assert!(
        answers[10..].iter().all(|e| e["seq"].is_null()),
        "{answers:?}"
    );
    let close = c.recv_close().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1008);

    // The same for MessagePack, on its own budget.
    for _ in 0..12 {
        b.send_binary(vec![0xc1]).await;
    }
    for _ in 0..10 {
        b.recv_error("bad_frame").await;
    }
    b.recv_error("rate_limited").await;
    b.recv_error("rate_limited").await;
}
