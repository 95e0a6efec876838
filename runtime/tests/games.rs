//! The real example games through the runtime, when `scripts/build-games.sh`
//! has built them (`games/dist/*.wasm`). Skipped, with a note, when absent:
//! the runtime's own tests must not depend on another crate's build.

use std::path::PathBuf;

use minotaur_abi::{decode, encode, Effect, Event, Init, Restore};
use minotaur_runtime::{Limits, Runtime};
use serde::Serialize;

fn built_game(name: &str) -> Option<Vec<u8>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let candidates = [
        root.join("games/dist").join(format!("{name}.wasm")),
        root.join("games/dist/test").join(format!("{name}.wasm")),
        root.join("target/wasm32-unknown-unknown/wasm")
            .join(format!("{name}.wasm")),
    ];
    let found = candidates.iter().find_map(|p| std::fs::read(p).ok());
    if found.is_none() {
        eprintln!("skipping: {name}.wasm not built (run scripts/build-games.sh)");
    }
    found
}

#[derive(Serialize)]
struct Move {
    cell: usize,
}

fn input(player: u64, cell: usize) -> Event {
    Event::Input {
        player,
        data: encode(&Move { cell }).unwrap(),
    }
}

#[test]
fn tictactoe_plays_snapshots_and_restores() {
    let Some(wasm) = built_game("tictactoe") else {
        return;
    };
    let rt = Runtime::new(Limits {
        max_instances: 8,
        ..Limits::default()
    })
    .unwrap();
    let module = rt.load(&wasm).unwrap();
    assert_eq!(module.info().name, "tictactoe");
    assert_eq!(module.info().max_players, 2);

    let mut g = module.instantiate().unwrap();
    let init = Init {
        session: "t-1".into(),
        seed: 1,
        config: vec![],
    };
    g.init(&init).unwrap();
    for (player, name) in [(1, "x"), (2, "o")] {
        let out = g
            .event(&Event::Join {
                player,
                name: name.into(),
            })
            .unwrap();
        assert_eq!(out.reject, None);
    }
    let full = g
        .event(&Event::Join {
            player: 3,
            name: "late".into(),
        })
        .unwrap();
    assert!(full.reject.is_some(), "third seat accepted");

    assert_eq!(g.event(&input(1, 4)).unwrap().reject, None);
    assert!(
        g.event(&input(1, 0)).unwrap().reject.is_some(),
        "out of turn"
    );
    let snapshot = g.snapshot().unwrap();
    assert!(decode::<rmp_serde_value::Any>(&snapshot).is_ok());

    // The snapshot carries the game into a fresh instance: O moves next there.
    let mut h = module.instantiate().unwrap();
    h.restore(&Restore {
        state: snapshot.clone(),
        from_version: module.info().rules_version,
    })
    .unwrap();
    assert_eq!(h.snapshot().unwrap(), snapshot);
    assert_eq!(h.event(&input(2, 0)).unwrap().reject, None);

    // X completes the centre column: 4 (before the snapshot), 1, 7.
    h.event(&input(1, 1)).unwrap();
    h.event(&input(2, 2)).unwrap();
    let out = h.event(&input(1, 7)).unwrap();
    assert!(
        out.effects
            .iter()
            .any(|e| matches!(e, Effect::End { winners, .. } if winners == &[1])),
        "{out:?}"
    );
}

/// Decode into "anything": proves the snapshot is well-formed MessagePack.
mod rmp_serde_value {
    use serde::de::{Deserialize, Deserializer, IgnoredAny};

    pub struct Any;

    impl<'de> Deserialize<'de> for Any {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            IgnoredAny::deserialize(d).map(|_| Any)
        }
    }
}
