//! Hot-swap: a live arena v1 session restores into the v2 rules with scores,
//! positions, coins and the RNG intact, then plays by the v2 rules.

use arena_v2::{Arena as ArenaV2, COIN_VALUE, MAX_ENERGY};
use minotaur_guest::testing::Harness;
use minotaur_guest::{Game, PlayerId, Reject};
use serde_json::json;

/// A v1 session where `ann` has scored, mid-game.
fn v1_session() -> (Harness<arena::Arena>, PlayerId, PlayerId) {
    let mut h = Harness::<arena::Arena>::new(21, arena::Config::default());
    let ann = h.join("ann").unwrap();
    let bob = h.join("bob").unwrap();
    for _ in 0..3000 {
        if h.game().player(ann).unwrap().score >= 2 {
            break;
        }
        let me = h.game().player(ann).unwrap().clone();
        let coin = h
            .game()
            .coins
            .iter()
            .min_by(|a, b| {
                let da = (a.x - me.x).powi(2) + (a.y - me.y).powi(2);
                let db = (b.x - me.x).powi(2) + (b.y - me.y).powi(2);
                da.total_cmp(&db)
            })
            .cloned()
            .unwrap();
        h.input(ann, &json!({"dir": [coin.x - me.x, coin.y - me.y]}))
            .unwrap();
        h.tick();
    }
    h.input(bob, &json!({"dir": [0, 1], "boost": true}))
        .unwrap();
    (h, ann, bob)
}

#[test]
fn versions_differ() {
    assert_eq!(arena::Arena::info().rules_version, 1);
    assert_eq!(ArenaV2::info().rules_version, 2);
    assert_eq!(ArenaV2::info().name, arena::Arena::info().name);
}

#[test]
fn a_v1_snapshot_restores_into_v2_with_everything_intact() {
    let (v1, ann, bob) = v1_session();
    let v1_ann = v1.game().player(ann).unwrap().clone();
    assert!(v1_ann.score >= 2);
    let mut v2 = Harness::<ArenaV2>::from_snapshot(&v1.snapshot(), 1).unwrap();
    let g = v2.game();
    assert_eq!(v2.players(), &[ann, bob]);
    let ann2 = g.player(ann).unwrap();
    assert_eq!(
        (ann2.score, ann2.x, ann2.y),
        (v1_ann.score, v1_ann.x, v1_ann.y)
    );
    assert_eq!(ann2.boost_energy, MAX_ENERGY, "new field takes its default");
    let coins_v2: Vec<(f32, f32)> = g.coins.iter().map(|c| (c.x, c.y)).collect();
    let coins_v1: Vec<(f32, f32)> = v1.game().coins.iter().map(|c| (c.x, c.y)).collect();
    assert_eq!(coins_v2, coins_v1);
    assert_eq!(g.ticks, v1.game().ticks);
    let bob2 = g.player(bob).unwrap();
    assert!(
        bob2.boost_left > 0 && bob2.cooldown > 0,
        "boost in flight kept"
    );
    // Every seated player gets a view right away, in the v2 shape.
    let view: serde_json::Value = v2.view_as(ann).unwrap();
    assert_eq!(view["boost_energy"], MAX_ENERGY);
    assert_eq!(view["scoreboard"][0]["score"], v1_ann.score);

    // From here on the v2 rules apply: a coin is worth COIN_VALUE (2).
    let before = v2.game().player(ann).unwrap().score;
    for _ in 0..3000 {
        if v2.game().player(ann).unwrap().score > before {
            break;
        }
        let me = v2.game().player(ann).unwrap().clone();
        let coin = v2.game().coins[0].clone();
        v2.input(ann, &json!({"dir": [coin.x - me.x, coin.y - me.y]}))
            .unwrap();
        v2.tick();
    }
    let gained = v2.game().player(ann).unwrap().score - before;
    assert_eq!(gained % COIN_VALUE, 0);
    assert!(gained >= COIN_VALUE);
    v2.snapshot_restore();
}

#[test]
fn boosting_spends_energy_in_v2() {
    let mut h = Harness::<ArenaV2>::new(
        1,
        arena_v2::Config {
            coins: 0,
            ..Default::default()
        },
    );
    let p = h.join("ann").unwrap();
    for _ in 0..MAX_ENERGY {
        h.input(p, &json!({"boost": true})).unwrap();
        h.ticks(arena_v2::BOOST_COOLDOWN as u64);
    }
    assert_eq!(
        h.input(p, &json!({"boost": true})),
        Err(Reject::new("no boost energy: collect a coin"))
    );
}
