//! The player protocol (docs/PROTOCOL.md) as Rust types: what clients send,
//! what the node answers, the stable error codes, and the JSON ⇄ MessagePack
//! transcoding of game payloads. Used by the gateway, the session actor, the
//! tests and any Rust client (the node re-exports it as `minotaur_host::protocol`);
//! a crate of its own, on serde alone, so that the fuzz targets (`fuzz/`) build it
//! without the node. Invariant: decoding never panics, whatever the bytes.

use serde::{Deserialize, Serialize};

/// Version of this protocol, sent in `welcome`.
pub const PROTOCOL_VERSION: u32 = 1;

/// A game value (input, view, message, config) in neutral form. Comes from a
/// JSON or MessagePack frame and is re-encoded as MessagePack for the guest.
pub type GameValue = rmpv::Value;

/// How a client frames its messages; the node answers in the same encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Text frames carrying JSON.
    Json,
    /// Binary frames carrying MessagePack (structs as maps keyed by name).
    MsgPack,
}

/// Client → server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    Create {
        game: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        config: Option<GameValue>,
    },
    Join {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        game: Option<String>,
        #[serde(default)]
        name: String,
    },
    Resume {
        token: String,
    },
    Input {
        data: GameValue,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        player: Option<u64>,
    },
    Leave,
    Ping {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<GameValue>,
    },
}

/// The `type` tags of [`ClientMsg`], to tell `unknown_type` from `bad_frame`.
const CLIENT_TYPES: [&str; 6] = ["create", "join", "resume", "input", "leave", "ping"];

/// Server → client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    Welcome {
        node: String,
        version: String,
        protocol: u32,
    },
    Created {
        session: String,
        game: String,
    },
    Joined {
        session: String,
        game: String,
        player: u64,
        token: String,
        rules_version: u32,
        resumed: bool,
    },
    View {
        data: GameValue,
    },
    Message {
        data: GameValue,
    },
    Ack {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
    },
    Ended {
        winners: Vec<u64>,
        detail: GameValue,
    },
    Rules {
        rules_version: u32,
    },
    Left,
    /// The session continues on another node (drain, or this node does not own it):
    /// reconnect to `url` and `resume` with the same token.
    Moved {
        session: String,
        url: String,
    },
    Pong {
        #[serde(default)]
        nonce: Option<GameValue>,
    },
    Error {
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
    },
}

impl ServerMsg {
    /// An `error` frame.
    pub fn error(code: ErrorCode, message: impl Into<String>, seq: Option<u64>) -> Self {
        ServerMsg::Error {
            code,
            message: message.into(),
            seq,
        }
    }
}

/// Stable error codes that reach players (and lobby API callers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadFrame,
    UnknownType,
    FrameTooLarge,
    RateLimited,
    UnknownGame,
    UnknownSession,
    BadToken,
    SessionFull,
    AlreadySeated,
    NotSeated,
    NotYourSeat,
    Rejected,
    SessionEnded,
    SessionFailed,
    /// The session now runs on another node (resume there with the token).
    SessionMoved,
    /// This node is draining: it takes no new sessions.
    Draining,
    Overloaded,
    /// Cluster mode: the database (directory) cannot be reached right now; nothing was
    /// changed, try again in a moment.
    Unavailable,
    /// Too many open connections from this client's address.
    TooManyConnections,
    /// The node has as many open connections as it takes.
    NodeBusy,
    /// Too many sessions created from this client's address in the last minute.
    SessionRateLimited,
    BadRequest,
    Internal,
}

impl ErrorCode {
    /// Every code, in the order of docs/PROTOCOL.md's table.
    pub const ALL: [ErrorCode; 23] = [
        ErrorCode::BadFrame,
        ErrorCode::UnknownType,
        ErrorCode::FrameTooLarge,
        ErrorCode::RateLimited,
        ErrorCode::UnknownGame,
        ErrorCode::UnknownSession,
        ErrorCode::BadToken,
        ErrorCode::SessionFull,
        ErrorCode::AlreadySeated,
        ErrorCode::NotSeated,
        ErrorCode::NotYourSeat,
        ErrorCode::Rejected,
        ErrorCode::SessionEnded,
        ErrorCode::SessionFailed,
        ErrorCode::SessionMoved,
        ErrorCode::Draining,
        ErrorCode::Overloaded,
        ErrorCode::Unavailable,
        ErrorCode::TooManyConnections,
        ErrorCode::NodeBusy,
        ErrorCode::SessionRateLimited,
        ErrorCode::BadRequest,
        ErrorCode::Internal,
    ];

