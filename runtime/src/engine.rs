//! The wasmtime engine a [`crate::Runtime`] shares with every module and
//! instance it creates: pooling allocator sized from [`Limits`], copy-on-write
//! memory images, the wasm features pinned to [`crate::precheck::ALLOWED`], the
//! epoch ticker thread that gives each call its deadline, and the
//! [`GuestPool`] every guest call and compile runs on.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, WasmFeatures};

use crate::precheck::ALLOWED;
use crate::throttle::Throttle;
use crate::{GuestPool, Limits, RuntimeError};

/// Wasm page size: memory sizes are whole pages.
const WASM_PAGE: usize = 64 << 10;
/// Guard after each linear memory. Small on purpose: the reservation is only
/// `max_memory_bytes`, so Cranelift emits explicit bounds checks anyway, and
/// 20,000 slots must fit comfortably in the address space.
const MEMORY_GUARD: u64 = 64 << 10;
/// Table slots per instance; far more than a Rust or C guest needs.
pub(crate) const TABLE_ELEMENTS: usize = 10_000;

/// Engine plus ticker. Held by the runtime, every `GameModule` and every
/// `GuestInstance`, so deadlines keep working while anything can still call a
/// guest, and the ticker stops once the last of them is gone.
pub(crate) struct EngineShared {
    pub(crate) engine: Engine,
    pub(crate) limits: Limits,
    /// Every call's deadline: the call timeout in wall time, slowed down past its grace.
    pub(crate) throttle: Throttle,
    /// Where guest calls and compiles run (off the host's async workers).
    pub(crate) pool: GuestPool,
    ticker: Option<Ticker>,
}

struct Ticker {
    // Never sent on: dropping it disconnects the channel, which ends the thread.
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
    /// Dangles once the thread has returned (it owns the only strong count).
    #[cfg_attr(not(test), allow(dead_code))]
    alive: Weak<()>,
}

