//! The single-owner rules of a cluster on PostgreSQL, and the node-local lease clock.
//!
//! **Rules.**
//! 1. *Directory.* `minotaur_sessions` names each live session's `(owner, epoch)`. It moves
//!    only by compare-and-set, and every move increments the epoch: a hand-off
//!    (`owner = me, epoch = e` → `target, e + 1`), a takeover claim (`dead, e` → `me, e + 1`),
//!    a restart's reclaim (`me, e` → `me, e + 1`).
//! 2. *Fenced writes.* Every write of a session's state is `... WHERE owner = me AND epoch =
//!    e` in the writer's transaction, and an ack leaves only after that transaction commits.
//!    So an acknowledged input is in the document of record of the epoch that acked it, and
//!    the next owner (which loads after its compare-and-set committed) starts from it. A
//!    stale owner's write updates nothing and the session stops there (`moved`).
//! 3. *Node lease.* A node serves (applies batches, sends views) only while its lease is
//!    valid on its own monotonic clock: [`LeaseTiming::local_validity`] from when the
//!    renewal that succeeded was *sent*. The database sets `lease_expires = now() + lease`
//!    when it executes that renewal, which is after the send.
//! 4. *Takeover.* Other nodes claim a session only when its owner's `lease_expires` is
//!    more than [`LeaseTiming::takeover_grace`] in the past, in database time (one clock:
//!    the database server's), or the owner stopped.
//!
//! **Timing argument.** Safety of acknowledged inputs needs no clock at all (rule 2). The
//! lease keeps a stale owner from *serving* (views of a state that will be discarded): let
//! the owner send its last successful renewal at real time `s`. The database executes it
//! at `x ≥ s` and records `x + lease`; no claim commits before `x + lease + grace ≥ s +
//! lease + grace`. The owner stops admitting batches at `s + validity·(1 + ρ)` real time,
//! where `ρ` bounds its clock's rate error, and a batch admitted just before may run for
//! `d` more (bounded by the guest call deadline and one write). With `validity = lease ·
//! 7/8` and `grace = lease / 4`, no overlap needs `lease·(7/8)(1 + ρ) + d < lease·(5/4)`,
//! i.e. `d < 0.37·lease` for `ρ = 10⁻³`: 560 ms at the default 1.5 s lease. A paused node
//! (SIGSTOP, a VM migration) wakes with its monotonic clock past the validity, so it holds
//! every batch until a renewal succeeds, and before serving again it re-reads the
//! directory and drops what moved (`minotaur-host`'s lease gate).
//!
//! **Liveness.** A crashed owner's sessions are claimed `lease + grace` after its last
//! renewal plus one sweep interval; a database outage pauses every owner (no renewal, no
//! write) and nothing is claimed until the database is back and the grace has passed
//! again, which gives every node time to renew first.

use std::time::Duration;

use tokio::time::Instant;

/// The lease's derived timings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    /// `lease_expires = now() + lease` at each renewal.
    pub lease: Duration,
}

impl LeaseTiming {
    pub fn new(lease: Duration) -> LeaseTiming {
        LeaseTiming {
            lease: lease.max(Duration::from_millis(200)),
        }
    }

    /// How often a node renews: four chances per lease.
    pub fn renew_every(&self) -> Duration {
        self.lease / 4
    }

    /// How long a node serves after sending a renewal that succeeded (its own clock).
    pub fn local_validity(&self) -> Duration {
        self.lease * 7 / 8
    }

    /// How long past a lease's expiry (database time) others wait before claiming.
    pub fn takeover_grace(&self) -> Duration {
        self.lease / 4
    }

    /// How often live nodes look for orphans.
    pub fn sweep_every(&self) -> Duration {
        (self.lease / 6).max(Duration::from_millis(50))
    }
}

/// A node's own view of its lease, on the monotonic clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct LeaseClock {
    valid_until: Option<Instant>,
}

impl LeaseClock {
    /// A renewal sent at `sent` succeeded.
    pub fn renewed(&mut self, sent: Instant, timing: LeaseTiming) {
        let until = sent + timing.local_validity();
        self.valid_until = Some(self.valid_until.map_or(until, |u| u.max(until)));
    }

    /// The lease is gone (the database said a newer incarnation exists, or we stopped).
    pub fn revoke(&mut self) {
        self.valid_until = None;
    }

    pub fn valid_at(&self, now: Instant) -> bool {
        self.valid_until.is_some_and(|u| now < u)
    }

    pub fn valid_until(&self) -> Option<Instant> {
        self.valid_until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Over a grid of leases, database delays, clock-rate errors and batch lengths: the last
    /// instant the old owner may still be applying a batch comes before the first instant a
    /// claim can commit (all in real time, milliseconds as f64).
    #[test]
    fn the_owner_stops_before_any_claim() {
        for lease_ms in [200u64, 800, 1500, 5000] {
            let t = LeaseTiming::new(Duration::from_millis(lease_ms));
            let max_batch = t.lease.as_secs_f64() * 0.3;
            for rho in [0.0, 1e-4, 1e-3] {
                for db_delay in [0.0, 0.001, 0.5, 3.0] {
                    let s = 10.0;
                    let x = s + db_delay;
                    let claim_from = x + t.lease.as_secs_f64() + t.takeover_grace().as_secs_f64();
                    let owner_stops =
                        s + t.local_validity().as_secs_f64() * (1.0 + rho) + max_batch;
                    assert!(
                        owner_stops < claim_from,
                        "lease {lease_ms} ms, rho {rho}, delay {db_delay}: {owner_stops} >= {claim_from}"
                    );
                }
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_clock_counts_from_the_send() {
        let t = LeaseTiming::new(Duration::from_millis(800));
        let mut c = LeaseClock::default();
        assert!(!c.valid_at(Instant::now()));
        let sent = Instant::now();
        tokio::time::advance(Duration::from_millis(300)).await;
        c.renewed(sent, t);
        assert!(c.valid_at(Instant::now()));
        // 700 ms after the send = 7/8 of 800: no longer valid, whatever the reply time.
        tokio::time::advance(Duration::from_millis(400)).await;
        assert!(!c.valid_at(Instant::now()));
        // An older renewal arriving late never shortens a newer one.
        let newer = Instant::now();
        c.renewed(newer, t);
        c.renewed(sent, t);
        assert_eq!(c.valid_until(), Some(newer + t.local_validity()));
        c.revoke();
        assert!(!c.valid_at(Instant::now()));
    }
}
