//! Restart recovery: at `serve` start, every session in the store comes back
//! as a running actor — its module by hash (from the store), a fresh instance
//! restored from the stored state, then the session's journal replayed on it
//! (the guest events acknowledged after the document's last write), its seats
//! (disconnected) and tokens back in the registry. A document that does not
//! load is quarantined and logged; every other session still loads. A journal
//! that does not decode is logged and skipped: the session resumes from its
//! document. Called once by `main`.

use minotaur_runtime::Runtime;
use minotaur_state::{Journal, SessionDoc, Store, StoreError};

use super::{actor, Registry};
use crate::catalog::Game;

/// What recovery did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub restored: Vec<String>,
    pub quarantined: Vec<String>,
    /// Sessions left in the store because they could not start now.
    pub failed: Vec<String>,
}

/// Restore every stored session into `registry`.
pub async fn restore_all(registry: &Registry, runtime: &Runtime) -> Result<Recovered, StoreError> {
    let Some(store) = registry.persist().writer.store().cloned() else {
        // In a cluster, the node's sessions come back through the directory.
        return Ok(Recovered::default());
    };
    let rt = runtime.clone();
    let (loaded, mut report) = tokio::task::spawn_blocking(move || load_all(&store, &rt))
        .await
        .expect("session loading panicked")?;
    for (id, doc, journal, game) in loaded {
        match actor::resume_stored(doc, journal, game, registry.persist().clone(), None).await {
            Ok((handle, task, tokens)) => {
                registry.insert(handle, task, &tokens);
                report.restored.push(id);
            }
            Err(e) => {
                tracing::error!(session = %id, code = e.code().code(), error = %e, "stored session did not restart; left in the store");
                report.failed.push(id);
            }
        }
    }
    tracing::info!(
        restored = report.restored.len(),
        quarantined = report.quarantined.len(),
        failed = report.failed.len(),
        "sessions recovered from the store"
    );
    Ok(report)
}

type Loaded = Vec<(String, SessionDoc, Journal, Game)>;

/// The blocking half: read and check every document, quarantine bad ones.
fn load_all(store: &Store, runtime: &Runtime) -> Result<(Loaded, Recovered), StoreError> {
    let mut report = Recovered::default();
    let mut loaded = Vec::new();
    for id in store.list_sessions()? {
        let doc = match store.load_session(&id) {
            Ok(Some(doc)) => doc,
            Ok(None) => continue,
            Err(StoreError::Corrupt { session, source }) => {
                tracing::error!(%session, error = %source, "stored session is corrupt; quarantined");
                store.quarantine_session(&session)?;
                report.quarantined.push(session);
                continue;
            }
            Err(e) => return Err(e),
        };
        // A document that loads but lacks its meta or state is corrupt too.
        let meta = match doc.meta().and_then(|m| doc.state().map(|_| m)) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(session = %id, error = %e, "stored session is incomplete; quarantined");
                store.quarantine_session(&id)?;
                report.quarantined.push(id);
                continue;
            }
        };
        let journal = match store.load_journal(&id) {
            Ok(j) => j,
            Err(e @ StoreError::Corrupt { .. }) => {
                tracing::error!(session = %id, error = %e, "journal does not decode; resuming from the document");
                Journal::default()
            }
            Err(e) => return Err(e),
        };
        let module = match minotaur_runtime::ModuleHash::from_hex(&meta.module_hash)
            .ok()
            .and_then(|h| runtime.get(&h))
        {
            Some(m) => Ok(m),
            None => match store.get_module(&meta.module_hash) {
                Ok(Some(bytes)) => runtime.load(&bytes).map_err(|e| e.to_string()),
                Ok(None) => Err(format!("module {} is not in the store", meta.module_hash)),
                Err(e) => Err(e.to_string()),
            },
        };
        match module {
            Ok(module) => loaded.push((
                id,
                doc,
                journal,
                Game {
                    name: meta.game,
                    module,
                },
            )),
            Err(e) => {
                tracing::error!(session = %id, error = %e, "module of a stored session is unavailable; left in the store");
                report.failed.push(id);
            }
        }
    }
    Ok((loaded, report))
}
