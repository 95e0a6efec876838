//! Starting a session this node just received (an accepted handoff, or a takeover of a dead
//! owner's session): make sure its module is here (fetched by content hash from a peer if
//! not), store the document, start its actor from the document and register its seats'
//! tokens. Logs one structured `activated` line per activation — the cluster tests' invariant
//! checker reads exactly these. Called by the cluster node task.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::StreamExt;

use minotaur_cluster::{fetch_module, ReplicaTarget};
use minotaur_runtime::Runtime;
use minotaur_state::{SessionDoc, SessionWrite};

use super::ClusterHandle;
use crate::{
    catalog::{self, Game},
    session::{actor, Registry},
};

/// Why a received session could not start here.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    #[error("session document: {0}")]
    Doc(#[from] minotaur_state::StateError),
    #[error("module {hash}: {reason}")]
    Module { hash: String, reason: String },
    #[error("storing the session: {0}")]
    Store(String),
    #[error("starting the session: {0}")]
    Start(String),
}

/// Everything activation needs; cheap to clone.
#[derive(Clone)]
pub struct Activator {
    pub cluster: ClusterHandle,
    pub registry: Registry,
    pub runtime: Runtime,
    /// Module hashes known to be in this node's store.
    pub modules_stored: Arc<Mutex<HashSet<String>>>,
}

/// Sessions of one batch (a handoff batch, a takeover) started at once: their store writes
/// share group commits, while instantiation and restore stay a few at a time.
const ACTIVATE_PARALLEL: usize = 32;

impl Activator {
    /// [`Activator::activate`] for several sessions; a session that does not start is logged.
    pub async fn activate_all(
        &self,
        docs: Vec<SessionDoc>,
        source: Option<ReplicaTarget>,
        why: &str,
    ) {
        futures_util::stream::iter(docs)
            .map(|doc| {
                let source = source.clone();
                async move {
                    let session = doc.meta().map(|m| m.session).unwrap_or_default();
                    if let Err(e) = self.activate(doc, source, why).await {
                        tracing::error!(%session, error = %e, why, "received session did not start here");
                    }
                }
            })
            .buffer_unordered(ACTIVATE_PARALLEL)
            .collect::<()>()
            .await;
    }

    /// Starts `doc` (already at this node's `(owner, epoch)`) as a live session. `source` is
    /// a node likely to have the module (the previous owner).
    pub async fn activate(
        &self,
        mut doc: SessionDoc,
        source: Option<ReplicaTarget>,
        why: &str,
    ) -> Result<(), ActivateError> {
        let meta = doc.meta()?;
        let store = self.registry.persist().writer.store().clone();
        let hash = meta.module_hash.clone();
        // Modules are content-addressed and never removed: once seen in the store, a hash
        // needs no store read (a whole module) for the next session of a batch.
        let known = self.modules_stored.lock().expect("modules").contains(&hash);
        let have = known || {
            let (store, hash) = (store.clone(), hash.clone());
            tokio::task::spawn_blocking(move || store.get_module(&hash).ok().flatten().is_some())
                .await
                .unwrap_or(false)
        };
        if !have {
            let module_err = |reason: String| ActivateError::Module {
                hash: hash.clone(),
                reason,
            };
            let from = source.ok_or_else(|| module_err("no node to fetch it from".into()))?;
            let bytes = fetch_module(
                self.cluster.net(),
                &from.node,
                from.addr,
                &hash,
                Duration::from_secs(5),
            )
            .await
            .map_err(|e| module_err(e.to_string()))?;
            store
                .put_module(&hash, &bytes)
                .map_err(|e| module_err(e.to_string()))?;
            tracing::info!(module = %hash, from = %from.node, "module fetched by hash");
        }
        self.modules_stored
            .lock()
            .expect("modules")
            .insert(hash.clone());
        let module = catalog::load_module(&self.runtime, &store, &hash).map_err(|e| {
            ActivateError::Module {
                hash: hash.clone(),
                reason: e.to_string(),
            }
        })?;
        // Through the store writer, whose tap also seeds the replication mirror.
        let bytes = doc.save();
        self.registry
            .persist()
            .writer
            .write(SessionWrite::Full {
                session: meta.session.clone(),
                bytes,
            })
            .await
            .map_err(|e| ActivateError::Store(e.to_string()))?;
        let game = Game {
            name: meta.game.clone(),
            module,
        };
        let persist = self.registry.persist().clone();
        let (handle, task, tokens) = actor::resume_stored(doc, None, game, persist)
            .map_err(|e| ActivateError::Start(e.to_string()))?;
        self.registry.insert(handle, task, &tokens);
        tracing::info!(
            target: "minotaur::activation",
            "activated session={} node={} epoch={} why={}",
            meta.session,
            self.cluster.node_id(),
            meta.epoch,
            why
        );
        Ok(())
    }
}
