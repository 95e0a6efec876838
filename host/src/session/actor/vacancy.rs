//! Whether anyone is in a session, and since when: what the actor's reaper reads. A
//! session is *empty* with no seat taken (never joined, or every player left), and
//! *abandoned* with seats whose players are all disconnected; past
//! [`Reaping`](crate::session::Reaping)'s limit for its state, the actor ends it and
//! removes it from the store, like a game that ended.
//!
//! Invariant: the clock restarts whenever the state changes, so a player who comes back
//! (or leaves, or joins) starts a full new period. The actor's side (`seats_changed`,
//! `reap`) is here too.

use tokio::time::Instant;

use crate::session::Reaping;

/// Who is in the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Occupancy {
    /// No seat is taken.
    Empty,
    /// Seats are taken, none by a connected player.
    Abandoned,
    /// A seated player is connected.
    Playing,
}

impl Occupancy {
    /// From each seat's "has a connection".
    pub(super) fn of(connected: impl IntoIterator<Item = bool>) -> Occupancy {
        let mut seats = false;
        for c in connected {
            if c {
                return Occupancy::Playing;
            }
            seats = true;
        }
        if seats {
            Occupancy::Abandoned
        } else {
            Occupancy::Empty
        }
    }
}

/// The session's occupancy and when it began.
pub(super) struct Vacancy {
    state: Occupancy,
    since: Instant,
}

impl Vacancy {
    pub(super) fn new(state: Occupancy) -> Vacancy {
        Vacancy {
            state,
            since: Instant::now(),
        }
    }

    /// Seats or connections changed.
    pub(super) fn update(&mut self, state: Occupancy) {
        if state != self.state {
            self.state = state;
            self.since = Instant::now();
        }
    }

    /// When the session is to be ended, if it stays as it is.
    pub(super) fn deadline(&self, reaping: &Reaping) -> Option<Instant> {
        let limit = match self.state {
            Occupancy::Empty => reaping.empty,
            Occupancy::Abandoned => reaping.abandoned,
            Occupancy::Playing => None,
        };
        limit.map(|d| self.since + d)
    }

    /// The metric and log label of the current state.
    pub(super) fn reason(&self) -> &'static str {
        match self.state {
            Occupancy::Empty => "empty",
            Occupancy::Abandoned => "abandoned",
            Occupancy::Playing => "playing",
        }
    }

    /// How long the session has been in its state.
    pub(super) fn for_how_long(&self) -> std::time::Duration {
        self.since.elapsed()
    }
}

impl super::Actor {
    /// Seats or their connections changed: the clock runs only while a seat is taken,
    /// and the reaper's clock restarts when who is in the session changes.
    pub(super) fn seats_changed(&mut self) {
        self.ticker.set_running(!self.seats.is_empty());
        self.vacancy
            .update(Occupancy::of(self.seats.values().map(|s| s.conn.is_some())));
    }

    /// Nobody has been in the session for its reaping limit: end it like a finished
    /// game (the loop then removes it from the store, fenced by its epoch in a cluster;
    /// seated players' tokens stop working). Nobody connected is there to be told.
    pub(super) fn reap(&mut self) {
        let reason = self.vacancy.reason();
        tracing::info!(
            session = %self.id, game = %self.game.name, reason,
            idle_secs = self.vacancy.for_how_long().as_secs(), tick = self.ticker.n,
            "idle session ended"
        );
        crate::metrics::session_reaped(reason);
        self.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn occupancy_of_seats() {
        assert_eq!(Occupancy::of([]), Occupancy::Empty);
        assert_eq!(Occupancy::of([false, false]), Occupancy::Abandoned);
        assert_eq!(Occupancy::of([false, true]), Occupancy::Playing);
    }

    #[tokio::test(start_paused = true)]
    async fn deadlines_follow_the_state() {
        let reaping = Reaping {
            empty: Some(Duration::from_secs(10)),
            abandoned: Some(Duration::from_secs(60)),
        };
        let t0 = Instant::now();
        let mut v = Vacancy::new(Occupancy::Empty);
        assert_eq!(v.deadline(&reaping), Some(t0 + Duration::from_secs(10)));
        tokio::time::advance(Duration::from_secs(5)).await;
        v.update(Occupancy::Playing);
        assert_eq!(v.deadline(&reaping), None);
        tokio::time::advance(Duration::from_secs(5)).await;
        v.update(Occupancy::Abandoned);
        assert_eq!(v.deadline(&reaping), Some(t0 + Duration::from_secs(70)));
        // The same state again does not restart the clock.
        tokio::time::advance(Duration::from_secs(5)).await;
        v.update(Occupancy::Abandoned);
        assert_eq!(v.deadline(&reaping), Some(t0 + Duration::from_secs(70)));
        assert_eq!(v.reason(), "abandoned");
        // 0 (`None`) is never.
        assert_eq!(v.deadline(&Reaping::default()), None);
    }
}
