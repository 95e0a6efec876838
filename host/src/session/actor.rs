//! The session actor: one tokio task that owns a session's guest instance,
//! seats, last views and tick clock, and applies commands in order, in
//! batches. Spawned by the registry; driven through [`SessionHandle`].
//!
//! A batch is one awaited command (or tick) plus what else is already queued
//! (at most [`MAX_BATCH`]), applied — with the guest snapshot that ends it
//! (the rollback point) — as one job on the runtime's guest pool
//! ([`guest`]): the loop below, its waits and the persistence that follows run
//! on the async side, every guest call runs on the pool. A batch that holds a reply waiting on
//! durability (a join, a leave, a swap, a hand-off) or that stops the session
//! is persisted at once: the snapshot is reconciled with meta and seats into
//! the session's `SessionDoc`, the store writer makes the change durable, and
//! only then are replies released. A batch whose only replies are input acks
//! appends the batch's guest events to the store's journal (a few dozen
//! bytes per input) and acks once that is durable; tick-only progress goes
//! to the journal at most every
//! `Persist::persist_interval`. The Automerge reconcile, the costly part,
//! runs at most every `Persist::doc_interval` for such batches (by the next
//! batch that is due, or by a timer when no batch comes), so nothing
//! acknowledged can be lost and a busy session pays for Automerge a few times
//! a second, not per batch. Persistence and rules hot-swap live in
//! [`durable`], effects in [`effects`], the clock in [`ticker`].
//!
//! The clock ([`ticker`]) runs only while a seat is taken; a session that stays
//! empty, or whose seated players all stay disconnected, past `Persist::reaping`
//! ([`vacancy`]) is ended and removed from the store like a finished game.

mod durable;
mod effects;
mod guest;
mod ownership;
mod swap;
mod ticker;
mod vacancy;

use std::collections::BTreeMap;

use minotaur_abi::{Event, Init};
use minotaur_runtime::GuestInstance;
use minotaur_state::SessionDoc;
use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
    time::Instant,
};

use ticker::Ticker;
use vacancy::{Occupancy, Vacancy};

use super::{
    handle::{Command, SeatHold, SessionHandle},
    hash_token, new_token, Joined, Outbound, Persist, PlayerId, SessionError, SessionStatus,
    SwapFailure, TokenHash,
};

use crate::{
    catalog::Game,
    protocol::{ErrorCode, GameValue, ServerMsg},
};
pub use durable::{resume_stored, stored_state};

/// Most commands applied before the batch is committed and acknowledged.
pub const MAX_BATCH: usize = 64;
/// Commands queued for one session before senders wait.
pub const MAILBOX: usize = 1024;
/// Guest failures in a row after which the session ends instead of rolling back.
pub const MAX_FAILURES_IN_ROW: u32 = 3;

/// Start a session of `game`: instantiate, `init`, take the first snapshot
/// (on the guest pool), spawn the actor. Fails without spawning if the guest
/// cannot start.
pub async fn spawn(
    id: String,
    game: Game,
    config: Vec<u8>,
    persist: Persist,
) -> Result<(SessionHandle, JoinHandle<()>), SessionError> {
    let seed = rand::random();
    let init = Init {
        session: id.clone(),
        seed,
        config,
    };
    let (instance, out, last_good) = guest::start_guest(&game.module, init).await?;
    let info = game.module.info().clone();
    let (status_tx, status_rx) = watch::channel(SessionStatus {
        players: 0,
        max_players: info.max_players,
        ended: false,
        rules_version: info.rules_version,
        tick: 0,
        epoch: durable::PLACEHOLDER_EPOCH,
    });
    let (tx, rx) = mpsc::channel(MAILBOX);
    let doc = SessionDoc::new(&durable::new_meta(&id, &game, &persist, seed));
    let mut actor = Actor {
        id: id.clone(),
        epoch: durable::PLACEHOLDER_EPOCH,
        rules_version: info.rules_version,
        max_players: info.max_players,
        game: game.clone(),
        instance,
        seats: BTreeMap::new(),
        next_player: 1,
        last_good,
        replay: Vec::new(),
        unjournaled: Vec::new(),
        dirty: false,
        failures_in_row: 0,
        // No seat yet: the clock waits for the first player.
        ticker: Ticker::new(info.tick_hz, 0, false),
        vacancy: Vacancy::new(Occupancy::Empty),
        ended: false,
        moved_to: None,
        owned_elsewhere: false,
        registered: false,
        pending: Vec::new(),
        status: status_tx,
        doc,
        persist,
        saved_base: false,
        // The first batch writes the session's base save.
        state_dirty: true,
        seats_dirty: false,
        removed_seats: Vec::new(),
        last_persist: Instant::now(),
        last_journal: Instant::now(),
        journaled: false,
        persist_due: None,
    };
    actor.deliver(out.effects);
    let handle = SessionHandle::new(id, game.name.clone(), tx, status_rx);
    let task = tokio::spawn(actor.run(rx));
    Ok((handle, task))
}