    /// The wire form, e.g. `"session_full"`.
    pub fn code(self) -> &'static str {
        match self {
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::UnknownGame => "unknown_game",
            ErrorCode::UnknownSession => "unknown_session",
            ErrorCode::BadToken => "bad_token",
            ErrorCode::SessionFull => "session_full",
            ErrorCode::AlreadySeated => "already_seated",
            ErrorCode::NotSeated => "not_seated",
            ErrorCode::NotYourSeat => "not_your_seat",
            ErrorCode::Rejected => "rejected",
            ErrorCode::SessionEnded => "session_ended",
            ErrorCode::SessionFailed => "session_failed",
            ErrorCode::SessionMoved => "session_moved",
            ErrorCode::Draining => "draining",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::NodeBusy => "node_busy",
            ErrorCode::SessionRateLimited => "session_rate_limited",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// How deep a MessagePack frame or guest payload may nest (arrays and maps), the
/// message itself included. JSON frames have
/// the same bound (serde_json's recursion limit, 128), guest state too (`minotaur-state`).
/// Deeper values are refused before they are built into anything recursive: turning a
/// value ~500 levels deep into a message overflows a 2 MiB tokio worker stack, which
/// aborts the whole node (found while fuzzing, see `fuzz/`).
pub const MAX_DEPTH: usize = 128;

/// Why a client frame could not be turned into a [`ClientMsg`].
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{0}")]
    BadFrame(String),
    #[error("unknown message type `{0}`")]
    UnknownType(String),
    /// The frame nests deeper than [`MAX_DEPTH`] (a `bad_frame` for the client).
    #[error("the message nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// A message key is not a UTF-8 string (MessagePack maps may have any key; a
    /// message's fields are named, docs/PROTOCOL.md). A `bad_frame` for the client.
    #[error("every key of a message must be a field name (a string)")]
    UnnamedField,
}

impl DecodeError {
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::BadFrame(_) | DecodeError::TooDeep | DecodeError::UnnamedField => {
                ErrorCode::BadFrame
            }
            DecodeError::UnknownType(_) => ErrorCode::UnknownType,
        }
    }
}

