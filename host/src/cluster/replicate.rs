//! The owner side of replication, off the session actors' hot path: one node-level task
//! keeps a *mirror* of each owned session's document, fed with the same full saves and
//! incremental chunks the actor makes durable (through [`ReplicationHook`], never blocking
//! the actor), and at most every `--sync-interval` syncs each changed mirror to the session's
//! replicas (`rank(session, other serving nodes)[..rf]`) with Automerge's sync protocol, so
//! only changes travel. The drain path asks it to hand a session over ([`ReplicationHook::hand_off`]).

use std::{collections::HashMap, time::Duration};

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
    /// Drain: sync `target` to exactly the current heads, then hand the session over at
    /// epoch + 1. Answers with the new epoch.
    HandOff {
        session: String,
        target: ReplicaTarget,
        deadline: Instant,
        reply: oneshot::Sender<Result<u64, HandOffError>>,
    },
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

    /// Call only after the session's final write went through this hook (the task handles
    /// events in order, so the mirror then holds the final heads).
    pub async fn hand_off(
        &self,
        session: &str,
        target: ReplicaTarget,
        deadline: Instant,
    ) -> Result<u64, HandOffError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(ReplEvent::HandOff {
                session: session.to_owned(),
                target,
                deadline,
                reply,
            })
            .map_err(|_| HandOffError::Stopped)?;
        rx.await.map_err(|_| HandOffError::Stopped)?
    }
}

struct Mirror {
    doc: SessionDoc,
    replicator: Replicator,
    /// Changed since the replicas last acknowledged everything.
    dirty: bool,
}

/// Starts the replication task of this node; `store` is the node's session store (a session
/// the task has no mirror of yet, e.g. one restored at start, is read from it).
pub fn start(cluster: ClusterHandle, store: Store) -> ReplicationHook {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(cluster, store, rx));
    ReplicationHook { tx }
}

async fn run(cluster: ClusterHandle, store: Store, mut rx: mpsc::UnboundedReceiver<ReplEvent>) {
    let mut mirrors: HashMap<String, Mirror> = HashMap::new();
    let mut tick = tokio::time::interval(cluster.config().sync_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut totals = SyncStats::default();
    let mut sent_counted = 0u64;
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(ev) => on_event(&cluster, &store, &mut mirrors, ev).await,
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
        ReplEvent::HandOff {
            session,
            target,
            deadline,
            reply,
        } => {
            let result = match mirrors.get_mut(&session) {
                None => Err(HandOffError::Unknown(session.clone())),
                Some(m) => hand_off(m, target, deadline).await,
            };
            crate::metrics::handoff("out", if result.is_ok() { "accepted" } else { "failed" });
            if result.is_ok() {
                mirrors.remove(&session);
            }
            let _ = reply.send(result);
        }
    }
}

async fn hand_off(
    m: &mut Mirror,
    target: ReplicaTarget,
    deadline: Instant,
) -> Result<u64, HandOffError> {
    let heads = m.doc.commit();
    let epoch = m.doc.meta()?.epoch + 1;
    m.replicator.set_replicas(vec![target.clone()]);
    m.replicator
        .sync_until_acked(&mut m.doc, &heads, deadline)
        .await?;
    let left = deadline.saturating_duration_since(Instant::now());
    m.replicator
        .handoff(&target, epoch, &heads, left.max(Duration::from_millis(100)))
        .await?;
    Ok(epoch)
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

async fn sync_dirty(cluster: &ClusterHandle, mirrors: &mut HashMap<String, Mirror>) {
    let mut fenced = Vec::new();
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
        if !m.dirty {
            continue;
        }
        match m.replicator.sync(&mut m.doc).await {
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
