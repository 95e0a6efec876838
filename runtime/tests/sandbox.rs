//! Guest calls and the sandbox: round trips, deadlines, the memory cap, traps,
//! bad output regions, poisoning, and many live instances in the pool.

mod common;

use std::time::{Duration, Instant};

use common::{output, region, runtime, small_limits, Guest, GARBAGE_AT, OUTPUT_AT};
use minotaur_abi::{encode, Event, Init, Restore};
use minotaur_runtime::{GuestError, GuestInstance, Limits, Runtime};

fn instance(rt: &Runtime, guest: &Guest) -> GuestInstance {
    rt.load(&guest.wasm()).unwrap().instantiate().unwrap()
}

fn join() -> Event {
    Event::Join {
        player: 7,
        name: "ada".into(),
    }
}

#[test]
fn calls_round_trip() {
    let rt = runtime();
    let mut g = instance(&rt, &Guest::default());
    let init = Init {
        session: "s-1".into(),
        seed: 42,
        config: vec![],
    };
    assert_eq!(g.init(&init).unwrap(), output());
    assert_eq!(g.event(&join()).unwrap(), output());
    assert_eq!(g.snapshot().unwrap(), vec![1]);
    assert!(!g.is_poisoned());
}

#[test]
fn restore_hands_the_guest_exactly_the_encoded_message() {
    let rt = runtime();
    let mut g = instance(&rt, &Guest::default());
    let restore = Restore {
        state: (0..=255).collect(),
        from_version: 2,
    };
    assert_eq!(g.restore(&restore).unwrap(), output());
    // The WAT guest's snapshot now returns the input region it was given.
    assert_eq!(g.snapshot().unwrap(), encode(&restore).unwrap());
}

#[test]
fn large_inputs_grow_guest_memory() {
    let rt = runtime();
    let mut g = instance(&rt, &Guest::default());
    assert_eq!(g.memory_bytes(), 64 << 10);
    let restore = Restore {
        state: vec![0xab; 300_000],
        from_version: 1,
    };
    g.restore(&restore).unwrap();
    assert!(g.memory_bytes() > 300_000, "{}", g.memory_bytes());
    assert_eq!(g.snapshot().unwrap(), encode(&restore).unwrap());
}

#[test]
fn infinite_loop_times_out_and_the_runtime_goes_on() {
    let limits = Limits {
        call_timeout: Duration::from_millis(50),
        ..small_limits()
    };
    let rt = Runtime::new(limits).unwrap();
    let spin = Guest {
        event_body: "(loop $spin (br $spin)) unreachable".into(),
        ..Guest::default()
    };
    let mut g = instance(&rt, &spin);
    let start = Instant::now();
    let err = g.event(&join()).unwrap_err();
    let took = start.elapsed();
    assert!(matches!(err, GuestError::Timeout), "{err:?}");
    assert_eq!(err.code(), "guest_timeout");
    assert!(
        took >= Duration::from_millis(50),
        "deadline fired early: {took:?}"
    );
    assert!(
        took < Duration::from_secs(2),
        "deadline fired late: {took:?}"
    );

    // Other instances, and the same module, keep working.
    let mut ok = instance(&rt, &Guest::default());
    assert_eq!(ok.event(&join()).unwrap(), output());
    let mut fresh = rt.get(&g.module_hash()).unwrap().instantiate().unwrap();
    assert_eq!(fresh.snapshot().unwrap(), vec![0]);
}

/// Times this thread gave the CPU up by itself (slept or blocked), from the kernel (Linux).
/// A loop in wasm makes no system call: without the throttle it never gives the CPU up.
#[cfg(target_os = "linux")]
fn voluntary_switches() -> u64 {
    let s = std::fs::read_to_string("/proc/thread-self/status").expect("status");
    s.lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("voluntary_ctxt_switches")
}

