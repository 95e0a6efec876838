//! [`Runtime`]: the engine, a linker with only the panic import, and the content-addressed
//! cache of validated modules. The host creates one per node and loads every
//! published module through it. A load runs the `precheck` (features,
//! function limits), Cranelift and the probe instance as one job on the guest
//! pool, bounded by `Limits::compile_timeout`; the same bytes compile once at a
//! time, different modules side by side.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use minotaur_abi::{GameInfo, ABI_VERSION};
use wasmtime::{Linker, Module};

use crate::engine::EngineShared;
use crate::instance::{Compiled, StoreData};
use crate::{
    precheck, validate, GameModule, GuestError, GuestInstance, GuestPool, Limits, LoadError,
    ModuleHash, PoolError,
};

/// One wasmtime engine (pooling allocator, epoch interruption), a linker with
/// one import (`minotaur`.`panic`, see `crate::panic_import`), and a content-addressed cache of compiled modules.
/// Cheap to clone (Arc inside); Send + Sync.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<EngineShared>,
    /// Only `minotaur`.`panic`: guests get no clock, randomness, fs or network.
    linker: Linker<StoreData>,
    cache: RwLock<HashMap<ModuleHash, GameModule>>,
    /// One lock per module being compiled, so two loads of the same bytes
    /// compile once while different modules compile side by side.
    compiling: Mutex<HashMap<ModuleHash, Arc<Mutex<()>>>>,
    compiled: AtomicU64,
}

impl Runtime {
    /// Build the engine and start its epoch ticker.
    pub fn new(limits: Limits) -> Result<Runtime, crate::RuntimeError> {
        let shared = EngineShared::new(limits)?;
        let mut linker = Linker::new(&shared.engine);
        crate::panic_import::link(&mut linker)
            .map_err(|e| crate::RuntimeError::Config(format!("linking the panic import: {e:#}")))?;
        Ok(Runtime {
            inner: Arc::new(Inner {
                shared,
                linker,
                cache: RwLock::new(HashMap::new()),
                compiling: Mutex::new(HashMap::new()),
                compiled: AtomicU64::new(0),
            }),
        })
    }

    /// The limits this runtime enforces.
    pub fn limits(&self) -> &Limits {
        &self.inner.shared.limits
    }

    /// The pool that runs guest calls and compiles; every module and instance
    /// of this runtime uses it too ([`GameModule::pool`]).
    pub fn pool(&self) -> &GuestPool {
        &self.inner.shared.pool
    }

    /// Validate (is wasm, size, allowed features, function limits, no imports,
    /// required exports with the right signatures, ABI version), compile once
    /// per content hash (a cache hit returns the same `GameModule`), and read
    /// its `GameInfo`. Everything after the size and hash runs on the guest
    /// pool within `Limits::compile_timeout`; this blocks the calling thread
    /// meanwhile, so async callers call it from a blocking thread.
    pub fn load(&self, wasm: &[u8]) -> Result<GameModule, LoadError> {
        precheck::check_envelope(wasm, self.limits())?;
        let hash = ModuleHash::of(wasm);
        if let Some(module) = self.get(&hash) {
            return Ok(module);
        }
        let gate = self
            .inner
            .compiling
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(hash)
            .or_default()
            .clone();
        let compiled = {
            let _compiling = gate.lock().unwrap_or_else(|e| e.into_inner());
            // Another thread may have finished the same bytes while we waited.
            match self.get(&hash) {
                Some(module) => return Ok(module),
                None => self.compile_on_pool(wasm, hash),
            }
        };
        {
            let mut compiling = self
                .inner
                .compiling
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            // The map's clone and ours: nobody else waits for these bytes.
            if Arc::strong_count(&gate) <= 2 {
                compiling.remove(&hash);
            }
        }
        let module = compiled?;
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

    /// [`Runtime::compile`] as a pool job, given up after the compile timeout
    /// (the job then runs to its end, bounded by the precheck's limits, and its
    /// module is dropped: a refused module is never cached).
    fn compile_on_pool(&self, wasm: &[u8], hash: ModuleHash) -> Result<GameModule, LoadError> {
        if GuestPool::on_pool_thread() {
            // Waiting for another pool job here could wait for ourselves.
            return self.compile(wasm, hash);
        }
        let timeout = self.limits().compile_timeout;
        let (rt, wasm) = (self.clone(), wasm.to_vec());
        match self
            .pool()
            .run_wait(timeout, move || rt.compile(&wasm, hash))
        {
            Ok(result) => result,
            Err(PoolError::TimedOut(limit)) => {
                tracing::warn!(module = %hash, ?limit, "module compile timed out; refused");
                Err(LoadError::CompileTimeout(limit))
            }
            Err(PoolError::Panicked) => Err(LoadError::Compile("the compiler panicked".into())),
        }
    }

    fn compile(&self, wasm: &[u8], hash: ModuleHash) -> Result<GameModule, LoadError> {
        let shared = &self.inner.shared;
        precheck::check(wasm, &shared.limits)?;
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
