//! Player limits against a real node: connections per address and in total, sessions
//! created per address per minute, the header-read timeout and the websocket idle
//! timeout. Each limit hit gets its documented code (and close code), and the players
//! already in a game never notice.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use crate::common::{tictactoe_pair, Client, TestNode, DEADLINE};

/// Connect a websocket the node refuses: its one `error` message and close code.
async fn refused_ws(node: &TestNode) -> (Value, u16) {
    let (mut ws, _) =
        tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(node.ws_url()))
            .await
            .expect("connected in time")
            .expect("the upgrade is accepted, to tell the client why");
    let mut error = Value::Null;
    let end = Instant::now() + DEADLINE;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(Message::Text(t))) => {
                let m: Value = serde_json::from_str(&t).unwrap();
                assert_eq!(m["type"], "error", "a refused connection gets no {m}");
                error = m;
            }
            Some(Ok(Message::Close(Some(f)))) => {
                assert_eq!(f.reason.as_str(), error["code"].as_str().unwrap_or("?"));
                return (error, u16::from(f.code));
            }
            other => panic!("expected an error and a close frame, got {other:?}"),
        }
    }
}

/// One HTTP request on a connection of its own: status, `Retry-After`, JSON body.
async fn get_fresh(url: &str) -> (u16, Option<String>, Value) {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let r = tokio::time::timeout(DEADLINE, http.get(url).send())
        .await
        .expect("answered in time")
        .expect("request");
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (
        r.status().as_u16(),
        retry,
        r.json().await.unwrap_or(Value::Null),
    )
}

/// The game in progress goes on: both players still play.
async fn still_playing(x: &mut Client, o: &mut Client, seq: u64, cells: (u64, u64)) {
    x.input_ok(json!({"cell": cells.0}), seq).await;
    o.input_ok(json!({"cell": cells.1}), seq).await;
}

#[tokio::test]
async fn connections_over_the_per_address_limit_are_refused() {
    let node = TestNode::start(&["--max-conns-per-ip", "3"]);
    // Two connections seated in a game, and a third idle one: the address's three.
    let (mut x, mut o, _) = tictactoe_pair(&node).await;
    let mut third = node.client().await;

    let (error, code) = refused_ws(&node).await;
    assert_eq!(error["code"], "too_many_connections", "{error}");
    assert_eq!(code, 1008);
    let (status, retry, body) = get_fresh(&node.http("/api/games")).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["code"], "too_many_connections", "{body}");
    assert!(retry.is_some(), "no Retry-After");

    still_playing(&mut x, &mut o, 1, (4, 0)).await;
    third.send(json!({"type": "ping", "nonce": 1})).await;
    third.recv_type("pong").await;

    // A closed connection frees its place.
    drop(third);
    let end = Instant::now() + DEADLINE;
    loop {
        let (status, _, body) = get_fresh(&node.http("/api/games")).await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < end, "no place freed: {status} {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    still_playing(&mut x, &mut o, 2, (8, 1)).await;
}

#[tokio::test]
async fn connections_over_the_total_limit_are_refused() {
    let node = TestNode::start(&["--max-conns", "2", "--max-conns-per-ip", "0"]);
    let (mut x, mut o, _) = tictactoe_pair(&node).await;

    let (error, code) = refused_ws(&node).await;
    assert_eq!(error["code"], "node_busy", "{error}");
    assert_eq!(code, 1013);
    let (status, retry, body) = get_fresh(&node.http("/healthz")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "node_busy", "{body}");
    assert!(retry.is_some(), "no Retry-After");

    still_playing(&mut x, &mut o, 1, (4, 0)).await;
}

#[tokio::test]
async fn sessions_created_per_address_are_limited() {
    let node = TestNode::start(&["--sessions-per-ip-per-min", "3"]);
    let http = reqwest::Client::new();
    let create = || async {
        let r = http
            .post(node.http("/api/sessions"))
            .json(&json!({"game": "tictactoe"}))
            .send()
            .await
            .expect("create request");
        let retry = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
        (r.status().as_u16(), retry, r.json::<Value>().await.unwrap())
    };
    // The lobby and the websocket share the budget: 2 + 1.
    for _ in 0..2 {
        let (status, _, body) = create().await;
        assert_eq!(status, 201, "{body}");
    }
    let mut c = node.client().await;
    c.send(json!({"type": "create", "game": "tictactoe"})).await;
    c.recv_type("created").await;

    c.send(json!({"type": "create", "game": "tictactoe"})).await;
    let e = c.recv_error("session_rate_limited").await;
    assert!(
        e["message"].as_str().unwrap().contains("try again in"),
        "{e}"
    );
    let (status, retry, body) = create().await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["code"], "session_rate_limited", "{body}");
    // 3 per minute: the next one in about 20 s.
    assert!(retry.is_some_and(|s| (1..=20).contains(&s)), "{retry:?}");

    // Nothing was created by the refused requests; the connection is still good, and
    // joining (quick-match into an open session) is not a creation.
    let list: Value = http
        .get(node.http("/api/sessions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 3, "{list}");
    let joined = c.quick_match("tictactoe", "p").await;
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["id"] == joined["session"]));
}

