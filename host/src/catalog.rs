//! The games this node offers: name → compiled [`GameModule`]. Loaded once at
//! start from `--games-dir` (`<name>.wasm`, named by file so an operator can
//! serve two versions side by side); read by the registry and the lobby.

use std::{collections::BTreeMap, path::Path, sync::Arc};

use minotaur_runtime::{GameModule, Runtime};

/// One game on offer.
#[derive(Clone)]
pub struct Game {
    /// The name players and the lobby use (the file name without `.wasm`).
    pub name: String,
    pub module: GameModule,
}

/// All games by name. Cheap to clone.
#[derive(Clone, Default)]
pub struct Catalog {
    games: Arc<BTreeMap<String, Game>>,
}

impl Catalog {
    /// Load every `*.wasm` in `dir`. A file that fails to load is logged and
    /// skipped so one bad module cannot keep the node down.
    pub fn load_dir(runtime: &Runtime, dir: &Path) -> std::io::Result<Catalog> {
        let mut games = BTreeMap::new();
        let mut entries: Vec<_> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
            .collect();
        entries.sort();
        for path in entries {
            let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot read game module; skipped");
                    continue;
                }
            };
            match runtime.load(&bytes) {
                Ok(module) => {
                    let info = module.info();
                    tracing::info!(
                        game = name,
                        module_name = %info.name,
                        rules_version = info.rules_version,
                        hash = %module.hash(),
                        "game loaded"
                    );
                    games.insert(
                        name.to_owned(),
                        Game {
                            name: name.to_owned(),
                            module,
                        },
                    );
                }
                Err(e) => tracing::warn!(
                    path = %path.display(),
                    code = e.code(),
                    error = %e,
                    "game module refused; skipped"
                ),
            }
        }
        Ok(Catalog {
            games: Arc::new(games),
        })
    }

    /// A catalog from already loaded modules (tests, tools).
    pub fn from_games(games: impl IntoIterator<Item = Game>) -> Catalog {
        Catalog {
            games: Arc::new(games.into_iter().map(|g| (g.name.clone(), g)).collect()),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Game> {
        self.games.get(name)
    }

    /// Games in name order.
    pub fn iter(&self) -> impl Iterator<Item = &Game> {
        self.games.values()
    }

    pub fn len(&self) -> usize {
        self.games.len()
    }

    pub fn is_empty(&self) -> bool {
        self.games.is_empty()
    }
}
