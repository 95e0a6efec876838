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

    /// Address of the operator listener: the admin API (`/admin/...`, bearer token)
    /// and `/metrics`. Keep it private (loopback, or a network only operators and
    /// the metrics scraper reach); the player listener serves neither. Port 0 picks a
    /// free port; the real address is printed once bound.
    #[arg(long, env = "MINOTAUR_ADMIN_LISTEN", default_value = "127.0.0.1:7879")]
    pub admin_listen: SocketAddr,

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

    /// Open connections (websocket or HTTP) to the player listener from one client
    /// address (IPv4, or an IPv6 /64). Beyond it, a request gets HTTP 429
    /// `too_many_connections` and a websocket is closed at once with 1008. 0: no limit.
    #[arg(long, env = "MINOTAUR_MAX_CONNS_PER_IP", default_value_t = 64)]
    pub max_conns_per_ip: usize,

    /// Open connections to the player listener in total. Beyond it, a request gets
    /// HTTP 503 `node_busy` and a websocket is closed at once with 1013; beyond twice
    /// it, new sockets are closed unanswered. 0: no limit.
    #[arg(long, env = "MINOTAUR_MAX_CONNS", default_value_t = 10_000)]
    pub max_conns: usize,

    /// Sessions one client address may create per minute (lobby `POST /api/sessions`
    /// and websocket `create`, together; bursts of as many). Beyond it:
    /// `session_rate_limited` (lobby: 429 with `Retry-After`). 0: no limit.
    #[arg(long, env = "MINOTAUR_SESSIONS_PER_IP_PER_MIN", default_value_t = 10)]
    pub sessions_per_ip_per_min: u32,

    /// Seconds a client may take to send a request's headers on the player listener
    /// (also the longest an idle keep-alive connection stays open); past it the
    /// connection is closed. 0: no limit.
    #[arg(long, env = "MINOTAUR_HEADER_READ_TIMEOUT_SECS", default_value_t = 10)]
    pub header_read_timeout_secs: u64,

    /// Seconds between the server's websocket pings. 0: no pings (and no idle timeout).
    #[arg(long, env = "MINOTAUR_WS_PING_SECS", default_value_t = 15)]
    pub ws_ping_secs: u64,

    /// Seconds a websocket may go without sending anything (a frame, or the pong that
    /// answers a ping) before it is closed with 4408. Must exceed `--ws-ping-secs`.
    #[arg(long, env = "MINOTAUR_WS_IDLE_TIMEOUT_SECS", default_value_t = 45)]
    pub ws_idle_timeout_secs: u64,

    /// Seconds a session may have no seated player (never joined, or every player
    /// left) before it is ended and removed from the store. 0: never.
    #[arg(long, env = "MINOTAUR_EMPTY_SESSION_SECS", default_value_t = 600)]
    pub empty_session_secs: u64,

    /// Seconds a session whose seated players are all disconnected may stay so before
    /// it is ended and removed from the store (their tokens stop working). 0: never.
    #[arg(long, env = "MINOTAUR_ABANDONED_SESSION_SECS", default_value_t = 3600)]
    pub abandoned_session_secs: u64,

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

    /// Bearer token of the admin API (`/admin/...`), at least 32 bytes of
    /// printable ASCII (a shorter one stops the node at start). Default: 32 random
    /// bytes generated at start, hex-encoded and written to
    /// `<data-dir>/admin.token` (mode 0600).
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

    /// When idle sessions are ended: `--empty-session-secs`, `--abandoned-session-secs`.
    pub fn reaping(&self) -> crate::session::Reaping {
        let secs = |s: u64| (s > 0).then(|| Duration::from_secs(s));
        crate::session::Reaping {
            empty: secs(self.empty_session_secs),
            abandoned: secs(self.abandoned_session_secs),
        }
    }
}
