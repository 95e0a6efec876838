//! The cluster of a Minotaur node stands on PostgreSQL, the one authority for who is in
//! the cluster, who owns each session, and what each session's state is. This crate is
//! that directory; the node (`minotaur-host`) wires it to its session actors.
//!
//! - [`announce`]: LISTEN/NOTIFY between nodes — hand-offs, a target serving them, publishes.
//! - [`db`]: connecting, the embedded migrations, refusing a schema newer than this build.
//! - [`nodes`]: membership — one row per node with its lease (database time) and status.
//! - [`directory`]: the session directory — create, locate, takeover claims and hand-offs
//!   as compare-and-set of `(owner, epoch)`, loading a session's document of record.
//! - [`writes`]: the fenced group commit of session writes: every write is conditional on
//!   `(owner, epoch)` in the same transaction; a write that finds another owner is refused.
//! - [`records`]: modules by content hash and the games catalogue.
//! - [`ownership`]: the single-owner rules and their timing argument; the node-local lease.
//! - [`placement`]: rendezvous hashing, to spread claimed sessions over the live nodes.
//!
//! The path of a session's state: the actor applies a batch, hands the batch's events (journal)
//! or the Automerge save (document) to the node's writer, which commits a group of them in
//! one transaction with each row's `(owner, epoch)` checked; acks leave after that commit.
//! Another node takes the session over only by moving `(owner, epoch)` forward, after
//! which the old owner's writes find nothing to update.

pub mod announce;
pub mod db;
pub mod directory;
pub mod nodes;
pub mod ownership;
pub mod placement;
pub mod records;
#[cfg(feature = "testing")]
pub mod testing;
pub mod writes;

pub use announce::Announcement;
pub use db::{Db, DbError};
pub use directory::{Claim, Located, Orphan, StoredSession};
pub use nodes::{NodeRow, NodeStatus};
pub use ownership::{LeaseClock, LeaseTiming};
pub use writes::FencedWrite;
