//! Replication of session documents with Automerge's sync protocol. Owner side: one
//! [`Replicator`] per session, driven by the session actor after each batch (or each sync
//! interval) and by the drain path ([`Replicator::sync_until_acked`]). Replica side: one
//! [`ReplicaSet`] per node answering `Sync`/`FullDoc`/`Handoff`, persisting through
//! [`ReplicaStore`] **before** acknowledging heads. Module fetch by content hash lives here too.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use automerge::sync::{self, SyncDoc};
use automerge::ChangeHash;
use minotaur_state::SessionDoc;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::peer::{HandoffItem, PeerError, PeerMsg, PeerNet};
use crate::{wire_heads, Head};

/// Errors of replication, handoff and module fetch.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// The deadline passed before `node` acknowledged the heads asked for.
    #[error("replica {node} did not acknowledge the heads in time (it holds {acked} of them)")]
    Timeout { node: String, acked: usize },
    /// A replica knows a newer epoch: this node is no longer the owner (fenced).
    #[error("session {session} is fenced: epoch {epoch} is current")]
    Fenced { session: String, epoch: u64 },
    #[error("handoff of {session} refused: {reason}")]
    HandoffRejected { session: String, reason: String },
    #[error("module {hash} not found on {node}")]
    ModuleMissing { node: String, hash: String },
    #[error("module bytes from {node} do not hash to {hash}")]
    ModuleCorrupt { node: String, hash: String },
    #[error("unexpected reply from {node}: {reply}")]
    Protocol { node: String, reply: String },
    #[error("session document: {0}")]
    Doc(#[from] minotaur_state::StateError),
    #[error("automerge sync: {0}")]
    Automerge(#[from] automerge::AutomergeError),
    #[error(transparent)]
    Peer(#[from] PeerError),
}

/// A node holding a copy of the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaTarget {
    pub node: String,
    pub addr: SocketAddr,
}

/// Bytes and messages of one session's replication (for metrics and benchmarks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Sync-message and full-document bytes sent by the owner.
    pub bytes_sent: u64,
    /// Sync-message bytes received back from replicas.
    pub bytes_received: u64,
    pub messages: u64,
    pub full_docs: u64,
}

struct ReplicaLink {
    target: ReplicaTarget,
    state: sync::State,
    /// The generation the replica holds, as far as we know (`None`: send a `FullDoc`).
    generation: Option<u64>,
    acked: Vec<Head>,
    /// When the request that produced the current ack was sent (lease bookkeeping).
    acked_at: Option<Instant>,
    reset: bool,
}

impl ReplicaLink {
    fn new(target: ReplicaTarget) -> ReplicaLink {
        ReplicaLink {
            target,
            state: sync::State::new(),
            generation: None,
            acked: Vec::new(),
            acked_at: None,
            reset: true,
        }
    }

    fn forget_sync_state(&mut self) {
        self.state = sync::State::new();
        self.reset = true;
    }
}

/// The owner's side of one session's replication.
pub struct Replicator {
    session: String,
    net: PeerNet,
    links: Vec<ReplicaLink>,
    request_timeout: Duration,
    stats: SyncStats,
}

/// Round trips one [`Replicator::sync`] may spend per replica; the protocol needs two or three.
const MAX_ROUNDS: usize = 8;

impl Replicator {
    pub fn new(session: impl Into<String>, net: PeerNet, replicas: Vec<ReplicaTarget>) -> Self {
        Replicator {
            session: session.into(),
            net,
            links: replicas.into_iter().map(ReplicaLink::new).collect(),
            request_timeout: Duration::from_secs(1),
            stats: SyncStats::default(),
        }
    }

    /// How long one request waits for its reply.
    pub fn with_request_timeout(mut self, t: Duration) -> Self {
        self.request_timeout = t;
        self
    }

    /// Changes the replica set; replicas that stay keep their sync state.
    pub fn set_replicas(&mut self, replicas: Vec<ReplicaTarget>) {
        let mut old: Vec<ReplicaLink> = std::mem::take(&mut self.links);
        for t in replicas {
            match old.iter().position(|l| l.target.node == t.node) {
                Some(i) => {
                    let mut link = old.swap_remove(i);
                    link.target = t;
                    self.links.push(link);
                }
                None => self.links.push(ReplicaLink::new(t)),
            }
        }
    }

