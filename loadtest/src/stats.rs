//! What a load run measured: live counters (read by the progress bar), latency
//! histograms merged from every bot, and the end-of-run [`Summary`] rendered as a
//! table or as one JSON object. Bots write here; `run` and `main` read.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency the histograms track exactly (longer samples are clamped to it).
const MAX_TRACKED_US: u64 = 60_000_000;

/// A latency histogram in microseconds, 3 significant figures, 1 µs .. 60 s.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKED_US, 3).expect("constant histogram bounds are valid")
}

/// Record one latency sample; sub-microsecond samples count as 1 µs.
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    h.saturating_record(us.clamp(1, MAX_TRACKED_US));
}

/// Per-bot latency samples, kept locally (no lock per sample) and merged into
/// [`Stats`] once when the bot stops.
pub struct BotLatencies {
    pub ack: Histogram<u64>,
    pub view: Histogram<u64>,
}

impl Default for BotLatencies {
    fn default() -> Self {
        Self {
            ack: new_histogram(),
            view: new_histogram(),
        }
    }
}

/// Shared between all bots for one run.
pub struct Stats {
    pub connected: AtomicU64,
    pub peak_connected: AtomicU64,
    pub seated: AtomicU64,
    pub inputs: AtomicU64,
    pub acks: AtomicU64,
    pub views: AtomicU64,
    pub disconnects: AtomicU64,
    pub unacked: AtomicU64,
    pub late_inputs: AtomicU64,
    pub errors_total: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    finished_sessions: Mutex<HashSet<String>>,
    ack_latency: Mutex<Histogram<u64>>,
    view_latency: Mutex<Histogram<u64>>,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            connected: AtomicU64::new(0),
            peak_connected: AtomicU64::new(0),
            seated: AtomicU64::new(0),
            inputs: AtomicU64::new(0),
            acks: AtomicU64::new(0),
            views: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            unacked: AtomicU64::new(0),
            late_inputs: AtomicU64::new(0),
            errors_total: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
            finished_sessions: Mutex::new(HashSet::new()),
            ack_latency: Mutex::new(new_histogram()),
            view_latency: Mutex::new(new_histogram()),
        }
    }
}

impl Stats {
    pub fn connection_opened(&self) {
        let now = self.connected.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_connected.fetch_max(now, Ordering::Relaxed);
    }

    pub fn connection_closed(&self) {
        self.connected.fetch_sub(1, Ordering::Relaxed);
    }

    /// Count one error under its stable code (server codes as sent, ours prefixed
    /// `client_`).
    pub fn error(&self, code: &str) {
        self.errors_total.fetch_add(1, Ordering::Relaxed);
        let mut errors = self.errors.lock().expect("stats lock poisoned");
        *errors.entry(code.to_owned()).or_default() += 1;
    }

    /// Every seat of a session sees `ended`; count the session once.
    pub fn game_finished(&self, session: &str) {
        let mut seen = self.finished_sessions.lock().expect("stats lock poisoned");
        if !seen.contains(session) {
            seen.insert(session.to_owned());
        }
    }

    pub fn merge(&self, bot: &BotLatencies) {
        // Same bounds on both sides, so `add` cannot fail.
        let _ = self
            .ack_latency
            .lock()
            .expect("stats lock poisoned")
            .add(&bot.ack);
        let _ = self
            .view_latency
            .lock()
            .expect("stats lock poisoned")
            .add(&bot.view);
    }

    /// Freeze the run into a summary; `elapsed` is the measured wall time.
    pub fn summary(&self, meta: RunMeta, elapsed: Duration) -> Summary {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let per_s = |n: u64| (n as f64 / secs * 10.0).round() / 10.0;
        let (inputs, acks, views) = (get(&self.inputs), get(&self.acks), get(&self.views));
        Summary {
            meta,
            elapsed_s: (secs * 1000.0).round() / 1000.0,
            peak_connected: get(&self.peak_connected),
            seated: get(&self.seated),
            inputs,
            acks,
            views,
            inputs_per_s: per_s(inputs),
            acks_per_s: per_s(acks),
            views_per_s: per_s(views),
            ack_latency_us: LatencySummary::from(&*self.ack_latency.lock().expect("stats lock")),
            view_latency_us: LatencySummary::from(&*self.view_latency.lock().expect("stats lock")),
            errors_total: get(&self.errors_total),
            errors: self.errors.lock().expect("stats lock poisoned").clone(),
            disconnects: get(&self.disconnects),
            games_finished: self.finished_sessions.lock().expect("stats lock").len() as u64,
            inputs_unacked: get(&self.unacked),
            inputs_after_end: get(&self.late_inputs),
        }
    }
}

