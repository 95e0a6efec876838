//! Long guest calls give the CPU back when guest work outnumbers the cores. A call runs at
//! full speed for its first [`GRACE`]; after that, whenever its epoch deadline fires (every
//! tick of the engine's ticker) it checks the guest pool: if more calls are running or
//! waiting than the machine has cores, it sleeps one tick before going on, so looping
//! guests take at most half a core each and the node's other sessions, its network tasks
//! and its store writer keep the rest — on a 2-core machine four looping guests would
//! otherwise take both cores (issue #12: the bystander bench). A long call with the cores
//! to itself (a heavy tick, a memory-hungry restore) is never slowed.
//!
//! Invariants: the call timeout stays **wall time**, sleeps included: a call is
//! interrupted at the first deadline check at or after `call_timeout` since it started
//! (so within one tick after it, as before); a call shorter than [`GRACE`] is never slowed.
//! Sleeping happens on the guest pool's thread that runs the call, never on an async
//! worker.

use std::time::{Duration, Instant};

use wasmtime::UpdateDeadline;

use crate::GuestPool;

/// Full speed for this long at the start of every call.
pub(crate) const GRACE: Duration = Duration::from_millis(10);

/// The throttle of one engine: its call timeout, ticker period, and where to see the
/// demand for guest time.
#[derive(Clone)]
pub(crate) struct Throttle {
    pub(crate) timeout: Duration,
    pub(crate) tick: Duration,
    pub(crate) pool: GuestPool,
    pub(crate) cores: usize,
}

impl Throttle {
    /// The epoch deadline (in ticks) to arm at the start of a call: the grace, or the
    /// timeout if that is shorter. A deadline of n ticks fires after (n-1)..n periods, so
    /// one extra tick makes it a lower bound.
    pub(crate) fn first_deadline(&self) -> u64 {
        let until = GRACE.min(self.timeout);
        until.as_nanos().div_ceil(self.tick.as_nanos()) as u64 + 1
    }

    /// More guest calls running or queued than there are cores.
    fn contended(&self) -> bool {
        self.pool.busy() + self.pool.queued() > self.cores
    }

    /// Called by wasmtime when a call's deadline fires: interrupt it if its time is up,
    /// otherwise — if guest work is contended — sleep a tick (less if the timeout comes
    /// sooner), and let it run one more tick.
    pub(crate) fn on_deadline(&self, started: Instant) -> UpdateDeadline {
        let ran = started.elapsed();
        if ran >= self.timeout {
            return UpdateDeadline::Interrupt;
        }
        if !self.contended() {
            return UpdateDeadline::Continue(1);
        }
        std::thread::sleep(self.tick.min(self.timeout - ran));
        if started.elapsed() >= self.timeout {
            return UpdateDeadline::Interrupt;
        }
        UpdateDeadline::Continue(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(timeout: Duration, tick: Duration) -> Throttle {
        Throttle {
            timeout,
            tick,
            pool: GuestPool::new(1, "throttle-test").unwrap(),
            cores: 2,
        }
    }

    #[test]
    fn the_first_deadline_covers_the_grace_or_the_timeout() {
        let t = throttle(Duration::from_millis(100), Duration::from_millis(5));
        assert_eq!(t.first_deadline(), 3);
        let short = throttle(Duration::from_millis(4), Duration::from_millis(1));
        assert_eq!(short.first_deadline(), 5);
    }

    #[test]
    fn a_call_past_its_timeout_is_interrupted_and_an_uncontended_one_goes_on() {
        let t = throttle(Duration::from_millis(1), Duration::from_secs(60));
        let started = Instant::now() - Duration::from_millis(2);
        assert!(matches!(t.on_deadline(started), UpdateDeadline::Interrupt));
        // Nothing else in the pool: no sleep (a 60 s tick would hang this test).
        let t = throttle(Duration::from_secs(60), Duration::from_secs(60));
        assert!(matches!(
            t.on_deadline(Instant::now()),
            UpdateDeadline::Continue(1)
        ));
    }
}
