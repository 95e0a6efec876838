//! A publish's dry run: every live session of the game has its current state
//! restored into a scratch instance of the new module (on the guest pool), and
//! each failure is reported with the guest's panic message. Nothing changes:
//! the scratch instances are dropped, the sessions go on, nothing is stored.
//! Called by `admin::publish` before a `migrate` (and alone for `dry_run`).
//!
//! Which sessions: this node's, through their actors (`Command::Snapshot`, the
//! state as of their next event boundary); in a cluster also every live
//! session of the game that another node owns, read from the database (its
//! document and journal replayed through the rules it names: the state as of
//! its last write, at most `--persist-interval-ms` behind).

use std::collections::BTreeSet;

use minotaur_abi::Restore;
use minotaur_runtime::{GameModule, GuestError};
use minotaur_state::SessionDoc;

use crate::{
    catalog,
    cluster::ClusterHandle,
    session::{actor, Registry, SwapFailure},
};

/// What a dry run found.
#[derive(Debug, Default)]
pub struct Trial {
    /// Sessions whose state was restored into the new rules (or tried).
    pub checked: usize,
    /// Those that failed, and why (their rules stay as they are).
    pub failed: Vec<SwapFailure>,
    /// The sessions tried that this node runs (the others belong to other nodes).
    pub local: BTreeSet<String>,
}

/// Restore every live session of `game` into a scratch instance of `new`.
pub async fn run(
    registry: &Registry,
    cluster: Option<&ClusterHandle>,
    game: &str,
    new: &GameModule,
) -> Trial {
    let mut trial = Trial::default();
    let local = registry.handles_of(game);
    let jobs: Vec<_> = local
        .into_iter()
        .map(|h| {
            let new = new.clone();
            tokio::spawn(async move {
                let id = h.id().to_owned();
                let result = match h.snapshot().await {
                    Ok((state, from)) => scratch_restore(&new, &id, state, from).await,
                    Err(f) => Err(f),
                };
                (id, result)
            })
        })
        .collect();
    for job in jobs {
        match job.await {
            // Over before its turn came: nothing left to migrate.
            Ok((_, Err(f))) if f.code == "session_ended" => {}
            Ok((id, result)) => {
                trial.checked += 1;
                trial.local.insert(id);
                if let Err(f) = result {
                    trial.failed.push(f);
                }
            }
            Err(e) => {
                trial.checked += 1;
                trial
                    .failed
                    .push(failure("", "internal", e.to_string(), None));
            }
        }
    }
    if let Some(cluster) = cluster {
        remote(cluster, game, new, &mut trial).await;
    }
    for f in &trial.failed {
        tracing::warn!(
            session = %f.session, game, rules_version = new.info().rules_version,
            code = %f.code, panic = f.panic.as_deref(), error = %f.message,
            "dry run: the new rules cannot restore this session"
        );
    }
    trial
}

/// The sessions of `game` other nodes own, read from the database.
async fn remote(cluster: &ClusterHandle, game: &str, new: &GameModule, trial: &mut Trial) {
    let db = cluster.db();
    let ids = match db.live_elsewhere(game, cluster.node_id()).await {
        Ok(ids) => ids,
        Err(e) => {
            trial.failed.push(failure(
                "",
                "database",
                format!("listing the game's sessions on other nodes: {e}"),
                None,
            ));
            return;
        }
    };
    let records = cluster.registry().persist().records.clone();
    for id in ids {
        if trial.local.contains(&id) {
            continue; // moved here meanwhile: already tried
        }
        trial.checked += 1;
        let state = async {
            let stored = db
                .load_session(&id)
                .await
                .map_err(|e| format!("database: {e}"))?;
            let Some(stored) = stored.filter(|s| !s.ended) else {
                return Ok(None); // ended meanwhile: nothing to migrate
            };
            let Some(bytes) = stored.doc else {
                return Ok(None); // never written: nothing acknowledged yet
            };
            let doc = SessionDoc::load(&bytes).map_err(|e| format!("document: {e}"))?;
            let meta = doc.meta().map_err(|e| format!("document: {e}"))?;
            let module = catalog::load_module(cluster.runtime(), &records, &meta.module_hash)
                .await
                .map_err(|e| format!("its module {}: {e}", meta.module_hash))?;
            actor::stored_state(&doc, stored.journal, &module)
                .await
                .map(Some)
                .map_err(|e| format!("rebuilding its state under its own rules: {e}"))
        };
        match state.await {
            Ok(Some((state, from))) => {
                if let Err(f) = scratch_restore(new, &id, state, from).await {
                    trial.failed.push(f);
                }
            }
            Ok(None) => trial.checked -= 1,
            Err(message) => trial
                .failed
                .push(failure(&id, "session_unreadable", message, None)),
        }
    }
}

/// On the guest pool: a fresh instance of `new`, `restore` the state written by
/// rules `from`, then a snapshot (what a real swap does before it commits).
async fn scratch_restore(
    new: &GameModule,
    session: &str,
    state: Vec<u8>,
    from: u32,
) -> Result<(), SwapFailure> {
    let module = new.clone();
    let id = session.to_owned();
    let job = new.pool().clone().run(move || {
        let guest = |e: GuestError, what: &str| {
            failure(&id, e.code(), format!("{what}: {e}"), e.panic_message())
        };
        let mut scratch = module
            .instantiate()
            .map_err(|e| guest(e, "instantiating the new rules"))?;
        let out = scratch
            .restore(&Restore {
                state,
                from_version: from,
            })
            .map_err(|e| guest(e, "restore into the new rules"))?;
        if let Some(reason) = out.reject {
            return Err(failure(&id, "restore_rejected", reason, None));
        }
        scratch
            .snapshot()
            .map_err(|e| guest(e, "snapshot of the new rules"))?;
        Ok(())
    });
    match job.await {
        Ok(result) => result,
        Err(e) => Err(failure(session, "internal", e.to_string(), None)),
    }
}

fn failure(session: &str, code: &str, message: String, panic: Option<&str>) -> SwapFailure {
    SwapFailure {
        session: session.to_owned(),
        code: code.to_owned(),
        message,
        panic: panic.map(str::to_owned),
    }
}
