//! The complete example game of `docs/GUEST_ABI.md` ("Writing a game in Rust
//! with the SDK") and its harness test, kept here verbatim so the document's
//! example is known to compile and pass.

mod counter {
    use minotaur_guest::{export_game, Cx, Game, PlayerId, Reject};
    use serde::{Deserialize, Serialize};
    use std::collections::BTreeMap;

    #[derive(Serialize, Deserialize)]
    pub struct Counter {
        target: u32,
        presses: BTreeMap<PlayerId, u32>,
        over: bool,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    pub struct Config {
        target: Option<u32>,
    }

    /// `{"press": true}`
    #[derive(Deserialize)]
    pub struct Press {
        press: bool,
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    pub struct View {
        mine: u32,
        best: u32,
    }

    impl Game for Counter {
        const NAME: &'static str = "counter";
        const MAX_PLAYERS: u32 = 4;
        type Config = Config;
        type Input = Press;
        type View = View;

        fn init(_cx: &mut Cx, config: Config) -> Self {
            Counter {
                target: config.target.unwrap_or(3),
                presses: BTreeMap::new(),
                over: false,
            }
        }

        fn on_join(&mut self, p: PlayerId, _name: &str, _cx: &mut Cx) -> Result<(), Reject> {
            self.presses.insert(p, 0);
            Ok(())
        }

        fn on_input(&mut self, p: PlayerId, input: Press, cx: &mut Cx) -> Result<(), Reject> {
            if self.over || !input.press {
                return Err("nothing to do".into()); // checked before any change
            }
            let n = self.presses.entry(p).or_default();
            *n += 1;
            if *n == self.target {
                self.over = true;
                cx.end(vec![p], &"first to the target");
            }
            Ok(())
        }

        fn view(&self, p: PlayerId) -> View {
            View {
                mine: self.presses.get(&p).copied().unwrap_or(0),
                best: self.presses.values().copied().max().unwrap_or(0),
            }
        }
    }

    export_game!(Counter);
}

use counter::Counter;
use minotaur_guest::{testing::Harness, Reject};
use serde_json::json;

#[test]
fn first_to_three_wins() {
    let mut h = Harness::<Counter>::new(42, Default::default()); // seed, config
    let a = h.join("ann").unwrap();
    let b = h.join("bob").unwrap();
    h.input(a, &json!({"press": true})).unwrap(); // inputs in their JSON shape
    assert_eq!(
        h.input(b, &json!({"press": false})),
        Err(Reject::new("nothing to do"))
    );
    assert_eq!(
        h.view_as::<serde_json::Value>(b).unwrap(),
        json!({"mine": 0, "best": 1})
    );
    h.snapshot_restore(); // state survives a round trip
    h.input(a, &json!({"press": true})).unwrap();
    h.input(a, &json!({"press": true})).unwrap();
    assert_eq!(
        h.ended::<String>(),
        Some((vec![a], "first to the target".into()))
    );
}
