//! The baseline for the latency figures: a bare websocket echo that speaks just enough of the
//! player protocol for the bots (`join` → `joined`, `input{seq}` → `view` + `ack{seq}` at once,
//! `leave` → `left`), with no game, no session and no store behind it. Run it as its own
//! process (`minotaur-loadtest --serve-echo ADDR`) and point the same load at it: the node's
//! input→ack and input→view latencies divided by the echo's are the figures to compare.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::Message;

/// Accept websocket connections on `listener` forever, one task each.
pub async fn serve(listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(connection(stream));
            }
            // Out of file descriptors and the like: keep serving the others.
            Err(_) => tokio::task::yield_now().await,
        }
    }
}

async fn connection(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    while let Some(Ok(frame)) = ws.next().await {
        let (msg, binary): (Value, bool) = match &frame {
            Message::Text(t) => match serde_json::from_str(t.as_str()) {
                Ok(v) => (v, false),
                Err(_) => continue,
            },
            Message::Binary(b) => match rmp_serde::from_slice(b) {
                Ok(v) => (v, true),
                Err(_) => continue,
            },
            Message::Close(_) => break,
            _ => continue,
        };
        for reply in answer(&msg) {
            let frame = if binary {
                match rmp_serde::to_vec_named(&reply) {
                    Ok(b) => Message::binary(b),
                    Err(_) => continue,
                }
            } else {
                Message::text(reply.to_string())
            };
            if ws.send(frame).await.is_err() {
                return;
            }
        }
    }
}

/// The echo's answers to one client message.
fn answer(msg: &Value) -> Vec<Value> {
    match msg["type"].as_str() {
        Some("join") => vec![json!({"type": "joined", "session": "echo", "player": 1})],
        Some("input") => vec![
            json!({"type": "view", "data": msg["data"]}),
            json!({"type": "ack", "seq": msg["seq"]}),
        ],
        Some("leave") => vec![json!({"type": "left"})],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_the_messages_the_bots_send() {
        let joined = answer(&json!({"type": "join", "game": "arena", "name": "b"}));
        assert_eq!(joined[0]["type"], "joined");
        let input = answer(&json!({"type": "input", "data": {"dir": [1.0, 0.0]}, "seq": 4}));
        assert_eq!(
            input[0],
            json!({"type": "view", "data": {"dir": [1.0, 0.0]}})
        );
        assert_eq!(input[1], json!({"type": "ack", "seq": 4}));
        assert_eq!(answer(&json!({"type": "leave"}))[0]["type"], "left");
        assert!(answer(&json!({"type": "ping"})).is_empty());
    }
}
