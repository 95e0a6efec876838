//! The node's group-commit store writer: one writer that collects the pending session
//! writes of every actor and commits them together, then completes each waiter. Session
//! actors call [`StoreWriter::write`] after each batch and release acks only once it
//! returns, so nothing acknowledged is ever lost.
//!
//! Two backends: alone, a blocking thread commits each group in ONE redb transaction (one
//! fsync). In a cluster, a task commits each group in one PostgreSQL transaction, every
//! write fenced on `(this node, the epoch the actor holds)` (`minotaur_cluster::writes`):
//! a write that finds another owner is answered [`PersistError::Fenced`] and the actor
//! stops. While the database is unreachable the group is retried (the actors' batches,
//! and so their acks, wait: a pause for players, nothing lost).

use std::{
    collections::{HashSet, VecDeque},
    sync::{mpsc as std_mpsc, Arc},
    time::Duration,
};

use minotaur_cluster::{Db, FencedWrite};
use minotaur_state::{SessionWrite, Store};
use tokio::sync::{mpsc, oneshot, watch};

/// Most writes gathered into one transaction.
const MAX_GROUP: usize = 1024;
/// Cluster group commits in flight at once (each on its own connection).
const GROUPS_IN_FLIGHT: usize = 4;

struct Request {
    write: SessionWrite,
    epoch: u64,
    done: oneshot::Sender<Result<(), PersistError>>,
}

/// Why a write did not become durable.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PersistError {
    #[error("store write failed: {0}")]
    Store(String),
    #[error("the store writer has stopped")]
    Stopped,
    /// The directory names another owner or a newer epoch: this node no longer owns the
    /// session, and nothing of this write happened.
    #[error("fenced: the session is owned elsewhere now")]
    Fenced,
}

/// Where session writes go.
#[derive(Clone)]
pub enum Backend {
    /// Single node: the embedded redb store.
    Embedded(Store),
    /// Cluster: the PostgreSQL directory, writes fenced on this node id.
    Cluster { db: Db, node: Arc<str> },
}

/// Handle on the writer. Cheap to clone; the writer ends when the last handle is dropped
/// (after committing what is queued).
#[derive(Clone)]
pub struct StoreWriter {
    tx: Sender,
    backend: Backend,
    /// `true` while the cluster writer cannot reach the database.
    unavailable: watch::Receiver<bool>,
}

#[derive(Clone)]
enum Sender {
    Thread(std_mpsc::Sender<Request>),
    Task(mpsc::UnboundedSender<Request>),
}

impl StoreWriter {
    /// Start the writer for `backend` (the cluster writer needs a tokio runtime).
    pub fn start(backend: Backend) -> StoreWriter {
        let (up_tx, unavailable) = watch::channel(false);
        let tx = match &backend {
            Backend::Embedded(store) => {
                let (tx, rx) = std_mpsc::channel::<Request>();
                let store = store.clone();
                std::thread::Builder::new()
                    .name("minotaur-store-writer".into())
                    .spawn(move || run_embedded(store, rx))
                    .expect("spawn the store writer thread");
                Sender::Thread(tx)
            }
            Backend::Cluster { db, node } => {
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(run_cluster(db.clone(), node.clone(), rx, up_tx));
                Sender::Task(tx)
            }
        };
        StoreWriter {
            tx,
            backend,
            unavailable,
        }
    }

    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The embedded store (single-node mode only).
    pub fn store(&self) -> Option<&Store> {
        match &self.backend {
            Backend::Embedded(s) => Some(s),
            Backend::Cluster { .. } => None,
        }
    }

    /// `true` while the cluster database is unreachable for writes.
    pub fn unavailable(&self) -> bool {
        *self.unavailable.borrow()
    }

    /// Queue `write` of a session held at `epoch` and wait until it is durable.
    pub async fn write(&self, write: SessionWrite, epoch: u64) -> Result<(), PersistError> {
        let (done, rx) = oneshot::channel();
        let req = Request { write, epoch, done };
        let sent = match &self.tx {
            Sender::Thread(tx) => tx.send(req).is_ok(),
            Sender::Task(tx) => tx.send(req).is_ok(),
        };
        if !sent {
            return Err(PersistError::Stopped);
        }
        rx.await.map_err(|_| PersistError::Stopped)?
    }
}

