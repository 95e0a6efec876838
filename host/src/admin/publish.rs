//! Publishing a game module (`POST /admin/games/{game}/modules`): validate it,
//! and with `migrate` (or for a dry run) restore every live session of the game
//! into a scratch instance of it first ([`super::trial`]). A dry run stops
//! there. A `migrate` whose dry run failed for any session is refused
//! ([`PublishError::MigrationFailed`], nothing changed) unless forced; otherwise
//! the module is stored, made current, and each live session swaps at its next
//! event boundary. Called by `admin::http`.
//!
//! Invariant: nothing is stored and the current version does not move unless
//! the request is a real publish whose dry run passed or was forced. (In a
//! cluster the other nodes follow the stored game record: `cluster::publish`.)

use minotaur_runtime::Runtime;
use minotaur_state::{GameRecord, SwapPolicy};
use serde::{Deserialize, Serialize};

use super::{policy_name, trial};
use crate::{
    catalog::Game,
    cluster::ClusterHandle,
    session::{Registry, SwapFailure},
};

/// What a publish request asks for.
#[derive(Debug, Clone, Copy)]
pub struct PublishOptions {
    pub policy: SwapPolicy,
    /// Only the checks and the scratch restores; nothing changes.
    pub dry_run: bool,
    /// Publish a `migrate` even if some sessions failed the dry run (they stay
    /// on their rules).
    pub force: bool,
}

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
    /// The dry run of a `migrate` failed for some live sessions; the report
    /// lists them. Publish again with `force` to make it current anyway.
    #[error(
        "{} of {} live sessions cannot restore into the new rules; nothing changed \
         (publish with force to make it current anyway; those sessions keep their rules)",
        .0.failed.len(), .0.checked
    )]
    MigrationFailed(Box<PublishReport>),
}

impl PublishError {
    pub fn code(&self) -> &'static str {
        match self {
            PublishError::Load { code, .. } => code,
            PublishError::GameMismatch { .. } => "game_mismatch",
            PublishError::Store(_) => "internal",
            PublishError::MigrationFailed(_) => "migration_failed",
        }
    }
}

/// What a publish did (or, for a dry run or a refusal, would have done).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublishReport {
    pub game: String,
    pub rules_version: u32,
    pub module_hash: String,
    pub policy: String,
    /// A dry run: nothing was stored or changed.
    #[serde(default)]
    pub dry_run: bool,
    /// Whether the module is now the game's current version.
    #[serde(default)]
    pub current: bool,
    /// Live sessions restored into a scratch instance of the new rules.
    #[serde(default)]
    pub checked: usize,
    /// Live sessions moved to the new rules.
    pub migrated: usize,
    /// Live sessions that stay (or, in a dry run, would stay) on their rules,
    /// and why, with the guest's panic message when it gave one.
    pub failed: Vec<SwapFailure>,
}

/// Validate `wasm` as game `game`; dry-run it against the live sessions; then,
/// unless refused, store it, make it current, and with `migrate` swap every
/// live session of the game on this node to it.
pub async fn publish(
    registry: &Registry,
    runtime: &Runtime,
    cluster: Option<&ClusterHandle>,
    game: &str,
    wasm: Vec<u8>,
    opts: PublishOptions,
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
    let migrate = opts.policy == SwapPolicy::MigrateLive;
    let mut report = PublishReport {
        game: game.to_owned(),
        rules_version: info.rules_version,
        module_hash: hash.clone(),
        policy: policy_name(opts.policy).to_owned(),
        dry_run: opts.dry_run,
        current: false,
        checked: 0,
        migrated: 0,
        failed: Vec::new(),
    };
    let trial = if opts.dry_run || migrate {
        let t = trial::run(registry, cluster, game, &module).await;
        report.checked = t.checked;
        tracing::info!(
            game, rules_version = info.rules_version, %hash, checked = t.checked,
            failed = t.failed.len(), dry_run = opts.dry_run, "dry run of new rules"
        );
        t
    } else {
        trial::Trial::default()
    };
    if opts.dry_run {
        report.failed = trial.failed;
        return Ok(report);
    }
    if migrate && !trial.failed.is_empty() && !opts.force {
        report.failed = trial.failed;
        tracing::warn!(game, %hash, failed = report.failed.len(), "publish refused: the dry run failed");
        return Err(PublishError::MigrationFailed(Box::new(report)));
    }

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
                policy: opts.policy,
                versions: Vec::new(),
            });
        if !rec.versions.iter().any(|(_, v)| *v == hash) {
            rec.versions.push((info.rules_version, hash.clone()));
        }
        rec.current_hash = hash.clone();
        rec.policy = opts.policy;
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
    report.current = true;
    tracing::info!(game, rules_version = info.rules_version, %hash, policy = ?opts.policy, forced = opts.force, "module published");

    if migrate {
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
                    panic: None,
                }),
            }
        }
        // Sessions of other nodes that failed the dry run stay on their rules
        // there too (forced): they belong in this report.
        let swapped_here: Vec<String> = report.failed.iter().map(|f| f.session.clone()).collect();
        report.failed.extend(
            trial.failed.into_iter().filter(|f| {
                !trial.local.contains(&f.session) && !swapped_here.contains(&f.session)
            }),
        );
        tracing::info!(
            game,
            migrated = report.migrated,
            failed = report.failed.len(),
            "live sessions migrated"
        );
    }
    Ok(report)
}
