//! The Minotaur node: runs game sessions as sandboxed wasm modules and serves
//! their players over websockets.
//!
//! The path of a player's input:
//! 1. `gateway::ws` reads a frame (JSON text or MessagePack binary), checks its
//!    size and the connection's rate limit, and decodes a `protocol::ClientMsg`.
//! 2. The connection knows its seat (`join`/`resume` went through
//!    `session::Registry`), so the input goes to that seat's `SessionHandle`.
//! 3. The handle queues a command in the session actor's mailbox
//!    (`session::actor`), the one task that owns the session's `GuestInstance`.
//! 4. The actor applies a batch of queued commands in order, each as an ABI
//!    `Event` into the guest (`minotaur-runtime`, time- and memory-capped).
//! 5. Effects (views, messages, end) go out at once to each player's bounded
//!    outbound queue; the connection re-encodes them for its client.
//! 6. After the batch, `after_batch` snapshots the guest state (the rollback
//!    point), reconciles it into the session's Automerge `SessionDoc`, waits
//!    for the store writer's group commit (`session::persist`), and only then
//!    sends the `ack`s. At start `session::recovery` brings stored sessions back.
//!
//! A guest failure rolls the instance back to that snapshot; other sessions
//! never notice. `main` wires it up: `config::Config` → `catalog::Catalog` →
//! `Registry` → `gateway::router`, with one shutdown signal for every task.

pub mod admin;
pub mod catalog;
pub mod cluster;
pub mod config;
pub mod gateway;
pub mod metrics;
pub mod ratelimit;
pub mod records;
pub mod session;

/// The player protocol (docs/PROTOCOL.md), in its own small crate so that clients and
/// the fuzz targets (`fuzz/`) reach it without the node's dependencies.
pub use minotaur_protocol as protocol;

/// The version this node reports (`welcome.version`, lobby, logs):
/// `MINOTAUR_RELEASE` if set, else the crate version.
pub fn release() -> &'static str {
    static RELEASE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    RELEASE.get_or_init(|| {
        std::env::var("MINOTAUR_RELEASE")
            .ok()
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned())
    })
}