/// Why MessagePack from a guest is not a game value.
#[derive(Debug, thiserror::Error)]
pub enum ValueError {
    #[error("invalid MessagePack: {0}")]
    Invalid(String),
    /// The value nests deeper than [`MAX_DEPTH`].
    #[error("the value nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

/// One MessagePack value from the front of `rd`, at most `levels` deep. Refused like
/// the rate limiter's reader refuses it (`peek_input_seq`): rmpv alone reads the
/// never-used marker `0xc1` as `nil`, so an rmp_serde pass that builds nothing checks
/// the bytes first.
fn read_bounded(rd: &mut &[u8], levels: usize) -> Result<rmpv::Value, ValueError> {
    let mut check = rmp_serde::Deserializer::from_read_ref(*rd);
    // rmp_serde's bound counts one more than the containers it admits.
    check.set_max_depth(levels + 1);
    serde::de::IgnoredAny::deserialize(&mut check).map_err(|e| match e {
        rmp_serde::decode::Error::DepthLimitExceeded => ValueError::TooDeep,
        e => ValueError::Invalid(e.to_string()),
    })?;
    // The pass above bounds the levels (arrays and maps); rmpv's own count (two per
    // level, up to three for a leaf) is only a second guard.
    rmpv::decode::read_value_with_max_depth(rd, 2 * levels + 3).map_err(|e| match e {
        rmpv::decode::Error::DepthLimitExceeded => ValueError::TooDeep,
        e => ValueError::Invalid(e.to_string()),
    })
}

/// Decode one client frame. The frame is first read as a neutral value so a
/// missing or unknown `type` gets its own error code before the fields are checked.
pub fn decode_client(frame: &[u8], enc: Encoding) -> Result<ClientMsg, DecodeError> {
    let value: rmpv::Value = match enc {
        Encoding::Json => serde_json::from_slice(frame)
            .map_err(|e| DecodeError::BadFrame(format!("invalid JSON: {e}")))?,
        Encoding::MsgPack => {
            let mut rd = frame;
            let v = read_bounded(&mut rd, MAX_DEPTH).map_err(|e| match e {
                ValueError::TooDeep => DecodeError::TooDeep,
                e => DecodeError::BadFrame(e.to_string()),
            })?;
            if !rd.is_empty() {
                return Err(DecodeError::BadFrame(
                    "trailing bytes after the MessagePack value".into(),
                ));
            }
            v
        }
    };
    let map = value
        .as_map()
        .ok_or_else(|| DecodeError::BadFrame("a message must be a map".into()))?;
    // serde would take an integer key as a field's position (`1` as `seq`), which the
    // rate limiter's `peek_input_seq` does not: only names, so both read the same fields.
    if map.iter().any(|(k, _)| k.as_str().is_none()) {
        return Err(DecodeError::UnnamedField);
    }
    let ty = map
        .iter()
        .find(|(k, _)| k.as_str() == Some("type"))
        .and_then(|(_, v)| v.as_str())
        .map(str::to_owned)
        .ok_or_else(|| DecodeError::BadFrame("missing string field `type`".into()))?;
    if !CLIENT_TYPES.contains(&ty.as_str()) {
        return Err(DecodeError::UnknownType(ty));
    }
    rmpv::ext::from_value(value).map_err(|e| DecodeError::BadFrame(format!("bad `{ty}`: {e}")))
}

/// The `seq` of an `input` frame, read without decoding anything else (game
/// data is skipped, not built): the `rate_limited` answer to a frame dropped
/// undecoded carries it. `None` for any other frame, or one that is not a map.
pub fn peek_input_seq(frame: &[u8], enc: Encoding) -> Option<u64> {
    #[derive(Deserialize)]
    struct Peek {
        #[serde(rename = "type")]
        ty: Option<String>,
        seq: Option<u64>,
    }
    let peek: Peek = match enc {
        Encoding::Json => serde_json::from_slice(frame).ok()?,
        Encoding::MsgPack => {
            let mut de = rmp_serde::Deserializer::from_read_ref(frame);
            de.set_max_depth(MAX_DEPTH);
            Peek::deserialize(&mut de).ok()?
        }
    };
    peek.seq.filter(|_| peek.ty.as_deref() == Some("input"))
}

/// Encode a server message. `Err` only if a game value cannot be expressed in
/// JSON (e.g. a map keyed by arrays); the caller reports `internal`.
pub fn encode_server(msg: &ServerMsg, enc: Encoding) -> Result<Vec<u8>, String> {
    match enc {
        Encoding::Json => serde_json::to_vec(msg).map_err(|e| e.to_string()),
        Encoding::MsgPack => rmp_serde::to_vec_named(msg).map_err(|e| e.to_string()),
    }
}

/// Encode a client message (for Rust clients and tests).
pub fn encode_client(msg: &ClientMsg, enc: Encoding) -> Result<Vec<u8>, String> {
    match enc {
        Encoding::Json => serde_json::to_vec(msg).map_err(|e| e.to_string()),
        Encoding::MsgPack => rmp_serde::to_vec_named(msg).map_err(|e| e.to_string()),
    }
}

/// A game value as the MessagePack bytes the guest reads.
pub fn value_to_msgpack(v: &GameValue) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    rmpv::encode::write_value(&mut out, v).expect("write to Vec");
    out
}

/// MessagePack bytes from the guest as a game value. Empty bytes are `nil` (games may
/// send an empty `detail`). At most [`MAX_DEPTH`] − 2 levels deep: the value goes out
/// inside a message, and a JSON reader with serde_json's bound (127 nested containers)
/// must still read that message.
pub fn msgpack_to_value(bytes: &[u8]) -> Result<GameValue, ValueError> {
    if bytes.is_empty() {
        return Ok(GameValue::Nil);
    }
    let mut rd = bytes;
    read_bounded(&mut rd, MAX_DEPTH - 2)
}

#[cfg(test)]
mod tests;
