//! Starting a session this node just received (an accepted handoff, or a takeover of a dead
//! owner's session): make sure its module is here (fetched by content hash from a peer if
//! not), store the document, start its actor from the document and register its seats'
//! tokens. Logs one structured `activated` line per activation — the cluster tests' invariant
//! checker reads exactly these. Called by the cluster node task.

use std::time::Duration;

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
}

impl Activator {
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
        let have = {
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
