//! The wasmtime sandbox that loads, validates, caches and calls Minotaur game
//! modules: the host side of the guest ABI in `minotaur-abi`, and the only
//! crate that touches wasmtime.
//!
//! - [`Runtime`] (one per node) owns the engine: a pooling allocator sized from
//!   [`Limits`], copy-on-write memory images, epoch interruption driven by a
//!   ticker thread, and a linker with one import only, `minotaur`.`panic`
//!   (`panic_import`: a panicking guest's message, attached to its trap as
//!   [`GuestError::Panicked`]); no WASI, clock, randomness, filesystem or
//!   network. [`Runtime::load`] validates a module
//!   (size, magic, allowed wasm features, function count and body size — all
//!   before Cranelift — no imports but the panic one, required exports and signatures, ABI
//!   version, compile time),
//!   compiles it once per content hash ([`ModuleHash`]) and reads its `GameInfo`.
//! - [`GameModule`] is a cached, compiled module; [`GameModule::instantiate`]
//!   gives a [`GuestInstance`] in microseconds (`InstancePre`, pooled slot).
//! - [`GuestPool`] (one per runtime, reached through [`Runtime::pool`] and
//!   [`GameModule::pool`]) is where every guest call and compile runs: the
//!   host moves an instance into a pool job and awaits it, so a guest that
//!   spins until its deadline never occupies an async worker thread. A call that
//!   runs past 10 ms while guest calls outnumber the cores sleeps a tick at
//!   every tick (`throttle`): looping guests take at most half a core each.
//! - A [`GuestInstance`] is owned by one session actor. Each call (`init`,
//!   `event`, `snapshot`, `restore`) writes the MessagePack message into a
//!   region from `minotaur_alloc` (the guest owns and frees it), calls the
//!   export under a fresh `call_timeout` deadline, and bounds-checks and
//!   decodes the region it returns (valid until the next call; the host never
//!   frees it). Any [`GuestError`] poisons the instance: later calls fail at
//!   once and the session rolls back in a fresh instance.
//!
//! Without the default feature `engine` the crate is only [`precheck`] (what a module's
//! bytes pass before Cranelift), [`Limits`] and the error types: the fuzz targets build
//! that, not wasmtime.

#[cfg(feature = "engine")]
mod engine;
mod error;
#[cfg(feature = "engine")]
mod hash;
#[cfg(feature = "engine")]
mod instance;
mod limits;
#[cfg(feature = "engine")]
mod panic_import;
#[cfg(feature = "engine")]
mod pool;
pub mod precheck;
#[cfg(feature = "engine")]
mod runtime;
#[cfg(feature = "engine")]
mod throttle;
#[cfg(feature = "engine")]
mod validate;

pub use error::{GuestError, LoadError, RuntimeError};
#[cfg(feature = "engine")]
pub use hash::ModuleHash;
#[cfg(feature = "engine")]
pub use instance::{GameModule, GuestInstance};
pub use limits::Limits;
#[cfg(feature = "engine")]
pub use pool::{GuestPool, PoolError, PoolJob};
pub use precheck::{ALLOWED as ALLOWED_FEATURES, REFUSED as REFUSED_FEATURES};
#[cfg(feature = "engine")]
pub use runtime::Runtime;

#[cfg(feature = "engine")]
pub use minotaur_abi::{Event, GameInfo, Init, Output, Restore};
