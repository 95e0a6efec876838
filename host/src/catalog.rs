//! The games this node offers: game name (the module's `GameInfo.name`) → the
//! current [`GameModule`]. Built at start from the game records ([`Records`]: the
//! embedded store, or the cluster database) plus `--games-dir` (a file whose hash is
//! new becomes its game's newest version); changed by publish. Read by the registry,
//! the lobby and the admin API.

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{Arc, RwLock},
};

use minotaur_runtime::{GameModule, LoadError, Runtime};
use minotaur_state::{GameRecord, SwapPolicy};

use crate::records::{Records, RecordsError};

/// One game on offer, at one rules version.
#[derive(Clone)]
pub struct Game {
    /// The name players and the lobby use (`GameInfo.name` of the module).
    pub name: String,
    pub module: GameModule,
}

impl std::fmt::Debug for Game {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Game")
            .field("name", &self.name)
            .field("rules_version", &self.module.info().rules_version)
            .field("hash", &self.module.hash().to_hex())
            .finish()
    }
}

/// Why the catalog could not be built or changed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] RecordsError),
    #[error("module {hash} is not in the store")]
    MissingModule { hash: String },
    #[error("module {hash} does not load: {source}")]
    Load {
        hash: String,
        #[source]
        source: LoadError,
    },
}

/// All games by name. Cheap to clone; clones share the same games.
#[derive(Clone, Default)]
pub struct Catalog {
    games: Arc<RwLock<BTreeMap<String, Game>>>,
}

impl Catalog {
    /// Build the catalog from `records` and `dir`. Every module is put in the
    /// records by hash; a game record's current version stays current unless `dir`
    /// brings a module never seen before. A file that fails to load is logged and
    /// skipped. Compiles run on blocking threads.
    pub async fn load(
        runtime: &Runtime,
        store: &Records,
        dir: &Path,
    ) -> Result<Catalog, CatalogError> {
        let mut records: BTreeMap<String, GameRecord> = store.games().await?.into_iter().collect();
        let mut fresh: Vec<GameModule> = Vec::new();
        for (path, bytes) in read_wasm_files(dir)? {
            let module = match compile(runtime, bytes.clone()).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(path = %path, code = e.code(), error = %e, "game module refused; skipped");
                    continue;
                }
            };
            let hash = module.hash().to_hex();
            if store.get_module(&hash).await?.is_none() {
                store.put_module(&hash, &bytes).await?;
                fresh.push(module);
            } else if !records.contains_key(&module.info().name) {
                fresh.push(module);
            }
        }
        // Older rules first, so the newest new version ends up current.
        fresh.sort_by_key(|m| m.info().rules_version);
        for module in fresh {
            let info = module.info();
            let hash = module.hash().to_hex();
            let rec = records
                .entry(info.name.clone())
                .or_insert_with(|| GameRecord {
                    current_hash: hash.clone(),
                    policy: SwapPolicy::NewSessionsOnly,
                    versions: Vec::new(),
                });
            if !rec.versions.iter().any(|(_, h)| *h == hash) {
                rec.versions.push((info.rules_version, hash.clone()));
            }
            rec.current_hash = hash;
            store.set_game(&info.name, rec).await?;
        }
        let mut games = BTreeMap::new();
        for (name, rec) in records {
            let module = load_module(runtime, store, &rec.current_hash).await?;
            tracing::info!(
                game = %name,
                rules_version = module.info().rules_version,
                hash = %rec.current_hash,
                "game loaded"
            );
            games.insert(name.clone(), Game { name, module });
        }
        Ok(Catalog {
            games: Arc::new(RwLock::new(games)),
        })
    }

    /// A catalog from already loaded modules (tests, tools).
    pub fn from_games(games: impl IntoIterator<Item = Game>) -> Catalog {
        Catalog {
            games: Arc::new(RwLock::new(
                games.into_iter().map(|g| (g.name.clone(), g)).collect(),
            )),
        }
    }

    /// The current version of `name`.
    pub fn get(&self, name: &str) -> Option<Game> {
        self.read().get(name).cloned()
    }

    /// Make `game` the current version of its name (after a publish).
    pub fn set_current(&self, game: Game) {
        self.games
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(game.name.clone(), game);
    }

    /// Games in name order.
    pub fn list(&self) -> Vec<Game> {
        self.read().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Game>> {
        // Plain map: still consistent after a panic elsewhere.
        self.games.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// A module by hash: from the runtime's cache, else from the records.
pub async fn load_module(
    runtime: &Runtime,
    store: &Records,
    hash: &str,
) -> Result<GameModule, CatalogError> {
    if let Ok(h) = minotaur_runtime::ModuleHash::from_hex(hash) {
        if let Some(m) = runtime.get(&h) {
            return Ok(m);
        }
    }
    let bytes = store
        .get_module(hash)
        .await?
        .ok_or_else(|| CatalogError::MissingModule {
            hash: hash.to_owned(),
        })?;
    compile(runtime, bytes)
        .await
        .map_err(|source| CatalogError::Load {
            hash: hash.to_owned(),
            source,
        })
}

/// `Runtime::load` from a blocking thread, which waits while the guest pool
/// prechecks and compiles (within `--compile-timeout-ms`).
pub(crate) async fn compile(runtime: &Runtime, bytes: Vec<u8>) -> Result<GameModule, LoadError> {
    let rt = runtime.clone();
    tokio::task::spawn_blocking(move || rt.load(&bytes))
        .await
        .expect("module compile panicked")
}

/// `(path, bytes)` of every `*.wasm` directly in `dir`, sorted by path.
fn read_wasm_files(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, CatalogError> {
    let io = |path: &Path, source| CatalogError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "wasm"))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        match std::fs::read(&path) {
            Ok(b) => out.push((path.display().to_string(), b)),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read game module; skipped")
            }
        }
    }
    Ok(out)
}
