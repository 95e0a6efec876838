//! The `minotaur` command: `serve` runs a node (wires config, store, runtime,
//! catalog, registry, recovery and gateway, prints the bound address, and
//! turns SIGTERM/SIGINT into one shutdown signal that every task sees);
//! `publish`, `sessions`, `drain` and `cluster` talk to a running node's operator
//! listener over HTTP, `health` to its player listener.

use std::{path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use minotaur_cluster::Db;
use minotaur_host::{
    admin::{self, client, cluster::NodeInfo, AdminToken},
    catalog::Catalog,
    cluster::{self, ClusterNode},
    config::Config,
    gateway::{self, AppState, ConnLimits},
    records::Records,
    session::{persist::Backend, recovery, Persist, Registry, StoreWriter},
};
use minotaur_runtime::Runtime;
use minotaur_state::{CompactionPolicy, Store};
use tokio::sync::watch;

#[derive(Parser)]
#[command(
    name = "minotaur",
    version,
    about = "Runs multiplayer game sessions as sandboxed wasm modules"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

// Room for `drain`, `bench`, `loadtest`.
#[derive(Subcommand)]
enum Cmd {
    /// Run a node: player websocket, lobby API, health checks, web client; the admin
    /// API and metrics on a second, operator listener.
    Serve(Box<Config>),
    /// Publish a game module to a running node (admin API).
    Publish {
        /// The wasm module.
        file: PathBuf,
        /// The game it is a version of (must match the module's own name).
        #[arg(long)]
        game: String,
        /// `new`: only new sessions use it; `migrate`: live sessions move to
        /// it at their next event boundary, after a dry run that restores every
        /// live session into it (refused if any fails, unless `--force`).
        #[arg(long, default_value = "new")]
        policy: String,
        /// Only validate the module and restore every live session of the game
        /// into a scratch instance of it; nothing changes. Exits 1 if any fails.
        #[arg(long)]
        dry_run: bool,
        /// With `--policy migrate`: make the module current even if some live
        /// sessions failed the dry run (they stay on their rules).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List a running node's sessions (admin API).
    Sessions {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Drain a running node (admin API): it takes no new sessions, hands each session to
    /// another node, prints the report and exits.
    Drain {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Show a running node's view of the cluster (admin API): its state, lease and every
    /// node row (JSON).
    Cluster {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Apply the cluster database's schema migrations (the node also does at start) and
    /// print the schema version. Refuses a schema newer than this build knows.
    Migrate {
        /// PostgreSQL URL of the cluster.
        #[arg(long, env = "MINOTAUR_DATABASE_URL", hide_env_values = true)]
        database_url: String,
    },
    /// Exit 0 if GET URL answers 2xx, else 1 (for container health checks).
    Health {
        #[arg(long, default_value = "http://127.0.0.1:7878/healthz")]
        url: String,
    },
}

/// How to reach a node's admin API.
#[derive(clap::Args)]
struct AdminArgs {
    /// The node's operator listener (its `--admin-listen`), not the player port.
    #[arg(
        long,
        env = "MINOTAUR_ADMIN_URL",
        default_value = "http://127.0.0.1:7879"
    )]
    url: String,
    /// The admin token; default: read `<data-dir>/admin.token`.
    #[arg(long, env = "MINOTAUR_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The node's data directory, to read a generated admin token from.
    #[arg(long, env = "MINOTAUR_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
}

impl AdminArgs {
    fn token(&self) -> anyhow::Result<String> {
        if let Some(t) = &self.token {
            return Ok(t.clone());
        }
        let path = admin::token_path(&self.data_dir);
        let t = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the admin token from {}", path.display()))?;
        Ok(t.trim().to_owned())
    }

    /// One request to the admin API with the token. A 404 means `--url` is not an
    /// operator listener (most likely the player port): said so instead of a bare status.
    async fn request(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> anyhow::Result<client::HttpResponse> {
        let token = self.token()?;
        let r = client::request(method, &self.url, path, Some(&token), body).await?;
        anyhow::ensure!(
            r.status != 404,
            "{} answered 404 for {path}: it is not a node's operator listener. The admin \
             API is served on the node's --admin-listen address (default \
             http://127.0.0.1:7879), not on its player port",
            self.url
        );
        Ok(r)
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = match cli.cmd {
        Cmd::Serve(config) => rt.block_on(serve(*config)),
        Cmd::Publish {
            file,
            game,
            policy,
            dry_run,
            force,
            admin,
        } => rt.block_on(publish(file, game, policy, dry_run, force, admin)),
        Cmd::Sessions { admin } => rt.block_on(sessions(admin)),
        Cmd::Drain { admin } => rt.block_on(drain(admin)),
        Cmd::Cluster { admin } => rt.block_on(cluster_view(admin)),
        Cmd::Migrate { database_url } => rt.block_on(migrate(database_url)),
        Cmd::Health { url } => {
            let ok = rt
                .block_on(client::request("GET", &url, "", None, &[]))
                .is_ok_and(|r| r.ok());
            return if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("minotaur: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(mut config: Config) -> anyhow::Result<()> {
    anyhow::ensure!(
        config.ws_ping_secs == 0 || config.ws_idle_timeout_secs > config.ws_ping_secs,
        "--ws-idle-timeout-secs ({}) must be longer than --ws-ping-secs ({}): a client \
         needs a ping to answer before it is timed out",
        config.ws_idle_timeout_secs,
        config.ws_ping_secs
    );
    // First, so that a node with a weak token stops before touching anything else.
    let admin_token = AdminToken::resolve(config.admin_token.as_deref(), &config.data_dir)?;
    minotaur_host::metrics::install();
    let node_id: Arc<str> = config.resolve_node_id().into();
    let runtime = Runtime::new(config.limits()).context("starting the wasm runtime")?;
    minotaur_host::metrics::watch_pool(runtime.pool());
    tracing::info!(threads = runtime.pool().threads(), "guest pool started");
    // Alone: the embedded store holds sessions, modules and games. In a cluster: the
    // database does, and every write of a session is fenced on this node's ownership.
    let (backend, records, db) = match config
        .cluster
        .database_url
        .clone()
        .filter(|u| !u.is_empty())
    {
        Some(url) => {
            // A transaction idle for half a lease belongs to a paused or stalled node.
            let idle = config.cluster.timing().lease / 2;
            let db = Db::connect_lazy_with(&url, Some(idle)).context("the --database-url")?;
            let version = db
                .migrate()
                .await
                .context("preparing the cluster database at --database-url")?;
            tracing::info!(schema = version, "cluster database ready");
            (
                Backend::Cluster {
                    db: db.dedicated(4),
                    node: node_id.clone(),
                },
                Records::Cluster(db.clone()),
                Some(db),
            )
        }
        None => {
            let data_dir = config.data_dir.clone();
            let store = tokio::task::spawn_blocking(move || Store::open(&data_dir))
                .await?
                .with_context(|| format!("opening the store in {}", config.data_dir.display()))?;
            (
                Backend::Embedded(store.clone()),
                Records::Embedded(store),
                None,
            )
        }
    };
    let catalog = Catalog::load(&runtime, &records, &config.games_dir)
        .await
        .with_context(|| format!("loading games from {}", config.games_dir.display()))?;
    if catalog.is_empty() {
        tracing::warn!(dir = %config.games_dir.display(), "no games loaded");
    }
    // In a cluster, sessions serve only under the node's lease and the directory.
    let gate = db
        .as_ref()
        .map(|db| cluster::LeaseGate::new(config.cluster.timing(), db.clone(), node_id.clone()));
    let persist = Persist {
        writer: StoreWriter::start(backend),
        records,
        node_id: node_id.clone(),
        max_snapshot_bytes: config.max_snapshot_bytes,
        compaction: CompactionPolicy::default(),
        gate: gate
            .clone()
            .map(|g| g as Arc<dyn minotaur_host::session::gate::OwnerGate>),
        persist_interval: config.persist_interval(),
        reaping: config.reaping(),
        doc_interval: config.doc_interval(),
    };
    let registry = Registry::new(catalog, config.max_sessions, persist);
    recovery::restore_all(&registry, &runtime)
        .await
        .context("restoring sessions from the store")?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (drain_tx, mut drain_rx) = tokio::sync::mpsc::channel(16);

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let admin_listener = tokio::net::TcpListener::bind(config.admin_listen)
        .await
        .with_context(|| format!("binding the admin listener {}", config.admin_listen))?;
    let admin_addr = admin_listener.local_addr()?;

    let cluster = match (db, gate) {
        (Some(db), Some(gate)) => Some(
            ClusterNode::start(
                &config.cluster,
                node_id.clone(),
                addr,
                db,
                gate,
                registry.clone(),
                runtime.clone(),
            )
            .await
            .context("joining the cluster")?,
        ),
        _ => None,
    };

    let app = gateway::router(AppState {
        registry: registry.clone(),
        limits: Arc::new(ConnLimits::from(&config)),
        creations: Arc::new(gateway::creations::CreationLimiter::new(
            config.sessions_per_ip_per_min,
        )),
        node_id: node_id.clone(),
        shutdown: shutdown_rx.clone(),
        cluster: cluster.clone(),
    });
    let node_info = NodeInfo {
        node_id: node_id.clone(),
        cluster: cluster.clone(),
        shutdown: shutdown_rx.clone(),
    };
    let admin_app = admin::listener::router(
        admin::http::AdminState::new(registry.clone(), runtime.clone(), &admin_token, node_info)
            .with_drain(drain_tx),
    );
    tracing::info!(
        node = %node_id,
        %addr,
        %admin_addr,
        release = minotaur_host::release(),
        "serving"
    );
    // Tests and scripts wait for exactly these lines, the player listener's first.
    println!("minotaur listening on http://{addr}");
    println!("minotaur admin listening on http://{admin_addr}");
    let operator = tokio::spawn(admin::listener::serve(
        admin_listener,
        admin_app,
        shutdown_rx.clone(),
    ));

    let (drain_cluster, drain_registry) = (cluster.clone(), registry.clone());
    let grace = config.shutdown_grace();
    tokio::spawn(async move {
        // SIGTERM/SIGINT, or `POST /admin/drain` (whose caller gets the report).
        let mut waiting = Vec::new();
        tokio::select! {
            () = wait_for_signal() => tracing::info!("shutdown requested by signal"),
            Some(reply) = drain_rx.recv() => {
                tracing::info!("drain requested through the admin API");
                waiting.push(reply);
            }
        }
        // In a cluster, hand every session over while connections are still open, so
        // players get `moved` before the node stops.
        let summary = match &drain_cluster {
            Some(c) => {
                let r = cluster::drain::drain(c, &drain_registry, grace).await;
                admin::http::DrainSummary {
                    handed_over: r.handed_over,
                    failed: r
                        .failed
                        .into_iter()
                        .map(|(session, reason)| admin::http::DrainFailure { session, reason })
                        .collect(),
                    took_ms: r.took.as_millis() as u64,
                }
            }
            None => admin::http::DrainSummary::default(),
        };
        while let Ok(reply) = drain_rx.try_recv() {
            waiting.push(reply);
        }
        for reply in waiting {
            let _ = reply.send(summary.clone());
        }
        drain_rx.close();
        let _ = shutdown_tx.send(true);
    });

    let serve_options = gateway::serve::ServeOptions {
        limiter: gateway::admission::ConnLimiter::new(config.max_conns_per_ip, config.max_conns),
        header_read_timeout: (config.header_read_timeout_secs > 0)
            .then(|| Duration::from_secs(config.header_read_timeout_secs)),
    };
    gateway::serve::serve(listener, app, serve_options, shutdown_rx.clone()).await;

    // Accepting has stopped and websocket tasks read no more frames; now
    // stop the sessions: each applies what is queued, persists, and its acks
    // reach the connections, which close with 1001 once all are drained.
    let grace = config.shutdown_grace();
    if tokio::time::timeout(grace, registry.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            left = registry.len(),
            ?grace,
            "sessions still running at the end of the grace period"
        );
    }
    if let Some(c) = &cluster {
        c.leave().await;
    }
    // The operator listener stopped accepting with the player one; a request still in
    // flight there does not hold the exit back past a second.
    match tokio::time::timeout(Duration::from_secs(1), operator).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the admin listener failed"),
        Ok(Err(e)) => tracing::warn!(error = %e, "the admin listener task failed"),
        Err(_) => tracing::warn!("admin requests still in flight at exit"),
    }
    // Let websocket tasks write their close frames.
    tokio::time::sleep(Duration::from_millis(50)).await;
    tracing::info!("stopped");
    Ok(())
}

/// Prints the node's answer (JSON) and, on stderr, one line per session that
/// failed; exits 1 when the publish was refused or any session failed.
async fn publish(
    file: PathBuf,
    game: String,
    policy: String,
    dry_run: bool,
    force: bool,
    admin: AdminArgs,
) -> anyhow::Result<()> {
    let wasm = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let path =
        format!("/admin/games/{game}/modules?policy={policy}&dry_run={dry_run}&force={force}");
    let r = admin.request("POST", &path, &wasm).await?;
    println!("{}", String::from_utf8_lossy(&r.body));
    let report: Option<admin::PublishReport> = if r.ok() {
        serde_json::from_slice(&r.body).ok()
    } else {
        serde_json::from_slice::<admin::http::PublishRefused>(&r.body)
            .ok()
            .map(|refused| refused.report)
    };
    let failed = report.as_ref().map_or(0, |rep| rep.failed.len());
    for f in report.iter().flat_map(|rep| &rep.failed) {
        eprintln!("session {}: {}: {}", f.session, f.code, f.message);
    }
    anyhow::ensure!(r.ok(), "publish refused with HTTP {}", r.status);
    let checked = report.as_ref().map_or(0, |rep| rep.checked);
    anyhow::ensure!(
        failed == 0,
        "{failed} of {checked} live sessions failed to restore into the new rules"
    );
    Ok(())
}

async fn sessions(admin: AdminArgs) -> anyhow::Result<()> {
    let r = admin.request("GET", "/admin/sessions", &[]).await?;
    anyhow::ensure!(
        r.ok(),
        "HTTP {}: {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    let list: Vec<admin::http::AdminSession> = serde_json::from_slice(&r.body)?;
    println!(
        "{:<14} {:<12} {:>5} {:>7} {:>10}",
        "SESSION", "GAME", "RULES", "PLAYERS", "TICK"
    );
    for s in list {
        println!(
            "{:<14} {:<12} {:>5} {:>7} {:>10}",
            s.id, s.game, s.rules_version, s.players, s.tick
        );
    }
    Ok(())
}

async fn drain(admin: AdminArgs) -> anyhow::Result<()> {
    let r = admin.request("POST", "/admin/drain", &[]).await?;
    println!("{}", String::from_utf8_lossy(&r.body));
    anyhow::ensure!(r.ok(), "drain failed with HTTP {}", r.status);
    // Sessions that could not be handed over (no other serving node): a failure to the
    // operator's script too, as with publish.
    let failed = serde_json::from_slice::<serde_json::Value>(&r.body)
        .ok()
        .and_then(|v| v["failed"].as_array().map(Vec::len))
        .unwrap_or(0);
    anyhow::ensure!(
        failed == 0,
        "{failed} sessions were not handed over (see `failed`); they stay with this node id"
    );
    Ok(())
}

async fn cluster_view(admin: AdminArgs) -> anyhow::Result<()> {
    let r = admin.request("GET", "/admin/cluster", &[]).await?;
    println!("{}", String::from_utf8_lossy(&r.body));
    anyhow::ensure!(r.ok(), "HTTP {}", r.status);
    Ok(())
}

async fn migrate(url: String) -> anyhow::Result<()> {
    let db = Db::connect_lazy(&url).context("the --database-url")?;
    let version = db
        .migrate()
        .await
        .context("migrating the cluster database")?;
    println!("cluster database schema at version {version}");
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
