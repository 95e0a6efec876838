//! Prometheus metrics of a node, served as text on `GET /metrics` of the operator
//! listener (`admin::listener`; see [`render`]).
//!
//! Call sites use the small functions below (one line each) so the metric names live here
//! only. The recorder (`metrics-exporter-prometheus`, no HTTP listener of its own: the operator
//! listener serves the text) is installed on the first [`install`], which `main` calls
//! before sessions start (and `admin::listener::router` again).
//! Sessions and players are gauges read from the registry at scrape time, the
//! guest pool's load from the pool.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const SESSIONS: &str = "minotaur_sessions";
pub const PLAYERS: &str = "minotaur_players";
pub const EVENTS: &str = "minotaur_events_total";
pub const EVENTS_PER_SECOND: &str = "minotaur_events_per_second";
pub const GUEST_CALL: &str = "minotaur_guest_call_seconds";
pub const TRAPS: &str = "minotaur_guest_traps_total";
pub const SESSIONS_STARTED: &str = "minotaur_sessions_started_total";
pub const HANDOFFS: &str = "minotaur_handoffs_total";
pub const SESSIONS_REAPED: &str = "minotaur_sessions_reaped_total";
pub const SYNC_BYTES: &str = "minotaur_sync_bytes_total";
pub const STORE_WRITE: &str = "minotaur_store_write_seconds";
pub const POOL_BUSY: &str = "minotaur_guest_pool_busy";
pub const POOL_QUEUED: &str = "minotaur_guest_pool_queued";
pub const POOL_THREADS: &str = "minotaur_guest_pool_threads";

/// Events into guests since start, for the events/s gauge.
static EVENT_COUNT: AtomicU64 = AtomicU64::new(0);
static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
/// The node's guest pool, whose load is read at scrape time.
static POOL: OnceLock<minotaur_runtime::GuestPool> = OnceLock::new();

/// Report `pool`'s threads, busy threads and queued jobs at every scrape.
pub fn watch_pool(pool: &minotaur_runtime::GuestPool) {
    let _ = POOL.set(pool.clone());
}

/// Installs the process-wide recorder once (later calls return the same handle) and, inside a
/// tokio runtime, starts the once-a-second task that updates events/s and runs the
/// exporter's upkeep.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        // Guest calls are microseconds; store group commits are sub-millisecond to tens of ms.
        let call_buckets = [
            1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2, 0.1,
        ];
        let write_buckets = [
            1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 0.1, 1.0,
        ];
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(GUEST_CALL.into()), &call_buckets)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(STORE_WRITE.into()), &write_buckets)
            })
            .expect("bucket lists are not empty")
            .install_recorder()
            .expect("the metrics recorder is installed once per process");
        describe();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(upkeep());
        }
        handle
    })
}

/// The text exposition; the caller sets the gauges read at scrape time first.
pub fn render(sessions: usize, players: u64) -> String {
    gauge!(SESSIONS).set(sessions as f64);
    gauge!(PLAYERS).set(players as f64);
    if let Some(pool) = POOL.get() {
        gauge!(POOL_THREADS).set(pool.threads() as f64);
        gauge!(POOL_BUSY).set(pool.busy() as f64);
        gauge!(POOL_QUEUED).set(pool.queued() as f64);
    }
    install().render()
}

fn describe() {
    describe_gauge!(SESSIONS, "Sessions running on this node.");
    describe_gauge!(PLAYERS, "Seated players in the sessions of this node.");
    describe_counter!(
        EVENTS,
        "Events delivered into guests (join, leave, input, tick)."
    );
    describe_gauge!(
        EVENTS_PER_SECOND,
        "Events into guests during the last second."
    );
    describe_histogram!(
        GUEST_CALL,
        metrics::Unit::Seconds,
        "Time of one guest event call."
    );
    describe_counter!(TRAPS, "Failed guest calls, by error code.");
    describe_gauge!(POOL_THREADS, "Threads of the guest pool.");
    describe_gauge!(
        POOL_BUSY,
        "Guest pool threads running a job (a batch, a start, a compile) now."
    );
    describe_gauge!(POOL_QUEUED, "Guest pool jobs waiting for a thread.");
    describe_counter!(SESSIONS_STARTED, "Sessions started since the node started.");
    describe_counter!(HANDOFFS, "Session handoffs, by direction and outcome.");
    describe_counter!(
        SESSIONS_REAPED,
        "Idle sessions ended by the node, by reason (empty, abandoned)."
    );
    describe_counter!(
        SYNC_BYTES,
        "Automerge sync bytes exchanged with peers, by direction."
    );
    describe_histogram!(
        STORE_WRITE,
        metrics::Unit::Seconds,
        "Time of one store group commit (several sessions' changes)."
    );
}

async fn upkeep() {
    let mut last = EVENT_COUNT.load(Ordering::Relaxed);
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let now = EVENT_COUNT.load(Ordering::Relaxed);
        gauge!(EVENTS_PER_SECOND).set(now.saturating_sub(last) as f64);
        last = now;
        if let Some(h) = HANDLE.get() {
            h.run_upkeep();
        }
    }
}

/// One event went into a guest and came back after `took` (failed or not).
pub fn guest_event(game: &str, took: Duration) {
    EVENT_COUNT.fetch_add(1, Ordering::Relaxed);
    counter!(EVENTS, "game" => game.to_owned()).increment(1);
    histogram!(GUEST_CALL).record(took.as_secs_f64());
}

/// A guest call failed with `code` (a `GuestError::code`).
pub fn trap(code: &'static str) {
    counter!(TRAPS, "code" => code).increment(1);
}

/// A session actor started.
pub fn session_started(game: &str) {
    counter!(SESSIONS_STARTED, "game" => game.to_owned()).increment(1);
}

/// An idle session was ended: `reason` is `empty` or `abandoned`.
pub fn session_reaped(reason: &'static str) {
    counter!(SESSIONS_REAPED, "reason" => reason).increment(1);
}

/// A handoff ended: `direction` is `out` or `in`, `outcome` e.g. `accepted` or `rejected`.
pub fn handoff(direction: &'static str, outcome: &'static str) {
    counter!(HANDOFFS, "direction" => direction, "outcome" => outcome).increment(1);
}

/// Sync bytes sent or received (`direction` is `sent` or `received`).
pub fn sync_bytes(direction: &'static str, bytes: usize) {
    counter!(SYNC_BYTES, "direction" => direction).increment(bytes as u64);
}

/// One store group commit took `took`.
pub fn store_write(took: Duration) {
    histogram!(STORE_WRITE).record(took.as_secs_f64());
}