    pub fn replicas(&self) -> Vec<ReplicaTarget> {
        self.links.iter().map(|l| l.target.clone()).collect()
    }

    pub fn stats(&self) -> SyncStats {
        self.stats
    }

    /// The heads `node` last acknowledged (sorted) and when the acknowledged request was sent.
    pub fn acked(&self, node: &str) -> Option<(&[Head], Option<Instant>)> {
        self.links
            .iter()
            .find(|l| l.target.node == node)
            .map(|l| (l.acked.as_slice(), l.acked_at))
    }

    /// Brings every replica up to the document's current heads, best effort: a replica that
    /// fails is reported in the result and retried next time; the others still sync.
    /// Returns the replicas that did not acknowledge the current heads.
    pub async fn sync(&mut self, doc: &mut SessionDoc) -> Result<Vec<String>, ReplicationError> {
        let heads = wire_heads(&doc.commit());
        let mut behind = Vec::new();
        for i in 0..self.links.len() {
            let mut ok = false;
            for _ in 0..MAX_ROUNDS {
                match self.step(i, doc, &heads).await {
                    Ok(true) => {
                        ok = true;
                        break;
                    }
                    Ok(false) => {}
                    Err(e @ ReplicationError::Fenced { .. }) => return Err(e),
                    Err(e) => {
                        tracing::debug!(session = %self.session, replica = %self.links[i].target.node, error = %e, "sync failed");
                        break;
                    }
                }
            }
            if !ok {
                behind.push(self.links[i].target.node.clone());
            }
        }
        Ok(behind)
    }

