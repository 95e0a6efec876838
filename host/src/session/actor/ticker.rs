//! A session's clock: ticks at the game's rate (`0` Hz: no ticks), numbered
//! from 1, each with the milliseconds since the previous one. Owned by the
//! actor; after a stall it ticks on from now rather than firing a burst.

use std::time::Duration;

use tokio::time::{Instant, Interval, MissedTickBehavior};

/// The session's clock: ticks at the game's rate; `0` Hz means no ticks.
pub(super) struct Ticker {
    interval: Option<Interval>,
    /// The current rate, `None` before the first `set_rate`.
    pub(super) hz: Option<u32>,
    pub(super) n: u64,
    last: Instant,
}

impl Ticker {
    pub(super) fn new(hz: u32) -> Self {
        let mut t = Ticker {
            interval: None,
            hz: None,
            n: 0,
            last: Instant::now(),
        };
        t.set_rate(hz);
        t
    }

    pub(super) fn set_rate(&mut self, hz: u32) {
        self.hz = Some(hz);
        self.interval = (hz > 0).then(|| {
            let period = Duration::from_secs_f64(1.0 / hz.min(1000) as f64);
            let mut i = tokio::time::interval_at(Instant::now() + period, period);
            // After a stall, tick on from now rather than firing a burst.
            i.set_missed_tick_behavior(MissedTickBehavior::Delay);
            i
        });
    }

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
