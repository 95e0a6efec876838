//! The node's side of the cluster: wires `minotaur-cluster` (gossip membership, peer
//! transport, replicas, ownership votes) into a running node. `main` starts a
//! [`ClusterNode`] when `--seeds` is given (no seeds: single-node mode, exactly as before);
//! the gateway asks its [`ClusterHandle`] for readiness and `/api/cluster`.

pub mod activate;
pub mod config;
pub mod drain;
pub mod http;
pub mod lease;
pub mod node;
pub mod replicate;
pub mod takeover;

pub use config::ClusterConfig;
pub use lease::LeaseGate;
pub use node::{ClusterHandle, ClusterNode, NodeState};

/// Errors of starting or running the cluster side of a node.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot bind the peer transport on {addr}: {source}")]
    Peer {
        addr: std::net::SocketAddr,
        #[source]
        source: minotaur_cluster::PeerError,
    },
    #[error("cannot start gossip on {addr}: {source}")]
    Gossip {
        addr: std::net::SocketAddr,
        #[source]
        source: minotaur_cluster::MembershipError,
    },
    #[error("cannot open the replica store in {dir}: {source}")]
    Store {
        dir: std::path::PathBuf,
        #[source]
        source: minotaur_state::StoreError,
    },
    #[error("cannot work out an address other nodes can reach: {0}")]
    Advertise(String),
}
