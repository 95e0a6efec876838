//! `chaos`: an SDK-built guest whose inputs make it misbehave on purpose, so
//! host tests can drive the sandbox (trap, time limit, memory cap, payload
//! limit) through the whole stack. Built to `games/dist/chaos.wasm` by
//! `scripts/build-games.sh`. Inputs (JSON on the wire):
//! `{"do":"panic"}` traps, `{"do":"spin"}` never returns, `{"do":"hog"}`
//! allocates until the memory cap stops it, `{"do":"big","n":BYTES}` broadcasts
//! a message of `n` bytes, `{"do":"echo","n":5}` adds `n` to a counter and
//! broadcasts it, `{"do":"reject"}` is refused, `{"do":"end"}` ends the game,
//! `{"do":"tick_rate","n":HZ}` changes the tick rate, `{"do":"grow","n":BYTES}`
//! adds `n` bytes to the state (snapshot size limit).
//!
//! With the cargo feature `v2` it is rules version 2 whose `migrate` panics
//! (`chaos-v2.wasm`): publishing it with `migrate` must leave sessions on v1.

use minotaur_guest::{export_game, Cx, Game, PlayerId, Reject, Tick};
use serde::{Deserialize, Serialize};

/// The state: a counter the echo command and ticks move.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Chaos {
    pub count: u64,
    pub ticks: u64,
    #[serde(default)]
    pub pad: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case")]
pub enum Command {
    Panic,
    Spin,
    Hog,
    Big { n: u32 },
    Echo { n: u64 },
    Reject,
    End,
    TickRate { n: u32 },
    Grow { n: u32 },
}

/// Broadcast after every echo.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct Echo {
    pub n: u64,
    pub count: u64,
}

/// Everyone sees the same counters.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct View {
    pub count: u64,
    pub ticks: u64,
}

impl Game for Chaos {
    const NAME: &'static str = "chaos";
    const RULES_VERSION: u32 = if cfg!(feature = "v2") { 2 } else { 1 };
    const MAX_PLAYERS: u32 = 16;
    type Config = ();
    type Input = Command;
    type View = View;

    fn init(_cx: &mut Cx, _config: ()) -> Self {
        Chaos::default()
    }

    fn on_input(&mut self, _p: PlayerId, cmd: Command, cx: &mut Cx) -> Result<(), Reject> {
        match cmd {
            Command::Panic => panic!("chaos: asked to panic"),
            Command::Spin => {
                let mut i = 0u64;
                // black_box keeps the optimiser from proving anything about
                // the loop; it must really burn the time budget.
                loop {
                    i = std::hint::black_box(i.wrapping_add(1));
                }
            }
            Command::Hog => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    // Touch every page so the memory is really committed.
                    hoard.push(std::hint::black_box(vec![0xA5; 1 << 20]));
                }
            }
            Command::Big { n } => cx.broadcast(&filler(n as usize)),
            Command::Echo { n } => {
                self.count += n;
                cx.broadcast(&Echo {
                    n,
                    count: self.count,
                });
            }
            Command::Reject => return Err("chaos: asked to reject".into()),
            Command::End => cx.end(Vec::new(), &self.count),
            Command::TickRate { n } => cx.set_tick_rate(n),
            Command::Grow { n } => self.pad.push_str(&filler(n as usize)),
        }
        Ok(())
    }

    fn on_tick(&mut self, _tick: Tick, _cx: &mut Cx) {
        self.ticks += 1;
    }

    fn migrate(from_version: u32, state: &[u8]) -> Result<Self, Reject> {
        if cfg!(feature = "v2") {
            panic!("chaos v2: asked to migrate from v{from_version}");
        }
        minotaur_guest::decode(state).map_err(|e| Reject::new(format!("cannot restore: {e}")))
    }

    fn view(&self, _p: PlayerId) -> View {
        View {
            count: self.count,
            ticks: self.ticks,
        }
    }
}

/// A string of `n` bytes (strings transcode to JSON for players; bin would not).
fn filler(n: usize) -> String {
    "x".repeat(n)
}

export_game!(Chaos);

#[cfg(test)]
mod tests {
    use super::*;
    use minotaur_guest::testing::Harness;
    use serde_json::json;

    #[test]
    fn echo_counts_broadcasts_and_updates_views() {
        let mut h = Harness::<Chaos>::new(0, ());
        let a = h.join("a").unwrap();
        let b = h.join("b").unwrap();
        h.input(a, &json!({"do": "echo", "n": 5})).unwrap();
        h.input(b, &json!({"do": "echo", "n": 2})).unwrap();
        assert_eq!(
            h.sent_to::<Echo>(b),
            vec![Echo { n: 5, count: 5 }, Echo { n: 2, count: 7 }]
        );
        assert_eq!(h.view_as::<View>(a), Some(View { count: 7, ticks: 0 }));
        h.snapshot_restore();
        assert_eq!(h.game().count, 7);
    }

    #[test]
    fn big_reject_end_and_tick_rate_do_what_they_say() {
        let mut h = Harness::<Chaos>::new(0, ());
        let a = h.join("a").unwrap();
        h.input(a, &json!({"do": "big", "n": 1000})).unwrap();
        assert_eq!(h.sent_to::<String>(a)[0].len(), 1000);
        assert_eq!(
            h.input(a, &json!({"do": "reject"})),
            Err(Reject::new("chaos: asked to reject"))
        );
        h.input(a, &json!({"do": "tick_rate", "n": 50})).unwrap();
        assert_eq!(h.tick_hz(), 50);
        h.input(a, &json!({"do": "end"})).unwrap();
        assert_eq!(h.ended::<u64>(), Some((vec![], 0)));
    }

    #[test]
    #[should_panic(expected = "chaos: asked to panic")]
    fn panic_panics() {
        let mut h = Harness::<Chaos>::new(0, ());
        let a = h.join("a").unwrap();
        let _ = h.input(a, &json!({"do": "panic"}));
    }
}
