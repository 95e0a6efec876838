//! A compiled [`GameModule`] and its live [`GuestInstance`]s: the ABI calls on
//! the host side (alloc, write, call, bounds-check the returned region, decode).
//! The session actor owns one `GuestInstance`; this is its hot path.

use std::{sync::Arc, time::Instant};

use minotaur_abi::{unpack_region, Event, GameInfo, Init, Output, Restore};
use serde::{de::DeserializeOwned, Serialize};
use wasmtime::{
    InstancePre, Memory, ResourceLimiter, Store, Trap, TypedFunc, WasmParams, WasmResults,
};

use crate::engine::{EngineShared, TABLE_ELEMENTS};
use crate::error::POISONED;
use crate::validate::ExportIndices;
use crate::{GuestError, ModuleHash};

/// Everything about a module except its `GameInfo`, which needs a probe
/// instance to read: shared by the module handle and its instances.
pub(crate) struct Compiled {
    pub(crate) shared: Arc<EngineShared>,
    pub(crate) pre: InstancePre<StoreData>,
    pub(crate) exports: ExportIndices,
    pub(crate) hash: ModuleHash,
    pub(crate) wasm_len: usize,
}

/// A validated, compiled module ready to instantiate. Cheap clone; Send + Sync.
#[derive(Clone)]
pub struct GameModule {
    inner: Arc<ModuleInner>,
}

struct ModuleInner {
    compiled: Arc<Compiled>,
    info: GameInfo,
}

impl GameModule {
    pub(crate) fn new(compiled: Arc<Compiled>, info: GameInfo) -> Self {
        GameModule {
            inner: Arc::new(ModuleInner { compiled, info }),
        }
    }

    /// Content hash of the wasm bytes this module was loaded from.
    pub fn hash(&self) -> ModuleHash {
        self.inner.compiled.hash
    }

    /// What the module said about itself at load.
    pub fn info(&self) -> &GameInfo {
        &self.inner.info
    }

    /// Size of the wasm bytes.
    pub fn wasm_len(&self) -> usize {
        self.inner.compiled.wasm_len
    }

    /// The guest pool of the runtime that loaded this module: where calls
    /// into its instances belong (never the host's async workers).
    pub fn pool(&self) -> &crate::GuestPool {
        &self.inner.compiled.shared.pool
    }

    /// Fresh instance with its own store: a pooled slot, a copy-on-write
    /// memory image, the memory cap enforced by the store's limiter.
    pub fn instantiate(&self) -> Result<GuestInstance, GuestError> {
        GuestInstance::new(self.inner.compiled.clone())
    }
}

impl std::fmt::Debug for GameModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GameModule")
            .field("hash", &self.hash())
            .field("info", self.info())
            .field("wasm_len", &self.wasm_len())
            .finish()
    }
}

/// Per-store data: the memory cap, and whether the guest hit it during the
/// current call, so the trap that follows (a Rust allocator failing aborts
/// with `unreachable`) is reported as `MemoryLimit` rather than a plain trap;
/// and the panic message the guest handed over during the current call
/// (`crate::panic_import`), so the trap that follows is reported with it.
pub(crate) struct StoreData {
    max_memory_bytes: usize,
    memory_denied: bool,
    panic: Option<String>,
    /// When the running call started (its timeout is wall time; `throttle`).
    call_started: Instant,
}

impl StoreData {
    /// Keep the message of a panic (already cut and cleaned); the last wins.
    pub(crate) fn set_panic(&mut self, message: String) {
        self.panic = Some(message);
    }
}

impl ResourceLimiter for StoreData {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory_bytes {
            self.memory_denied = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= TABLE_ELEMENTS)
    }

    // One instance, one memory, one table per store: a session is one module.
    fn instances(&self) -> usize {
        1
    }
    fn memories(&self) -> usize {
        1
    }
    fn tables(&self) -> usize {
        1
    }
}

/// The exports the host calls, typed once per instance.
struct Funcs {
    abi_version: TypedFunc<(), i32>,
    alloc: TypedFunc<i32, i32>,
    info: TypedFunc<(), i64>,
    init: TypedFunc<(i32, i32), i64>,
    event: TypedFunc<(i32, i32), i64>,
    snapshot: TypedFunc<(), i64>,
    restore: TypedFunc<(i32, i32), i64>,
}

