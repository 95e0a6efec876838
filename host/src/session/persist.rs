//! The node's group-commit store writer: one blocking thread that collects the
//! pending session writes of every actor and commits them in ONE redb
//! transaction (one fsync), then completes each waiter. Session actors call
//! [`StoreWriter::write`] after each batch and release acks only once it
//! returns, so nothing acknowledged is ever lost. A cluster node sets a *tap*
//! that sees each write once it is durable (replication feeds on it).

use std::sync::{mpsc as std_mpsc, Arc, OnceLock};

use minotaur_state::{SessionWrite, Store};
use tokio::sync::oneshot;

/// Most writes gathered into one transaction.
const MAX_GROUP: usize = 1024;

struct Request {
    write: SessionWrite,
    done: oneshot::Sender<Result<(), String>>,
}

/// Why a write did not become durable.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PersistError {
    #[error("store write failed: {0}")]
    Store(String),
    #[error("the store writer has stopped")]
    Stopped,
}

/// Handle on the writer thread. Cheap to clone; the thread ends when the last
/// handle is dropped (after committing what is queued).
#[derive(Clone)]
pub struct StoreWriter {
    tx: std_mpsc::Sender<Request>,
    store: Store,
    tap: Arc<OnceLock<Tap>>,
}

/// Called with every session write once it is durable, in each session's write order.
pub type Tap = Box<dyn Fn(&SessionWrite) + Send + Sync>;

impl StoreWriter {
    /// Start the writer thread for `store`.
    pub fn start(store: Store) -> StoreWriter {
        let (tx, rx) = std_mpsc::channel::<Request>();
        let thread_store = store.clone();
        std::thread::Builder::new()
            .name("minotaur-store-writer".into())
            .spawn(move || run(thread_store, rx))
            .expect("spawn the store writer thread");
        StoreWriter {
            tx,
            store,
            tap: Arc::new(OnceLock::new()),
        }
    }

    /// Sets the tap (once; later calls are ignored). Must not block.
    pub fn set_tap(&self, tap: Tap) {
        let _ = self.tap.set(tap);
    }

    /// The store, for reads and for rare writes (modules, games, quarantine),
    /// which callers run on a blocking thread.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Queue `write` and wait until it is durable.
    pub async fn write(&self, write: SessionWrite) -> Result<(), PersistError> {
        let (done, rx) = oneshot::channel();
        // Journal entries stay local (replicas sync from the document): no copy for the tap.
        let copy = self
            .tap
            .get()
            .filter(|_| !matches!(write, SessionWrite::Journal { .. }))
            .map(|_| write.clone());
        self.tx
            .send(Request { write, done })
            .map_err(|_| PersistError::Stopped)?;
        rx.await
            .map_err(|_| PersistError::Stopped)?
            .map_err(PersistError::Store)?;
        if let (Some(tap), Some(w)) = (self.tap.get(), copy) {
            tap(&w);
        }
        Ok(())
    }
}

fn run(store: Store, rx: std_mpsc::Receiver<Request>) {
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
        let result = store.write_sessions(&writes).map_err(|e| e.to_string());
        crate::metrics::store_write(started.elapsed());
        if let Err(e) = &result {
            tracing::error!(error = %e, writes = writes.len(), "store group commit failed");
        }
        for done in waiters {
            let _ = done.send(result.clone());
        }
    }
}
