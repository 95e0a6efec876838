//! A native test harness: drive a [`Game`] with `cargo test`, no host, no wasm.
//! Every call goes through the same byte-level [`GuestRuntime`] the wasm
//! exports use (events and outputs are encoded and decoded on the way).

use crate::{Game, GuestRuntime, Reject};
use minotaur_abi::{decode, encode, Effect, Event, Output, PlayerId, Restore};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::BTreeMap;

/// Plays the host's part for one session of `G` and records what it was asked
/// to do. Panics (failing the test) when the game breaks an SDK contract.
pub struct Harness<G: Game> {
    rt: GuestRuntime<G>,
    next_player: PlayerId,
    tick: u64,
    tick_hz: u32,
    inbox: BTreeMap<PlayerId, Vec<Vec<u8>>>,
    views: BTreeMap<PlayerId, Vec<u8>>,
    ended: Option<(Vec<PlayerId>, Vec<u8>)>,
    logs: Vec<(u8, String)>,
    last: Output,
}

impl<G: Game> Harness<G> {
    /// A session initialised with `seed` and `config`.
    pub fn new(seed: u64, config: G::Config) -> Self {
        let mut rt = GuestRuntime::new();
        let out = rt.init_with(seed, config);
        let mut h = Self::around(rt);
        h.apply(out).expect("init rejected");
        h
    }

    /// A session restored from `snapshot` taken by rules `from_version`
    /// (possibly another game type: that is how migrations are tested).
    pub fn from_snapshot(snapshot: &[u8], from_version: u32) -> Result<Self, Reject> {
        let mut rt = GuestRuntime::new();
        let restore = encode(&Restore {
            state: snapshot.to_vec(),
            from_version,
        })
        .expect("encode restore");
        let out = rt.restore(&restore);
        let mut h = Self::around(rt);
        h.next_player = h.rt.players().iter().max().map_or(1, |p| p + 1);
        h.apply(out)?;
        Ok(h)
    }

    fn around(rt: GuestRuntime<G>) -> Self {
        Self {
            rt,
            next_player: 1,
            tick: 0,
            tick_hz: G::TICK_HZ,
            inbox: BTreeMap::new(),
            views: BTreeMap::new(),
            ended: None,
            logs: Vec::new(),
            last: Output::default(),
        }
    }

    /// The game state.
    pub fn game(&self) -> &G {
        self.rt.game().expect("initialised")
    }

    /// Seated players in join order.
    pub fn players(&self) -> &[PlayerId] {
        self.rt.players()
    }

    /// A new player asks for a seat; ids are 1, 2, 3, ...
    pub fn join(&mut self, name: &str) -> Result<PlayerId, Reject> {
        let player = self.next_player;
        self.event(Event::Join {
            player,
            name: name.to_owned(),
        })?;
        self.next_player += 1;
        Ok(player)
    }

    /// `player` leaves for good.
    pub fn leave(&mut self, player: PlayerId) {
        self.event(Event::Leave { player })
            .expect("leave is never rejected");
    }

    /// `player` sends `input`: any serde value of the shape a client would
    /// send, e.g. `serde_json::json!({"cell": 4})` or the game's own type.
    pub fn input<I: Serialize + ?Sized>(
        &mut self,
        player: PlayerId,
        input: &I,
    ) -> Result<(), Reject> {
        let data = encode(input).expect("encode input");
        self.event(Event::Input { player, data })
    }

    /// One tick of the clock at the current tick rate.
    pub fn tick(&mut self) {
        self.tick += 1;
        let dt_ms = 1000 / self.tick_hz.max(1);
        self.event(Event::Tick {
            n: self.tick,
            dt_ms,
        })
        .expect("tick is never rejected");
    }

    /// `n` ticks.
    pub fn ticks(&mut self, n: u64) {
        for _ in 0..n {
            self.tick();
        }
    }

    /// `player`'s view computed from the state right now.
    pub fn view(&self, player: PlayerId) -> G::View {
        self.game().view(player)
    }

