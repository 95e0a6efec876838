//! The cluster flags of `minotaur serve` (flattened into [`crate::config::Config`]), each
//! also read from a `MINOTAUR_*` variable. Without `--seeds` the node runs alone and none of
//! the other flags matter.

use std::{net::SocketAddr, time::Duration};

use clap::Args;

/// Cluster options of `minotaur serve`.
#[derive(Debug, Clone, Args)]
pub struct ClusterConfig {
    /// Other nodes' gossip addresses, `host:port,...` (DNS names allowed and re-resolved,
    /// e.g. `tasks.minotaur:7946` under Docker Swarm). Empty: single-node mode.
    #[arg(long, env = "MINOTAUR_SEEDS", value_delimiter = ',')]
    pub seeds: Vec<String>,

    /// UDP address for gossip (membership and failure detection).
    #[arg(long, env = "MINOTAUR_GOSSIP_LISTEN", default_value = "0.0.0.0:7946")]
    pub gossip_listen: SocketAddr,

    /// TCP address for node-to-node traffic (replication, handoff, votes, modules).
    #[arg(long, env = "MINOTAUR_PEER_LISTEN", default_value = "0.0.0.0:7947")]
    pub peer_listen: SocketAddr,

    /// `host:port` where players should be sent to reach this node (its `--listen` as the
    /// others can reach it). Default: the bound player address, with an unspecified IP
    /// replaced by the cluster host.
    #[arg(long, env = "MINOTAUR_ADVERTISE_ADDR")]
    pub advertise_addr: Option<String>,

    /// The host or IP other nodes use for this node's gossip and peer ports. Default: the
    /// listen IP, or, for `0.0.0.0`, this machine's host name resolved (a container's IP).
    #[arg(long, env = "MINOTAUR_CLUSTER_HOST")]
    pub cluster_host: Option<String>,

    /// Replicas kept of each session besides its owner.
    #[arg(long, env = "MINOTAUR_REPLICATION_FACTOR", default_value_t = 1)]
    pub replication_factor: usize,

    /// Longest time between a committed batch and its sync to the replicas: what a crash of
    /// the owner may lose.
    #[arg(long, env = "MINOTAUR_SYNC_INTERVAL_MS", default_value_t = 50)]
    pub sync_interval_ms: u64,

    /// Ownership lease: an owner cut off from a majority stops serving within this; a crash
    /// takeover waits at least this plus a quarter of it (after the last grant). 1.5 s keeps
    /// a 1,000-session takeover within 3 s; the margin (a quarter) stays far above what the
    /// timing argument needs (clock-rate drift plus the longest batch past its check).
    #[arg(long, env = "MINOTAUR_LEASE_MS", default_value_t = 1500)]
    pub lease_ms: u64,

    /// With seeds but no other node seen, become ready alone after this (the first node of
    /// a new cluster).
    #[arg(long, env = "MINOTAUR_JOIN_TIMEOUT_MS", default_value_t = 5000)]
    pub join_timeout_ms: u64,

    /// Gossip round interval.
    #[arg(long, env = "MINOTAUR_GOSSIP_INTERVAL_MS", default_value_t = 100)]
    pub gossip_interval_ms: u64,
}

impl ClusterConfig {
    /// Cluster mode is on when seeds are given.
    pub fn enabled(&self) -> bool {
        !self.seeds.is_empty()
    }

    pub fn sync_interval(&self) -> Duration {
        Duration::from_millis(self.sync_interval_ms.max(1))
    }

    pub fn lease(&self) -> minotaur_cluster::LeaseConfig {
        let lease = Duration::from_millis(self.lease_ms.max(100));
        minotaur_cluster::LeaseConfig {
            lease,
            margin: lease / 4,
        }
    }

    pub fn join_timeout(&self) -> Duration {
        Duration::from_millis(self.join_timeout_ms)
    }

    pub fn gossip_interval(&self) -> Duration {
        Duration::from_millis(self.gossip_interval_ms.max(10))
    }
}
