//! A token bucket, plus a count of dropped requests that tells a burst from
//! sustained abuse. The websocket task keeps one per connection for its frames;
//! `gateway::creations` one per client address for the sessions it creates. Time
//! is passed in so tests need no clock.

use std::time::{Duration, Instant};

/// What to do with one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limit: handle it.
    Allow,
    /// Over the limit: drop it and tell the client `rate_limited`.
    Drop,
    /// Over the limit for too long: close the connection.
    Close,
}

/// Token bucket refilled at `rate` per second up to `burst`.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
    /// Dropped frames in the current abuse window.
    dropped: u32,
    window_start: Instant,
    abuse_limit: u32,
}

/// Length of the window in which dropped frames are counted towards `abuse_limit`.
const ABUSE_WINDOW: Duration = Duration::from_secs(10);

impl RateLimiter {
    /// `rate` frames per second sustained, `burst` at once; more than
    /// `abuse_limit` dropped frames within 10 s closes the connection.
    pub fn new(rate: u32, burst: u32, abuse_limit: u32, now: Instant) -> Self {
        RateLimiter::with_rate(rate as f64, burst, abuse_limit, now)
    }

    /// Like [`RateLimiter::new`], with a fractional rate (per second), e.g. `n / 60.0`
    /// for `n` per minute.
    pub fn with_rate(rate: f64, burst: u32, abuse_limit: u32, now: Instant) -> Self {
        RateLimiter {
            rate: rate.max(0.0),
            burst: burst.max(1) as f64,
            tokens: burst.max(1) as f64,
            last: now,
            dropped: 0,
            window_start: now,
            abuse_limit,
        }
    }

    /// Account for one frame arriving at `now`.
    pub fn check(&mut self, now: Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Allow;
        }
        self.count_drop(now)
    }

    /// How long from `now` until the next request is allowed (zero if it is now;
    /// `Duration::MAX` if the bucket never refills).
    pub fn retry_after(&self, now: Instant) -> Duration {
        let tokens = self.tokens_at(now);
        if tokens >= 1.0 {
            Duration::ZERO
        } else if self.rate <= 0.0 {
            Duration::MAX
        } else {
            Duration::from_secs_f64((1.0 - tokens) / self.rate)
        }
    }

    /// The bucket is back to its full burst at `now`: forgetting it changes nothing.
    pub fn is_full(&self, now: Instant) -> bool {
        self.tokens_at(now) >= self.burst
    }

    fn tokens_at(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        (self.tokens + elapsed * self.rate).min(self.burst)
    }

    fn count_drop(&mut self, now: Instant) -> Verdict {
        if now.saturating_duration_since(self.window_start) > ABUSE_WINDOW {
            self.window_start = now;
            self.dropped = 0;
        }
        self.dropped += 1;
        if self.dropped > self.abuse_limit {
            Verdict::Close
        } else {
            Verdict::Drop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_drop() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(10, 5, 100, t0);
        let verdicts: Vec<_> = (0..7).map(|_| rl.check(t0)).collect();
        assert_eq!(&verdicts[..5], &[Verdict::Allow; 5]);
        assert_eq!(&verdicts[5..], &[Verdict::Drop; 2]);
    }

    #[test]
    fn refills_at_rate_and_caps_at_burst() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(10, 5, 100, t0);
        for _ in 0..5 {
            assert_eq!(rl.check(t0), Verdict::Allow);
        }
        // 100 ms at 10/s gives exactly one token back.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(rl.check(t1), Verdict::Allow);
        assert_eq!(rl.check(t1), Verdict::Drop);
        // A long pause refills only up to the burst.
        let t2 = t1 + Duration::from_secs(60);
        let allowed = (0..20).filter(|_| rl.check(t2) == Verdict::Allow).count();
        assert_eq!(allowed, 5);
    }

    #[test]
    fn sustained_abuse_closes() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(1, 1, 3, t0);
        assert_eq!(rl.check(t0), Verdict::Allow);
        assert_eq!(rl.check(t0), Verdict::Drop);
        assert_eq!(rl.check(t0), Verdict::Drop);
        assert_eq!(rl.check(t0), Verdict::Drop);
        assert_eq!(rl.check(t0), Verdict::Close);
    }

    #[test]
    fn fractional_rate_and_retry_after() {
        let t0 = Instant::now();
        // 3 per minute, bursts of 3.
        let mut rl = RateLimiter::with_rate(3.0 / 60.0, 3, u32::MAX, t0);
        for _ in 0..3 {
            assert_eq!(rl.retry_after(t0), Duration::ZERO);
            assert_eq!(rl.check(t0), Verdict::Allow);
        }
        assert!(!rl.is_full(t0));
        let wait = rl.retry_after(t0);
        assert!((19.9..=20.0).contains(&wait.as_secs_f64()), "{wait:?}");
        assert_eq!(rl.check(t0 + wait / 2), Verdict::Drop);
        assert_eq!(rl.check(t0 + wait), Verdict::Allow);
        assert!(rl.is_full(t0 + Duration::from_secs(80)));
        assert_eq!(
            RateLimiter::with_rate(0.0, 1, 9, t0).retry_after(t0 + Duration::from_secs(1)),
            Duration::ZERO
        );
    }

    #[test]
    fn abuse_count_resets_after_the_window() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(0, 1, 2, t0);
        assert_eq!(rl.check(t0), Verdict::Allow);
        assert_eq!(rl.check(t0), Verdict::Drop);
        assert_eq!(rl.check(t0), Verdict::Drop);
        let later = t0 + ABUSE_WINDOW + Duration::from_secs(1);
        assert_eq!(rl.check(later), Verdict::Drop);
        assert_eq!(rl.check(later), Verdict::Drop);
        assert_eq!(rl.check(later), Verdict::Close);
    }
}
