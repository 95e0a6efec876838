//! The session actor's durable side: committing each batch to the
//! `SessionDoc` and the store writer, and rebuilding an actor from a stored
//! document after a restart. Called by the actor loop (`after_batch`) and by
//! `session::recovery` and cluster activation; the guest work of a resume runs
//! on the guest pool (`guest.rs`). Swapping rules is `swap.rs`.

use std::collections::BTreeMap;

use minotaur_state::{Journal, JournalRecord, SeatRecord, SessionDoc, SessionMeta, SessionWrite};
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};

use super::{Actor, Deferred, Occupancy, Seat, Ticker, Vacancy, MAILBOX};
use crate::{
    catalog::Game,
    protocol::{ErrorCode, ServerMsg},
    session::{
        persist::PersistError, Persist, SessionError, SessionHandle, SessionStatus, TokenHash,
    },
};

/// What a batch with no reply waiting on the document writes ([`Actor::plan_write`]).
pub(super) enum Planned {
    /// Reconcile into the `SessionDoc` and write its save (drops the journal).
    Document,
    /// Append the events since the last write to the session's journal.
    Journal,
    /// Nothing now; `persist_due` says when.
    Nothing,
}

/// The ownership epoch written until the cluster assigns real ones.
pub(super) const PLACEHOLDER_EPOCH: u64 = 1;

/// The meta of a brand-new session.
pub(super) fn new_meta(id: &str, game: &Game, persist: &Persist, seed: u64) -> SessionMeta {
    let info = game.module.info();
    SessionMeta {
        session: id.to_owned(),
        game: game.name.clone(),
        module_hash: game.module.hash().to_hex(),
        rules_version: info.rules_version,
        owner_node: persist.node_id.to_string(),
        epoch: PLACEHOLDER_EPOCH,
        created_at_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        tick: 0,
        tick_hz: info.tick_hz,
        seed,
        next_player: 1,
        ended: false,
        generation: 0,
    }
}

/// The state a stored session is at: its document's state (or the journal's
/// legacy snapshot) restored into a scratch instance of `module` (the rules the
/// document names), the journal replayed on it, its snapshot taken; with the
/// rules version that wrote it. Nothing is registered or written: a publish's
/// dry run reads sessions another node runs this way.
pub async fn stored_state(
    doc: &SessionDoc,
    journal: Journal,
    module: &minotaur_runtime::GameModule,
) -> Result<(Vec<u8>, u32), SessionError> {
    let corrupt = |e: minotaur_state::StateError| SessionError::Internal(e.to_string());
    let meta = doc.meta().map_err(corrupt)?;
    let base = match journal.snapshot {
        Some((_, state)) => state,
        None => doc.state().map_err(corrupt)?,
    };
    let events: Vec<_> = journal.records.into_iter().flat_map(|r| r.events).collect();
    let (_, _, state) =
        super::guest::restore_guest(module, base, meta.rules_version, events).await?;
    Ok((state, meta.rules_version))
}

