//! Minotaur's load generator, as a library so tests can drive it in-process.
//!
//! [`run`] opens `players` websockets to one node URL, ramping them up over
//! `ramp`, and lets each [`bot`] quick-match into its game and play at `rate`
//! inputs per second until `duration` is over. Every input carries a `seq`; the
//! bot timestamps it, the `ack{seq}` closes the input→ack latency and the next
//! `view` the input→view latency ([`stats`]). The run is bounded: it stops by
//! itself after `duration` (plus a short grace to close sockets) and returns a
//! [`Summary`]. [`echo`] is the bare websocket echo the latencies are compared
//! with. `main.rs` is only the CLI around this.

pub mod bot;
pub mod client;
pub mod echo;
pub mod spinner;
pub mod stats;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinSet;
use tokio::time::Instant;

use bot::{run_bot, ArenaBot, BotPlan, TicTacToeBot};
pub use client::Encoding;
pub use stats::{RunMeta, Stats, Summary};

/// Which game the bots play.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GameChoice {
    Arena,
    TicTacToe,
    /// Even-numbered bots play arena, odd ones tictactoe.
    Mixed,
}

impl GameChoice {
    pub fn name(self) -> &'static str {
        match self {
            GameChoice::Arena => "arena",
            GameChoice::TicTacToe => "tictactoe",
            GameChoice::Mixed => "mixed",
        }
    }
}

/// One load run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The node's player websocket, e.g. `ws://127.0.0.1:7878/ws`.
    pub url: String,
    pub players: u64,
    pub game: GameChoice,
    pub duration: Duration,
    /// Inputs per second per player (tictactoe: at most, on its turn).
    pub rate: f64,
    /// Players start evenly spread over this time.
    pub ramp: Duration,
    pub encoding: Encoding,
    pub connect_timeout: Duration,
    /// Draw a progress bar on stderr (hidden anyway when stderr is no terminal).
    pub progress: bool,
}

