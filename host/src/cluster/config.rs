//! The cluster flags of `minotaur serve` (flattened into [`crate::config::Config`]), each
//! also read from a `MINOTAUR_*` variable. Without `--database-url` the node runs alone on
//! its embedded store and none of the other flags matter.

use std::time::Duration;

use clap::Args;
use minotaur_cluster::LeaseTiming;

/// Cluster options of `minotaur serve`.
#[derive(Debug, Clone, Args)]
pub struct ClusterConfig {
    /// PostgreSQL URL of the cluster (`postgres://user:password@host:5432/db`; a unix
    /// socket with `postgres:///db?host=/run/postgresql`). Set: cluster mode, sessions live
    /// in this database and any node can serve any of them. Unset: one node on its
    /// embedded store.
    #[arg(long, env = "MINOTAUR_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// `host:port` where players should be sent to reach this node (its `--listen` as
    /// clients can reach it). Default: the bound player address, with an unspecified IP
    /// replaced by this machine's host name.
    #[arg(long, env = "MINOTAUR_ADVERTISE_ADDR")]
    pub advertise_addr: Option<String>,

    /// Node lease, renewed in the database every quarter of it. A node that cannot renew
    /// (paused, cut off from the database) stops serving within 7/8 of it; its sessions are
    /// claimed by the others 1.25 leases after its last renewal.
    #[arg(long, env = "MINOTAUR_LEASE_MS", default_value_t = 1500)]
    pub lease_ms: u64,

    /// A session created here goes to the least loaded serving node instead when that node
    /// owns at least this many fewer live sessions (0: always keep new sessions here).
    #[arg(long, env = "MINOTAUR_PLACEMENT_MARGIN", default_value_t = 4)]
    pub placement_margin: u32,
}

impl ClusterConfig {
    /// Cluster mode is on when a database is given.
    pub fn enabled(&self) -> bool {
        self.database_url.as_deref().is_some_and(|u| !u.is_empty())
    }

    pub fn timing(&self) -> LeaseTiming {
        LeaseTiming::new(Duration::from_millis(self.lease_ms))
    }
}