    /// The last view the host was sent for `player`, decoded as `T` (e.g.
    /// `serde_json::Value`, to check the wire shape).
    pub fn view_as<T: DeserializeOwned>(&self, player: PlayerId) -> Option<T> {
        self.views
            .get(&player)
            .map(|bytes| decode(bytes).expect("decode view"))
    }

    /// Messages sent to `player` (direct and broadcast) so far, decoded as `T`.
    pub fn sent_to<T: DeserializeOwned>(&self, player: PlayerId) -> Vec<T> {
        self.inbox
            .get(&player)
            .into_iter()
            .flatten()
            .map(|bytes| decode(bytes).expect("decode message"))
            .collect()
    }

    /// The end of the game, if it ended: winners and the decoded detail.
    pub fn ended<T: DeserializeOwned>(&self) -> Option<(Vec<PlayerId>, T)> {
        self.ended
            .as_ref()
            .map(|(w, d)| (w.clone(), decode(d).expect("decode end detail")))
    }

    /// The tick rate the game asked for last.
    pub fn tick_hz(&self) -> u32 {
        self.tick_hz
    }

    /// Log lines `(level, message)` so far.
    pub fn logs(&self) -> &[(u8, String)] {
        &self.logs
    }

    /// The raw output of the last call (to check which views went out).
    pub fn last_output(&self) -> &Output {
        &self.last
    }

    /// The snapshot bytes, as `minotaur_snapshot` returns them.
    pub fn snapshot(&self) -> Vec<u8> {
        self.rt.snapshot().expect("snapshot")
    }

    /// Snapshot, restore into a fresh runtime, and carry on with that: proves
    /// the whole state survives. Asserts the restored state snapshots to the
    /// same bytes.
    pub fn snapshot_restore(&mut self) {
        let before = self.snapshot();
        let mut rt = GuestRuntime::new();
        let restore = encode(&Restore {
            state: before.clone(),
            from_version: G::RULES_VERSION,
        })
        .expect("encode restore");
        let out = rt.restore(&restore);
        assert_eq!(out.reject, None, "restore of own snapshot rejected");
        self.rt = rt;
        assert_eq!(
            self.snapshot(),
            before,
            "state changed across snapshot/restore"
        );
        self.apply(out).expect("checked above");
    }

    fn event(&mut self, event: Event) -> Result<(), Reject> {
        let bytes = encode(&event).expect("encode event");
        let may_reject = matches!(event, Event::Join { .. } | Event::Input { .. });
        let before = may_reject.then(|| self.snapshot());
        let out = self.rt.handle_event(&bytes);
        if out.reject.is_some() {
            if let Some(before) = before {
                assert!(
                    self.snapshot() == before,
                    "{:?} was rejected ({:?}) but changed the state: validate before mutating",
                    event,
                    out.reject
                );
            }
        }
        self.apply(out)
    }

    /// Round-trip the output through bytes like the host would, then record it.
    fn apply(&mut self, out: Output) -> Result<(), Reject> {
        let out: Output = decode(&encode(&out).expect("encode output")).expect("decode output");
        self.last = out.clone();
        if let Some(reason) = out.reject {
            assert!(out.effects.is_empty(), "a rejection carries no effects");
            return Err(Reject(reason));
        }
        for effect in out.effects {
            match effect {
                Effect::Send { to, msg } => self.inbox.entry(to).or_default().push(msg),
                Effect::Broadcast { msg } => {
                    for p in self.rt.players() {
                        self.inbox.entry(*p).or_default().push(msg.clone());
                    }
                }
                Effect::View { to, data } => {
                    self.views.insert(to, data);
                }
                Effect::End { winners, detail } => self.ended = Some((winners, detail)),
                Effect::SetTickRate { hz } => self.tick_hz = hz,
                Effect::Log { level, msg } => self.logs.push((level, msg)),
            }
        }
        Ok(())
    }
}
