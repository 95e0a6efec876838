//! The node's side of a cluster on PostgreSQL: `main` starts a [`ClusterNode`] when
//! `--database-url` is given (none: single-node mode on the embedded store). The node
//! registers and renews its lease ([`node`]), claims the sessions of nodes whose lease ran
//! out and starts the sessions handed to it ([`takeover`], [`activate`]), and on drain
//! hands its own to the others ([`drain`]); a new session goes to a less loaded node
//! ([`placement`]), and a node far above the mean load hands a few sessions to the least
//! loaded one ([`rebalance`]). Session actors ask its [`LeaseGate`] before each batch; the
//! gateway asks its [`ClusterHandle`] for readiness and routing, the operator listener for
//! `/admin/cluster` (`admin::cluster`). The rules are in `minotaur_cluster::ownership`.

pub mod activate;
pub mod config;
pub mod drain;
pub mod lease;
pub mod node;
pub mod placement;
pub mod publish;
pub mod rebalance;
pub mod takeover;

pub use config::ClusterConfig;
pub use lease::LeaseGate;
pub use node::{ClusterHandle, ClusterNode, NodeState};

/// Errors of starting the cluster side of a node.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("the cluster database: {0}")]
    Db(#[from] minotaur_cluster::DbError),
    #[error("cannot work out an address players can reach: {0}")]
    Advertise(String),
}

/// The websocket URL of a node whose player address is `addr` (`host:port`).
pub fn ws_url(addr: &str) -> String {
    format!("ws://{addr}/ws")
}