/// A session rebuilt from its stored document: the game module the document
/// names, a fresh instance restored from the stored state (or the journal's
/// legacy snapshot, newer when there is one), the journal's events replayed on
/// it in order (the guest work on the guest pool), and every seat back
/// (disconnected). Returns the handle, the
/// actor task and the seats' token hashes for the registry's index.
///
/// `epoch`: the ownership epoch this node now holds it at (in a cluster, the directory's
/// after the claim or hand-off; alone, `None` keeps the document's).
pub async fn resume_stored(
    doc: SessionDoc,
    journal: Journal,
    game: Game,
    persist: Persist,
    epoch: Option<u64>,
) -> Result<(SessionHandle, JoinHandle<()>, Vec<TokenHash>), SessionError> {
    let corrupt = |e: minotaur_state::StateError| SessionError::Internal(e.to_string());
    let mut meta = doc.meta().map_err(corrupt)?;
    if let Some(e) = epoch {
        meta.epoch = e;
    }
    let records = doc.seats().map_err(corrupt)?;
    let from_journal = !journal.is_empty();
    if let Some(tick) = journal.tick() {
        meta.tick = meta.tick.max(tick);
    }
    let base = match journal.snapshot {
        Some((_, state)) => state,
        None => doc.state().map_err(corrupt)?,
    };
    let events: Vec<_> = journal.records.into_iter().flat_map(|r| r.events).collect();
    let (instance, effects, state) =
        super::guest::restore_guest(&game.module, base, meta.rules_version, events).await?;
    let mut seats = BTreeMap::new();
    let mut tokens = Vec::new();
    for r in records {
        let mut token_hash: TokenHash = [0; 32];
        hex::decode_to_slice(&r.token_hash, &mut token_hash)
            .map_err(|e| SessionError::Internal(format!("seat {}: token hash: {e}", r.player)))?;
        tokens.push(token_hash);
        seats.insert(
            r.player,
            Seat {
                name: r.name,
                token_hash,
                conn: None,
                last_view: None,
            },
        );
    }
    let info = game.module.info().clone();
    let (status_tx, status_rx) = watch::channel(SessionStatus {
        players: seats.len() as u32,
        max_players: info.max_players,
        ended: false,
        rules_version: meta.rules_version,
        tick: meta.tick,
        epoch: meta.epoch.max(PLACEHOLDER_EPOCH),
    });
    let (tx, rx) = mpsc::channel(MAILBOX);
    // Seats come back disconnected: the clock runs if any is taken, and the reaper
    // counts from the restart.
    let ticker = Ticker::new(meta.tick_hz, meta.tick, !seats.is_empty());
    let vacancy = Vacancy::new(Occupancy::of(seats.values().map(|_| false)));
    let mut actor = Actor {
        id: meta.session.clone(),
        epoch: meta.epoch.max(PLACEHOLDER_EPOCH),
        rules_version: meta.rules_version,
        max_players: info.max_players,
        game: game.clone(),
        instance,
        seats,
        next_player: meta.next_player,
        last_good: state,
        replay: Vec::new(),
        unjournaled: Vec::new(),
        dirty: false,
        failures_in_row: 0,
        ticker,
        vacancy,
        ended: false,
        moved_to: None,
        owned_elsewhere: false,
        registered: true,
        pending: Vec::new(),
        status: status_tx,
        doc,
        persist,
        saved_base: true,
        // A journal's state is not in the document yet.
        state_dirty: from_journal,
        // Seats are now all disconnected.
        seats_dirty: true,
        removed_seats: Vec::new(),
        // A journal's state reaches the document within
        // `doc_interval` even if no batch ever comes.
        persist_due: from_journal.then(tokio::time::Instant::now),
        last_persist: tokio::time::Instant::now(),
        last_journal: tokio::time::Instant::now(),
        journaled: from_journal,
    };
    // Restore (and the replay) sends every seat its view; with no connection yet, that
    // fills the last view a resuming player gets at once.
    actor.deliver(effects);
    let handle = SessionHandle::new(meta.session, game.name.clone(), tx, status_rx);
    let task = tokio::spawn(actor.run(rx));
    Ok((handle, task, tokens))
}

impl Actor {
    fn meta(&self) -> SessionMeta {
        let info = self.game.module.info();
        // Fields nobody here changes (created_at, seed, generation…) come
        // from the document itself.
        let mut meta = self.doc.meta().unwrap_or_default();
        meta.session = self.id.clone();
        meta.game = self.game.name.clone();
        meta.module_hash = self.game.module.hash().to_hex();
        meta.rules_version = self.rules_version;
        meta.owner_node = self.persist.node_id.to_string();
        meta.epoch = self.epoch;
        meta.tick = self.ticker.n;
        meta.tick_hz = self.ticker.hz.unwrap_or(info.tick_hz);
        meta.next_player = self.next_player;
        meta.ended = self.ended;
        meta
    }

    /// What to write after a batch with no reply waiting on the document:
    /// the document if the session has no base save yet or `doc_interval`
    /// has passed since the last document write; else the journal if the
    /// batch holds acks (`acked`), or if tick-only progress is pending and
    /// `persist_interval` has passed since the last write of either kind;
    /// else nothing, with `persist_due` set to when the next write is due
    /// (the actor loop waits on it when no batch comes).
    pub(super) fn plan_write(&mut self, acked: bool) -> Planned {
        if self.ended || !(self.state_dirty || self.seats_dirty) {
            return Planned::Nothing;
        }
        let now = tokio::time::Instant::now();
        let doc_due = self.last_persist + self.persist.doc_interval;
        if !self.saved_base || now >= doc_due {
            return Planned::Document;
        }
        // Seat changes alone (a disconnect) wait for the document.
        let journal_due = self.last_persist.max(self.last_journal) + self.persist.persist_interval;
        if self.state_dirty && (acked || now >= journal_due) {
            return Planned::Journal;
        }
        let due = if self.state_dirty {
            journal_due.min(doc_due)
        } else {
            doc_due
        };
        self.persist_due = Some(self.persist_due.map_or(due, |d| d.min(due)));
        Planned::Nothing
    }

