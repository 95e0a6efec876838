//! One player's websocket to a node (`docs/PROTOCOL.md`): connect, send client
//! messages as JSON text or MessagePack binary, decode server frames by their
//! frame type. Used by the bots; knows nothing about games.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How client frames are encoded (the server answers in the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    MsgPack,
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Json => "json",
            Encoding::MsgPack => "msgpack",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connecting to {url} timed out after {timeout:?}")]
    ConnectTimeout { url: String, timeout: Duration },
    #[error("websocket: {0}")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("encoding a frame: {0}")]
    Encode(String),
    #[error("decoding a server frame: {0}")]
    Decode(String),
}

impl ClientError {
    /// A stable code for the error tally (server codes have no `client_` prefix).
    pub fn code(&self) -> &'static str {
        match self {
            ClientError::ConnectTimeout { .. } => "client_connect_timeout",
            ClientError::Ws(_) => "client_ws",
            ClientError::Encode(_) => "client_encode",
            ClientError::Decode(_) => "client_decode",
        }
    }
}

/// What the bots send.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg<'a> {
    /// Quick-match into `game`.
    Join {
        game: &'a str,
        name: &'a str,
    },
    Input {
        data: &'a serde_json::Value,
        seq: u64,
    },
    Leave,
    /// Start a new session of `game` (the isolation bench's spinners).
    Create {
        game: &'a str,
    },
    /// Take a seat in one given session.
    #[serde(rename = "join")]
    JoinSession {
        session: &'a str,
        name: &'a str,
    },
}

/// The kinds of server message; anything newer decodes as `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Welcome,
    Created,
    Joined,
    View,
    Message,
    Ack,
    Ended,
    Rules,
    Left,
    Pong,
    Error,
    #[serde(other)]
    Other,
}

/// A server message, flat: every field any kind may carry, all optional, so that
/// decoding never buffers the frame. `V` is how the bot wants `data` (a game
/// view it reads, or `IgnoredAny` to skip it cheaply).
#[derive(Debug, Deserialize)]
pub struct Incoming<V> {
    #[serde(rename = "type")]
    pub kind: Kind,
    #[serde(default)]
    pub seq: Option<u64>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub session: Option<String>,
    #[serde(default)]
    pub player: Option<serde_json::Value>,
    #[serde(default = "Option::default")]
    pub data: Option<V>,
}

/// A connected player socket.
pub struct Connection {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    encoding: Encoding,
}

impl Connection {
    /// Open the websocket at `url` (and only there).
    pub async fn connect(
        url: &str,
        encoding: Encoding,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let connect = tokio_tungstenite::connect_async(url);
        let (ws, _response) = tokio::time::timeout(timeout, connect).await.map_err(|_| {
            ClientError::ConnectTimeout {
                url: url.to_owned(),
                timeout,
            }
        })??;
        Ok(Self { ws, encoding })
    }

    pub async fn send(&mut self, msg: &ClientMsg<'_>) -> Result<(), ClientError> {
        self.ws.send(encode(msg, self.encoding)?).await?;
        Ok(())
    }

    /// The next server message; `None` once the server closed the socket.
    /// Cancel-safe: a frame is consumed only when this returns.
    pub async fn recv<V: DeserializeOwned>(&mut self) -> Result<Option<Incoming<V>>, ClientError> {
        loop {
            let Some(frame) = self.ws.next().await else {
                return Ok(None);
            };
            match frame? {
                Message::Text(text) => return decode_json(text.as_bytes()).map(Some),
                Message::Binary(bytes) => return decode_msgpack(&bytes).map(Some),
                Message::Close(_) => return Ok(None),
                // tungstenite answers pings itself.
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            }
        }
    }

    /// Say goodbye politely; errors on the way out do not matter.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.close(None)).await;
    }
}

/// Encode one client message as a websocket frame.
pub fn encode(msg: &ClientMsg<'_>, encoding: Encoding) -> Result<Message, ClientError> {
    match encoding {
        Encoding::Json => {
            let text =
                serde_json::to_string(msg).map_err(|e| ClientError::Encode(e.to_string()))?;
            Ok(Message::text(text))
        }
        Encoding::MsgPack => {
            // Maps keyed by field name, as the protocol says.
            let bytes =
                rmp_serde::to_vec_named(msg).map_err(|e| ClientError::Encode(e.to_string()))?;
            Ok(Message::binary(bytes))
        }
    }
}

pub fn decode_json<V: DeserializeOwned>(bytes: &[u8]) -> Result<Incoming<V>, ClientError> {
    serde_json::from_slice(bytes).map_err(|e| ClientError::Decode(e.to_string()))
}

pub fn decode_msgpack<V: DeserializeOwned>(bytes: &[u8]) -> Result<Incoming<V>, ClientError> {
    rmp_serde::from_slice(bytes).map_err(|e| ClientError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::IgnoredAny;
    use serde_json::json;

    #[test]
    fn client_messages_have_the_protocol_shape() {
        let data = json!({"cell": 4});
        let join = ClientMsg::Join {
            game: "tictactoe",
            name: "bot-1",
        };
        let input = ClientMsg::Input {
            data: &data,
            seq: 7,
        };
        let Message::Text(t) = encode(&join, Encoding::Json).unwrap() else {
            panic!()
        };
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&t).unwrap(),
            json!({"type": "join", "game": "tictactoe", "name": "bot-1"})
        );
        let Message::Binary(b) = encode(&input, Encoding::MsgPack).unwrap() else {
            panic!()
        };
        let back: serde_json::Value = rmp_serde::from_slice(&b).unwrap();
        assert_eq!(
            back,
            json!({"type": "input", "data": {"cell": 4}, "seq": 7})
        );
        let Message::Text(t) = encode(&ClientMsg::Leave, Encoding::Json).unwrap() else {
            panic!()
        };
        assert_eq!(t.as_str(), r#"{"type":"leave"}"#);
    }

    #[test]
    fn server_messages_decode_from_both_encodings() {
        let ack = json!({"type": "ack", "seq": 3});
        let m: Incoming<IgnoredAny> = decode_json(ack.to_string().as_bytes()).unwrap();
        assert_eq!((m.kind, m.seq), (Kind::Ack, Some(3)));
        let err =
            json!({"type": "error", "code": "rate_limited", "message": "slow down", "seq": 9});
        let m: Incoming<IgnoredAny> =
            decode_msgpack(&rmp_serde::to_vec_named(&err).unwrap()).unwrap();
        assert_eq!(
            (m.kind, m.code.as_deref(), m.seq),
            (Kind::Error, Some("rate_limited"), Some(9))
        );
        let view = json!({"type": "view", "data": {"board": [null, "X"]}});
        let m: Incoming<serde_json::Value> =
            decode_msgpack(&rmp_serde::to_vec_named(&view).unwrap()).unwrap();
        assert_eq!(m.data.unwrap()["board"][1], "X");
        let future = json!({"type": "something_new", "x": 1});
        let m: Incoming<IgnoredAny> = decode_json(future.to_string().as_bytes()).unwrap();
        assert_eq!(m.kind, Kind::Other);
    }
}
