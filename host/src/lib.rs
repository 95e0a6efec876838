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
//!    point, and where persistence will commit) and only then sends the `ack`s.
//!
//! A guest failure rolls the instance back to that snapshot; other sessions
//! never notice. `main` wires it up: `config::Config` → `catalog::Catalog` →
//! `Registry` → `gateway::router`, with one shutdown signal for every task.

pub mod catalog;
pub mod cluster;
pub mod config;
pub mod gateway;
pub mod protocol;
pub mod ratelimit;
pub mod session;