impl EngineShared {
    pub(crate) fn new(limits: Limits) -> Result<Arc<Self>, RuntimeError> {
        check_limits(&limits)?;
        let engine = Engine::new(&engine_config(&limits))
            .map_err(|e| RuntimeError::Config(format!("{e:#}")))?;
        let tick = tick_interval(limits.call_timeout);
        // A call gets at least `call_timeout` (wall time) and at most about one tick more
        // (`throttle`: checked at every deadline).
        let pool = GuestPool::new(pool_threads(&limits), "minotaur-guest")
            .map_err(|e| RuntimeError::Pool(e.to_string()))?;
        let throttle = Throttle {
            timeout: limits.call_timeout,
            tick,
            pool: pool.clone(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let ticker = Ticker::spawn(engine.clone(), tick)?;
        Ok(Arc::new(EngineShared {
            engine,
            limits,
            throttle,
            pool,
            ticker: Some(ticker),
        }))
    }
}

impl Drop for EngineShared {
    fn drop(&mut self) {
        if let Some(Ticker { stop, thread, .. }) = self.ticker.take() {
            drop(stop);
            // The thread wakes at its next tick and sees the disconnect.
            let _ = thread.join();
        }
    }
}

impl Ticker {
    fn spawn(engine: Engine, tick: Duration) -> Result<Ticker, RuntimeError> {
        let (stop, rx) = mpsc::channel::<()>();
        let token = Arc::new(());
        let alive = Arc::downgrade(&token);
        let thread = std::thread::Builder::new()
            .name("minotaur-epoch".into())
            .spawn(move || {
                let _token = token;
                loop {
                    match rx.recv_timeout(tick) {
                        Err(RecvTimeoutError::Timeout) => engine.increment_epoch(),
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            })
            .map_err(|e| RuntimeError::Config(format!("cannot start the epoch ticker: {e}")))?;
        Ok(Ticker {
            stop,
            thread,
            alive,
        })
    }
}

/// A twentieth of the timeout, between 1 and 10 ms: fine enough that the
/// deadline is close to `call_timeout`, coarse enough to cost nothing.
fn tick_interval(timeout: Duration) -> Duration {
    (timeout / 20).clamp(Duration::from_millis(1), Duration::from_millis(10))
}

/// `Limits::pool_threads`, or four per available core when it is 0: more
/// threads than cores, so that guests spinning until their deadline leave
/// threads free for everyone else's calls while the OS shares the cores fairly
/// (measured in docs/BENCHMARKS.md, "Guest isolation").
pub(crate) fn pool_threads(limits: &Limits) -> usize {
    match limits.pool_threads {
        0 => 4 * std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

fn check_limits(limits: &Limits) -> Result<(), RuntimeError> {
    let bad = |m: &str| Err(RuntimeError::Config(m.to_string()));
    if limits.max_memory_bytes < WASM_PAGE {
        return bad("max_memory_bytes must be at least one wasm page (64 KiB)");
    }
    if limits.max_memory_bytes > 4 << 30 {
        return bad("max_memory_bytes must be at most 4 GiB (32-bit wasm)");
    }
    if limits.call_timeout.is_zero() {
        return bad("call_timeout must be greater than zero");
    }
    if limits.max_instances == 0 {
        return bad("max_instances must be at least 1");
    }
    if limits.max_payload_bytes > i32::MAX as usize {
        return bad("max_payload_bytes must fit a wasm32 length");
    }
    if limits.compile_timeout.is_zero() {
        return bad("compile_timeout must be greater than zero");
    }
    Ok(())
}

fn engine_config(limits: &Limits) -> Config {
    let memory_bytes = limits.max_memory_bytes.next_multiple_of(WASM_PAGE);

    let mut pool = PoolingAllocationConfig::new();
    pool.total_core_instances(limits.max_instances)
        .total_memories(limits.max_instances)
        .total_tables(limits.max_instances)
        .max_memories_per_module(1)
        .max_tables_per_module(1)
        .table_elements(TABLE_ELEMENTS)
        .max_memory_size(memory_bytes);

    let mut config = Config::new();
    config
        .strategy(wasmtime::Strategy::Cranelift)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .epoch_interruption(true)
        // Each slot reserves exactly the cap, so 20,000 slots of 32 MiB stay
        // well under the 128 TiB user address space.
        .memory_reservation(memory_bytes as u64)
        .memory_guard_size(MEMORY_GUARD)
        .memory_reservation_for_growth(0)
        .memory_init_cow(true)
        // Sessions are replayed and migrated between nodes: float results must
        // not depend on the host CPU.
        .cranelift_nan_canonicalization(true)
        // Only what the guest ABI allows; `precheck` refuses the rest by name
        // before compiling, this is the engine's own guarantee.
        .wasm_features(WasmFeatures::all().difference(ALLOWED), false)
        .wasm_features(ALLOWED, true);
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_is_at_least_the_timeout() {
        for ms in [1u64, 7, 50, 100, 1000] {
            let timeout = Duration::from_millis(ms);
            let tick = tick_interval(timeout);
            let ticks = timeout.as_nanos().div_ceil(tick.as_nanos()) as u64 + 1;
            assert!(tick * (ticks as u32 - 1) >= timeout, "{ms} ms");
            assert!(tick * (ticks as u32 - 1) < timeout + tick, "{ms} ms");
        }
    }

    #[test]
    fn bad_limits_are_refused() {
        let cases = [
            Limits {
                max_memory_bytes: 1000,
                ..Limits::default()
            },
            Limits {
                call_timeout: Duration::ZERO,
                ..Limits::default()
            },
            Limits {
                max_instances: 0,
                ..Limits::default()
            },
        ];
        for limits in cases {
            let err = EngineShared::new(limits.clone()).err().expect("refused");
            assert_eq!(err.code(), "runtime_config", "{limits:?}");
        }
    }

    #[test]
    fn the_engine_itself_refuses_what_the_abi_does_not_allow() {
        let shared = EngineShared::new(Limits {
            max_instances: 4,
            ..Limits::default()
        })
        .unwrap();
        let refused = [
            "(module (memory i64 1))",
            "(module (memory 1) (memory 1))",
            "(module (memory 1 1 shared))",
            "(module (func $f (return_call $f)))",
        ];
        for wat in refused {
            let wasm = wat::parse_str(wat).unwrap();
            assert!(
                wasmtime::Module::validate(&shared.engine, &wasm).is_err(),
                "the engine accepts {wat}"
            );
        }
        let allowed =
            wat::parse_str("(module (memory 1) (func (drop (i32.extend8_s (i32.const 1)))))")
                .unwrap();
        wasmtime::Module::validate(&shared.engine, &allowed).expect("wasm 2.0 is allowed");
    }

    #[test]
    fn ticker_stops_when_the_engine_is_dropped() {
        let shared = EngineShared::new(Limits {
            max_instances: 4,
            ..Limits::default()
        })
        .unwrap();
        let alive = shared.ticker.as_ref().unwrap().alive.clone();
        assert!(
            alive.upgrade().is_some(),
            "ticker runs while the engine lives"
        );
        drop(shared);
        // Drop joins the thread, so its token is gone by now.
        assert!(alive.upgrade().is_none(), "ticker thread still running");
    }
}
