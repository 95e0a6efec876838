//! [`Runtime`]: the engine, an import-free linker, and the content-addressed
//! cache of validated modules. The host creates one per node and loads every
//! published module through it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use minotaur_abi::{GameInfo, ABI_VERSION};
use wasmtime::{Linker, Module};

use crate::engine::EngineShared;
use crate::instance::{Compiled, StoreData};
use crate::{validate, GameModule, GuestError, GuestInstance, Limits, LoadError, ModuleHash};

/// One wasmtime engine (pooling allocator, epoch interruption), a linker with
/// NO imports, and a content-addressed cache of compiled modules.
/// Cheap to clone (Arc inside); Send + Sync.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<EngineShared>,
    /// Empty on purpose: guests get no clock, randomness, fs or network.
    linker: Linker<StoreData>,
    cache: RwLock<HashMap<ModuleHash, GameModule>>,
    /// Held while compiling so two loads of the same bytes compile once.
    compiling: Mutex<()>,
    compiled: AtomicU64,
}

impl Runtime {
    /// Build the engine and start its epoch ticker.
    pub fn new(limits: Limits) -> Result<Runtime, crate::RuntimeError> {
        let shared = EngineShared::new(limits)?;
        let linker = Linker::new(&shared.engine);
        Ok(Runtime {
            inner: Arc::new(Inner {
                shared,
                linker,
                cache: RwLock::new(HashMap::new()),
                compiling: Mutex::new(()),
                compiled: AtomicU64::new(0),
            }),
        })
    }

    /// The limits this runtime enforces.
    pub fn limits(&self) -> &Limits {
        &self.inner.shared.limits
    }

    /// Validate (is wasm, size, no imports, required exports with the right
    /// signatures, ABI version), compile once per content hash (a cache hit
    /// returns the same `GameModule`), and read its `GameInfo`.
    pub fn load(&self, wasm: &[u8]) -> Result<GameModule, LoadError> {
        let max = self.limits().max_module_bytes;
        if wasm.len() > max {
            return Err(LoadError::TooLarge {
                size: wasm.len(),
                max,
            });
        }
        if !wasm.starts_with(b"\0asm") {
            let head = &wasm[..wasm.len().min(4)];
            return Err(LoadError::NotWasm(format!(
                "expected the bytes `\\0asm`, found {head:02x?}"
            )));
        }
        let hash = ModuleHash::of(wasm);
        if let Some(module) = self.get(&hash) {
            return Ok(module);
        }
        let _compiling = self
            .inner
            .compiling
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Another thread may have finished the same bytes while we waited.
        if let Some(module) = self.get(&hash) {
            return Ok(module);
        }
        let module = self.compile(wasm, hash)?;
        self.inner
            .cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(hash, module.clone());
        tracing::info!(
            module = %hash,
            game = %module.info().name,
            rules_version = module.info().rules_version,
            bytes = wasm.len(),
            "loaded game module"
        );
        Ok(module)
    }

    /// A module already in the cache.
    pub fn get(&self, hash: &ModuleHash) -> Option<GameModule> {
        let cache = self.inner.cache.read().unwrap_or_else(|e| e.into_inner());
        cache.get(hash).cloned()
    }

    /// How many modules this runtime has compiled (cache misses that got as
    /// far as compiling); a second load of the same bytes does not add one.
    pub fn compiled_count(&self) -> u64 {
        self.inner.compiled.load(Ordering::Relaxed)
    }

    /// Hashes of every module in the cache.
    pub fn cached(&self) -> Vec<ModuleHash> {
        let cache = self.inner.cache.read().unwrap_or_else(|e| e.into_inner());
        cache.keys().copied().collect()
    }

    fn compile(&self, wasm: &[u8], hash: ModuleHash) -> Result<GameModule, LoadError> {
        let shared = &self.inner.shared;
        let module = Module::from_binary(&shared.engine, wasm)
            .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        self.inner.compiled.fetch_add(1, Ordering::Relaxed);
        validate::check_imports(&module)?;
        let exports = validate::check_exports(&module)?;
        let pre = self
            .inner
            .linker
            .instantiate_pre(&module)
            .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        let compiled = Arc::new(Compiled {
            shared: shared.clone(),
            pre,
            exports,
            hash,
            wasm_len: wasm.len(),
        });

        // A probe instance answers the two questions only the guest can.
        let mut probe = GuestInstance::new(compiled.clone()).map_err(LoadError::Instantiate)?;
        let found = probe.abi_version().map_err(LoadError::Info)?;
        if found != ABI_VERSION {
            return Err(LoadError::WrongAbiVersion {
                found,
                expected: ABI_VERSION,
            });
        }
        let info = probe.game_info().map_err(LoadError::Info)?;
        check_info(&info).map_err(|m| LoadError::Info(GuestError::BadOutput(m)))?;
        Ok(GameModule::new(compiled, info))
    }
}

/// Reject infos the host could not act on sensibly.
fn check_info(info: &GameInfo) -> Result<(), String> {
    if info.name.trim().is_empty() {
        return Err("game name is empty".into());
    }
    if info.max_players == 0 || info.min_players > info.max_players {
        return Err(format!(
            "player counts make no sense: min {} max {}",
            info.min_players, info.max_players
        ));
    }
    Ok(())
}
