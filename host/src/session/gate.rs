//! The cluster's say over whether this node may run a session right now: the session actor
//! asks [`OwnerGate::check`] before every batch. Single-node mode has no gate (always
//! serve); in a cluster the gate is the node's ownership lease and fencing
//! (`cluster::lease::LeaseGate`). Defined here so sessions do not depend on the cluster.

use futures_util::future::BoxFuture;
use tokio::sync::watch;

/// The answer for one `(session, epoch)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Apply the batch.
    Serve,
    /// No valid lease (cut off from a majority, or not yet joined): hold the batch until
    /// the answer changes.
    Wait,
    /// Another node holds a newer epoch: stop, and send the players there.
    Lost,
}

/// See the module doc.
pub trait OwnerGate: Send + Sync + 'static {
    /// May this node apply a batch of `session`, which it holds at `epoch`, now?
    fn check(&self, session: &str, epoch: u64) -> Admission;
    /// Changes whenever an answer may have changed (a lease granted, a session lost).
    fn subscribe(&self) -> watch::Receiver<u64>;
    /// The websocket URL of the node now serving `session`, if one answers.
    fn locate(&self, session: &str) -> BoxFuture<'static, Option<String>>;
}
