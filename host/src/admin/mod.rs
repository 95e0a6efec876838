//! Operator actions on a running node: publish a game module (new sessions
//! only, or migrate live sessions at their next event boundary), list sessions,
//! drain, show the cluster. [`listener`] serves them on the operator listener
//! (`--admin-listen`, apart from the players'): [`http`] under `/admin` behind the
//! bearer [`token`], with `/metrics`; [`client`] is the `minotaur
//! publish`/`sessions`/`drain`/`cluster`/`health` side.

pub mod client;
pub mod cluster;
pub mod http;
pub mod listener;
pub mod token;

pub use token::{token_path, AdminToken, TokenError};

use minotaur_runtime::Runtime;
use minotaur_state::{GameRecord, SwapPolicy};
use serde::{Deserialize, Serialize};

use crate::{
    catalog::Game,
    session::{Registry, SwapFailure},
};

/// Why a publish was refused (nothing changed then).
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Not a module this host can run; `code` is the runtime's load code.
    #[error("{message}")]
    Load { code: &'static str, message: String },
    #[error("the module is game `{found}`, not `{expected}`")]
    GameMismatch { expected: String, found: String },
    #[error("store: {0}")]
    Store(String),
}

impl PublishError {
    pub fn code(&self) -> &'static str {
        match self {
            PublishError::Load { code, .. } => code,
            PublishError::GameMismatch { .. } => "game_mismatch",
            PublishError::Store(_) => "internal",
        }
    }
}

/// What a publish did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublishReport {
    pub game: String,
    pub rules_version: u32,
    pub module_hash: String,
    pub policy: String,
    /// Live sessions moved to the new rules.
    pub migrated: usize,
    /// Live sessions that stayed on their rules, and why.
    pub failed: Vec<SwapFailure>,
}

/// Validate `wasm` as game `game`, store it, make it current, and with
/// `migrate` swap every live session of the game to it.
pub async fn publish(
    registry: &Registry,
    runtime: &Runtime,
    game: &str,
    wasm: Vec<u8>,
    policy: SwapPolicy,
) -> Result<PublishReport, PublishError> {
    // Off the async workers: the compile runs on the guest pool within its time
    // limit, and this blocking thread waits for it.
    let module = crate::catalog::compile(runtime, wasm.clone())
        .await
        .map_err(|e| PublishError::Load {
            code: e.code(),
            message: e.to_string(),
        })?;
    let info = module.info().clone();
    if info.name != game {
        return Err(PublishError::GameMismatch {
            expected: game.to_owned(),
            found: info.name,
        });
    }
    let hash = module.hash().to_hex();
    let store = registry.persist().records.clone();
    let stored = async {
        store.put_module(&hash, &wasm).await?;
        let mut rec = store
            .games()
            .await?
            .into_iter()
            .find(|(n, _)| n == game)
            .map(|(_, r)| r)
            .unwrap_or(GameRecord {
                current_hash: hash.clone(),
                policy,
                versions: Vec::new(),
            });
        if !rec.versions.iter().any(|(_, v)| *v == hash) {
            rec.versions.push((info.rules_version, hash.clone()));
        }
        rec.current_hash = hash.clone();
        rec.policy = policy;
        store.set_game(game, &rec).await
    };
    stored
        .await
        .map_err(|e: crate::records::RecordsError| PublishError::Store(e.to_string()))?;
    let new = Game {
        name: game.to_owned(),
        module,
    };
    registry.catalog().set_current(new.clone());
    tracing::info!(game, rules_version = info.rules_version, %hash, ?policy, "module published");

    let mut report = PublishReport {
        game: game.to_owned(),
        rules_version: info.rules_version,
        module_hash: hash,
        policy: policy_name(policy).to_owned(),
        migrated: 0,
        failed: Vec::new(),
    };
    if policy == SwapPolicy::MigrateLive {
        // Sessions swap concurrently, each at its own event boundary.
        let swaps = registry
            .handles_of(game)
            .into_iter()
            .map(|h| {
                let new = new.clone();
                tokio::spawn(async move { h.migrate(new).await })
            })
            .collect::<Vec<_>>();
        for swap in swaps {
            match swap.await {
                Ok(Ok(_)) => report.migrated += 1,
                Ok(Err(f)) => report.failed.push(f),
                Err(e) => report.failed.push(SwapFailure {
                    session: String::new(),
                    code: "internal".into(),
                    message: e.to_string(),
                }),
            }
        }
        tracing::info!(
            game,
            migrated = report.migrated,
            failed = report.failed.len(),
            "live sessions migrated"
        );
    }
    Ok(report)
}

pub fn policy_name(p: SwapPolicy) -> &'static str {
    match p {
        SwapPolicy::NewSessionsOnly => "new",
        SwapPolicy::MigrateLive => "migrate",
    }
}
