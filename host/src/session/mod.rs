//! Sessions: one actor task per running game ([`actor`]), the clonable handle
//! that talks to it ([`handle`]), and the node-wide index of sessions, seats'
//! tokens and quick-match ([`registry`]). The gateway calls the registry and
//! handles; nothing outside this module sees a session's state.

pub mod actor;
pub mod gate;
pub mod handle;
pub mod persist;
pub mod recovery;
pub mod registry;

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, Notify};

use crate::protocol::{ErrorCode, ServerMsg};

pub use handle::SessionHandle;
pub use persist::StoreWriter;
pub use registry::Registry;

/// What every session actor needs to persist itself. Cheap to clone.
#[derive(Clone)]
pub struct Persist {
    pub writer: StoreWriter,
    /// Modules and game records (the embedded store, or the cluster database).
    pub records: crate::records::Records,
    /// Written as `meta.owner_node`.
    pub node_id: Arc<str>,
    /// A guest snapshot larger than this is a guest failure (`snapshot_too_large`).
    pub max_snapshot_bytes: usize,
    pub compaction: minotaur_state::CompactionPolicy,
    /// The cluster's ownership gate, checked before every batch; `None` alone.
    pub gate: Option<Arc<dyn gate::OwnerGate>>,
    /// Longest progress with nothing to acknowledge (ticks) waits before it is
    /// written to the journal (see `actor`).
    pub persist_interval: std::time::Duration,
    /// When a session nobody is in is ended (and removed from the store).
    pub reaping: Reaping,
    /// Longest the session document (Automerge: what a restart or a new owner loads, and what the
    /// store's base and chunks hold) trails the state made durable in the
    /// journal. Zero: every batch that writes anything writes the document.
    pub doc_interval: std::time::Duration,
}

/// How long a session may stay without players before its actor ends it and removes it
/// from the store (`None`: never). From `--empty-session-secs` and
/// `--abandoned-session-secs`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reaping {
    /// No seat taken (never joined, or every player left).
    pub empty: Option<std::time::Duration>,
    /// Seats taken, but every seated player disconnected.
    pub abandoned: Option<std::time::Duration>,
}

/// Why one session did not move to new rules; it stays on the old ones.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SwapFailure {
    pub session: String,
    pub code: String,
    pub message: String,
    /// The guest's own panic message (cut to 1 KiB, control characters
    /// escaped) when the new rules panicked; also inside `message`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub panic: Option<String>,
}

/// A player's id within a session (also the guest's `PlayerId`).
pub type PlayerId = minotaur_abi::PlayerId;

/// sha256 of a reconnect token; the only form in which a token is kept.
pub type TokenHash = [u8; 32];

