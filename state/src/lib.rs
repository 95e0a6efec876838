//! Session state outside the wasm instance, so an instance can be thrown away and rebuilt.
//!
//! - [`reconcile`]: writes a guest snapshot (MessagePack) into an Automerge document field by
//!   field, and reads it back byte-exact.
//! - [`doc`]: the per-session document [`SessionDoc`] (`meta`, `seats`, `state`), its saves and
//!   its history compaction.
//! - [`store`]: the embedded durable store (redb) for session documents, modules and games.
//!
//! The session actor calls `SessionDoc::set_state` after each batch of events, commits, and
//! appends `save_incremental()` to the [`Store`]; in a cluster the same saves go to PostgreSQL (`minotaur-cluster`).

pub mod doc;
mod error;
pub mod journal;
pub mod reconcile;
pub mod store;

pub use doc::{CompactionPolicy, SeatRecord, SessionDoc, SessionMeta};
pub use error::StateError;
pub use journal::{Journal, JournalRecord};
pub use reconcile::{read, reconcile, reconcile_cached, ReconcileStats, Written};
pub use store::{GameRecord, SessionWrite, Store, StoreError, StoreOptions, SwapPolicy};