/// A looping guest keeps its wall-time deadline; past its first 10 ms it sleeps a tick per
/// tick only while guest calls outnumber the cores: alone it is never slowed, with more
/// spinners than cores every one of them gives the CPU back again and again.
#[cfg(target_os = "linux")]
#[test]
fn looping_guests_yield_only_when_they_outnumber_the_cores() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let limits = Limits {
        call_timeout: Duration::from_millis(300),
        pool_threads: cores + 1,
        ..small_limits()
    };
    let rt = Runtime::new(limits).unwrap();
    let spin = Guest {
        event_body: "(loop $spin (br $spin)) unreachable".into(),
        ..Guest::default()
    };
    // One spinning call on a pool thread: (error, wall time, voluntary switches).
    let spin_once = |rt: &Runtime| {
        let mut g = instance(rt, &spin);
        rt.pool()
            .run_wait(Duration::from_secs(30), move || {
                let (wall, before) = (Instant::now(), voluntary_switches());
                let err = g.event(&join()).unwrap_err();
                (err, wall.elapsed(), voluntary_switches() - before)
            })
            .expect("the pool ran the call")
    };

    let (err, wall, yielded) = spin_once(&rt);
    assert!(matches!(err, GuestError::Timeout), "{err:?}");
    assert!(
        wall >= Duration::from_millis(300),
        "deadline fired early: {wall:?}"
    );
    assert!(
        yielded <= 2,
        "alone, a looping guest gave the CPU up {yielded} times"
    );

    let all: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..=cores).map(|_| s.spawn(|| spin_once(&rt))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (err, wall, yielded) in all {
        assert!(matches!(err, GuestError::Timeout), "{err:?}");
        assert!(
            wall >= Duration::from_millis(300),
            "deadline fired early: {wall:?}"
        );
        // Ticks of 15 ms: ≈ (300 − 10) / 30 ≈ 9 sleeps if all ran together throughout.
        assert!(
            yielded >= 4,
            "{} spinners on {cores} cores: one gave the CPU up only {yielded} times",
            cores + 1
        );
    }
}

#[test]
fn deadline_is_per_call_not_per_instance() {
    let limits = Limits {
        call_timeout: Duration::from_millis(30),
        ..small_limits()
    };
    let rt = Runtime::new(limits).unwrap();
    let mut g = instance(&rt, &Guest::default());
    // Many calls spread over several timeouts' worth of time all succeed:
    // each call re-arms its own deadline.
    let start = Instant::now();
    let mut calls = 0;
    while start.elapsed() < Duration::from_millis(150) {
        g.event(&Event::Tick { n: calls, dt_ms: 1 }).unwrap();
        calls += 1;
    }
    assert!(calls > 10);
}

#[test]
fn growing_memory_past_the_cap_is_a_memory_limit() {
    let rt = runtime(); // 2 MiB cap
    let hog = Guest {
        // Grow a page at a time until refused, then abort like a Rust
        // allocator does.
        event_body: "(loop $more (br_if $more (i32.ne (memory.grow (i32.const 1)) (i32.const -1)))) unreachable"
            .into(),
        ..Guest::default()
    };
    let mut g = instance(&rt, &hog);
    let err = g.event(&join()).unwrap_err();
    assert!(matches!(err, GuestError::MemoryLimit), "{err:?}");
    assert_eq!(err.code(), "guest_memory_limit");
    assert_eq!(g.memory_bytes(), 2 << 20, "grew up to the cap, not past it");
}

#[test]
fn input_too_large_for_the_cap_is_a_memory_limit() {
    let rt = runtime();
    let mut g = instance(&rt, &Guest::default());
    let restore = Restore {
        state: vec![1; 3 << 20],
        from_version: 1,
    };
    let err = g.restore(&restore).unwrap_err();
    assert!(matches!(err, GuestError::MemoryLimit), "{err:?}");
}

#[test]
fn a_denied_growth_the_guest_survives_is_not_blamed_later() {
    let rt = runtime();
    // Asks for 1 GiB once, ignores the refusal, answers normally.
    let polite = Guest {
        event_body: format!(
            "(drop (memory.grow (i32.const 16384))) {}",
            common::fixed_output()
        ),
        ..Guest::default()
    };
    let mut g = instance(&rt, &polite);
    assert_eq!(g.event(&join()).unwrap(), output());
    assert_eq!(g.memory_bytes(), 64 << 10);
}

#[test]
fn unreachable_is_a_trap() {
    let rt = runtime();
    let mut g = instance(
        &rt,
        &Guest {
            event_body: "unreachable".into(),
            ..Guest::default()
        },
    );
    let err = g.event(&join()).unwrap_err();
    assert!(matches!(err, GuestError::Trap(_)), "{err:?}");
    assert_eq!(err.code(), "guest_trap");
    assert!(err.to_string().contains("unreachable"), "{err}");
}

#[test]
fn out_of_bounds_memory_access_is_a_trap() {
    let rt = runtime();
    let mut g = instance(
        &rt,
        &Guest {
            event_body: "(i64.load (i32.const 0x7fff0000))".into(),
            ..Guest::default()
        },
    );
    assert_eq!(g.event(&join()).unwrap_err().code(), "guest_trap");
}

fn bad_output(event_body: String, limits: Limits) -> GuestError {
    let rt = Runtime::new(limits).unwrap();
    let mut g = instance(
        &rt,
        &Guest {
            event_body,
            ..Guest::default()
        },
    );
    let err = g.event(&join()).unwrap_err();
    assert!(matches!(err, GuestError::BadOutput(_)), "{err:?}");
    assert_eq!(err.code(), "guest_bad_output");
    err
}