    /// Make the last good state durable by appending the events that led to it
    /// since the last write to the store's journal — a few dozen bytes per
    /// input, no Automerge work — so the batch's acks can go out. The document
    /// catches up within `doc_interval` (`persist_due`).
    pub(super) async fn journal(&mut self) -> Result<(), PersistError> {
        let write = SessionWrite::Journal {
            session: self.id.clone(),
            record: JournalRecord {
                tick: self.ticker.n,
                events: std::mem::take(&mut self.unjournaled),
            },
        };
        self.persist_due = None;
        self.last_journal = tokio::time::Instant::now();
        let result = self.persist.writer.write(write, self.epoch).await;
        match &result {
            Ok(()) => {
                // The state is durable; the document still lacks it (`state_dirty`
                // stays set) and is due within `doc_interval`.
                self.journaled = true;
                self.persist_due = Some(self.last_persist + self.persist.doc_interval);
                self.status.send_modify(|s| s.tick = self.ticker.n);
            }
            Err(PersistError::Fenced) => {}
            Err(e) => {
                tracing::error!(session = %self.id, error = %e, "journal record not persisted");
                // Whether it was is unknown, and its events are gone from `unjournaled`:
                // the next write is a full document save, which drops every record.
                self.saved_base = false;
            }
        }
        result
    }

    /// Reconcile what changed into the document and make it durable. `Ok`
    /// when there was nothing to write.
    pub(super) async fn commit(&mut self) -> Result<(), PersistError> {
        self.persist_due = None;
        if self.ended || !(self.state_dirty || self.seats_dirty) {
            return Ok(());
        }
        self.last_persist = tokio::time::Instant::now();
        let meta = self.meta();
        self.doc.set_meta(&meta);
        if self.seats_dirty {
            for player in self.removed_seats.drain(..) {
                self.doc.remove_seat(player);
            }
            for (&player, seat) in &self.seats {
                self.doc.put_seat(&SeatRecord {
                    player,
                    name: seat.name.clone(),
                    token_hash: hex::encode(seat.token_hash),
                    connected: seat.conn.is_some(),
                });
            }
        }
        if self.state_dirty {
            if let Err(e) = self.doc.set_state(&self.last_good) {
                // The guest snapshot is not MessagePack the document can
                // hold; the previous state stays in the document.
                tracing::error!(session = %self.id, error = %e, "snapshot not stored");
            }
        }
        self.doc.commit();
        // The document holds every event so far; its write drops the journal.
        self.unjournaled.clear();
        self.state_dirty = false;
        self.seats_dirty = false;
        if self.doc.should_compact(&self.persist.compaction) {
            if let Err(e) = self.doc.compact() {
                tracing::warn!(session = %self.id, error = %e, "compaction failed");
            }
        }
        let session = self.id.clone();
        let write = if !self.registered {
            // The first write of a new session enters it (into the cluster's directory)
            // in the same group commit.
            SessionWrite::Create {
                session,
                game: self.game.name.clone(),
                bytes: self.doc.save(),
            }
        } else if !self.saved_base || self.doc.needs_full_save() {
            SessionWrite::Full {
                session,
                bytes: self.doc.save(),
            }
        } else {
            let chunk = self.doc.save_incremental();
            // An empty append still drops the journal (the document holds its events).
            if chunk.is_empty() && !self.journaled {
                return Ok(());
            }
            SessionWrite::Append { session, chunk }
        };
        let result = self.persist.writer.write(write, self.epoch).await;
        match &result {
            Ok(()) => {
                self.saved_base = true;
                self.registered = true;
                // The store dropped the session's journal with this write.
                self.journaled = false;
                // Listings show the durable tick.
                self.status.send_modify(|s| s.tick = self.ticker.n);
            }
            Err(PersistError::Fenced) => {}
            Err(e) => {
                tracing::error!(session = %self.id, error = %e, "session not persisted");
                // Write everything again next time: a full save cannot
                // depend on a chunk the store may not have.
                self.saved_base = false;
            }
        }
        result
    }

    /// The session is over for good: drop it from the store.
    pub(super) async fn forget(&mut self) {
        let write = SessionWrite::Delete {
            session: self.id.clone(),
        };
        if let Err(e) = self.persist.writer.write(write, self.epoch).await {
            tracing::warn!(session = %self.id, error = %e, "ended session not removed from the store");
        }
    }

    /// The batch left a snapshot over the limit: a guest failure. Roll back to
    /// the last good state *without* replaying the batch (it would only grow
    /// the state again); the batch's inputs are answered with errors, not acks.
    pub(super) fn snapshot_too_large(&mut self, size: usize) {
        const CODE: &str = "snapshot_too_large";
        let max = self.persist.max_snapshot_bytes;
        let message = format!("the game state grew to {size} bytes, over the limit of {max}");
        self.replay.clear();
        let mut acks = Vec::new();
        self.pending.retain(|d| match d {
            Deferred::Ack { player, seq } => {
                acks.push((*player, *seq));
                false
            }
            _ => true,
        });
        for (player, seq) in acks {
            let msg = format!("the game module failed ({CODE}): {message}; input not applied");
            self.send_to(player, ServerMsg::error(ErrorCode::SessionFailed, msg, seq));
        }
        self.recover_with(CODE, message, None, None, None);
    }
}
