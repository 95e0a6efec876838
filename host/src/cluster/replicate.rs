//! The owner side of replication, off the session actors' hot path: one node-level task
//! keeps a *mirror* of each owned session's document, fed with the same full saves and
//! incremental chunks the actor makes durable (through [`ReplicationHook`], never blocking
//! the actor), and at most every `--sync-interval` syncs each changed mirror to the session's
//! replicas (`rank(session, other serving nodes)[..rf]`) with Automerge's sync protocol, so
//! only changes travel. The drain path asks it to hand sessions over ([`ReplicationHook::hand_off_batch`]).

use std::{collections::HashMap, time::Duration};

use futures_util::StreamExt;
use minotaur_cluster::{placement::rank, ReplicaTarget, ReplicationError, Replicator, SyncStats};
use minotaur_state::{SessionDoc, SessionWrite, Store};
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};

use super::ClusterHandle;

/// What the replication task is told.
pub enum ReplEvent {
    /// The session's document was saved whole (first save, or after compaction).
    Full { session: String, bytes: Vec<u8> },
    /// An incremental save since the previous one.
    Append { session: String, chunk: Vec<u8> },
    /// The session is over or gone from this node: stop replicating it.
    Forget { session: String },
    /// Drain: hand several sessions to `target` at once (each synced to its exact heads,
    /// then one `HandoffBatch` round trip if `batched`, else one `Handoff` each, all in
    /// flight together). Answers per session with the new epoch.
    HandOffBatch {
        sessions: Vec<String>,
        target: ReplicaTarget,
        batched: bool,
        deadline: Instant,
        reply: oneshot::Sender<Vec<(String, Result<u64, HandOffError>)>>,
    },
    /// Mirrors of sessions a batch did not hand over: they are replicated from here again.
    Restore { mirrors: Vec<(String, Mirror)> },
}

