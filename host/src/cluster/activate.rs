//! Starting a session this node now owns in the directory (a takeover claim, a hand-off to
//! it, or its own sessions after a restart): load its document and journal from the
//! database, its module by hash, restore a fresh instance, and register its seats' tokens.
//! Logs one structured `activated` line per activation — the cluster tests' invariant
//! checker reads exactly these. Called by the node's sweep and by the gateway when a
//! player arrives for a session handed here a moment ago.

use minotaur_state::{SessionDoc, SessionWrite};

use super::ClusterHandle;
use crate::{
    catalog::{self, Game},
    session::actor,
};

/// Why a session this node owns did not start here.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    #[error("database: {0}")]
    Db(#[from] minotaur_cluster::DbError),
    #[error("the directory names {owner} at epoch {epoch} now")]
    NotOwner { owner: String, epoch: i64 },
    #[error("session document: {0}")]
    Doc(#[from] minotaur_state::StateError),
    #[error("module {hash}: {reason}")]
    Module { hash: String, reason: String },
    #[error("starting the session: {0}")]
    Start(String),
}

impl ClusterHandle {
    /// Starts `session`, which the directory gives this node at `epoch`. `Ok(false)`: it
    /// had never been written (nothing acknowledged), so it is ended instead.
    pub async fn activate(
        &self,
        session: &str,
        epoch: i64,
        why: &str,
    ) -> Result<bool, ActivateError> {
        if self.registry().get(session).is_some() {
            return Ok(true);
        }
        let db = self.db();
        let stored = db.load_session(session).await?;
        let Some(stored) =
            stored.filter(|s| s.owner == self.node_id() && s.epoch == epoch && !s.ended)
        else {
            let at = db.locate(session).await?;
            let (owner, epoch) = at.map_or((String::new(), 0), |l| (l.owner, l.epoch));
            return Err(ActivateError::NotOwner { owner, epoch });
        };
        let Some(bytes) = stored.doc else {
            // Entered in the directory but never written: no player was ever answered.
            let persist = self.registry().persist();
            let _ = persist
                .writer
                .write(
                    SessionWrite::Delete {
                        session: session.to_owned(),
                    },
                    epoch as u64,
                )
                .await;
            tracing::info!(%session, "claimed session had no state yet; ended");
            return Ok(false);
        };
        let doc = SessionDoc::load(&bytes)?;
        let meta = doc.meta()?;
        let persist = self.registry().persist().clone();
        let module = catalog::load_module(self.runtime(), &persist.records, &meta.module_hash)
            .await
            .map_err(|e| ActivateError::Module {
                hash: meta.module_hash.clone(),
                reason: e.to_string(),
            })?;
        let game = Game {
            name: meta.game.clone(),
            module,
        };
        self.gate().activated(session);
        let (handle, task, tokens) =
            actor::resume_stored(doc, stored.journal, game, persist, Some(epoch as u64))
                .await
                .map_err(|e| ActivateError::Start(e.to_string()))?;
        if self.registry().get(session).is_some() {
            // Started by a concurrent activation meanwhile: this copy stops unserved.
            handle.shutdown().await;
            let _ = task.await;
            return Ok(true);
        }
        self.registry().insert(handle, task, &tokens);
        tracing::info!(
            target: "minotaur::activation",
            "activated session={} node={} epoch={} why={}",
            session,
            self.node_id(),
            epoch,
            why
        );
        Ok(true)
    }
}
