//! Sessions created per client address: a token bucket per address
//! ([`crate::ratelimit::RateLimiter`]: `--sessions-per-ip-per-min` per minute, bursts of
//! as many), shared by the lobby's `POST /api/sessions` and the websocket `create`. A
//! creation over it is refused with `session_rate_limited` before anything is started.
//! Quick-match is not charged: it starts a session only when none of the game has a free
//! seat, and then takes a seat in it.
//!
//! Buckets back to full are forgotten (they would allow the same), so memory follows the
//! addresses active in the last minute or so.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::ratelimit::{RateLimiter, Verdict};

/// Buckets kept before full ones are swept out.
const SWEEP_ABOVE: usize = 4096;

/// Per-address limit on session creation. Shared by every handler.
pub struct CreationLimiter {
    /// 0: no limit.
    per_minute: u32,
    buckets: Mutex<HashMap<IpAddr, RateLimiter>>,
}

impl CreationLimiter {
    pub fn new(per_minute: u32) -> CreationLimiter {
        CreationLimiter {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Charge one creation to `key` (a [`super::admission::client_key`]): `Err` with how
    /// long until the next one is allowed.
    pub fn charge(&self, key: IpAddr) -> Result<(), Duration> {
        self.charge_at(key, Instant::now())
    }

    fn charge_at(&self, key: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= SWEEP_ABOVE && !buckets.contains_key(&key) {
            buckets.retain(|_, b| !b.is_full(now));
        }
        let rate = f64::from(self.per_minute) / 60.0;
        let bucket = buckets
            .entry(key)
            .or_insert_with(|| RateLimiter::with_rate(rate, self.per_minute, u32::MAX, now));
        match bucket.check(now) {
            Verdict::Allow => Ok(()),
            Verdict::Drop | Verdict::Close => Err(bucket.retry_after(now)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_address_per_minute() {
        let l = CreationLimiter::new(2);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        assert!(l.charge_at(a, t0).is_ok());
        assert!(l.charge_at(a, t0).is_ok());
        let wait = l.charge_at(a, t0).unwrap_err();
        assert!((29.0..=30.0).contains(&wait.as_secs_f64()), "{wait:?}");
        // Another address has its own budget.
        assert!(l.charge_at(b, t0).is_ok());
        // One more after half a minute.
        assert!(l.charge_at(a, t0 + Duration::from_secs(30)).is_ok());
        assert!(l.charge_at(a, t0 + Duration::from_secs(30)).is_err());
    }

    #[test]
    fn zero_is_unlimited_and_full_buckets_are_swept() {
        let l = CreationLimiter::new(0);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        assert!((0..100).all(|_| l.charge(a).is_ok()));
        let l = CreationLimiter::new(1);
        let t0 = Instant::now();
        for i in 0..SWEEP_ABOVE as u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            assert!(l.charge_at(ip, t0).is_ok());
        }
        // Two minutes on, every bucket is full again: a new address sweeps them.
        assert!(l.charge_at(a, t0 + Duration::from_secs(120)).is_ok());
        assert_eq!(l.buckets.lock().unwrap().len(), 1);
    }
}