#[test]
fn region_out_of_bounds_is_bad_output() {
    // Starts inside the single 64 KiB page, ends past it.
    let err = bad_output(region(65_000, 1_000), small_limits());
    assert!(err.to_string().contains("outside"), "{err}");
    // Pointer past the end altogether.
    bad_output(region(u32::MAX - 4, 4), small_limits());
}

#[test]
fn region_larger_than_the_payload_limit_is_bad_output() {
    // Just enough for the game info at load.
    let max = encode(&common::info()).unwrap().len();
    let limits = Limits {
        max_payload_bytes: max,
        ..small_limits()
    };
    let err = bad_output(region(OUTPUT_AT, max as u32 + 1), limits);
    assert!(err.to_string().contains("payload limit"), "{err}");
}

#[test]
fn garbage_bytes_are_bad_output() {
    bad_output(region(GARBAGE_AT, 4), small_limits());
    // Valid MessagePack of the wrong type: the guest echoes the event back.
    let err = bad_output(
        "(i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32)) (i64.extend_i32_u (local.get $len)))"
            .into(),
        small_limits(),
    );
    assert!(err.to_string().contains("Output"), "{err}");
}

#[test]
fn an_error_poisons_the_instance() {
    let rt = runtime();
    // Traps on the second event only, so the first proves the instance works.
    let second_traps = Guest {
        event_body: format!(
            "(if (i32.ge_u (i32.load8_u (i32.const {})) (i32.const 2)) (then unreachable)) {}",
            common::COUNTER_AT,
            common::fixed_output()
        ),
        ..Guest::default()
    };
    let mut g = instance(&rt, &second_traps);
    assert!(g.event(&join()).is_ok());
    assert_eq!(g.event(&join()).unwrap_err().code(), "guest_trap");
    assert!(g.is_poisoned());
    for err in [
        g.event(&join()).unwrap_err(),
        g.snapshot().unwrap_err(),
        g.restore(&Restore {
            state: vec![],
            from_version: 1,
        })
        .unwrap_err(),
    ] {
        assert!(
            matches!(&err, GuestError::Trap(m) if m.contains("poisoned")),
            "{err:?}"
        );
    }
}

#[test]
fn thousands_of_instances_live_at_once() {
    let limits = Limits {
        max_instances: 2_100,
        max_memory_bytes: 1 << 20,
        ..Limits::default()
    };
    let rt = Runtime::new(limits).unwrap();
    let module = rt.load(&Guest::default().wasm()).unwrap();
    let mut all: Vec<GuestInstance> = (0..2_000).map(|_| module.instantiate().unwrap()).collect();
    for (i, g) in all.iter_mut().enumerate() {
        for _ in 0..(i % 3) {
            g.event(&Event::Tick { n: 1, dt_ms: 1 }).unwrap();
        }
    }
    for (i, g) in all.iter_mut().enumerate() {
        assert_eq!(g.snapshot().unwrap(), vec![(i % 3) as u8], "instance {i}");
    }
}

#[test]
fn an_exhausted_pool_is_an_instantiate_error_not_a_crash() {
    let limits = Limits {
        max_instances: 3,
        ..small_limits()
    };
    let rt = Runtime::new(limits).unwrap();
    let module = rt.load(&Guest::default().wasm()).unwrap();
    let live: Vec<_> = (0..3).map(|_| module.instantiate().unwrap()).collect();
    let err = module.instantiate().err().expect("pool is full");
    assert!(matches!(err, GuestError::Instantiate(_)), "{err:?}");
    assert_eq!(err.code(), "instantiate_failed");
    drop(live);
    // Slots come back when instances are dropped.
    module.instantiate().unwrap();
}

#[test]
fn modules_and_instances_outlive_the_runtime() {
    let limits = Limits {
        call_timeout: Duration::from_millis(20),
        ..small_limits()
    };
    let rt = Runtime::new(limits).unwrap();
    let spin = rt
        .load(
            &Guest {
                event_body: "(loop $spin (br $spin)) unreachable".into(),
                ..Guest::default()
            }
            .wasm(),
        )
        .unwrap();
    drop(rt);
    // The epoch ticker must still run, or this call would never return.
    let err = spin.instantiate().unwrap().event(&join()).unwrap_err();
    assert!(matches!(err, GuestError::Timeout), "{err:?}");
}

#[test]
fn runtime_and_handles_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Runtime>();
    send_sync::<minotaur_runtime::GameModule>();
    send::<GuestInstance>();
}