    /// Syncs until every replica has acknowledged holding exactly `heads` (durably), or the
    /// deadline passes. Never returns `Ok` on an ack of other heads. `heads` must be the
    /// document's current heads (pause writes first).
    pub async fn sync_until_acked(
        &mut self,
        doc: &mut SessionDoc,
        heads: &[ChangeHash],
        deadline: Instant,
    ) -> Result<(), ReplicationError> {
        let want = wire_heads(heads);
        for i in 0..self.links.len() {
            loop {
                if Instant::now() >= deadline {
                    let link = &self.links[i];
                    return Err(ReplicationError::Timeout {
                        node: link.target.node.clone(),
                        acked: link.acked.iter().filter(|h| want.contains(h)).count(),
                    });
                }
                match self.step_until(i, doc, &want, deadline).await {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(e @ ReplicationError::Fenced { .. }) => return Err(e),
                    Err(ReplicationError::Peer(_)) => {
                        // Lost frame or broken connection: the link redials; back off a little
                        // so an unreachable replica does not spin.
                        let pause = Duration::from_millis(20);
                        tokio::time::sleep_until(deadline.min(Instant::now() + pause)).await;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    async fn step_until(
        &mut self,
        i: usize,
        doc: &mut SessionDoc,
        want: &[Head],
        deadline: Instant,
    ) -> Result<bool, ReplicationError> {
        let timeout = self.request_timeout;
        let left = deadline.saturating_duration_since(Instant::now());
        self.request_timeout = timeout.min(left).max(Duration::from_millis(1));
        let out = self.step(i, doc, want).await;
        self.request_timeout = timeout;
        out
    }

    /// One request to replica `i`. `Ok(true)` when it has acknowledged `want`.
    async fn step(
        &mut self,
        i: usize,
        doc: &mut SessionDoc,
        want: &[Head],
    ) -> Result<bool, ReplicationError> {
        if self.links[i].acked == want {
            return Ok(true);
        }
        let meta = doc.meta()?;
        let link = &mut self.links[i];
        let msg = if link.generation != Some(meta.generation) {
            // `AutoCommit::save` leaves the SessionDoc's own incremental-save cursor alone.
            let bytes = doc.automerge().save();
            self.stats.full_docs += 1;
            PeerMsg::FullDoc {
                session: self.session.clone(),
                generation: meta.generation,
                epoch: meta.epoch,
                bytes,
            }
        } else {
            match doc
                .automerge()
                .sync()
                .generate_sync_message(&mut link.state)
            {
                Some(m) => PeerMsg::Sync {
                    session: self.session.clone(),
                    generation: meta.generation,
                    epoch: meta.epoch,
                    reset: std::mem::take(&mut link.reset),
                    data: m.encode(),
                },
                None => {
                    // The protocol believes the replica is up to date, yet it has not acked
                    // `want` (a lost reply, a failed persist): start the exchange afresh.
                    link.forget_sync_state();
                    return Ok(false);
                }
            }
        };
        let sent_bytes = match &msg {
            PeerMsg::FullDoc { bytes, .. } => bytes.len(),
            PeerMsg::Sync { data, .. } => data.len(),
            _ => 0,
        };
        self.stats.bytes_sent += sent_bytes as u64;
        self.stats.messages += 1;
        let target = link.target.clone();
        let sent_at = Instant::now();
        let reply = self
            .net
            .request(&target.node, target.addr, msg, self.request_timeout)
            .await;
        let link = &mut self.links[i];
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                link.forget_sync_state();
                return Err(e.into());
            }
        };
        match reply {
            PeerMsg::HeadsAck { heads, .. } => {
                link.generation = Some(meta.generation);
                link.forget_sync_state();
                link.acked = sorted(heads);
                link.acked_at = Some(sent_at);
            }
            PeerMsg::SyncReply { data, heads, .. } => {
                if let Some(data) = data {
                    self.stats.bytes_received += data.len() as u64;
                    let m =
                        sync::Message::decode(&data).map_err(|e| ReplicationError::Protocol {
                            node: target.node.clone(),
                            reply: e.to_string(),
                        })?;
                    doc.automerge()
                        .sync()
                        .receive_sync_message(&mut link.state, m)?;
                }
                link.acked = sorted(heads);
                link.acked_at = Some(sent_at);
            }
            PeerMsg::NeedFullDoc { .. } => {
                link.generation = None;
                link.forget_sync_state();
            }
            PeerMsg::Stale { session, epoch } => {
                return Err(ReplicationError::Fenced { session, epoch });
            }
            other => {
                return Err(ReplicationError::Protocol {
                    node: target.node,
                    reply: format!("{other:?}"),
                });
            }
        }
        Ok(link.acked == want)
    }

    /// Hands the session to `target` at `epoch` (the old epoch + 1). Call only after
    /// [`Replicator::sync_until_acked`] with `heads` for `target`; the target accepts only if
    /// it holds exactly those heads and `epoch` is newer than any it knows.
    pub async fn handoff(
        &mut self,
        target: &ReplicaTarget,
        epoch: u64,
        heads: &[ChangeHash],
        timeout: Duration,
    ) -> Result<(), ReplicationError> {
        let msg = PeerMsg::Handoff {
            session: self.session.clone(),
            epoch,
            heads: wire_heads(heads),
        };
        match self
            .net
            .request(&target.node, target.addr, msg, timeout)
            .await?
        {
            PeerMsg::HandoffAccepted { epoch: e, .. } if e == epoch => Ok(()),
            PeerMsg::HandoffRejected { session, reason } => {
                Err(ReplicationError::HandoffRejected { session, reason })
            }
            other => Err(ReplicationError::Protocol {
                node: target.node.clone(),
                reply: format!("{other:?}"),
            }),
        }
    }
}

/// What a target answered to a [`handoff_batch`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HandoffBatchOutcome {
    /// `(session, epoch)` the target accepted and serves now.
    pub accepted: Vec<(String, u64)>,
    /// `(session, reason)` it refused; they stay with the sender at their old epoch.
    pub rejected: Vec<(String, String)>,
}

/// Hands several sessions to `target` in one round trip (`PeerMsg::HandoffBatch`, protocol 2).
/// Each item must have been synced to `target` with [`Replicator::sync_until_acked`] for its
/// `heads` first; the target judges each exactly like a single `Handoff`. An `Err` means
/// the answer is unknown (not that every session was refused).
pub async fn handoff_batch(
    net: &PeerNet,
    target: &ReplicaTarget,
    items: Vec<HandoffItem>,
    timeout: Duration,
) -> Result<HandoffBatchOutcome, ReplicationError> {
    let msg = PeerMsg::HandoffBatch { sessions: items };
    match net.request(&target.node, target.addr, msg, timeout).await? {
        PeerMsg::HandoffBatchResult { accepted, rejected } => {
            Ok(HandoffBatchOutcome { accepted, rejected })
        }
        other => Err(ReplicationError::Protocol {
            node: target.node.clone(),
            reply: format!("{other:?}"),
        }),
    }
}

fn sorted(mut heads: Vec<Head>) -> Vec<Head> {
    heads.sort();
    heads
}

/// Where a replica persists what it receives. The ack that follows is a promise that the
/// heads survive a restart of this node, so `persist` must be durable when it returns.
pub trait ReplicaStore: Send + Sync {
    /// `full` is true when the document was replaced (new generation): store a full save;
    /// otherwise append `doc.save_incremental()`.
    fn persist(&self, session: &str, doc: &mut SessionDoc, full: bool) -> Result<(), String>;

    /// Several sessions at once, all or nothing (one durable write where the store can:
    /// a replica answering many syncs pays one fsync, not one each).
    fn persist_many(&self, docs: &mut [(&str, &mut SessionDoc, bool)]) -> Result<(), String> {
        for (session, doc, full) in docs.iter_mut() {
            self.persist(session, doc, *full)?;
        }
        Ok(())
    }
}

impl ReplicaStore for minotaur_state::Store {
    fn persist(&self, session: &str, doc: &mut SessionDoc, full: bool) -> Result<(), String> {
        if full || doc.needs_full_save() {
            self.save_session_full(session, &doc.save())
        } else {
            let chunk = doc.save_incremental();
            if chunk.is_empty() {
                return Ok(());
            }
            self.append_session_changes(session, &chunk)
        }
        .map_err(|e| e.to_string())
    }

    fn persist_many(&self, docs: &mut [(&str, &mut SessionDoc, bool)]) -> Result<(), String> {
        let writes: Vec<minotaur_state::SessionWrite> = docs
            .iter_mut()
            .map(|(session, doc, full)| {
                if *full || doc.needs_full_save() {
                    minotaur_state::SessionWrite::Full {
                        session: session.to_string(),
                        bytes: doc.save(),
                    }
                } else {
                    minotaur_state::SessionWrite::Append {
                        session: session.to_string(),
                        chunk: doc.save_incremental(),
                    }
                }
            })
            .collect();
        self.write_sessions(&writes).map_err(|e| e.to_string())
    }
}

/// A store that keeps nothing (tests, or a node configured without durable replicas).
pub struct NoStore;

impl ReplicaStore for NoStore {
    fn persist(&self, _: &str, _: &mut SessionDoc, _: bool) -> Result<(), String> {
        Ok(())
    }
}

/// Serves wasm modules by content hash (hex SHA-256).
pub trait ModuleSource: Send + Sync {
    fn module(&self, hash: &str) -> Option<Vec<u8>>;
}

impl ModuleSource for minotaur_state::Store {
    fn module(&self, hash: &str) -> Option<Vec<u8>> {
        self.get_module(hash).ok().flatten()
    }
}

impl ModuleSource for HashMap<String, Vec<u8>> {
    fn module(&self, hash: &str) -> Option<Vec<u8>> {
        self.get(hash).cloned()
    }
}

/// Lowercase hex SHA-256, the content hash modules travel under.
pub fn module_hash(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Fetches a module from `node` and checks its bytes against `hash`.
pub async fn fetch_module(
    net: &PeerNet,
    node: &str,
    addr: SocketAddr,
    hash: &str,
    timeout: Duration,
) -> Result<Vec<u8>, ReplicationError> {
    let msg = PeerMsg::FetchModule { hash: hash.into() };
    match net.request(node, addr, msg, timeout).await? {
        PeerMsg::Module { bytes: Some(b), .. } => {
            if module_hash(&b) == hash {
                Ok(b.into_vec())
            } else {
                Err(ReplicationError::ModuleCorrupt {
                    node: node.into(),
                    hash: hash.into(),
                })
            }
        }
        PeerMsg::Module { bytes: None, .. } => Err(ReplicationError::ModuleMissing {
            node: node.into(),
            hash: hash.into(),
        }),
        other => Err(ReplicationError::Protocol {
            node: node.into(),
            reply: format!("{other:?}"),
        }),
    }
}

/// A replica write applied in memory, waiting for the group's store write
/// ([`ReplicaSet::handle_writes`]).
enum Pending {
    /// A sync message applied to the held copy; answer from it once persisted.
    Sync { session: String, from: String },
    /// A whole document replacing the copy once persisted.
    Full {
        session: String,
        from: String,
        generation: u64,
        epoch: u64,
        doc: Box<SessionDoc>,
        bytes_received: u64,
    },
}

impl Pending {
    fn session(&self) -> &str {
        match self {
            Pending::Sync { session, .. } | Pending::Full { session, .. } => session,
        }
    }
}

enum Step {
    Done(PeerMsg),
    Pending(Pending),
}

struct Replica {
    doc: SessionDoc,
    /// Sync state per sending node (the owner may change by handoff).
    states: HashMap<String, sync::State>,
    epoch: u64,
    generation: u64,
    bytes_received: u64,
    /// Heads persisted by the store: the only ones ever acknowledged.
    durable: Vec<ChangeHash>,
    /// A persist failed; the next one must be a full save.
    dirty: bool,
}

/// The replica side: the documents this node holds for sessions owned elsewhere.
/// Owned by one task (the node's peer dispatcher) that feeds it with [`ReplicaSet::handle`].
pub struct ReplicaSet {
    node: String,
    replicas: HashMap<String, Replica>,
    store: Arc<dyn ReplicaStore>,
    modules: Option<Arc<dyn ModuleSource>>,
    activated: Vec<(String, SessionDoc)>,
    /// The newest epoch known per session, kept after a copy is promoted or dropped, so a
    /// stale owner is told it is fenced instead of re-seeding a copy.
    fences: HashMap<String, u64>,
}

impl ReplicaSet {
    pub fn new(node: impl Into<String>, store: Arc<dyn ReplicaStore>) -> ReplicaSet {
        ReplicaSet {
            node: node.into(),
            replicas: HashMap::new(),
            store,
            modules: None,
            activated: Vec::new(),
            fences: HashMap::new(),
        }
    }

    /// Also answer `FetchModule` from `modules`.
    pub fn with_modules(mut self, modules: Arc<dyn ModuleSource>) -> ReplicaSet {
        self.modules = Some(modules);
        self
    }

    /// Answers one request from another node; `None` for messages this set does not handle.
    pub fn handle(&mut self, from: &str, msg: PeerMsg) -> Option<PeerMsg> {
        if Self::is_write(&msg) {
            // A group of one: applied, persisted, then answered.
            return self.handle_writes(vec![(from.to_string(), msg)]).pop();
        }
        Some(match msg {
            PeerMsg::Handoff {
                session,
                epoch,
                heads,
            } => self.on_handoff(session, epoch, heads),
            PeerMsg::HandoffBatch { sessions } => {
                let mut accepted = Vec::new();
                let mut rejected = Vec::new();
                for item in sessions {
                    let answer = match item.doc {
                        Some(doc) => {
                            self.on_handoff_doc(item.session, item.epoch, item.heads, &doc)
                        }
                        None => self.on_handoff(item.session, item.epoch, item.heads),
                    };
                    match answer {
                        PeerMsg::HandoffAccepted { session, epoch } => {
                            accepted.push((session, epoch))
                        }
                        PeerMsg::HandoffRejected { session, reason } => {
                            rejected.push((session, reason))
                        }
                        other => unreachable!("on_handoff answers accepted or rejected: {other:?}"),
                    }
                }
                PeerMsg::HandoffBatchResult { accepted, rejected }
            }
            PeerMsg::FetchModule { hash } => {
                let bytes = self.modules.as_ref().and_then(|m| m.module(&hash));
                PeerMsg::Module {
                    hash,
                    bytes: bytes.map(serde_bytes::ByteBuf::from),
                }
            }
            PeerMsg::Deactivate { session, epoch } => {
                if self
                    .replicas
                    .get(&session)
                    .is_some_and(|r| r.epoch <= epoch)
                {
                    self.replicas.remove(&session);
                }
                return None;
            }
            _ => return None,
        })
    }

    /// Is `msg` a replica write ([`ReplicaSet::handle_writes`] takes it)?
    pub fn is_write(msg: &PeerMsg) -> bool {
        matches!(msg, PeerMsg::Sync { .. } | PeerMsg::FullDoc { .. })
    }

    /// Answers several `Sync`/`FullDoc` requests (`(from, msg)`, in order) like
    /// [`ReplicaSet::handle`] would one by one, except that every copy they change is
    /// persisted in ONE [`ReplicaStore::persist_many`] before any of them is answered: the
    /// acknowledged heads are durable as ever, for one store write instead of one each.
    /// A session met twice is persisted (and its earlier requests answered) first.
    pub fn handle_writes(&mut self, msgs: Vec<(String, PeerMsg)>) -> Vec<PeerMsg> {
        let mut answers: Vec<Option<PeerMsg>> = Vec::with_capacity(msgs.len());
        let mut group: Vec<(usize, Pending)> = Vec::new();
        for (from, msg) in msgs {
            let session = match &msg {
                PeerMsg::Sync { session, .. } | PeerMsg::FullDoc { session, .. } => session.clone(),
                _ => String::new(),
            };
            if group.iter().any(|(_, p)| p.session() == session) {
                self.flush(std::mem::take(&mut group), &mut answers);
            }
            let i = answers.len();
            answers.push(None);
            let step = match msg {
                PeerMsg::Sync {
                    session,
                    generation,
                    epoch,
                    reset,
                    data,
                } => self.apply_sync(&from, session, generation, epoch, reset, &data),
                PeerMsg::FullDoc {
                    session,
                    generation,
                    epoch,
                    bytes,
                } => self.apply_full_doc(&from, session, generation, epoch, &bytes),
                other => Step::Done(self.handle(&from, other).unwrap_or(PeerMsg::Error {
                    reason: "unsupported request".into(),
                })),
            };
            match step {
                Step::Done(answer) => answers[i] = Some(answer),
                Step::Pending(p) => group.push((i, p)),
            }
        }
        self.flush(group, &mut answers);
        answers
            .into_iter()
            .map(|a| {
                a.unwrap_or(PeerMsg::Error {
                    reason: "no answer".into(),
                })
            })
            .collect()
    }

    /// Persists the copies of `group` in one write, then answers each.
    fn flush(&mut self, group: Vec<(usize, Pending)>, answers: &mut [Option<PeerMsg>]) {
        if group.is_empty() {
            return;
        }
        let mut group = group;
        // What to write: synced copies whose heads moved (or whose last write failed), and
        // whole new documents.
        let synced: std::collections::HashSet<String> = group
            .iter()
            .filter_map(|(_, p)| match p {
                Pending::Sync { session, .. } => Some(session.clone()),
                Pending::Full { .. } => None,
            })
            .collect();
        let result = {
            let mut docs: Vec<(&str, &mut SessionDoc, bool)> = Vec::new();
            for (session, r) in self.replicas.iter_mut() {
                if !synced.contains(session) {
                    continue;
                }
                if r.doc.heads() != r.durable || r.dirty {
                    let full = r.dirty;
                    docs.push((session.as_str(), &mut r.doc, full));
                }
            }
            for (_, p) in group.iter_mut() {
                if let Pending::Full { session, doc, .. } = p {
                    docs.push((session.as_str(), &mut **doc, true));
                }
            }
            if docs.is_empty() {
                Ok(())
            } else {
                self.store.persist_many(&mut docs)
            }
        };
        if let Err(e) = &result {
            tracing::warn!(error = %e, copies = group.len(), "replica persist failed");
        }
        for (i, p) in group {
            answers[i] = Some(match p {
                Pending::Sync { session, from } => {
                    let Some(r) = self.replicas.get_mut(&session) else {
                        continue;
                    };
                    if result.is_ok() {
                        r.durable = r.doc.heads();
                        r.dirty = false;
                    } else {
                        // The incremental cursor moved past unsaved changes: the retry is
                        // a full save.
                        r.dirty = true;
                    }
                    let state = r.states.entry(from).or_default();
                    let reply = r.doc.automerge().sync().generate_sync_message(state);
                    PeerMsg::SyncReply {
                        session,
                        data: reply.map(|m| serde_bytes::ByteBuf::from(m.encode())),
                        // Ack only what survives a restart of this node.
                        heads: wire_heads(&r.durable),
                    }
                }
                Pending::Full {
                    session,
                    from,
                    generation,
                    epoch,
                    doc,
                    bytes_received,
                } => {
                    let mut doc = *doc;
                    if result.is_err() {
                        let heads = self
                            .replicas
                            .get(&session)
                            .map(|r| wire_heads(&r.durable))
                            .unwrap_or_default();
                        PeerMsg::HeadsAck { session, heads }
                    } else {
                        let durable = doc.heads();
                        let heads = wire_heads(&durable);
                        let mut states = HashMap::new();
                        states.insert(from, sync::State::new());
                        self.replicas.insert(
                            session.clone(),
                            Replica {
                                doc,
                                states,
                                epoch,
                                generation,
                                bytes_received,
                                durable,
                                dirty: false,
                            },
                        );
                        PeerMsg::HeadsAck { session, heads }
                    }
                }
            });
        }
    }

    /// A `Sync` up to the write: the message applied to the copy, or the answer if it
    /// needs none.
    fn apply_sync(
        &mut self,
        from: &str,
        session: String,
        generation: u64,
        epoch: u64,
        reset: bool,
        data: &[u8],
    ) -> Step {
        if let Some(&fence) = self.fences.get(&session).filter(|&&f| epoch < f) {
            return Step::Done(PeerMsg::Stale {
                session,
                epoch: fence,
            });
        }
        let Some(r) = self.replicas.get_mut(&session) else {
            return Step::Done(PeerMsg::NeedFullDoc { session });
        };
        if epoch < r.epoch {
            return Step::Done(PeerMsg::Stale {
                session,
                epoch: r.epoch,
            });
        }
        if generation != r.generation {
            return Step::Done(PeerMsg::NeedFullDoc { session });
        }
        r.epoch = epoch;
        let state = r.states.entry(from.to_string()).or_default();
        if reset {
            *state = sync::State::new();
        }
        let message = match sync::Message::decode(data) {
            Ok(m) => m,
            Err(e) => {
                return Step::Done(PeerMsg::Error {
                    reason: format!("bad sync message: {e}"),
                })
            }
        };
        r.bytes_received += data.len() as u64;
        if let Err(e) = r
            .doc
            .automerge()
            .sync()
            .receive_sync_message(state, message)
        {
            return Step::Done(PeerMsg::Error {
                reason: format!("sync message refused: {e}"),
            });
        }
        Step::Pending(Pending::Sync {
            session,
            from: from.to_string(),
        })
    }

    /// A `FullDoc` up to the write.
    fn apply_full_doc(
        &mut self,
        from: &str,
        session: String,
        generation: u64,
        epoch: u64,
        bytes: &[u8],
    ) -> Step {
        if let Some(&fence) = self.fences.get(&session).filter(|&&f| epoch < f) {
            return Step::Done(PeerMsg::Stale {
                session,
                epoch: fence,
            });
        }
        if let Some(r) = self.replicas.get(&session) {
            if epoch < r.epoch {
                return Step::Done(PeerMsg::Stale {
                    session,
                    epoch: r.epoch,
                });
            }
        }
        match SessionDoc::load(bytes) {
            Ok(doc) => Step::Pending(Pending::Full {
                session,
                from: from.to_string(),
                generation,
                epoch,
                doc: Box::new(doc),
                bytes_received: bytes.len() as u64,
            }),
            Err(e) => Step::Done(PeerMsg::Error {
                reason: format!("full document does not load: {e}"),
            }),
        }
    }

    fn on_handoff(&mut self, session: String, epoch: u64, heads: Vec<Head>) -> PeerMsg {
        let reject = |session: String, reason: String| PeerMsg::HandoffRejected { session, reason };
        let Some(r) = self.replicas.get_mut(&session) else {
            return reject(session, "no copy of this session here".into());
        };
        let known = r.epoch.max(self.fences.get(&session).copied().unwrap_or(0));
        if epoch <= known {
            let reason = format!("stale epoch {epoch}: {known} is current");
            return reject(session, reason);
        }
        if r.dirty || wire_heads(&r.durable) != sorted(heads) {
            return reject(session, "heads differ from the acknowledged copy".into());
        }
        let Some(mut r) = self.replicas.remove(&session) else {
            return reject(session, "no copy of this session here".into());
        };
        // The first change under the new ownership is the fence itself.
        let mut meta = match r.doc.meta() {
            Ok(m) => m,
            Err(e) => return reject(session, format!("corrupt copy: {e}")),
        };
        meta.owner_node = self.node.clone();
        meta.epoch = epoch;
        r.doc.set_meta(&meta);
        r.doc.commit();
        self.fence(&session, epoch);
        self.activated.push((session.clone(), r.doc));
        PeerMsg::HandoffAccepted { session, epoch }
    }

    /// A handoff that carries the whole document (see [`HandoffItem`]): accepted if `epoch`
    /// is newer than any this node knows and the document is at exactly `heads`. It replaces
    /// any copy held here.
    fn on_handoff_doc(
        &mut self,
        session: String,
        epoch: u64,
        heads: Vec<Head>,
        bytes: &[u8],
    ) -> PeerMsg {
        let reject = |session: String, reason: String| PeerMsg::HandoffRejected { session, reason };
        let known = self.known_epoch(&session);
        if epoch <= known {
            let reason = format!("stale epoch {epoch}: {known} is current");
            return reject(session, reason);
        }
        let mut doc = match SessionDoc::load(bytes) {
            Ok(d) => d,
            Err(e) => return reject(session, format!("document does not load: {e}")),
        };
        if wire_heads(&doc.heads()) != sorted(heads) {
            return reject(session, "the document is not at the heads named".into());
        }
        let mut meta = match doc.meta() {
            Ok(m) if m.session == session && m.epoch < epoch => m,
            Ok(m) => {
                let reason = format!("document of {} at epoch {}", m.session, m.epoch);
                return reject(session, reason);
            }
            Err(e) => return reject(session, format!("corrupt document: {e}")),
        };
        self.replicas.remove(&session);
        meta.owner_node = self.node.clone();
        meta.epoch = epoch;
        doc.set_meta(&meta);
        doc.commit();
        self.fence(&session, epoch);
        self.activated.push((session.clone(), doc));
        PeerMsg::HandoffAccepted { session, epoch }
    }

    /// Sessions handed over to this node since the last call, their documents already at the
    /// new `(owner_node, epoch)`; the host starts serving them.
    pub fn take_activated(&mut self) -> Vec<(String, SessionDoc)> {
        std::mem::take(&mut self.activated)
    }

    /// Records that `session` is at `epoch` or newer (a takeover by this node, or news of
    /// one): older owners are refused from now on.
    pub fn fence(&mut self, session: &str, epoch: u64) {
        let e = self.fences.entry(session.to_string()).or_insert(epoch);
        *e = (*e).max(epoch);
    }

    /// Removes a replica to promote it (takeover); the caller raises the epoch and calls
    /// [`ReplicaSet::fence`] with it.
    pub fn take(&mut self, session: &str) -> Option<SessionDoc> {
        self.replicas.remove(session).map(|r| r.doc)
    }

    pub fn sessions(&self) -> Vec<String> {
        let mut out: Vec<String> = self.replicas.keys().cloned().collect();
        out.sort();
        out
    }

    pub fn heads(&mut self, session: &str) -> Option<Vec<ChangeHash>> {
        self.replicas.get_mut(session).map(|r| r.doc.heads())
    }

    pub fn epoch(&self, session: &str) -> Option<u64> {
        self.replicas.get(session).map(|r| r.epoch)
    }

    /// The newest epoch this node knows `session` to run at: its replica's, or a fence
    /// (`Activate`, a promotion) it recorded.
    pub fn known_epoch(&self, session: &str) -> u64 {
        self.epoch(session)
            .unwrap_or(0)
            .max(self.fences.get(session).copied().unwrap_or(0))
    }

    /// A read of the held copy (e.g. to compare states in tests or pick the newest replica).
    pub fn doc(&mut self, session: &str) -> Option<&mut SessionDoc> {
        self.replicas.get_mut(session).map(|r| &mut r.doc)
    }

    /// Sync and full-document bytes received for `session`.
    pub fn bytes_received(&self, session: &str) -> u64 {
        self.replicas.get(session).map_or(0, |r| r.bytes_received)
    }
}
