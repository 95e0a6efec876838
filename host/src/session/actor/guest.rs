//! The session actor's guest side, and the only place it calls its guest: one
//! batch's guest work (the commands, then the snapshot that becomes the
//! rollback point) runs as ONE job on the runtime's guest pool — the actor and
//! its mailbox move into the job and come back — so a guest spinning until its
//! deadline holds a pool thread, never an async worker serving other sessions'
//! sockets. Also here: starting and restoring a session's guest (on the pool
//! too), and recovery from a failed call (roll back to the last good snapshot,
//! replay, or end the session).
//!
//! Invariants: the actor awaits each job before the next, so a session's
//! events stay in order; nothing here awaits persistence (the caller does, on
//! the async side, after the job).

use minotaur_abi::{Effect, Event, Init, Output, Restore};
use minotaur_runtime::{GameModule, GuestError, GuestInstance, PoolError};
use tokio::sync::mpsc;

use super::{Actor, Deferred, Work, MAX_BATCH, MAX_FAILURES_IN_ROW};
use crate::{
    protocol::{ErrorCode, ServerMsg},
    session::{handle::Command, PlayerId, SessionError},
};

/// What a batch's pool job hands back to the actor loop.
pub(super) struct Batch {
    pub(super) actor: Actor,
    pub(super) rx: mpsc::Receiver<Command>,
    /// The batch asked the session to stop.
    pub(super) stop: bool,
}

/// Apply `first` and what else is queued (at most [`MAX_BATCH`]) on the guest
/// pool, then take the snapshot. `Err` only if the job panicked (the actor is
/// lost with it).
pub(super) async fn batch_on_pool(
    actor: Actor,
    first: Work,
    rx: mpsc::Receiver<Command>,
) -> Result<Batch, PoolError> {
    let pool = actor.game.module.pool().clone();
    let runtime = tokio::runtime::Handle::current();
    pool.run(move || {
        // A `SetTickRate` effect starts a timer, which belongs to the node's runtime.
        let _runtime = runtime.enter();
        let (mut actor, mut rx) = (actor, rx);
        let stop = actor.apply_batch(first, &mut rx);
        Batch { actor, rx, stop }
    })
    .await
}

/// A new session's guest, on the pool: instantiate, `init`, the first snapshot.
pub(super) async fn start_guest(
    module: &GameModule,
    init: Init,
) -> Result<(GuestInstance, Output, Vec<u8>), SessionError> {
    let module = module.clone();
    let job = module.pool().clone().run(move || {
        let mut instance = module.instantiate().map_err(|e| match e {
            GuestError::Instantiate(_) => SessionError::Overloaded,
            e => SessionError::Failed(e.code().to_owned()),
        })?;
        let fail = |e: GuestError| {
            if let Some(panic) = e.panic_message() {
                tracing::warn!(
                    session = %init.session, game = %module.info().name,
                    rules_version = module.info().rules_version, panic,
                    "guest panicked starting a session"
                );
            }
            SessionError::Failed(e.code().to_owned())
        };
        let out = instance.init(&init).map_err(fail)?;
        if let Some(reason) = out.reject {
            return Err(SessionError::Rejected(reason));
        }
        let last_good = instance.snapshot().map_err(fail)?;
        Ok((instance, out, last_good))
    });
    job.await.map_err(pool_failed)?
}

/// A stored session's guest, on the pool: instantiate, restore `base` (written
/// by rules `from_version`), replay `events` (acknowledged after `base`). Gives
/// the instance, every effect (the views a resuming player gets) and the last
/// good state: `base`, or after a replay the guest's own snapshot.
pub(super) async fn restore_guest(
    module: &GameModule,
    base: Vec<u8>,
    from_version: u32,
    events: Vec<Event>,
) -> Result<(GuestInstance, Vec<Effect>, Vec<u8>), SessionError> {
    let module = module.clone();
    let job = module.pool().clone().run(move || {
        let fail = |e: GuestError| SessionError::Failed(e.code().to_owned());
        let mut instance = module.instantiate().map_err(fail)?;
        let out = instance
            .restore(&Restore {
                state: base.clone(),
                from_version,
            })
            .map_err(fail)?;
        if let Some(reason) = out.reject {
            return Err(SessionError::Rejected(reason));
        }
        let mut effects = out.effects;
        // The guest is deterministic, so the acknowledged events rebuild the
        // acknowledged state. Their effects were delivered the first time; only
        // the last views matter now (for players who resume).
        for event in &events {
            let out = instance.event(event).map_err(|e| {
                SessionError::Internal(format!("replaying the journal: {}: {e}", e.code()))
            })?;
            effects.extend(out.effects);
        }
        let state = if events.is_empty() {
            base
        } else {
            instance.snapshot().map_err(fail)?
        };
        Ok((instance, effects, state))
    });
    job.await.map_err(pool_failed)?
}

fn pool_failed(e: PoolError) -> SessionError {
    SessionError::Internal(format!("starting the guest: {e}"))
}

impl Actor {
    /// The synchronous part of a batch (runs in the pool job): apply `first`
    /// and what else is queued, then take the snapshot. `true` asks the loop
    /// to stop.
    fn apply_batch(&mut self, first: Work, rx: &mut mpsc::Receiver<Command>) -> bool {
        let mut stop = self.apply(first);
        let mut n = 1;
        while n < MAX_BATCH && !stop && !self.ended {
            let Ok(cmd) = rx.try_recv() else { break };
            stop |= self.apply(Work::Cmd(cmd));
            n += 1;
        }
        self.take_snapshot();
        stop
    }