/// Why a handoff did not happen (the session stays here at its epoch).
#[derive(Debug, thiserror::Error)]
pub enum HandOffError {
    #[error("no replicated copy of session {0} on this node")]
    Unknown(String),
    #[error(transparent)]
    Replication(#[from] ReplicationError),
    #[error("session document: {0}")]
    Doc(#[from] minotaur_state::StateError),
    #[error("the replication task has stopped")]
    Stopped,
    #[error("{0}")]
    Batch(String),
}

/// Feeds the replication task. Cheap to clone; sending never waits.
#[derive(Clone)]
pub struct ReplicationHook {
    tx: mpsc::UnboundedSender<ReplEvent>,
}

impl ReplicationHook {
    /// The store writer's tap: every durable session write, in order.
    pub fn tap(&self) -> crate::session::persist::Tap {
        let hook = self.clone();
        Box::new(move |w: &SessionWrite| match w {
            SessionWrite::Full { session, bytes } => hook.full(session, bytes.clone()),
            SessionWrite::Append { session, chunk } => hook.append(session, chunk.clone()),
            SessionWrite::Delete { session } => hook.forget(session),
            // Replicas are synced from the document; it catches up with a journal entry
            // within the journal interval (at most the sync interval in a cluster).
            SessionWrite::Journal { .. } => {}
        })
    }

    pub fn full(&self, session: &str, bytes: Vec<u8>) {
        let _ = self.tx.send(ReplEvent::Full {
            session: session.to_owned(),
            bytes,
        });
    }

    pub fn append(&self, session: &str, chunk: Vec<u8>) {
        let _ = self.tx.send(ReplEvent::Append {
            session: session.to_owned(),
            chunk,
        });
    }

    pub fn forget(&self, session: &str) {
        let _ = self.tx.send(ReplEvent::Forget {
            session: session.to_owned(),
        });
    }

    /// Drain: hands `sessions` to `target` (`batched`: it speaks protocol 2): each is synced
    /// until the target acknowledges its exact current heads, then handed over at epoch + 1.
    /// Answers per session with the new epoch. Call only after each session's final write
    /// went through this hook (the task handles events in order, so the mirror then holds
    /// the final heads).
    pub async fn hand_off_batch(
        &self,
        sessions: Vec<String>,
        target: ReplicaTarget,
        batched: bool,
        deadline: Instant,
    ) -> Vec<(String, Result<u64, HandOffError>)> {
        let (reply, rx) = oneshot::channel();
        let all = sessions.clone();
        let sent = self.tx.send(ReplEvent::HandOffBatch {
            sessions,
            target,
            batched,
            deadline,
            reply,
        });
        match sent {
            Ok(()) => match rx.await {
                Ok(results) => results,
                Err(_) => stopped(all),
            },
            Err(_) => stopped(all),
        }
    }
}

fn stopped(sessions: Vec<String>) -> Vec<(String, Result<u64, HandOffError>)> {
    sessions
        .into_iter()
        .map(|s| (s, Err(HandOffError::Stopped)))
        .collect()
}

pub struct Mirror {
    doc: SessionDoc,
    replicator: Replicator,
    /// Changed since the replicas last acknowledged everything.
    dirty: bool,
}

/// Starts the replication task of this node; `store` is the node's session store (a session
/// the task has no mirror of yet, e.g. one restored at start, is read from it).
pub fn start(cluster: ClusterHandle, store: Store) -> ReplicationHook {
    let (tx, rx) = mpsc::unbounded_channel();
    let hook = ReplicationHook { tx };
    tokio::spawn(run(cluster, store, rx, hook.clone()));
    hook
}

async fn run(
    cluster: ClusterHandle,
    store: Store,
    mut rx: mpsc::UnboundedReceiver<ReplEvent>,
    hook: ReplicationHook,
) {
    let mut mirrors: HashMap<String, Mirror> = HashMap::new();
    let mut tick = tokio::time::interval(cluster.config().sync_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut totals = SyncStats::default();
    let mut sent_counted = 0u64;
    loop {
        tokio::select! {
            // Events first: a drain's handoff request must not wait behind a sync round.
            biased;
            ev = rx.recv() => match ev {
                Some(ev) => on_event(&cluster, &store, &mut mirrors, &hook, ev).await,
                None => break,
            },
            _ = tick.tick() => {
                sync_dirty(&cluster, &mut mirrors).await;
                let now = mirrors.values().fold(SyncStats::default(), |a, m| add(a, m.replicator.stats()));
                crate::metrics::sync_bytes("sent", now.bytes_sent.saturating_sub(sent_counted) as usize);
                sent_counted = now.bytes_sent;
                if now.bytes_sent > totals.bytes_sent + (1 << 20) {
                    tracing::debug!(bytes_sent = now.bytes_sent, messages = now.messages, "replication traffic");
                    totals = now;
                }
            }
        }
    }
}

fn add(a: SyncStats, b: SyncStats) -> SyncStats {
    SyncStats {
        bytes_sent: a.bytes_sent + b.bytes_sent,
        bytes_received: a.bytes_received + b.bytes_received,
        messages: a.messages + b.messages,
        full_docs: a.full_docs + b.full_docs,
    }
}

fn put_mirror(
    cluster: &ClusterHandle,
    mirrors: &mut HashMap<String, Mirror>,
    session: String,
    doc: SessionDoc,
) {
    match mirrors.get_mut(&session) {
        Some(m) => {
            m.doc = doc;
            m.dirty = true;
        }
        None => {
            let replicator = Replicator::new(session.clone(), cluster.net().clone(), vec![])
                .with_request_timeout(Duration::from_millis(500));
            mirrors.insert(
                session,
                Mirror {
                    doc,
                    replicator,
                    dirty: true,
                },
            );
        }
    }
}

async fn on_event(
    cluster: &ClusterHandle,
    store: &Store,
    mirrors: &mut HashMap<String, Mirror>,
    hook: &ReplicationHook,
    ev: ReplEvent,
) {
    match ev {
        ReplEvent::Full { session, bytes } => match SessionDoc::load(&bytes) {
            Ok(doc) => put_mirror(cluster, mirrors, session, doc),
            Err(e) => {
                tracing::error!(%session, error = %e, "full save does not load; not replicated")
            }
        },
        ReplEvent::Append { session, chunk } => match mirrors.get_mut(&session) {
            Some(m) => {
                if let Err(e) = m.doc.automerge().load_incremental(&chunk) {
                    tracing::error!(%session, error = %e, "incremental save does not apply to the mirror");
                }
                m.dirty = true;
            }
            // The chunk is durable already, so the stored document includes it.
            None => match store.load_session(&session) {
                Ok(Some(doc)) => put_mirror(cluster, mirrors, session, doc),
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(%session, error = %e, "cannot read the session to replicate it")
                }
            },
        },
        ReplEvent::Forget { session } => {
            mirrors.remove(&session);
        }
        ReplEvent::HandOffBatch {
            sessions,
            target,
            batched,
            deadline,
            reply,
        } => {
            // The mirrors leave the map while their handoff runs in its own task, so that
            // this task keeps syncing the other sessions and several batches overlap.
            let mut taken = Vec::with_capacity(sessions.len());
            let mut unknown = Vec::new();
            for session in sessions {
                match mirrors.remove(&session) {
                    Some(m) => taken.push((session, m)),
                    None => {
                        let e = HandOffError::Unknown(session.clone());
                        unknown.push((session, Err(e)));
                    }
                }
            }
            let net = cluster.net().clone();
            let hook = hook.clone();
            tokio::spawn(async move {
                let (mut results, failed) =
                    hand_off_batch(&net, taken, &target, batched, deadline).await;
                // Back in the map before the drain hears of the failure and resumes the
                // sessions, so their next writes find their mirrors (one channel, in order).
                if !failed.is_empty() {
                    let _ = hook.tx.send(ReplEvent::Restore { mirrors: failed });
                }
                results.extend(unknown);
                for (_, r) in &results {
                    crate::metrics::handoff("out", if r.is_ok() { "accepted" } else { "failed" });
                }
                let _ = reply.send(results);
            });
        }
        ReplEvent::Restore { mirrors: back } => {
            for (session, mut m) in back {
                // Its replicas are recomputed at the next sync.
                m.dirty = true;
                mirrors.insert(session, m);
            }
        }
    }
}

/// Largest document a handoff batch carries whole (see [`hand_off_batch`]); a bigger one is
/// synced to the target first, so that only its changes travel.
const INLINE_MAX: usize = 256 << 10;

/// Hands the sessions of `taken` to `target`. With `batched` (protocol 2): a session whose
/// exact heads the target has acknowledged already travels as a bare item, one the target
/// is behind on carries its whole document (up to [`INLINE_MAX`]; a bigger one is synced
/// first), all in one `HandoffBatch`. Without: each is synced until the target acknowledges
/// its exact heads, then handed over by its own `Handoff`, concurrently. Returns the result
/// per session and the mirrors of the sessions not handed over.
async fn hand_off_batch(
    net: &minotaur_cluster::PeerNet,
    taken: Vec<(String, Mirror)>,
    target: &ReplicaTarget,
    batched: bool,
    deadline: Instant,
) -> (
    Vec<(String, Result<u64, HandOffError>)>,
    Vec<(String, Mirror)>,
) {
    let started = Instant::now();
    let synced = futures_util::future::join_all(taken.into_iter().map(|(session, mut m)| {
        let target = target.clone();
        async move {
            let heads = m.doc.commit();
            let r = async {
                let epoch = m.doc.meta()?.epoch + 1;
                let want = minotaur_cluster::wire_heads(&heads);
                let in_sync = m
                    .replicator
                    .acked(&target.node)
                    .is_some_and(|(acked, _)| acked == want.as_slice());
                if batched && !in_sync {
                    // The target is behind (or has no copy): the document travels whole in
                    // the batch instead of a sync exchange and a replica write per session.
                    let bytes = m.doc.automerge().save();
                    if bytes.len() <= INLINE_MAX {
                        return Ok::<_, HandOffError>((epoch, Some(bytes)));
                    }
                }
                m.replicator.set_replicas(vec![target]);
                m.replicator
                    .sync_until_acked(&mut m.doc, &heads, deadline)
                    .await?;
                Ok((epoch, None))
            }
            .await;
            (session, m, heads, r)
        }
    }))
    .await;
    let synced_at = Instant::now();
    let mut results = Vec::new();
    let mut failed = Vec::new();
    let mut ready = Vec::new();
    for (session, m, heads, r) in synced {
        match r {
            Ok((epoch, doc)) => ready.push((session, m, heads, epoch, doc)),
            Err(e) => {
                results.push((session.clone(), Err(e)));
                failed.push((session, m));
            }
        }
    }
    if ready.is_empty() {
        return (results, failed);
    }
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(100));
    tracing::debug!(target = %target.node, sessions = ready.len(), sync_ms = synced_at.duration_since(started).as_millis() as u64, "handoff batch: synced");
    if batched {
        let items = ready
            .iter_mut()
            .map(
                |(session, _, heads, epoch, doc)| minotaur_cluster::HandoffItem {
                    session: session.clone(),
                    epoch: *epoch,
                    heads: minotaur_cluster::wire_heads(heads),
                    doc: doc.take().map(serde_bytes::ByteBuf::from),
                },
            )
            .collect();
        match minotaur_cluster::handoff_batch(net, target, items, left).await {
            Ok(out) => {
                let accepted: HashMap<String, u64> = out.accepted.into_iter().collect();
                let mut rejected: HashMap<String, String> = out.rejected.into_iter().collect();
                for (session, m, _, epoch, _) in ready {
                    if accepted.get(&session) == Some(&epoch) {
                        results.push((session, Ok(epoch)));
                    } else {
                        let why = rejected
                            .remove(&session)
                            .unwrap_or_else(|| "not in the target's answer".into());
                        let e = ReplicationError::HandoffRejected {
                            session: session.clone(),
                            reason: why,
                        };
                        results.push((session.clone(), Err(e.into())));
                        failed.push((session, m));
                    }
                }
            }
            Err(e) => {
                let why = e.to_string();
                for (session, m, _, _, _) in ready {
                    results.push((session.clone(), Err(HandOffError::Batch(why.clone()))));
                    failed.push((session, m));
                }
            }
        }
    } else {
        let one_by_one = ready
            .into_iter()
            .map(|(session, mut m, heads, epoch, _)| async move {
                let r = m.replicator.handoff(target, epoch, &heads, left).await;
                (session, m, epoch, r)
            });
        for (session, m, epoch, r) in futures_util::future::join_all(one_by_one).await {
            match r {
                Ok(()) => results.push((session, Ok(epoch))),
                Err(e) => {
                    results.push((session.clone(), Err(e.into())));
                    failed.push((session, m));
                }
            }
        }
    }
    (results, failed)
}

/// The replicas `session` should have now: the first `rf` of the other serving nodes in
/// rendezvous order (the first of them is also where a drain hands it).
pub fn replica_targets(cluster: &ClusterHandle, session: &str) -> Vec<ReplicaTarget> {
    let me = cluster.node_id();
    let members = cluster.members();
    let others: Vec<&str> = members
        .iter()
        .filter(|m| m.id != me && m.status == minotaur_cluster::NodeStatus::Serving)
        .map(|m| m.id.as_str())
        .collect();
    rank(session, &others)
        .into_iter()
        .take(cluster.config().replication_factor)
        .filter_map(|id| {
            members.iter().find(|m| m.id == id).map(|m| ReplicaTarget {
                node: m.id.clone(),
                addr: m.peer_addr,
            })
        })
        .collect()
}

/// Sessions synced at once by one sync round: their round trips overlap instead of adding up.
const SYNC_PARALLEL: usize = 16;

async fn sync_dirty(cluster: &ClusterHandle, mirrors: &mut HashMap<String, Mirror>) {
    let mut work = Vec::new();
    for (session, m) in mirrors.iter_mut() {
        let targets = replica_targets(cluster, session);
        if targets.is_empty() {
            continue;
        }
        if m.replicator.replicas() != targets {
            // A replica left (drained, replaced) or a better-ranked node joined: the new
            // replica needs the document even if nothing changed here, or an idle session
            // ends up with no replica and does not survive its owner's crash.
            m.replicator.set_replicas(targets);
            m.dirty = true;
        }
        if m.dirty {
            work.push((session, m));
        }
    }
    let rounds: Vec<_> = work
        .into_iter()
        .map(|(session, m)| {
            Box::pin(async move {
                let r = m.replicator.sync(&mut m.doc).await;
                (session, m, r)
            })
        })
        .collect();
    let results: Vec<_> = futures_util::stream::iter(rounds)
        .buffer_unordered(SYNC_PARALLEL)
        .collect()
        .await;
    let mut fenced = Vec::new();
    for (session, m, r) in results {
        match r {
            Ok(behind) => m.dirty = !behind.is_empty(),
            Err(ReplicationError::Fenced { epoch, .. }) => {
                tracing::warn!(%session, epoch, "a replica knows a newer owner: this copy is fenced");
                fenced.push((session.clone(), epoch));
            }
            Err(e) => tracing::debug!(%session, error = %e, "sync failed; retrying next interval"),
        }
    }
    for (s, epoch) in fenced {
        mirrors.remove(&s);
        cluster.report_fenced(&s, epoch);
    }
}