/// Hash a reconnect token as the client sends it (hex text).
pub fn hash_token(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// A fresh reconnect token for a seat in `session`: `<session>.<32 hex digits>` (128
/// random bits). The session id in front lets any node of a cluster tell where to send the
/// player; only the token's hash is ever stored.
pub fn new_token(session: &str) -> String {
    format!("{session}.{}", hex::encode(rand::random::<[u8; 16]>()))
}

/// The session a token was issued for, if it carries one.
pub fn token_session(token: &str) -> Option<&str> {
    token
        .split_once('.')
        .map(|(s, _)| s)
        .filter(|s| !s.is_empty())
}

/// A fresh session id: 12 random hex digits.
pub fn new_session_id() -> String {
    hex::encode(rand::random::<[u8; 6]>())
}

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// The way from a session to one player connection: a bounded queue drained by
/// the connection's websocket task, and a kick to drop the connection when the
/// queue is full (a slow consumer must never stall its session).
#[derive(Clone, Debug)]
pub struct Outbound {
    pub conn_id: u64,
    tx: mpsc::Sender<ServerMsg>,
    kick: Arc<Notify>,
}

impl Outbound {
    /// A new connection's outbound side; the receiver and the kick belong to
    /// its websocket task.
    pub fn new(capacity: usize) -> (Outbound, mpsc::Receiver<ServerMsg>, Arc<Notify>) {
        let (tx, rx) = mpsc::channel(capacity);
        let kick = Arc::new(Notify::new());
        let out = Outbound {
            conn_id: NEXT_CONN.fetch_add(1, Ordering::Relaxed),
            tx,
            kick: kick.clone(),
        };
        (out, rx, kick)
    }

    /// Queue `msg` without waiting. `false` if the connection is gone or too
    /// slow; in the slow case it is kicked.
    pub fn send(&self, msg: ServerMsg) -> bool {
        match self.tx.try_send(msg) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(conn = self.conn_id, "slow consumer; dropping connection");
                self.kick.notify_one();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// A seat as granted to a connection by `join` or `resume`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub session: String,
    pub game: String,
    pub player: PlayerId,
    /// The reconnect token: the new one on join, `None` on resume (the client has it).
    pub token: Option<String>,
    pub token_hash: TokenHash,
    pub rules_version: u32,
    pub resumed: bool,
}

/// What the lobby and quick-match can see of a session without asking it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionStatus {
    pub players: u32,
    pub max_players: u32,
    pub ended: bool,
    pub rules_version: u32,
    pub tick: u64,
    /// The ownership epoch this node runs the session at.
    pub epoch: u64,
}

impl SessionStatus {
    /// Takes new players.
    pub fn open(&self) -> bool {
        !self.ended && self.players < self.max_players
    }
}

/// Why a session operation failed; each maps to a player-facing code.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SessionError {
    #[error("no game named `{0}`")]
    UnknownGame(String),
    #[error("no session `{0}`")]
    UnknownSession(String),
    #[error("unknown resume token")]
    BadToken,
    #[error("the session has no free seat")]
    Full,
    #[error("the game refused: {0}")]
    Rejected(String),
    #[error("the session is over")]
    Ended,
    #[error("the game module failed ({0}); the session rolled back")]
    Failed(String),
    #[error("this node cannot take more sessions")]
    Overloaded,
    #[error("the cluster's database cannot be reached right now; nothing was changed, try again in a moment")]
    Unavailable,
    #[error("internal error: {0}")]
    Internal(String),
}

impl SessionError {
    pub fn code(&self) -> ErrorCode {
        match self {
            SessionError::UnknownGame(_) => ErrorCode::UnknownGame,
            SessionError::UnknownSession(_) => ErrorCode::UnknownSession,
            SessionError::BadToken => ErrorCode::BadToken,
            SessionError::Full => ErrorCode::SessionFull,
            SessionError::Rejected(_) => ErrorCode::Rejected,
            SessionError::Ended => ErrorCode::SessionEnded,
            SessionError::Failed(_) => ErrorCode::SessionFailed,
            SessionError::Overloaded => ErrorCode::Overloaded,
            SessionError::Unavailable => ErrorCode::Unavailable,
            SessionError::Internal(_) => ErrorCode::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_hex_and_hash_stably() {
        let (a, b) = (new_token("s1"), new_token("s1"));
        let secret = a.strip_prefix("s1.").expect("session prefix");
        assert_eq!(secret.len(), 32);
        assert!(secret.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(token_session(&a), Some("s1"));
        assert_eq!(token_session("0123abcd"), None);
        assert_ne!(a, b);
        assert_eq!(hash_token(&a), hash_token(&a.clone()));
        assert_ne!(hash_token(&a), hash_token(&b));
    }

    #[test]
    fn full_outbound_kicks_the_connection() {
        let (out, _rx, kick) = Outbound::new(1);
        assert!(out.send(ServerMsg::Left));
        assert!(!out.send(ServerMsg::Left));
        // The kick left a permit: this completes immediately.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(1), kick.notified())
                .await
                .expect("kicked");
        });
    }
}
