//! The `minotaur` command: `serve` runs a node. Wires config, runtime,
//! catalog, registry and gateway, prints the bound address, and turns
//! SIGTERM/SIGINT into one shutdown signal that every task sees.

use std::{process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use minotaur_host::{
    catalog::Catalog,
    cluster::{self, ClusterNode},
    config::Config,
    gateway::{self, AppState, ConnLimits},
    session::Registry,
};
use minotaur_runtime::Runtime;
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

// Room for `publish`, `drain`, `sessions`, `bench`, `loadtest`.
#[derive(Subcommand)]
enum Cmd {
    /// Run a node: player websocket, lobby API, health checks, web client.
    Serve(Config),
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
        Cmd::Serve(config) => rt.block_on(serve(config)),
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
    let node_id = config.resolve_node_id();
    let runtime = Runtime::new(config.limits()).context("starting the wasm runtime")?;
    let catalog = Catalog::load_dir(&runtime, &config.games_dir)
        .with_context(|| format!("reading games from {}", config.games_dir.display()))?;
    if catalog.is_empty() {
        tracing::warn!(dir = %config.games_dir.display(), "no games loaded");
    }
    let registry = Registry::new(catalog, config.max_sessions);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;

    let cluster = if config.cluster.enabled() {
        let modules = Arc::new(cluster::node::DirModules::load(&config.games_dir));
        let (handle, _task) = ClusterNode::start(
            config.cluster.clone(),
            node_id.clone(),
            addr,
            &config.data_dir,
            registry.clone(),
            modules,
        )
        .await
        .context("starting the cluster node")?;
        Some(handle)
    } else {
        None
    };

    let app = gateway::router(AppState {
        registry: registry.clone(),
        limits: Arc::new(ConnLimits::from(&config)),
        node_id: node_id.clone().into(),
        shutdown: shutdown_rx.clone(),
        cluster: cluster.clone(),
    });
    tracing::info!(node = %node_id, %addr, "serving");
    // Tests and scripts wait for exactly this line.
    println!("minotaur listening on http://{addr}");

    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        let _ = shutdown_tx.send(true);
    });

    let mut down = shutdown_rx.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = down.wait_for(|d| *d).await;
    });
    server.await.context("serving")?;

    // Accepting has stopped and websocket tasks are closing with 1001; now
    // stop the sessions (persistence will flush them here).
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