    /// After a batch that changed the guest state: its snapshot becomes the
    /// last good state (the rollback point) and the batch's events join those
    /// the store does not have yet.
    fn take_snapshot(&mut self) {
        if self.dirty && !self.ended {
            match self.instance.snapshot() {
                Ok(state) if state.len() > self.persist.max_snapshot_bytes => {
                    self.snapshot_too_large(state.len());
                }
                Ok(state) => {
                    self.last_good = state;
                    self.unjournaled.append(&mut self.replay);
                    self.state_dirty = true;
                }
                Err(e) => {
                    // The snapshot call itself failed: roll back to the previous
                    // good state plus this batch's events and keep acks pending
                    // for the next good snapshot.
                    self.recover(&e, None, None);
                }
            }
        }
        self.dirty = false;
    }

    /// Call the guest with `event` and deliver its effects. On failure: roll
    /// back, tell `offender` (everyone if `None`), and return `None`.
    pub(super) fn guest_event(
        &mut self,
        event: Event,
        offender: Option<PlayerId>,
        seq: Option<u64>,
    ) -> Option<Output> {
        match self.guest_call(&event) {
            Ok(mut out) => {
                let effects = std::mem::take(&mut out.effects);
                self.deliver(effects);
                Some(out)
            }
            Err(e) => {
                self.recover(&e, offender, seq);
                None
            }
        }
    }

    /// The only place events enter the guest; keeps the replay log.
    pub(super) fn guest_call(&mut self, event: &Event) -> Result<Output, GuestError> {
        let started = std::time::Instant::now();
        let out = self.instance.event(event);
        crate::metrics::guest_event(&self.game.name, started.elapsed());
        let out = out?;
        self.failures_in_row = 0;
        if out.reject.is_none() {
            self.replay.push(event.clone());
            self.dirty = true;
        }
        Ok(out)
    }

    /// After a guest failure: the instance is poisoned. Rebuild it from the
    /// last good snapshot plus the replay log, or end the session.
    pub(super) fn recover(&mut self, e: &GuestError, offender: Option<PlayerId>, seq: Option<u64>) {
        let panic = e.panic_message().map(str::to_owned);
        self.recover_with(e.code(), e.to_string(), panic, offender, seq);
    }

    /// [`Actor::recover`] for a failure the host found (`code`, `error`), with
    /// the guest's panic message if it gave one: logged with the session, game
    /// and rules version, and put in the failing player's `session_failed`
    /// (the detail an operator asks a player for).
    pub(super) fn recover_with(
        &mut self,
        code: &'static str,
        error: String,
        panic: Option<String>,
        offender: Option<PlayerId>,
        seq: Option<u64>,
    ) {
        self.failures_in_row += 1;
        crate::metrics::trap(code);
        tracing::warn!(
            session = %self.id, game = %self.game.name, rules_version = self.rules_version,
            code, panic = panic.as_deref(), %error,
            in_a_row = self.failures_in_row, "guest failed"
        );
        let outcome = if self.failures_in_row >= MAX_FAILURES_IN_ROW {
            Err(format!("{MAX_FAILURES_IN_ROW} failures in a row"))
        } else {
            self.rebuild()
        };
        let what = match &panic {
            Some(p) => format!("{code}: the guest panicked: {p}"),
            None => code.to_owned(),
        };
        match outcome {
            Ok(()) => {
                let msg = ServerMsg::error(
                    ErrorCode::SessionFailed,
                    format!("the game module failed ({what}); the session rolled back"),
                    seq,
                );
                match offender {
                    Some(p) => self.send_to(p, msg),
                    None => self.broadcast(msg),
                }
            }
            Err(why) => self.fail_session(code, &what, &why, offender, seq),
        }
    }

    fn rebuild(&mut self) -> Result<(), String> {
        let mut fresh = self
            .game
            .module
            .instantiate()
            .map_err(|e| format!("re-instantiate: {e}"))?;
        let out = fresh
            .restore(&Restore {
                state: self.last_good.clone(),
                from_version: self.rules_version,
            })
            .map_err(|e| format!("restore: {e}"))?;
        if let Some(reason) = out.reject {
            return Err(format!("restore rejected: {reason}"));
        }
        for event in &self.replay {
            // Effects of replayed events were delivered the first time.
            fresh.event(event).map_err(|e| format!("replay: {e}"))?;
        }
        self.instance = fresh;
        Ok(())
    }

    /// `what` is the code with the guest's panic message, if any.
    fn fail_session(
        &mut self,
        code: &str,
        what: &str,
        why: &str,
        offender: Option<PlayerId>,
        seq: Option<u64>,
    ) {
        tracing::error!(session = %self.id, game = %self.game.name, code, why, "session failed; ending it");
        let message = format!("the game module failed ({what}) and the session ended: {why}");
        for (&player, seat) in &self.seats {
            if let Some(conn) = &seat.conn {
                let seq = if Some(player) == offender { seq } else { None };
                conn.send(ServerMsg::error(
                    ErrorCode::SessionFailed,
                    message.clone(),
                    seq,
                ));
            }
        }
        // Nothing of the failed batch is acknowledged.
        self.pending.retain(|d| !matches!(d, Deferred::Ack { .. }));
        self.dirty = false;
        self.end();
    }

    pub(super) fn end(&mut self) {
        self.ended = true;
        self.publish_status();
    }
}
