//! The node's configuration: one clap struct for `minotaur serve`, every default
//! written once here (and shown by `--help`), each flag also read from a
//! `MINOTAUR_*` environment variable. Built by `main`, read by everything else.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Args;

/// Options of `minotaur serve`.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on for players, the lobby API and health checks.
    /// Port 0 picks a free port; the real address is printed once bound.
    #[arg(long, env = "MINOTAUR_LISTEN", default_value = "127.0.0.1:7878")]
    pub listen: SocketAddr,

    /// Directory whose `*.wasm` files are loaded as games at start, each under
    /// the game name in its `GameInfo`; a module not seen before becomes its
    /// game's current version (a published version otherwise stays current).
    #[arg(long, env = "MINOTAUR_GAMES_DIR", default_value = "games/dist")]
    pub games_dir: PathBuf,

    /// Directory for the node's durable state: the store `minotaur.redb`
    /// (sessions, modules, games) and the generated `admin.token`.
    #[arg(long, env = "MINOTAUR_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// This node's id, shown to players in `welcome` and in logs.
    /// Default: `node-` followed by 8 random hex digits.
    #[arg(long, env = "MINOTAUR_NODE_ID")]
    pub node_id: Option<String>,

    /// Largest client frame in bytes; a larger one gets `frame_too_large` and
    /// the connection is closed (1009).
    #[arg(long, env = "MINOTAUR_MAX_FRAME_BYTES", default_value_t = 64 * 1024)]
    pub max_frame_bytes: usize,

    /// Client frames per second allowed on one connection (sustained).
    #[arg(long, env = "MINOTAUR_RATE_PER_SEC", default_value_t = 50)]
    pub rate_per_sec: u32,

    /// Client frames allowed at once on one connection (bucket size).
    #[arg(long, env = "MINOTAUR_RATE_BURST", default_value_t = 100)]
    pub rate_burst: u32,

    /// Dropped (rate-limited) frames within 10 s after which the connection is closed.
    #[arg(long, env = "MINOTAUR_RATE_ABUSE_LIMIT", default_value_t = 1000)]
    pub rate_abuse_limit: u32,

    /// Messages queued for one connection before it counts as a slow consumer
    /// and is dropped (so it never stalls its session).
    #[arg(long, env = "MINOTAUR_OUTBOUND_QUEUE", default_value_t = 256)]
    pub outbound_queue: usize,

    /// Most live sessions on this node; beyond it creating one answers `overloaded`.
    #[arg(long, env = "MINOTAUR_MAX_SESSIONS", default_value_t = 10_000)]
    pub max_sessions: usize,

    /// Linear memory cap per session (guest instance), in MiB.
    #[arg(long, env = "MINOTAUR_GUEST_MEMORY_MIB", default_value_t = 32)]
    pub guest_memory_mib: usize,

    /// Wall-time limit of one guest call, in milliseconds.
    #[arg(long, env = "MINOTAUR_CALL_TIMEOUT_MS", default_value_t = 100)]
    pub call_timeout_ms: u64,

    /// Threads of the guest pool, where every guest call and module compile
    /// runs (never on the threads serving sockets). 0: four per available
    /// core, so guests spinning until their call timeout leave threads for
    /// everyone else while the OS shares the cores.
    #[arg(long, env = "MINOTAUR_GUEST_THREADS", default_value_t = 0)]
    pub guest_threads: usize,

    /// Longest a module may take to compile (publish, start, activation), in
    /// milliseconds; a slower one is refused with `compile_timeout`.
    #[arg(long, env = "MINOTAUR_COMPILE_TIMEOUT_MS", default_value_t = 30_000)]
    pub compile_timeout_ms: u64,

    /// Seconds to wait for sessions and connections to stop on shutdown.
    #[arg(long, env = "MINOTAUR_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,

    /// Largest guest snapshot in bytes; a batch that leaves the state larger is
    /// a guest failure (`snapshot_too_large`) and rolls back.
    #[arg(long, env = "MINOTAUR_MAX_SNAPSHOT_BYTES", default_value_t = 1024 * 1024)]
    pub max_snapshot_bytes: usize,

    /// Longest a session's tick-only progress (batches with no input, join,
    /// leave or swap waiting on durability) stays in memory before it is
    /// written to the store's journal, in milliseconds. Batches with
    /// something to acknowledge are always durable before the answer. 0
    /// writes every batch.
    #[arg(long, env = "MINOTAUR_PERSIST_INTERVAL_MS", default_value_t = 250)]
    pub persist_interval_ms: u64,

    /// Longest a session's Automerge document trails its journal, in
    /// milliseconds: how often the costly reconcile into the document runs
    /// for a busy session. 0 writes the document on every batch that writes
    /// anything (no journal).
    #[arg(long, env = "MINOTAUR_DOC_INTERVAL_MS", default_value_t = 1000)]
    pub doc_interval_ms: u64,

    /// Bearer token of the admin API (`/admin/...`). Default: generated at
    /// start and written to `<data-dir>/admin.token` (mode 0600).
    #[arg(long, env = "MINOTAUR_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Cluster on PostgreSQL (off without `--database-url`).
    #[command(flatten)]
    pub cluster: crate::cluster::ClusterConfig,
}

impl Config {
    /// The node id, generated once if not configured.
    pub fn resolve_node_id(&mut self) -> String {
        self.node_id
            .get_or_insert_with(|| format!("node-{:08x}", rand::random::<u32>()))
            .clone()
    }

    /// Sandbox limits derived from the flags (the rest are runtime defaults).
    pub fn limits(&self) -> minotaur_runtime::Limits {
        minotaur_runtime::Limits {
            max_memory_bytes: self.guest_memory_mib * 1024 * 1024,
            call_timeout: Duration::from_millis(self.call_timeout_ms),
            pool_threads: self.guest_threads,
            compile_timeout: Duration::from_millis(self.compile_timeout_ms),
            ..Default::default()
        }
    }

    /// Longest the document trails the journal: `--doc-interval-ms`.
    pub fn doc_interval(&self) -> Duration {
        Duration::from_millis(self.doc_interval_ms)
    }

    pub fn persist_interval(&self) -> Duration {
        Duration::from_millis(self.persist_interval_ms)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
}