impl LoadConfig {
    pub fn new(url: impl Into<String>, players: u64, game: GameChoice, duration: Duration) -> Self {
        Self {
            url: url.into(),
            players,
            game,
            duration,
            rate: 10.0,
            ramp: Duration::ZERO,
            encoding: Encoding::Json,
            connect_timeout: Duration::from_secs(5),
            progress: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("the URL must be a ws:// websocket URL, got {0:?}")]
    BadUrl(String),
    #[error("{0}")]
    BadConfig(&'static str),
}

/// Upper bounds, so a typo cannot turn a load test into a flood.
pub const MAX_PLAYERS: u64 = 100_000;
pub const MAX_RATE: f64 = 1_000.0;
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// After `duration`, bots get this long to close their sockets before they are cut.
const GRACE: Duration = Duration::from_secs(3);

fn validate(cfg: &LoadConfig) -> Result<(), LoadError> {
    if !cfg.url.starts_with("ws://") {
        return Err(LoadError::BadUrl(cfg.url.clone()));
    }
    if cfg.players == 0 || cfg.players > MAX_PLAYERS {
        return Err(LoadError::BadConfig("players must be between 1 and 100000"));
    }
    if !(cfg.rate > 0.0 && cfg.rate <= MAX_RATE) {
        return Err(LoadError::BadConfig(
            "rate must be above 0 and at most 1000 inputs/s/player",
        ));
    }
    if cfg.duration.is_zero() || cfg.duration > MAX_DURATION {
        return Err(LoadError::BadConfig(
            "duration must be above 0 and at most 24h",
        ));
    }
    if cfg.ramp > cfg.duration {
        return Err(LoadError::BadConfig(
            "ramp must not be longer than the duration",
        ));
    }
    Ok(())
}

/// Run the load and return what was measured. Stops by itself after
/// `cfg.duration` (the ramp counts within it).
pub async fn run(cfg: &LoadConfig) -> Result<Summary, LoadError> {
    validate(cfg)?;
    let stats = Arc::new(Stats::default());
    let start = Instant::now();
    let stop_at = start + cfg.duration;
    let plan = Arc::new(BotPlan {
        url: cfg.url.clone(),
        encoding: cfg.encoding,
        rate: cfg.rate,
        stop_at,
        connect_timeout: cfg.connect_timeout,
    });

    let mut bots = JoinSet::new();
    for id in 0..cfg.players {
        let start_at = start + cfg.ramp.mul_f64(id as f64 / cfg.players as f64);
        let (plan, stats) = (plan.clone(), stats.clone());
        let arena = match cfg.game {
            GameChoice::Arena => true,
            GameChoice::TicTacToe => false,
            GameChoice::Mixed => id % 2 == 0,
        };
        if arena {
            bots.spawn(run_bot(id, plan, stats, ArenaBot::default(), start_at));
        } else {
            bots.spawn(run_bot(id, plan, stats, TicTacToeBot::default(), start_at));
        }
    }

    let bar = progress_bar(cfg);
    let reporter = tokio::spawn(report_progress(bar.clone(), stats.clone(), cfg.players));
    // Bots stop at `stop_at` on their own; the deadline only catches a stuck close.
    let all_done = async { while bots.join_next().await.is_some() {} };
    if tokio::time::timeout_at(stop_at + GRACE, all_done)
        .await
        .is_err()
    {
        bots.abort_all();
    }
    reporter.abort();
    bar.finish_and_clear();
    let elapsed = cfg.duration.min(start.elapsed());

    let meta = RunMeta {
        url: cfg.url.clone(),
        game: cfg.game.name().to_owned(),
        encoding: cfg.encoding.name().to_owned(),
        players: cfg.players,
        rate_per_player: cfg.rate,
        duration_s: cfg.duration.as_secs_f64(),
        ramp_s: cfg.ramp.as_secs_f64(),
    };
    Ok(stats.summary(meta, elapsed))
}

fn progress_bar(cfg: &LoadConfig) -> ProgressBar {
    let millis = u64::try_from(cfg.duration.as_millis()).unwrap_or(u64::MAX);
    if !cfg.progress {
        return ProgressBar::with_draw_target(Some(millis), ProgressDrawTarget::hidden());
    }
    let bar = ProgressBar::new(millis);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {msg}")
            .expect("constant template is valid")
            .progress_chars("=> "),
    );
    bar
}

/// Every 250 ms: players connected, inputs/s over the last interval, errors.
async fn report_progress(bar: ProgressBar, stats: Arc<Stats>, players: u64) {
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let (mut last_at, mut last_inputs, mut last_views) = (start, 0u64, 0u64);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let dt = (now - last_at).as_secs_f64().max(1e-3);
        let inputs = stats.inputs.load(Ordering::Relaxed);
        let views = stats.views.load(Ordering::Relaxed);
        bar.set_position(u64::try_from((now - start).as_millis()).unwrap_or(u64::MAX));
        bar.set_message(format!(
            "players {}/{}  inputs/s {:.0}  views/s {:.0}  errors {}",
            stats.connected.load(Ordering::Relaxed),
            players,
            (inputs - last_inputs) as f64 / dt,
            (views - last_views) as f64 / dt,
            stats.errors_total.load(Ordering::Relaxed),
        ));
        (last_at, last_inputs, last_views) = (now, inputs, views);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_bounded() {
        let ok = LoadConfig::new(
            "ws://127.0.0.1:1/ws",
            10,
            GameChoice::Arena,
            Duration::from_secs(1),
        );
        assert!(validate(&ok).is_ok());
        let bad_url = LoadConfig {
            url: "http://example.com/ws".into(),
            ..ok.clone()
        };
        assert!(matches!(validate(&bad_url), Err(LoadError::BadUrl(_))));
        assert!(validate(&LoadConfig {
            players: 0,
            ..ok.clone()
        })
        .is_err());
        assert!(validate(&LoadConfig {
            rate: 0.0,
            ..ok.clone()
        })
        .is_err());
        assert!(validate(&LoadConfig {
            rate: f64::NAN,
            ..ok.clone()
        })
        .is_err());
        assert!(validate(&LoadConfig {
            ramp: Duration::from_secs(2),
            ..ok.clone()
        })
        .is_err());
        assert!(validate(&LoadConfig {
            duration: Duration::ZERO,
            ..ok
        })
        .is_err());
    }

    #[tokio::test]
    async fn bots_play_against_the_echo_without_errors() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(echo::serve(listener));
        for encoding in [Encoding::Json, Encoding::MsgPack] {
            let cfg = LoadConfig {
                encoding,
                rate: 50.0,
                ..LoadConfig::new(
                    format!("ws://{addr}/ws"),
                    3,
                    GameChoice::Arena,
                    Duration::from_millis(500),
                )
            };
            let s = run(&cfg).await.unwrap();
            assert_eq!(s.errors_total, 0, "{:?}", s.errors);
            assert!(s.acks > 0, "no input acknowledged by the echo");
        }
        server.abort();
    }

    #[tokio::test]
    async fn unreachable_node_counts_connect_errors_and_stops_on_time() {
        // Bind then drop a listener: nothing listens on that port any more.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = LoadConfig::new(
            format!("ws://127.0.0.1:{port}/ws"),
            3,
            GameChoice::Mixed,
            Duration::from_millis(500),
        );
        let started = std::time::Instant::now();
        let s = run(&cfg).await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "run overran: {:?}",
            started.elapsed()
        );
        assert!(s.errors_total > 0);
        assert!(s.errors.contains_key("client_ws"), "{:?}", s.errors);
        assert_eq!(s.acks, 0);
    }
}
