//! The session's clock: `Tick` events at the game's rate (`0` Hz: none), numbered
//! from 1 for the session's whole life (across restarts and moves: the number is in the
//! session's meta and journal). Owned by the actor, which stops it while no seat is
//! taken ([`Ticker::set_running`]): an empty session costs no guest calls and no writes.
//!
//! Invariants: numbers never repeat or skip; `dt_ms` is the time since the previous tick
//! *while running* — the first tick after a stop counts from the restart, so a game's
//! clock stands still while nobody is seated rather than jumping by the whole pause.

use std::time::Duration;

use tokio::time::{Instant, Interval, MissedTickBehavior};

pub(super) struct Ticker {
    interval: Option<Interval>,
    /// The current rate, `None` before the first `set_rate`.
    pub(super) hz: Option<u32>,
    /// The number of the last tick.
    pub(super) n: u64,
    last: Instant,
    running: bool,
}

impl Ticker {
    /// A clock at `hz` whose last tick was number `n`, running or stopped.
    pub(super) fn new(hz: u32, n: u64, running: bool) -> Self {
        let mut t = Ticker {
            interval: None,
            hz: None,
            n,
            last: Instant::now(),
            running,
        };
        t.set_rate(hz);
        t
    }

    /// The game asked for `hz` (`SetTickRate`); the next tick is one period from now.
    pub(super) fn set_rate(&mut self, hz: u32) {
        self.hz = Some(hz);
        self.interval = None;
        if self.running {
            self.start();
        }
    }

    /// Run (a seat is taken) or stop (none is). Restarting counts `dt` from now.
    pub(super) fn set_running(&mut self, running: bool) {
        if running == self.running {
            return;
        }
        self.running = running;
        if running {
            self.last = Instant::now();
            self.start();
        } else {
            self.interval = None;
        }
    }

    fn start(&mut self) {
        let hz = self.hz.unwrap_or(0);
        self.interval = (hz > 0).then(|| {
            let period = Duration::from_secs_f64(1.0 / hz.min(1000) as f64);
            let mut i = tokio::time::interval_at(Instant::now() + period, period);
            // After a stall, tick on from now rather than firing a burst.
            i.set_missed_tick_behavior(MissedTickBehavior::Delay);
            i
        });
    }

    /// Waits for the next tick; never while stopped or at 0 Hz.
    pub(super) async fn wait(&mut self) {
        match &mut self.interval {
            Some(i) => {
                i.tick().await;
            }
            None => std::future::pending().await,
        }
    }

    /// The next tick's number and the milliseconds since the previous one.
    pub(super) fn advance(&mut self) -> (u64, u32) {
        let now = Instant::now();
        let dt = now
            .duration_since(self.last)
            .as_millis()
            .min(u32::MAX as u128) as u32;
        self.last = now;
        self.n += 1;
        (self.n, dt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn tick(t: &mut Ticker) -> (u64, u32) {
        t.wait().await;
        t.advance()
    }

    async fn never_ticks(t: &mut Ticker) -> bool {
        tokio::time::timeout(Duration::from_secs(3600), t.wait())
            .await
            .is_err()
    }

    #[tokio::test(start_paused = true)]
    async fn stopped_clock_keeps_its_number_and_restarts_with_one_period() {
        let mut t = Ticker::new(20, 7, false);
        assert!(never_ticks(&mut t).await);
        t.set_running(true);
        assert_eq!(tick(&mut t).await, (8, 50));
        assert_eq!(tick(&mut t).await, (9, 50));
        t.set_running(false);
        assert!(never_ticks(&mut t).await);
        // A rate change while stopped does not start it.
        t.set_rate(10);
        assert!(never_ticks(&mut t).await);
        t.set_running(true);
        // An hour stopped: the game sees one period, not the hour.
        assert_eq!(tick(&mut t).await, (10, 100));
    }

    #[tokio::test(start_paused = true)]
    async fn zero_hz_never_ticks_even_when_running() {
        let mut t = Ticker::new(0, 0, true);
        assert!(never_ticks(&mut t).await);
        t.set_rate(50);
        // (`dt` counts from the previous tick or the start, as before this change.)
        assert_eq!(tick(&mut t).await.0, 1);
    }
}
