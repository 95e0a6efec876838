//! The `minotaur` command: `serve` runs a node (wires config, store, runtime,
//! catalog, registry, recovery and gateway, prints the bound address, and
//! turns SIGTERM/SIGINT into one shutdown signal that every task sees);
//! `publish`, `sessions` and `health` talk to a running node over HTTP.

use std::{path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use minotaur_cluster::Db;
use minotaur_host::{
    admin::{self, client},
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
    /// Run a node: player websocket, lobby API, health checks, web client.
    Serve(Box<Config>),
    /// Publish a game module to a running node (admin API).
    Publish {
        /// The wasm module.
        file: PathBuf,
        /// The game it is a version of (must match the module's own name).
        #[arg(long)]
        game: String,
        /// `new`: only new sessions use it; `migrate`: live sessions move to
        /// it at their next event boundary.
        #[arg(long, default_value = "new")]
        policy: String,
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
    /// The node's HTTP address.
    #[arg(long, env = "MINOTAUR_URL", default_value = "http://127.0.0.1:7878")]
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
            admin,
        } => rt.block_on(publish(file, game, policy, admin)),
        Cmd::Sessions { admin } => rt.block_on(sessions(admin)),
        Cmd::Drain { admin } => rt.block_on(drain(admin)),
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
            let version = db.migrate().await.context(
                "preparing the cluster database (is PostgreSQL reachable at --database-url?)",
            )?;
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
        doc_interval: config.doc_interval(),
    };
    let registry = Registry::new(catalog, config.max_sessions, persist);
    recovery::restore_all(&registry, &runtime)
        .await
        .context("restoring sessions from the store")?;
    let admin_token = admin::admin_token(config.admin_token.clone(), &config.data_dir)
        .context("writing the admin token")?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (drain_tx, mut drain_rx) = tokio::sync::mpsc::channel(16);

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;

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
        node_id: node_id.clone(),
        shutdown: shutdown_rx.clone(),
        cluster: cluster.clone(),
    })
    .merge(admin::http::router(
        admin::http::AdminState::new(registry.clone(), runtime.clone(), &admin_token)
            .with_drain(drain_tx),
    ));
    tracing::info!(node = %node_id, %addr, release = minotaur_host::release(), "serving");
    // Tests and scripts wait for exactly this line.
    println!("minotaur listening on http://{addr}");

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

    let mut down = shutdown_rx.clone();
    let server =
        axum::serve(gateway::player_listener(listener), app).with_graceful_shutdown(async move {
            let _ = down.wait_for(|d| *d).await;
        });
    server.await.context("serving")?;

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
    // Let websocket tasks write their close frames.
    tokio::time::sleep(Duration::from_millis(50)).await;
    tracing::info!("stopped");
    Ok(())
}

async fn publish(
    file: PathBuf,
    game: String,
    policy: String,
    admin: AdminArgs,
) -> anyhow::Result<()> {
    let wasm = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let path = format!("/admin/games/{game}/modules?policy={policy}");
    let token = admin.token()?;
    let r = client::request("POST", &admin.url, &path, Some(&token), &wasm).await?;
    println!("{}", String::from_utf8_lossy(&r.body));
    anyhow::ensure!(r.ok(), "publish failed with HTTP {}", r.status);
    Ok(())
}

async fn sessions(admin: AdminArgs) -> anyhow::Result<()> {
    let token = admin.token()?;
    let r = client::request("GET", &admin.url, "/admin/sessions", Some(&token), &[]).await?;
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
    let token = admin.token()?;
    let r = client::request("POST", &admin.url, "/admin/drain", Some(&token), &[]).await?;
    println!("{}", String::from_utf8_lossy(&r.body));
    anyhow::ensure!(r.ok(), "drain failed with HTTP {}", r.status);
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