/// What was asked for, echoed in the summary so a JSON line stands alone.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunMeta {
    pub url: String,
    pub game: String,
    pub encoding: String,
    pub players: u64,
    pub rate_per_player: f64,
    pub duration_s: f64,
    pub ramp_s: f64,
}

/// Percentiles of one latency histogram, in microseconds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl From<&Histogram<u64>> for LatencySummary {
    fn from(h: &Histogram<u64>) -> Self {
        let q = |q: f64| {
            if h.is_empty() {
                0
            } else {
                h.value_at_quantile(q)
            }
        };
        Self {
            count: h.len(),
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            max: if h.is_empty() { 0 } else { h.max() },
            mean: (h.mean() * 10.0).round() / 10.0,
        }
    }
}

/// The end-of-run report: `--json` prints it as one object, otherwise
/// [`Summary::table`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    #[serde(flatten)]
    pub meta: RunMeta,
    pub elapsed_s: f64,
    pub peak_connected: u64,
    /// `joined` answers received (a bot that re-queues is counted per seat).
    pub seated: u64,
    pub inputs: u64,
    pub acks: u64,
    pub views: u64,
    pub inputs_per_s: f64,
    pub acks_per_s: f64,
    pub views_per_s: f64,
    pub ack_latency_us: LatencySummary,
    pub view_latency_us: LatencySummary,
    pub errors_total: u64,
    pub errors: BTreeMap<String, u64>,
    pub disconnects: u64,
    pub games_finished: u64,
    /// Inputs still waiting for their `ack` when the run stopped.
    pub inputs_unacked: u64,
    /// Inputs refused because their game had just ended (sent before `ended`
    /// arrived): a race every real-time client has, not counted as errors.
    pub inputs_after_end: u64,
}