/// One player's place in the session.
struct Seat {
    name: String,
    token_hash: TokenHash,
    /// The connection currently holding the seat; `None` while disconnected.
    conn: Option<Outbound>,
    /// The latest view, so a resumed player gets it at once.
    last_view: Option<GameValue>,
}

/// Replies held back until the batch is committed.
enum Deferred {
    Ack {
        player: PlayerId,
        seq: Option<u64>,
    },
    Joined {
        reply: oneshot::Sender<Result<Joined, SessionError>>,
        joined: Joined,
    },
    Left {
        reply: oneshot::Sender<Result<(), SessionError>>,
    },
    Migrated {
        reply: oneshot::Sender<Result<u32, SwapFailure>>,
        rules_version: u32,
    },
    /// A drain's hand-off request, answered once the batch is durable.
    HandOff {
        frozen: oneshot::Sender<()>,
        outcome: oneshot::Receiver<Option<String>>,
    },
}

/// One unit of work in a batch.
enum Work {
    Cmd(Command),
    Tick,
    /// Deferred progress is due to be persisted (no guest event).
    Flush,
    /// Nobody has been in the session for too long: end it.
    Reap,
}

struct Actor {
    id: String,
    /// The ownership epoch this node holds the session at (fixed for the actor's life:
    /// a handoff or takeover starts a new actor elsewhere).
    epoch: u64,
    game: Game,
    rules_version: u32,
    max_players: u32,
    instance: GuestInstance,
    seats: BTreeMap<PlayerId, Seat>,
    next_player: PlayerId,
    /// Guest state after the last committed batch: where a failure rolls back to.
    last_good: Vec<u8>,
    /// Events applied since `last_good`, replayed after a rollback so the
    /// good events of a batch survive a later failure in the same batch
    /// (guests are deterministic: no clock, no randomness but the seed).
    replay: Vec<Event>,
    /// Events in `last_good` that neither the document nor the journal holds yet, in
    /// order: the next journal record.
    unjournaled: Vec<Event>,
    /// Some guest state changed in this batch.
    dirty: bool,
    failures_in_row: u32,
    ticker: Ticker,
    /// Who is in the session and since when (the reaper's clock).
    vacancy: Vacancy,
    ended: bool,
    /// Where the session went, once handed over or taken over elsewhere: inputs still
    /// queued here are answered with `moved` to it, not `session_ended`.
    moved_to: Option<String>,
    /// Another node owns the session now (handed over or fenced): stopping here must not
    /// delete it from the store.
    owned_elsewhere: bool,
    /// The store holds the session (in a cluster: the directory names it): a new
    /// session's first write is a `SessionWrite::Create`, which enters it in the same
    /// group commit.
    registered: bool,
    pending: Vec<Deferred>,
    status: watch::Sender<SessionStatus>,
    /// The session document: meta, seats and the last good state.
    doc: SessionDoc,
    persist: Persist,
    /// The store holds a base save of `doc` (later saves may be incremental).
    saved_base: bool,
    /// `last_good` (or meta) changed since the last commit.
    state_dirty: bool,
    /// Seats changed since the last commit.
    seats_dirty: bool,
    removed_seats: Vec<PlayerId>,
    /// When the progress not yet persisted (`state_dirty`/`seats_dirty`
    /// left by batches with nothing to acknowledge) must be written;
    /// `None` when everything is persisted.
    persist_due: Option<Instant>,
    /// When the document was last handed to the store writer.
    last_persist: Instant,
    /// When a journal record was last handed to the store writer.
    last_journal: Instant,
    /// The store's journal holds a state the document does not have yet: the document
    /// is due within `doc_interval` of its last write.
    journaled: bool,
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        tracing::info!(session = %self.id, game = %self.game.name, "session started");
        crate::metrics::session_started(&self.game.name);
        let mut stop = false;
        // An idle session learns that it was taken over (the node was paused, say) from
        // the gate, not only at its next batch: it must not stay listed here.
        let mut gate = self.persist.gate.as_ref().map(|g| g.subscribe());
        while !stop && !self.ended {
            let due = self.persist_due;
            let reap_at = self.vacancy.deadline(&self.persist.reaping);
            let first = tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(cmd) => Work::Cmd(cmd),
                    None => break,
                },
                () = self.ticker.wait() => Work::Tick,
                () = sleep_until_due(due), if due.is_some() => Work::Flush,
                () = sleep_until_due(reap_at), if reap_at.is_some() => Work::Reap,
                () = ownership::gate_changed(&mut gate) => {
                    if self.lost_now().await {
                        break;
                    }
                    continue;
                }
            };
            if !self.admitted().await {
                break;
            }
            let id = self.id.clone();
            match guest::batch_on_pool(self, first, rx).await {
                Ok(batch) => {
                    self = batch.actor;
                    rx = batch.rx;
                    stop |= batch.stop;
                }
                Err(e) => {
                    // A host bug, not a guest failure (those are errors, not panics).
                    tracing::error!(session = %id, error = %e, "session batch panicked; session lost");
                    return;
                }
            }
            // A stopping session persists whatever progress is pending.
            self.after_batch(stop).await;
        }
        self.status.send_modify(|s| s.ended = true);
        if self.owned_elsewhere {
            // Nothing to write: the new owner has the session of record.
        } else if self.ended {
            self.forget().await;
        } else if let Err(e) = self.commit().await {
            // Every handle is gone without a `Shutdown`: last chance to persist.
            tracing::error!(session = %self.id, error = %e, "final progress not persisted");
        }
        // Refuse what is still queued, so no input goes unanswered; new sends
        // fail at once and the gateway answers `session_ended` itself.
        rx.close();
        while let Some(cmd) = rx.recv().await {
            if let Command::Input { player, seq, .. } = cmd {
                let msg = match &self.moved_to {
                    Some(url) => ServerMsg::Moved {
                        session: self.id.clone(),
                        url: url.clone(),
                    },
                    None => ServerMsg::error(ErrorCode::SessionEnded, "the session is over", seq),
                };
                self.send_to(player, msg);
            }
            // Other commands' reply senders drop here: their callers get `Ended`.
        }
        tracing::info!(session = %self.id, ended = self.ended, "session stopped");
    }

    /// Apply one unit of work; `true` asks the loop to stop.
    fn apply(&mut self, work: Work) -> bool {
        match work {
            Work::Tick => {
                let (n, dt_ms) = self.ticker.advance();
                self.guest_event(Event::Tick { n, dt_ms }, None, None);
            }
            Work::Flush => {}
            Work::Reap => self.reap(),
            Work::Cmd(Command::Join {
                name,
                conn,
                hold,
                reply,
            }) => self.join(name, conn, hold, reply),
            Work::Cmd(Command::Resume {
                token_hash,
                conn,
                reply,
            }) => {
                let _ = reply.send(self.resume(token_hash, conn));
            }
            Work::Cmd(Command::Input { player, data, seq }) => {
                if !self.seats.contains_key(&player) {
                    tracing::debug!(session = %self.id, player, "input from a player without a seat");
                    return false;
                }
                if let Some(out) =
                    self.guest_event(Event::Input { player, data }, Some(player), seq)
                {
                    match out.reject {
                        Some(reason) => {
                            self.send_to(player, ServerMsg::error(ErrorCode::Rejected, reason, seq))
                        }
                        None => self.pending.push(Deferred::Ack { player, seq }),
                    }
                }
            }
            Work::Cmd(Command::Leave { player, reply }) => self.leave(player, reply),
            Work::Cmd(Command::Disconnect { player, conn_id }) => {
                if let Some(seat) = self.seats.get_mut(&player) {
                    if seat.conn.as_ref().is_some_and(|c| c.conn_id == conn_id) {
                        seat.conn = None;
                        self.seats_dirty = true;
                    }
                }
                self.seats_changed();
            }
            Work::Cmd(Command::Migrate { game, reply }) => self.migrate(game, reply),
            Work::Cmd(Command::Snapshot { reply }) => self.share_snapshot(reply),
            Work::Cmd(Command::HandOff { frozen, outcome }) => {
                self.pending.push(Deferred::HandOff { frozen, outcome })
            }
            Work::Cmd(Command::Persisted { reply }) => {
                // Answered after this batch's commit, like a leave.
                self.pending.push(Deferred::Left { reply });
            }
            Work::Cmd(Command::Shutdown) => return true,
        }
        false
    }

    fn join(
        &mut self,
        name: String,
        conn: Outbound,
        hold: SeatHold,
        reply: oneshot::Sender<Result<Joined, SessionError>>,
    ) {
        if self.seats.len() >= self.max_players as usize {
            let _ = reply.send(Err(SessionError::Full));
            return;
        }
        let player = self.next_player;
        let event = Event::Join {
            player,
            name: name.clone(),
        };
        // The seat exists before the effects are delivered so the join's own
        // view reaches the new player.
        let token = new_token(&self.id);
        let token_hash = hash_token(&token);
        self.seats.insert(
            player,
            Seat {
                name,
                token_hash,
                conn: Some(conn),
                last_view: None,
            },
        );
        match self.guest_call(&event) {
            Ok(out) if out.reject.is_some() => {
                self.seats.remove(&player);
                let reason = out.reject.unwrap_or_default();
                let _ = reply.send(Err(SessionError::Rejected(reason)));
            }
            Ok(out) => {
                self.next_player += 1;
                self.seats_dirty = true;
                // The seat counts as taken from now on: release its reservation
                // first, so no one sees it both reserved and taken (and starts a
                // session for lack of a seat). Seeing it neither costs a retry.
                drop(hold);
                self.publish_status();
                self.seats_changed();
                self.deliver(out.effects);
                let joined = Joined {
                    session: self.id.clone(),
                    game: self.game.name.clone(),
                    player,
                    token: Some(token),
                    token_hash,
                    rules_version: self.rules_version,
                    resumed: false,
                };
                self.pending.push(Deferred::Joined { reply, joined });
            }
            Err(e) => {
                self.seats.remove(&player);
                let _ = reply.send(Err(SessionError::Failed(e.code().to_owned())));
                // The would-be player has no seat, so the rollback notice goes nowhere.
                self.recover(&e, Some(player), None);
            }
        }
    }

    fn resume(&mut self, token_hash: TokenHash, conn: Outbound) -> Result<Joined, SessionError> {
        let (&player, seat) = self
            .seats
            .iter_mut()
            .find(|(_, s)| s.token_hash == token_hash)
            .ok_or(SessionError::BadToken)?;
        // The seat moves to the new connection; an old one still holding it
        // is told it lost the seat.
        self.seats_dirty = true;
        if let Some(old) = seat.conn.replace(conn.clone()) {
            if old.conn_id != conn.conn_id {
                old.send(ServerMsg::Left);
            }
        }
        if let Some(view) = &seat.last_view {
            conn.send(ServerMsg::View { data: view.clone() });
        }
        tracing::debug!(session = %self.id, player, name = %seat.name, "seat resumed");
        self.seats_changed();
        Ok(Joined {
            session: self.id.clone(),
            game: self.game.name.clone(),
            player,
            token: None,
            token_hash,
            rules_version: self.rules_version,
            resumed: true,
        })
    }

    fn leave(&mut self, player: PlayerId, reply: oneshot::Sender<Result<(), SessionError>>) {
        if !self.seats.contains_key(&player) {
            let _ = reply.send(Err(SessionError::Internal("no such seat".into())));
            return;
        }
        // A guest cannot refuse a leave; if it fails, the seat is given up anyway.
        self.guest_event(Event::Leave { player }, Some(player), None);
        self.seats.remove(&player);
        self.seats_dirty = true;
        self.removed_seats.push(player);
        self.publish_status();
        self.seats_changed();
        self.pending.push(Deferred::Left { reply });
    }

    /// The step after every batch (whose job took the guest snapshot, the new
    /// last good state): if the batch holds a reply waiting on durability, if
    /// `stop`, or if deferred progress is due, commit it with meta and seats to
    /// the session document and wait until the store has it, and only then
    /// release acks and join/leave replies — so nothing acknowledged can be
    /// lost. Any other batch writes per [`Actor::plan_write`]: the raw
    /// events since the last write to the store's journal (acks; tick-only progress every
    /// `persist_interval`) or the document (every `doc_interval`).
    async fn after_batch(&mut self, stop: bool) {
        // Replies that only need the state durable (acks) can go out after a journal
        // write; joins, leaves, swaps and hand-offs change more than the state and wait
        // for the document.
        let acks_only = !self.pending.is_empty()
            && self
                .pending
                .iter()
                .all(|d| matches!(d, Deferred::Ack { .. }));
        let durable = if stop || (!self.pending.is_empty() && !acks_only) {
            self.commit().await
        } else {
            match self.plan_write(acks_only) {
                durable::Planned::Document => self.commit().await,
                durable::Planned::Journal => self.journal().await,
                durable::Planned::Nothing => Ok(()),
            }
        };
        if matches!(durable, Err(super::persist::PersistError::Fenced)) {
            // Taken over while this batch ran: nothing of it is acknowledged here.
            let url = match self.persist.gate.clone() {
                Some(gate) => gate.locate(&self.id).await,
                None => None,
            };
            self.fenced(url).await;
            return;
        }
        let hand_off = self
            .pending
            .iter()
            .position(|d| matches!(d, Deferred::HandOff { .. }))
            .map(|i| self.pending.remove(i));
        for d in self.pending.drain(..) {
            match d {
                Deferred::Ack { player, seq } => {
                    if let Some(conn) = self.seats.get(&player).and_then(|s| s.conn.as_ref()) {
                        let msg = match &durable {
                            Ok(()) => ServerMsg::Ack { seq },
                            Err(e) => ServerMsg::error(ErrorCode::Internal, e.to_string(), seq),
                        };
                        conn.send(msg);
                    }
                }
                Deferred::Joined { reply, joined } => {
                    let _ = reply.send(Ok(joined));
                }
                Deferred::Left { reply } => {
                    let _ = reply.send(Ok(()));
                }
                Deferred::Migrated {
                    reply,
                    rules_version,
                } => {
                    let _ = reply.send(Ok(rules_version));
                }
                Deferred::HandOff { .. } => {}
            }
        }
        if let Some(Deferred::HandOff { frozen, outcome }) = hand_off {
            self.hand_off(frozen, outcome).await;
        }
    }

    /// The session is paused with everything acknowledged durable (and so in the
    /// database of record); the drain moves it to another node, then decides.
    async fn hand_off(
        &mut self,
        frozen: oneshot::Sender<()>,
        outcome: oneshot::Receiver<Option<String>>,
    ) {
        let _ = frozen.send(());
        if let Ok(Some(url)) = outcome.await {
            self.moved_to = Some(url.clone());
            let msg = ServerMsg::Moved {
                session: self.id.clone(),
                url,
            };
            for conn in self.seats.values().filter_map(|s| s.conn.as_ref()) {
                conn.send(msg.clone());
            }
            tracing::info!(session = %self.id, epoch = self.epoch, "session handed over; stopping here");
            // Stops the loop; the new owner has the session of record.
            self.owned_elsewhere = true;
            self.ended = true;
        }
    }
}

/// Waits until `due` (never, for `None`; the loop only polls it when `Some`).
async fn sleep_until_due(due: Option<Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