/// One live instance. Send (not Sync). Owned by exactly one session actor.
pub struct GuestInstance {
    module: Arc<Compiled>,
    store: Store<StoreData>,
    memory: Memory,
    funcs: Funcs,
    /// Reused encode buffer: the event path allocates nothing of its own.
    buf: Vec<u8>,
    poisoned: bool,
}

impl GuestInstance {
    pub(crate) fn new(module: Arc<Compiled>) -> Result<GuestInstance, GuestError> {
        let shared = &module.shared;
        let data = StoreData {
            max_memory_bytes: shared.limits.max_memory_bytes,
            memory_denied: false,
            panic: None,
            call_started: Instant::now(),
        };
        let mut store = Store::new(&shared.engine, data);
        store.limiter(|d| d as &mut dyn ResourceLimiter);
        let throttle = shared.throttle.clone();
        store.epoch_deadline_callback(move |ctx| Ok(throttle.on_deadline(ctx.data().call_started)));
        // A start function is guest code too: give it the same deadline.
        store.set_epoch_deadline(shared.throttle.first_deadline());
        let instance = match module.pre.instantiate(&mut store) {
            Ok(instance) => instance,
            Err(e) if e.downcast_ref::<Trap>().is_some() || store.data().memory_denied => {
                return Err(classify(&store, e))
            }
            Err(e) => return Err(GuestError::Instantiate(format!("{e:#}"))),
        };

        let ex = &module.exports;
        let mut get = |idx: &wasmtime::ModuleExport| {
            instance
                .get_module_export(&mut store, idx)
                .expect("export indices come from this module")
        };
        let memory = get(&ex.memory)
            .into_memory()
            .expect("validated at load: `memory` is a memory");
        let funcs = [
            ex.abi_version,
            ex.alloc,
            ex.info,
            ex.init,
            ex.event,
            ex.snapshot,
            ex.restore,
        ]
        .map(|idx| {
            get(&idx)
                .into_func()
                .expect("validated at load: a function")
        });
        let [abi_version, alloc, info, init, event, snapshot, restore] = funcs;
        let typed_err = |e: wasmtime::Error| GuestError::Instantiate(format!("{e:#}"));
        let funcs = Funcs {
            abi_version: abi_version.typed(&store).map_err(typed_err)?,
            alloc: alloc.typed(&store).map_err(typed_err)?,
            info: info.typed(&store).map_err(typed_err)?,
            init: init.typed(&store).map_err(typed_err)?,
            event: event.typed(&store).map_err(typed_err)?,
            snapshot: snapshot.typed(&store).map_err(typed_err)?,
            restore: restore.typed(&store).map_err(typed_err)?,
        };
        Ok(GuestInstance {
            module,
            store,
            memory,
            funcs,
            buf: Vec::with_capacity(256),
            poisoned: false,
        })
    }

    /// First call into a fresh instance of a new session.
    pub fn init(&mut self, init: &Init) -> Result<Output, GuestError> {
        self.guarded(|g| g.call_with(|f| &f.init, init))
    }

    /// Deliver one event; the guest's effects come back in the `Output`.
    pub fn event(&mut self, event: &Event) -> Result<Output, GuestError> {
        self.guarded(|g| g.call_with(|f| &f.event, event))
    }

    /// The guest state as MessagePack bytes (what `minotaur_snapshot` returns).
    pub fn snapshot(&mut self) -> Result<Vec<u8>, GuestError> {
        self.guarded(|g| {
            let packed = g.call(|f| &f.snapshot, ())?;
            Ok(g.region(packed)?.to_vec())
        })
    }

    /// Put a snapshot (possibly of older rules) into this fresh instance.
    pub fn restore(&mut self, restore: &Restore) -> Result<Output, GuestError> {
        self.guarded(|g| g.call_with(|f| &f.restore, restore))
    }

    /// Bytes of linear memory currently in use.
    pub fn memory_bytes(&self) -> usize {
        self.memory.data_size(&self.store)
    }

    /// Whether an earlier error has poisoned this instance.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Hash of the module this instance runs.
    pub fn module_hash(&self) -> ModuleHash {
        self.module.hash
    }

    /// `minotaur_abi_version`; used by `Runtime::load` on its probe instance.
    pub(crate) fn abi_version(&mut self) -> Result<u32, GuestError> {
        self.guarded(|g| Ok(g.call(|f| &f.abi_version, ())? as u32))
    }

