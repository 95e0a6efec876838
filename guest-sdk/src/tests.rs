//! Unit tests of the SDK glue (seats, view diffing, rejections, snapshots,
//! migration) with two tiny games defined here.

use crate::testing::Harness;
use crate::{Cx, Game, GuestRuntime, Level, PlayerId, Reject, Rng, Tick};
use minotaur_abi::{decode, encode, Effect, Event, Init, Output, Restore};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Counts per player; view shows own count and tick parity (so ticks change
/// views only every other tick).
#[derive(Serialize, Deserialize)]
struct Counter {
    rng: Rng,
    counts: BTreeMap<PlayerId, u32>,
    ticks: u64,
    limit: u32,
}

#[derive(Deserialize, Default)]
struct CounterConfig {
    limit: Option<u32>,
}

#[derive(Deserialize)]
struct Add {
    add: u32,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct CounterView {
    mine: u32,
    half_ticks: u64,
}

impl Game for Counter {
    const NAME: &'static str = "counter";
    const MAX_PLAYERS: u32 = 2;
    const TICK_HZ: u32 = 10;
    type Config = CounterConfig;
    type Input = Add;
    type View = CounterView;

    fn init(cx: &mut Cx, config: CounterConfig) -> Self {
        cx.log(Level::Info, "hello");
        Counter {
            rng: Rng::new(cx.seed()),
            counts: BTreeMap::new(),
            ticks: 0,
            limit: config.limit.unwrap_or(10),
        }
    }

    fn on_join(&mut self, p: PlayerId, name: &str, cx: &mut Cx) -> Result<(), Reject> {
        cx.broadcast(&format!("{name} joins"));
        if name == "mallory" {
            return Err("no mallory".into());
        }
        self.counts.insert(p, 0);
        Ok(())
    }

    fn on_leave(&mut self, p: PlayerId, _cx: &mut Cx) {
        self.counts.remove(&p);
    }

    fn on_input(&mut self, p: PlayerId, input: Add, cx: &mut Cx) -> Result<(), Reject> {
        cx.send(p, &"adding");
        let count = self.counts[&p];
        if count + input.add > self.limit {
            return Err(Reject::new("over the limit"));
        }
        self.counts.insert(p, count + input.add);
        if count + input.add == self.limit {
            cx.end(vec![p], &"limit reached");
        }
        Ok(())
    }

    fn on_tick(&mut self, _tick: Tick, _cx: &mut Cx) {
        self.ticks += 1;
        self.rng.next_u64();
    }

    fn view(&self, p: PlayerId) -> CounterView {
        CounterView {
            mine: self.counts.get(&p).copied().unwrap_or(0),
            half_ticks: self.ticks / 2,
        }
    }
}

fn views(out: &Output) -> Vec<PlayerId> {
    out.effects
        .iter()
        .filter_map(|e| match e {
            Effect::View { to, .. } => Some(*to),
            _ => None,
        })
        .collect()
}

#[test]
fn info_comes_from_the_consts() {
    let info = Counter::info();
    assert_eq!(info.name, "counter");
    assert_eq!((info.rules_version, info.min_players), (1, 1));
    assert_eq!((info.max_players, info.tick_hz), (2, 10));
}

#[test]
fn init_decodes_config_bytes_and_keeps_effects() {
    let mut rt = GuestRuntime::<Counter>::new();
    let config = encode(&serde_json::json!({"limit": 3})).unwrap();
    let init = Init {
        session: "s1".into(),
        seed: 5,
        config,
    };
    let out = rt.init(&encode(&init).unwrap());
    assert_eq!(out.reject, None);
    assert!(matches!(&out.effects[..], [Effect::Log { level: 2, msg }] if msg == "hello"));
    assert_eq!(rt.game().unwrap().limit, 3);

    let mut bad = GuestRuntime::<Counter>::new();
    let out = bad.init(
        &encode(&Init {
            config: vec![0xc1],
            ..init
        })
        .unwrap(),
    );
    assert!(out.reject.unwrap().starts_with("bad config"));
}

#[test]
fn events_before_init_and_garbage_are_rejected_not_fatal() {
    let mut rt = GuestRuntime::<Counter>::new();
    let tick = encode(&Event::Tick { n: 1, dt_ms: 100 }).unwrap();
    assert_eq!(
        rt.handle_event(&tick).reject.as_deref(),
        Some("session not initialised")
    );
    rt.init_with(1, CounterConfig::default());
    assert!(rt
        .handle_event(&[0xff, 0x00])
        .reject
        .unwrap()
        .starts_with("bad event"));
    assert!(rt
        .restore(b"junk")
        .reject
        .unwrap()
        .starts_with("bad restore"));
    assert!(rt.snapshot().is_ok());
    assert!(GuestRuntime::<Counter>::new().snapshot().is_err());
}

#[test]
fn seats_are_enforced_by_the_sdk() {
    let mut h = Harness::<Counter>::new(1, CounterConfig::default());
    let a = h.join("ann").unwrap();
    assert_eq!(h.join("mallory"), Err(Reject::new("no mallory")));
    let b = h.join("bob").unwrap();
    assert_eq!(h.join("cid"), Err(Reject::new("session full")));
    assert_eq!(h.players(), &[a, b]);
    // Input from someone not seated never reaches the game.
    assert_eq!(
        h.input(99, &serde_json::json!({"add": 1})),
        Err(Reject::new("not seated"))
    );
    let err = h.input(a, &serde_json::json!({"sub": 1})).unwrap_err();
    assert!(err.0.starts_with("bad input"), "{err}");
    h.leave(b);
    assert_eq!(h.players(), &[a]);
    h.join("dan").unwrap();
}

#[test]
fn rejected_events_drop_their_effects() {
    let mut h = Harness::<Counter>::new(1, CounterConfig { limit: Some(3) });
    let a = h.join("ann").unwrap();
    assert!(h.join("mallory").is_err());
    assert!(h.last_output().effects.is_empty());
    assert_eq!(
        h.input(a, &serde_json::json!({"add": 4})),
        Err(Reject::new("over the limit"))
    );
    assert!(h.sent_to::<String>(a).iter().all(|m| m != "adding"));
    h.input(a, &serde_json::json!({"add": 3})).unwrap();
    assert_eq!(h.sent_to::<String>(a), vec!["ann joins", "adding"]);
    assert_eq!(
        h.ended::<String>(),
        Some((vec![a], "limit reached".to_owned()))
    );
}

#[test]
fn views_go_out_only_when_they_change() {
    let mut h = Harness::<Counter>::new(1, CounterConfig::default());
    let a = h.join("ann").unwrap();
    assert_eq!(views(h.last_output()), vec![a]);
    let b = h.join("bob").unwrap();
    assert_eq!(views(h.last_output()), vec![b], "ann's view did not change");
    h.input(b, &serde_json::json!({"add": 2})).unwrap();
    assert_eq!(views(h.last_output()), vec![b]);
    h.tick(); // ticks 1: half_ticks still 0
    assert_eq!(views(h.last_output()), Vec::<PlayerId>::new());
    h.tick(); // ticks 2: half_ticks 1 for everyone
    assert_eq!(views(h.last_output()), vec![a, b]);
    assert_eq!(
        h.view_as::<serde_json::Value>(b).unwrap(),
        serde_json::json!({"mine": 2, "half_ticks": 1})
    );
    assert_eq!(
        h.view(b),
        CounterView {
            mine: 2,
            half_ticks: 1
        }
    );
}

#[test]
fn snapshot_restore_keeps_state_and_seats_and_resends_views() {
    let mut h = Harness::<Counter>::new(9, CounterConfig::default());
    let a = h.join("ann").unwrap();
    let b = h.join("bob").unwrap();
    h.input(a, &serde_json::json!({"add": 1})).unwrap();
    h.ticks(3);
    h.snapshot_restore();
    assert_eq!(
        views(h.last_output()),
        vec![a, b],
        "a restored session resends all views"
    );
    assert_eq!(h.players(), &[a, b]);
    assert_eq!(h.view(a).mine, 1);
    // The RNG position survived: both continue identically.
    let mut twin = Harness::<Counter>::from_snapshot(&h.snapshot(), 1).unwrap();
    h.ticks(5);
    twin.ticks(5);
    assert_eq!(h.snapshot(), twin.snapshot());
}

#[test]
fn snapshot_is_a_named_map_envelope() {
    let mut h = Harness::<Counter>::new(3, CounterConfig::default());
    h.join("ann").unwrap();
    let v: rmpv::Value = decode(&h.snapshot()).unwrap();
    let field = |v: &rmpv::Value, k: &str| -> rmpv::Value {
        let map = v.as_map().expect("a map keyed by field name");
        map.iter()
            .find(|(key, _)| key.as_str() == Some(k))
            .expect(k)
            .1
            .clone()
    };
    assert_eq!(field(&v, "sdk"), rmpv::Value::from(1));
    assert_eq!(field(&v, "seed"), rmpv::Value::from(3));
    assert_eq!(field(&v, "players"), rmpv::Value::Array(vec![1.into()]));
    let game = field(&v, "game");
    assert_eq!(field(&game, "limit"), rmpv::Value::from(10));
    // Integer map keys stay integers (documented: prefer string keys or lists).
    assert_eq!(
        field(&game, "counts"),
        rmpv::Value::Map(vec![(1.into(), 0.into())])
    );
}

/// The next version of `Counter`: a new field with a default, and a renamed one.
#[derive(Serialize, Deserialize)]
struct CounterV2 {
    rng: Rng,
    scores: BTreeMap<PlayerId, u32>,
    ticks: u64,
    limit: u32,
    #[serde(default)]
    bonus: u32,
}

impl Game for CounterV2 {
    const NAME: &'static str = "counter";
    const RULES_VERSION: u32 = 2;
    const MAX_PLAYERS: u32 = 2;
    type Config = CounterConfig;
    type Input = Add;
    type View = u32;

    fn init(cx: &mut Cx, _config: CounterConfig) -> Self {
        unreachable!("only restored in these tests: {}", cx.seed())
    }
    fn on_input(&mut self, p: PlayerId, input: Add, _cx: &mut Cx) -> Result<(), Reject> {
        *self.scores.entry(p).or_default() += input.add + self.bonus;
        Ok(())
    }
    fn view(&self, p: PlayerId) -> u32 {
        self.scores.get(&p).copied().unwrap_or(0)
    }
    fn migrate(from_version: u32, state: &[u8]) -> Result<Self, Reject> {
        if from_version >= 2 {
            return decode(state).map_err(|e| Reject::new(e.to_string()));
        }
        let old: Counter = decode(state).map_err(|e| Reject::new(e.to_string()))?;
        Ok(CounterV2 {
            rng: old.rng,
            scores: old.counts,
            ticks: old.ticks,
            limit: old.limit,
            bonus: 0,
        })
    }
}

#[test]
fn migrate_maps_old_state_and_rejects_garbage() {
    let mut h = Harness::<Counter>::new(3, CounterConfig::default());
    let a = h.join("ann").unwrap();
    h.input(a, &serde_json::json!({"add": 4})).unwrap();
    let mut v2 = Harness::<CounterV2>::from_snapshot(&h.snapshot(), 1).unwrap();
    assert_eq!(v2.view_as::<u32>(a), Some(4));
    v2.input(a, &serde_json::json!({"add": 1})).unwrap();
    assert_eq!(v2.view(a), 5);
    // Claiming the v1 snapshot is v2 fails cleanly (field `scores` missing).
    let err = Harness::<CounterV2>::from_snapshot(&h.snapshot(), 2)
        .err()
        .unwrap();
    assert!(err.0.contains("scores"), "{err}");
    let restore = encode(&Restore {
        state: vec![0x80],
        from_version: 1,
    })
    .unwrap();
    let mut rt = GuestRuntime::<CounterV2>::new();
    assert!(rt
        .restore(&restore)
        .reject
        .unwrap()
        .starts_with("bad snapshot"));
    assert!(
        rt.game().is_none(),
        "a failed restore leaves the instance empty"
    );
}

/// Breaks the contract: mutates, then rejects.
#[derive(Serialize, Deserialize)]
struct Sloppy {
    n: u32,
}

impl Game for Sloppy {
    const NAME: &'static str = "sloppy";
    const MAX_PLAYERS: u32 = 1;
    type Config = ();
    type Input = u32;
    type View = u32;
    fn init(_cx: &mut Cx, _config: ()) -> Self {
        Sloppy { n: 0 }
    }
    fn on_input(&mut self, _p: PlayerId, input: u32, _cx: &mut Cx) -> Result<(), Reject> {
        self.n += input;
        Err("too late".into())
    }
    fn view(&self, _p: PlayerId) -> u32 {
        self.n
    }
}

#[test]
#[should_panic(expected = "validate before mutating")]
fn harness_catches_a_rejection_that_mutated_state() {
    let mut h = Harness::<Sloppy>::new(0, ());
    let p = h.join("x").unwrap();
    let _ = h.input(p, &1u32);
}

/// `Counter` with views skipped after inputs.
#[derive(Serialize, Deserialize)]
struct Quiet(Counter);

impl Game for Quiet {
    const NAME: &'static str = "quiet";
    const MAX_PLAYERS: u32 = 2;
    const VIEWS_ON_INPUT: bool = false;
    type Config = CounterConfig;
    type Input = Add;
    type View = CounterView;
    fn init(cx: &mut Cx, config: CounterConfig) -> Self {
        Quiet(Counter::init(cx, config))
    }
    fn on_join(&mut self, p: PlayerId, name: &str, cx: &mut Cx) -> Result<(), Reject> {
        self.0.on_join(p, name, cx)
    }
    fn on_input(&mut self, p: PlayerId, input: Add, cx: &mut Cx) -> Result<(), Reject> {
        self.0.on_input(p, input, cx)
    }
    fn view(&self, p: PlayerId) -> CounterView {
        self.0.view(p)
    }
}

#[test]
fn views_on_input_false_defers_views_to_the_next_other_event() {
    let mut h = Harness::<Quiet>::new(1, CounterConfig::default());
    let a = h.join("ann").unwrap();
    assert_eq!(views(h.last_output()), vec![a], "joins still send views");
    h.input(a, &serde_json::json!({"add": 2})).unwrap();
    assert_eq!(views(h.last_output()), Vec::<PlayerId>::new());
    assert_eq!(
        h.sent_to::<String>(a).last().map(String::as_str),
        Some("adding")
    );
    h.tick();
    assert_eq!(views(h.last_output()), vec![a]);
    assert_eq!(h.view_as::<CounterView>(a).unwrap().mine, 2);
}