fn run_embedded(store: Store, rx: std_mpsc::Receiver<Request>) {
    let mut group: Vec<Request> = Vec::new();
    // Blocks for the first request, then takes whatever else queued up while
    // the previous transaction was committing: the group grows with the load.
    while let Ok(first) = rx.recv() {
        group.push(first);
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(r) => group.push(r),
                Err(_) => break,
            }
        }
        let (writes, waiters): (Vec<SessionWrite>, Vec<_>) =
            group.drain(..).map(|r| (r.write, r.done)).unzip();
        let started = std::time::Instant::now();
        let result = store
            .write_sessions(&writes)
            .map_err(|e| PersistError::Store(e.to_string()));
        crate::metrics::store_write(started.elapsed());
        if let Err(e) = &result {
            tracing::error!(error = %e, writes = writes.len(), "store group commit failed");
        }
        for done in waiters {
            let _ = done.send(result.clone());
        }
    }
}

async fn run_cluster(
    db: Db,
    node: Arc<str>,
    mut rx: mpsc::UnboundedReceiver<Request>,
    unavailable: watch::Sender<bool>,
) {
    let unavailable = Arc::new(unavailable);
    let slots = Arc::new(tokio::sync::Semaphore::new(GROUPS_IN_FLIGHT));
    // A session's second write waits for the next group (a group holds one per session).
    let mut carry: VecDeque<Request> = VecDeque::new();
    loop {
        let first = match carry.pop_front() {
            Some(r) => r,
            None => match rx.recv().await {
                Some(r) => r,
                None => return,
            },
        };
        let mut seen: HashSet<String> = HashSet::new();
        seen.insert(first.write.session().to_owned());
        let mut group = vec![first];
        let mut later = VecDeque::new();
        while group.len() < MAX_GROUP {
            let next = match carry.pop_front() {
                Some(r) => r,
                None => match rx.try_recv() {
                    Ok(r) => r,
                    Err(_) => break,
                },
            };
            if seen.insert(next.write.session().to_owned()) {
                group.push(next);
            } else {
                later.push_back(next);
            }
        }
        later.extend(carry.drain(..));
        carry = later;
        // Groups hold disjoint sessions (an actor's next write waits for its previous one),
        // so several commit at once, each on its own connection: the writer's time is
        // round trips, not database work.
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .expect("the writer's semaphore is never closed");
        let (db, node, unavailable) = (db.clone(), node.clone(), unavailable.clone());
        tokio::spawn(async move {
            commit_group(&db, &node, group, &unavailable).await;
            drop(permit);
        });
    }
}

/// Commits one group, retrying while the database is unreachable, and answers its waiters.
async fn commit_group(db: &Db, node: &str, group: Vec<Request>, unavailable: &watch::Sender<bool>) {
    let writes: Vec<FencedWrite> = group
        .iter()
        .map(|r| FencedWrite {
            epoch: r.epoch,
            write: r.write.clone(),
        })
        .collect();
    let started = std::time::Instant::now();
    let mut backoff = Duration::from_millis(50);
    let result = loop {
        match db.write_sessions(node, &writes).await {
            Err(e) if e.is_unavailable() => {
                if !*unavailable.borrow() {
                    tracing::warn!(error = %e, writes = writes.len(), "database unreachable; holding writes (and their acks) until it is back");
                    let _ = unavailable.send(true);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            other => break other,
        }
    };
    if *unavailable.borrow() {
        tracing::info!(
            held_ms = started.elapsed().as_millis() as u64,
            "database reachable again; writes resume"
        );
        let _ = unavailable.send(false);
    }
    crate::metrics::store_write(started.elapsed());
    match result {
        Ok(applied) => {
            for (r, ok) in group.into_iter().zip(applied) {
                let _ = r.done.send(if ok {
                    Ok(())
                } else {
                    Err(PersistError::Fenced)
                });
            }
        }
        Err(e) => {
            tracing::error!(error = %e, writes = writes.len(), "database group commit failed");
            for r in group {
                let _ = r.done.send(Err(PersistError::Store(e.to_string())));
            }
        }
    }
}