    /// `minotaur_info`, decoded; used by `Runtime::load` on its probe instance.
    pub(crate) fn game_info(&mut self) -> Result<GameInfo, GuestError> {
        self.guarded(|g| {
            let packed = g.call(|f| &f.info, ())?;
            g.decode(packed)
        })
    }

    /// Refuse calls into a poisoned instance; poison it on any error.
    fn guarded<R>(
        &mut self,
        call: impl FnOnce(&mut Self) -> Result<R, GuestError>,
    ) -> Result<R, GuestError> {
        if self.poisoned {
            return Err(GuestError::Trap(POISONED.into()));
        }
        let data = self.store.data_mut();
        data.memory_denied = false;
        data.panic = None;
        let result = call(self);
        self.poisoned = result.is_err();
        result
    }

    /// Encode `msg`, hand it to the guest in a region from `minotaur_alloc`
    /// (the guest owns and frees it), call `f`, decode the `Output` it returns.
    fn call_with<M: Serialize>(
        &mut self,
        pick: fn(&Funcs) -> &TypedFunc<(i32, i32), i64>,
        msg: &M,
    ) -> Result<Output, GuestError> {
        self.buf.clear();
        // Same encoding as `minotaur_abi::encode` (named maps), into a reused buffer.
        rmp_serde::encode::write_named(&mut self.buf, msg)
            .map_err(|e| GuestError::Trap(format!("host could not encode the message: {e}")))?;
        let len = i32::try_from(self.buf.len())
            .map_err(|_| GuestError::Trap("message does not fit in guest memory".into()))?;
        let ptr = self.call(|f| &f.alloc, len)?;
        self.memory
            .write(&mut self.store, ptr as u32 as usize, &self.buf)
            .map_err(|_| {
                GuestError::BadOutput(format!(
                    "minotaur_alloc({len}) returned {ptr:#x}, outside guest memory"
                ))
            })?;
        let packed = self.call(pick, (ptr, len))?;
        self.decode(packed)
    }

    /// One wasm call with a fresh deadline.
    fn call<P: WasmParams, R: WasmResults>(
        &mut self,
        pick: fn(&Funcs) -> &TypedFunc<P, R>,
        params: P,
    ) -> Result<R, GuestError> {
        self.store.data_mut().call_started = Instant::now();
        self.store
            .set_epoch_deadline(self.module.shared.throttle.first_deadline());
        pick(&self.funcs)
            .call(&mut self.store, params)
            .map_err(|e| classify(&self.store, e))
    }

    /// The bytes of a region the guest returned, bounds- and size-checked.
    fn region(&self, packed: i64) -> Result<&[u8], GuestError> {
        let (ptr, len) = unpack_region(packed as u64);
        let (ptr, len) = (ptr as usize, len as usize);
        let max = self.module.shared.limits.max_payload_bytes;
        if len > max {
            return Err(GuestError::BadOutput(format!(
                "returned region is {len} bytes, the payload limit is {max}"
            )));
        }
        let data = self.memory.data(&self.store);
        data.get(ptr..ptr + len).ok_or_else(|| {
            GuestError::BadOutput(format!(
                "returned region {ptr:#x}+{len} is outside the guest's {} bytes of memory",
                data.len()
            ))
        })
    }

    fn decode<T: DeserializeOwned>(&self, packed: i64) -> Result<T, GuestError> {
        let bytes = self.region(packed)?;
        minotaur_abi::decode(bytes).map_err(|e| {
            GuestError::BadOutput(format!(
                "not a valid MessagePack {}: {e}",
                std::any::type_name::<T>()
                    .rsplit("::")
                    .next()
                    .unwrap_or("value")
            ))
        })
    }
}

/// Map a failed call to why it failed. The epoch deadline wins (an interrupt
/// is never the guest's doing); then a denied memory growth during this call,
/// since the trap that follows it is its consequence; then a panic the guest
/// reported before trapping (its message says more than the wasm backtrace).
fn classify(store: &Store<StoreData>, err: wasmtime::Error) -> GuestError {
    let trap = err.downcast_ref::<Trap>();
    match (trap, &store.data().panic) {
        (Some(Trap::Interrupt), _) => GuestError::Timeout,
        _ if store.data().memory_denied => GuestError::MemoryLimit,
        (Some(_), Some(message)) => GuestError::Panicked {
            message: message.clone(),
        },
        _ => GuestError::Trap(truncate(format!("{err:#}"), 2048)),
    }
}

/// Guest backtraces can be long; errors travel to players and logs.
fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}
