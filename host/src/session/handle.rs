//! The clonable handle to one session actor: a mailbox sender plus a watch of
//! the session's public status. The registry and the websocket tasks call it;
//! each method is one [`Command`] to the actor.

use tokio::sync::{mpsc, oneshot, watch};

use super::{Joined, Outbound, PlayerId, SessionError, SessionStatus, SwapFailure, TokenHash};
use crate::catalog::Game;

/// A message to a session actor.
#[derive(Debug)]
pub enum Command {
    Join {
        name: String,
        conn: Outbound,
        /// Dropped by the actor just before the seat shows in its status.
        hold: SeatHold,
        reply: oneshot::Sender<Result<Joined, SessionError>>,
    },
    Resume {
        token_hash: TokenHash,
        conn: Outbound,
        reply: oneshot::Sender<Result<Joined, SessionError>>,
    },
    /// An input; its `ack` or `error` goes to the player's outbound queue.
    Input {
        player: PlayerId,
        data: Vec<u8>,
        seq: Option<u64>,
    },
    Leave {
        player: PlayerId,
        reply: oneshot::Sender<Result<(), SessionError>>,
    },
    /// The connection `conn_id` of `player` closed; the seat is kept.
    Disconnect { player: PlayerId, conn_id: u64 },
    /// Move to `game`'s module at the next event boundary (hot-swap); the
    /// reply carries the new rules version once it is durable.
    Migrate {
        game: Game,
        reply: oneshot::Sender<Result<u32, SwapFailure>>,
    },
    /// A publish's dry run: the guest's current state and the rules version
    /// that wrote it, taken at the next event boundary (the session goes on).
    Snapshot {
        reply: oneshot::Sender<Result<(Vec<u8>, u32), SwapFailure>>,
    },
    /// Drain: finish the current batch durably, answer `frozen`, then wait for `outcome`
    /// without taking more work: `Some(url)` = the session moved there (tell the players,
    /// stop, drop it from this node's store), `None` = go on here.
    HandOff {
        frozen: oneshot::Sender<()>,
        outcome: oneshot::Receiver<Option<String>>,
    },
    /// Answer once everything applied so far is durable (a new session: once it is in the
    /// store, or in a cluster in the directory, so any node can route to it).
    Persisted {
        reply: oneshot::Sender<Result<(), SessionError>>,
    },
    /// Stop: the node is shutting down.
    Shutdown,
}

/// A seat counted elsewhere (the registry's quick-match reservations) until the
/// session counts it itself. The actor drops it in the same step as it takes the
/// seat, just before it publishes the seat in [`SessionHandle::status`]; a join
/// that fails drops it with the command. So a seat is never counted both as
/// reserved and as taken while the join waits for its durable write.
pub struct SeatHold(Option<Box<dyn Send>>);

impl SeatHold {
    /// Nothing held: a plain join.
    pub fn none() -> SeatHold {
        SeatHold(None)
    }

    /// Hold `guard` (its `Drop` releases the count) until the seat is taken.
    pub fn new(guard: impl Send + 'static) -> SeatHold {
        SeatHold(Some(Box::new(guard)))
    }
}

impl std::fmt::Debug for SeatHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "SeatHold(held)"
        } else {
            "SeatHold(none)"
        })
    }
}

/// Talks to one session actor. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SessionHandle {
    id: String,
    game: String,
    tx: mpsc::Sender<Command>,
    status: watch::Receiver<SessionStatus>,
}

impl SessionHandle {
    pub(super) fn new(
        id: String,
        game: String,
        tx: mpsc::Sender<Command>,
        status: watch::Receiver<SessionStatus>,
    ) -> Self {
        SessionHandle {
            id,
            game,
            tx,
            status,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The catalog name of the session's game.
    pub fn game(&self) -> &str {
        &self.game
    }

    /// Seats and openness as last published by the actor.
    pub fn status(&self) -> SessionStatus {
        *self.status.borrow()
    }

    /// Take a seat; `hold` is released once the seat counts in the status.
    pub async fn join(
        &self,
        name: String,
        conn: Outbound,
        hold: SeatHold,
    ) -> Result<Joined, SessionError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Join {
            name,
            conn,
            hold,
            reply,
        })
        .await?;
        rx.await.map_err(|_| SessionError::Ended)?
    }

    pub async fn resume(
        &self,
        token_hash: TokenHash,
        conn: Outbound,
    ) -> Result<Joined, SessionError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Resume {
            token_hash,
            conn,
            reply,
        })
        .await?;
        rx.await.map_err(|_| SessionError::Ended)?
    }

    /// Queue an input. Waits only if the mailbox is full, which pushes back on
    /// the sending connection rather than growing memory.
    pub async fn input(
        &self,
        player: PlayerId,
        data: Vec<u8>,
        seq: Option<u64>,
    ) -> Result<(), SessionError> {
        self.send(Command::Input { player, data, seq }).await
    }

    pub async fn leave(&self, player: PlayerId) -> Result<(), SessionError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Leave { player, reply }).await?;
        rx.await.map_err(|_| SessionError::Ended)?
    }

    /// Waits until the session is durable (see [`Command::Persisted`]).
    pub async fn persisted(&self) -> Result<(), SessionError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Persisted { reply }).await?;
        rx.await.map_err(|_| SessionError::Ended)?
    }

    /// Best effort: a session that is gone has nothing to mark.
    pub async fn disconnect(&self, player: PlayerId, conn_id: u64) {
        let _ = self.send(Command::Disconnect { player, conn_id }).await;
    }

    /// Hot-swap the session to `game`'s module; on failure it stays on its rules.
    pub async fn migrate(&self, game: Game) -> Result<u32, SwapFailure> {
        let (reply, rx) = oneshot::channel();
        if self.send(Command::Migrate { game, reply }).await.is_err() {
            return Err(self.gone());
        }
        rx.await.map_err(|_| self.gone())?
    }

    /// The session's current guest state and its rules version, for a dry
    /// run of new rules (`admin::trial`); the session itself is untouched.
    pub async fn snapshot(&self) -> Result<(Vec<u8>, u32), SwapFailure> {
        let (reply, rx) = oneshot::channel();
        if self.send(Command::Snapshot { reply }).await.is_err() {
            return Err(self.gone());
        }
        rx.await.map_err(|_| self.gone())?
    }

    fn gone(&self) -> SwapFailure {
        SwapFailure {
            session: self.id.clone(),
            code: "session_ended".into(),
            message: "the session is over".into(),
            panic: None,
        }
    }

    /// Pause the session after its current batch is durable (see [`Command::HandOff`]);
    /// the returned sender decides its fate.
    pub async fn freeze(&self) -> Result<oneshot::Sender<Option<String>>, SessionError> {
        let (frozen, frozen_rx) = oneshot::channel();
        let (decide, outcome) = oneshot::channel();
        self.send(Command::HandOff { frozen, outcome }).await?;
        frozen_rx.await.map_err(|_| SessionError::Ended)?;
        Ok(decide)
    }

    pub async fn shutdown(&self) {
        let _ = self.send(Command::Shutdown).await;
    }

    async fn send(&self, cmd: Command) -> Result<(), SessionError> {
        self.tx.send(cmd).await.map_err(|_| SessionError::Ended)
    }
}