impl Summary {
    /// A human-readable table for the terminal.
    pub fn table(&self) -> String {
        let m = &self.meta;
        let ms = |us: u64| format!("{:.3}", us as f64 / 1000.0);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "minotaur-loadtest: {} {} players of {} ({}), {} inputs/s/player, {:.1}s",
            m.url, m.players, m.game, m.encoding, m.rate_per_player, self.elapsed_s
        );
        let _ = writeln!(
            out,
            "{:<22}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}",
            "latency (ms)", "count", "p50", "p99", "p99.9", "max", "mean"
        );
        for (name, l) in [
            ("input -> ack", &self.ack_latency_us),
            ("input -> view", &self.view_latency_us),
        ] {
            let _ = writeln!(
                out,
                "{:<22}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10.3}",
                name,
                l.count,
                ms(l.p50),
                ms(l.p99),
                ms(l.p999),
                ms(l.max),
                l.mean / 1000.0
            );
        }
        let _ = writeln!(out, "{:<22}{:>10}{:>10}", "throughput", "total", "per s");
        for (name, n, r) in [
            ("inputs", self.inputs, self.inputs_per_s),
            ("acks", self.acks, self.acks_per_s),
            ("views", self.views, self.views_per_s),
        ] {
            let _ = writeln!(out, "{name:<22}{n:>10}{r:>10.1}");
        }
        let _ = writeln!(
            out,
            "players: peak {} connected, {} seats taken, {} disconnects, {} games finished; inputs: {} unacked at stop, {} refused after their game ended",
            self.peak_connected, self.seated, self.disconnects, self.games_finished, self.inputs_unacked, self.inputs_after_end
        );
        if self.errors.is_empty() {
            let _ = writeln!(out, "errors: none");
        } else {
            let _ = writeln!(out, "errors: {} total", self.errors_total);
            for (code, n) in &self.errors {
                let _ = writeln!(out, "  {code:<20}{n:>10}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> RunMeta {
        RunMeta {
            url: "ws://127.0.0.1:1/ws".into(),
            game: "arena".into(),
            encoding: "json".into(),
            players: 2,
            rate_per_player: 10.0,
            duration_s: 1.0,
            ramp_s: 0.0,
        }
    }

    #[test]
    fn percentiles_of_known_samples() {
        let mut h = new_histogram();
        for us in 1..=1000u64 {
            record(&mut h, Duration::from_micros(us));
        }
        let l = LatencySummary::from(&h);
        assert_eq!(l.count, 1000);
        // 3 significant figures: values below 2048 are exact.
        assert_eq!(l.p50, 500);
        assert_eq!(l.p90, 900);
        assert_eq!(l.p99, 990);
        assert_eq!(l.p999, 999);
        assert_eq!(l.max, 1000);
        assert!((l.mean - 500.5).abs() < 0.1, "mean {}", l.mean);
    }

    #[test]
    fn empty_histogram_summarises_to_zeroes() {
        let l = LatencySummary::from(&new_histogram());
        assert_eq!((l.count, l.p50, l.p99, l.max), (0, 0, 0, 0));
    }

    #[test]
    fn samples_are_clamped_into_range() {
        let mut h = new_histogram();
        record(&mut h, Duration::from_nanos(10));
        record(&mut h, Duration::from_secs(3600));
        assert_eq!(h.len(), 2);
        assert_eq!(h.min(), 1);
        assert!(h.max() >= MAX_TRACKED_US);
    }

    #[test]
    fn bots_merge_and_errors_count_by_code() {
        let stats = Stats::default();
        let mut a = BotLatencies::default();
        let mut b = BotLatencies::default();
        record(&mut a.ack, Duration::from_micros(100));
        record(&mut b.ack, Duration::from_micros(300));
        record(&mut b.view, Duration::from_millis(2));
        stats.merge(&a);
        stats.merge(&b);
        stats.error("rate_limited");
        stats.error("rate_limited");
        stats.error("client_connect");
        stats.game_finished("s1");
        stats.game_finished("s1");
        stats.game_finished("s2");
        stats.connection_opened();
        stats.connection_opened();
        stats.connection_closed();
        let s = stats.summary(meta(), Duration::from_secs(2));
        assert_eq!(s.ack_latency_us.count, 2);
        assert_eq!(s.ack_latency_us.max, 300);
        assert_eq!(s.view_latency_us.count, 1);
        assert_eq!(s.errors_total, 3);
        assert_eq!(s.errors["rate_limited"], 2);
        assert_eq!(s.errors["client_connect"], 1);
        assert_eq!(s.games_finished, 2);
        assert_eq!(s.peak_connected, 2);
    }

    #[test]
    fn summary_json_shape() {
        let stats = Stats::default();
        stats.inputs.store(50, Ordering::Relaxed);
        stats.acks.store(40, Ordering::Relaxed);
        let s = stats.summary(meta(), Duration::from_secs(10));
        let v = serde_json::to_value(&s).unwrap();
        let obj = v.as_object().unwrap();
        for key in [
            "url",
            "game",
            "encoding",
            "players",
            "rate_per_player",
            "duration_s",
            "ramp_s",
            "elapsed_s",
            "peak_connected",
            "seated",
            "inputs",
            "acks",
            "views",
            "inputs_per_s",
            "acks_per_s",
            "views_per_s",
            "ack_latency_us",
            "view_latency_us",
            "errors_total",
            "errors",
            "disconnects",
            "games_finished",
            "inputs_unacked",
            "inputs_after_end",
        ] {
            assert!(obj.contains_key(key), "summary JSON lacks {key}: {v}");
        }
        for key in ["count", "p50", "p90", "p99", "p999", "max", "mean"] {
            assert!(
                v["ack_latency_us"].get(key).is_some(),
                "latency lacks {key}"
            );
        }
        assert_eq!(v["inputs_per_s"], 5.0);
        assert_eq!(v["acks"], 40);
        assert!(v["errors"].as_object().unwrap().is_empty());
        // One line, and it reads back to the same summary.
        let line = serde_json::to_string(&s).unwrap();
        assert!(!line.contains('\n'));
        assert_eq!(serde_json::from_str::<Summary>(&line).unwrap(), s);
        assert!(s.table().contains("input -> view"));
    }
}