#[tokio::test]
async fn a_slow_request_head_is_cut_off() {
    let node = TestNode::start(&["--header-read-timeout-secs", "1"]);
    let mut slow = tokio::net::TcpStream::connect(node.addr).await.unwrap();
    slow.write_all(b"GET /api/games HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Meanwhile a whole request is answered.
    let (status, _, _) = get_fresh(&node.http("/api/games")).await;
    assert_eq!(status, 200);
    // The slow one is closed, unanswered.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(DEADLINE, slow.read_to_end(&mut rest)).await;
    assert!(
        read.is_ok(),
        "a half-sent request head was kept open past {DEADLINE:?}"
    );
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
}

/// The frames a server sent on a raw websocket, in order: `(opcode, payload)`.
fn server_frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while bytes.len() >= 2 {
        let opcode = bytes[0] & 0x0f;
        let (len, head) = match bytes[1] & 0x7f {
            126 if bytes.len() >= 4 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 => panic!("no frame of ours is that long"),
            n => (n as usize, 2),
        };
        if bytes.len() < head + len {
            break;
        }
        frames.push((opcode, bytes[head..head + len].to_vec()));
        bytes = &bytes[head + len..];
    }
    frames
}

/// Read frames off `ws` (which answers pings as it reads) until `n` pings came, or fail.
async fn read_pings(ws: &mut Ws, n: usize) {
    let mut pinged = 0;
    let end = Instant::now() + DEADLINE;
    while pinged < n {
        let left = end.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next())
            .await
            .expect("pings keep coming")
        {
            Some(Ok(Message::Ping(_))) => pinged += 1,
            Some(Ok(Message::Text(_))) => {}
            other => panic!("the quiet connection ended: {other:?}"),
        }
    }
}

/// Send `msg` on `ws` and read until a message of type `ty` (answering pings meanwhile).
async fn ask(ws: &mut Ws, msg: Value, ty: &str) -> Value {
    ws.send(Message::Text(msg.to_string().into()))
        .await
        .unwrap();
    loop {
        match tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("an answer")
        {
            Some(Ok(Message::Text(t))) => {
                let m: Value = serde_json::from_str(&t).unwrap();
                if m["type"] == ty {
                    return m;
                }
            }
            Some(Ok(_)) => {}
            other => panic!("the connection ended: {other:?}"),
        }
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[tokio::test]
async fn a_silent_websocket_is_closed_and_a_quiet_one_is_kept() {
    let node = TestNode::start(&["--ws-ping-secs", "1", "--ws-idle-timeout-secs", "2"]);
    // A seated player who then does nothing, but whose websocket library answers pings.
    let (mut quiet, _) = tokio_tungstenite::connect_async(node.ws_url())
        .await
        .unwrap();
    let created = ask(
        &mut quiet,
        json!({"type": "create", "game": "tictactoe"}),
        "created",
    )
    .await;
    let join = json!({"type": "join", "session": created["session"], "name": "q"});
    ask(&mut quiet, join, "joined").await;

    // A client that upgrades and then never sends anything, pongs included.
    let mut silent = tokio::net::TcpStream::connect(node.addr).await.unwrap();
    silent
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
    let silent = tokio::spawn(async move {
        let mut raw = Vec::new();
        let read = tokio::time::timeout(DEADLINE, silent.read_to_end(&mut raw)).await;
        assert!(
            read.is_ok(),
            "a silent websocket was kept open past {DEADLINE:?}"
        );
        raw
    });
    // Meanwhile the quiet one is pinged for twice the idle timeout and stays open.
    read_pings(&mut quiet, 4).await;

    let raw = silent.await.unwrap();
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP head")
        + 4;
    assert!(
        raw.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    let frames = server_frames(&raw[head_end..]);
    let pings = frames.iter().filter(|(op, _)| *op == 0x9).count();
    assert!(pings >= 1, "no ping before the close: {frames:?}");
    let (op, payload) = frames.last().expect("frames");
    assert_eq!(*op, 0x8, "the last frame is not a close: {frames:?}");
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 4408);

    // The quiet player still answers and still holds its seat.
    let pong = ask(&mut quiet, json!({"type": "ping", "nonce": 7}), "pong").await;
    assert_eq!(pong["nonce"], 7);
    let again = json!({"type": "join", "game": "tictactoe", "name": "q"});
    let e = ask(&mut quiet, again, "error").await;
    assert_eq!(e["code"], "already_seated", "{e}");
}
