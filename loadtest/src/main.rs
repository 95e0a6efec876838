//! `minotaur-loadtest`: the CLI around `minotaur_loadtest::run`. Parses flags,
//! runs one bounded load against one node URL, prints the summary (a table, or
//! one JSON object with `--json`), and exits non-zero on errors if asked to.
//! `--serve-echo ADDR` instead serves the bare websocket echo baseline.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use minotaur_loadtest::{run, Encoding, GameChoice, LoadConfig};

/// Load generator for a Minotaur node: N websocket player bots that quick-match
/// and play, with input->ack and input->view latency histograms.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// The node's player websocket URL (the only address this tool connects to).
    #[arg(long, default_value = "ws://127.0.0.1:7878/ws")]
    url: String,
    /// Number of player bots (one websocket each).
    #[arg(long, default_value_t = 100)]
    players: u64,
    /// The game the bots play; `mixed` puts half in each.
    #[arg(long, value_enum, default_value_t = Game::Arena)]
    game: Game,
    /// How long the whole run lasts, ramp included (e.g. `10s`, `2m`).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    duration: Duration,
    /// Inputs per second per player (tictactoe bots move at most this often, on their turn).
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Spread the players' connections evenly over this time (e.g. `5s`).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    ramp: Duration,
    /// Send MessagePack binary frames instead of JSON text.
    #[arg(long)]
    msgpack: bool,
    /// Print the summary as one JSON object (no progress bar) instead of a table.
    #[arg(long, alias = "json-out")]
    json: bool,
    /// Exit with status 1 if any error was counted.
    #[arg(long)]
    fail_on_error: bool,
    /// Do not generate load: serve the bare websocket echo (the latency baseline) on this
    /// address until stopped, printing `echo listening on ws://ADDR/ws`.
    #[arg(long, value_name = "ADDR")]
    serve_echo: Option<std::net::SocketAddr>,
    /// Also run this many hostile `chaos` sessions for the whole run, each keeping
    /// a guest call spinning until the node's call timeout (the isolation bench;
    /// the node must serve the `chaos` test game). Their count goes to stderr.
    #[arg(long, default_value_t = 0)]
    spinners: u32,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Game {
    Arena,
    Tictactoe,
    Mixed,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    if let Some(addr) = cli.serve_echo {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        println!("echo listening on ws://{}/ws", listener.local_addr()?);
        minotaur_loadtest::echo::serve(listener).await;
        return Ok(ExitCode::SUCCESS);
    }
    let game = match cli.game {
        Game::Arena => GameChoice::Arena,
        Game::Tictactoe => GameChoice::TicTacToe,
        Game::Mixed => GameChoice::Mixed,
    };
    let cfg = LoadConfig {
        rate: cli.rate,
        ramp: cli.ramp,
        encoding: if cli.msgpack {
            Encoding::MsgPack
        } else {
            Encoding::Json
        },
        progress: !cli.json,
        ..LoadConfig::new(cli.url, cli.players, game, cli.duration)
    };
    let stop_at = tokio::time::Instant::now() + cfg.duration;
    let spinners: Vec<_> = (0..cli.spinners)
        .map(|_| {
            tokio::spawn(minotaur_loadtest::spinner::spin(
                cfg.url.clone(),
                stop_at,
                cfg.connect_timeout,
            ))
        })
        .collect();
    let summary = run(&cfg).await.context("invalid load test configuration")?;
    let (mut spins, mut sessions) = (0, 0);
    for s in spinners {
        if let Ok(done) = s.await {
            spins += done.spins;
            sessions += done.sessions;
        }
    }
    if cli.spinners > 0 {
        eprintln!(
            "spinners: {} ({sessions} chaos sessions), spins answered: {spins}",
            cli.spinners
        );
    }
    if cli.json {
        println!(
            "{}",
            serde_json::to_string(&summary).context("encoding the summary")?
        );
    } else {
        print!("{}", summary.table());
    }
    if cli.fail_on_error && summary.errors_total > 0 {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
