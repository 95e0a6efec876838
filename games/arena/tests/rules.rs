//! Arena rules through the native harness: movement, scoring, fog of war,
//! seats, the end, and determinism.

use arena::{Arena, Config, Result as ArenaResult, View, BOOST_FACTOR, SPEED};
use minotaur_guest::testing::Harness;
use minotaur_guest::{PlayerId, Reject};
use serde_json::json;

fn pos(h: &Harness<Arena>, p: PlayerId) -> (f32, f32) {
    let pl = h.game().player(p).unwrap();
    (pl.x, pl.y)
}

/// Steer `p` straight at the nearest coin it can see, like a simple bot.
fn chase_coin(h: &mut Harness<Arena>, p: PlayerId) {
    let (x, y) = pos(h, p);
    let coin = h
        .game()
        .coins
        .iter()
        .min_by(|a, b| {
            let da = (a.x - x).powi(2) + (a.y - y).powi(2);
            let db = (b.x - x).powi(2) + (b.y - y).powi(2);
            da.total_cmp(&db)
        })
        .cloned()
        .unwrap();
    h.input(p, &json!({"dir": [coin.x - x, coin.y - y]}))
        .unwrap();
}

#[test]
fn players_move_in_their_direction_and_stay_on_the_field() {
    let mut h = Harness::<Arena>::new(1, Config::default());
    let p = h.join("ann").unwrap();
    let (x0, y0) = pos(&h, p);
    // Integers on the wire are fine for the f32 direction.
    h.input(p, &json!({"dir": [0, 1]})).unwrap();
    h.tick();
    let (x1, y1) = pos(&h, p);
    assert_eq!(x1, x0);
    assert!((y1 - (y0 + SPEED).min(1000.0)).abs() < 1e-3, "{y0} -> {y1}");
    // A long vector is clamped to unit length: diagonal speed is SPEED too.
    h.input(p, &json!({"dir": [-30.0, -40.0]})).unwrap();
    h.tick();
    let (x2, y2) = pos(&h, p);
    let moved = ((x2 - x1).powi(2) + (y2 - y1).powi(2)).sqrt();
    assert!(moved <= SPEED + 1e-3, "moved {moved}");
    h.ticks(400);
    assert_eq!(pos(&h, p), (0.0, 0.0), "clamped at the corner");
}

#[test]
fn boost_doubles_speed_then_recharges() {
    let mut h = Harness::<Arena>::new(2, Config::default());
    let p = h.join("ann").unwrap();
    h.input(p, &json!({"dir": [-1, 0]})).unwrap();
    h.ticks(250); // at the left wall, so a boosted step right cannot be clamped
    h.input(p, &json!({"dir": [1, 0], "boost": true})).unwrap();
    assert_eq!(pos(&h, p).0, 0.0);
    h.tick();
    assert_eq!(pos(&h, p).0, SPEED * BOOST_FACTOR);
    assert_eq!(
        h.input(p, &json!({"boost": true})),
        Err(Reject::new("boost recharging"))
    );
    h.ticks(100);
    h.input(p, &json!({"boost": true})).unwrap();
}

#[test]
fn bad_inputs_are_refused() {
    let mut h = Harness::<Arena>::new(3, Config::default());
    let p = h.join("ann").unwrap();
    assert!(h
        .input(p, &json!({}))
        .unwrap_err()
        .0
        .starts_with("empty input"));
    assert!(h
        .input(p, &json!({"dir": "north"}))
        .unwrap_err()
        .0
        .starts_with("bad input"));
    assert!(h
        .input(p, &json!({"dir": [1]}))
        .unwrap_err()
        .0
        .starts_with("bad input"));
    assert_eq!(h.join(&"x".repeat(25)), Err(Reject::new("name too long")));
}

#[test]
fn touching_a_coin_scores_and_the_coin_respawns() {
    let config = Config {
        target_score: 1000,
        ..Config::default()
    };
    let coins = config.coins as usize;
    let mut h = Harness::<Arena>::new(4, config);
    let p = h.join("ann").unwrap();
    for _ in 0..2000 {
        chase_coin(&mut h, p);
        h.tick();
        if h.game().player(p).unwrap().score >= 3 {
            break;
        }
    }
    assert!(h.game().player(p).unwrap().score >= 3);
    assert_eq!(h.game().coins.len(), coins, "taken coins are replaced");
    let view: View = h.view_as(p).unwrap();
    assert_eq!(view.score, h.game().player(p).unwrap().score);
    assert_eq!(view.scoreboard[0].score, view.score);
}

#[test]
fn reaching_the_target_score_ends_the_game() {
    let mut h = Harness::<Arena>::new(
        5,
        Config {
            target_score: 2,
            ..Config::default()
        },
    );
    let p = h.join("ann").unwrap();
    let q = h.join("bob").unwrap();
    for _ in 0..2000 {
        if h.ended::<ArenaResult>().is_some() {
            break;
        }
        chase_coin(&mut h, p);
        h.tick();
    }
    let (winners, result) = h.ended::<ArenaResult>().expect("ended");
    assert_eq!(winners, vec![p]);
    assert_eq!(result.scoreboard[0].id, p);
    assert_eq!(result.scoreboard[1].id, q);
    assert_eq!(h.tick_hz(), 0, "ticking stops");
    assert_eq!(
        h.input(q, &json!({"dir": [1, 0]})),
        Err(Reject::new("game over"))
    );
}

#[test]
fn the_tick_limit_ends_the_game_without_winners_if_nobody_scored() {
    let mut h = Harness::<Arena>::new(
        6,
        Config {
            tick_limit: 10,
            coins: 0,
            ..Config::default()
        },
    );
    h.join("ann").unwrap();
    h.ticks(9);
    assert!(h.ended::<ArenaResult>().is_none());
    h.tick();
    assert_eq!(h.ended::<ArenaResult>().unwrap().0, Vec::<PlayerId>::new());
}

#[test]
fn fog_of_war_hides_far_players_and_coins() {
    let mut h = Harness::<Arena>::new(
        7,
        Config {
            view_radius: 150.0,
            ..Config::default()
        },
    );
    let a = h.join("ann").unwrap();
    let b = h.join("bob").unwrap();
    h.input(a, &json!({"dir": [-1, 0]})).unwrap();
    h.input(b, &json!({"dir": [1, 0]})).unwrap();
    h.ticks(250); // pinned at opposite walls: 1000 apart in x
    let va: View = h.view_as(a).unwrap();
    assert!(va.others.is_empty(), "bob is far: {va:?}");
    assert_eq!(
        va.scoreboard.len(),
        2,
        "the scoreboard includes far players"
    );
    for c in &va.coins {
        let (x, y) = pos(&h, a);
        assert!((c.x - x).powi(2) + (c.y - y).powi(2) <= 150.0f32.powi(2));
    }
    assert!(va.coins.len() < h.game().coins.len());
    // Bring them together: same corner.
    h.input(a, &json!({"dir": [-1, -1]})).unwrap();
    h.input(b, &json!({"dir": [-1, -1]})).unwrap();
    h.ticks(300);
    let va: View = h.view_as(a).unwrap();
    assert_eq!(va.others.len(), 1);
    assert_eq!(va.others[0].id, b);
    // The wire shape hides far things too: no bob in a's view JSON once apart.
    h.input(b, &json!({"dir": [1, 1]})).unwrap();
    h.ticks(300);
    let json: serde_json::Value = h.view_as(a).unwrap();
    assert_eq!(json["others"], json!([]));
}

#[test]
fn views_follow_on_the_tick_not_the_input_and_list_ten_leaders() {
    let mut h = Harness::<Arena>::new(10, Config::default());
    let ps: Vec<PlayerId> = (0..20).map(|i| h.join(&format!("p{i}")).unwrap()).collect();
    h.input(ps[0], &json!({"dir": [1, 0], "boost": true}))
        .unwrap();
    assert!(
        h.last_output().effects.is_empty(),
        "no views after an input"
    );
    h.tick();
    let view: View = h.view_as(ps[0]).unwrap();
    assert_eq!(view.boost_left, arena::BOOST_TICKS - 1);
    assert_eq!(view.scoreboard.len(), arena::LEADERBOARD);
}

#[test]
fn sixty_four_seats_and_no_more() {
    let mut h = Harness::<Arena>::new(8, Config::default());
    for i in 0..64 {
        h.join(&format!("p{i}")).unwrap();
    }
    assert_eq!(h.join("late"), Err(Reject::new("session full")));
    h.leave(h.players()[10]);
    h.join("late").unwrap();
}

fn scripted(seed: u64) -> Vec<u8> {
    let mut h = Harness::<Arena>::new(seed, Config::default());
    let ps: Vec<PlayerId> = (0..8).map(|i| h.join(&format!("p{i}")).unwrap()).collect();
    for t in 0..300u32 {
        for (i, &p) in ps.iter().enumerate() {
            if (t as usize + i).is_multiple_of(17) {
                let angle = (t * 7 + i as u32) as f32;
                h.input(p, &json!({"dir": [angle.cos(), angle.sin()]}))
                    .unwrap();
            }
        }
        h.tick();
    }
    h.snapshot()
}

#[test]
fn same_seed_and_inputs_give_the_same_state() {
    assert_eq!(scripted(11), scripted(11));
    assert_ne!(scripted(11), scripted(12));
}

#[test]
fn snapshot_restore_mid_game_continues_identically() {
    let mut a = Harness::<Arena>::new(9, Config::default());
    let p = a.join("ann").unwrap();
    a.input(p, &json!({"dir": [1, 1]})).unwrap();
    a.ticks(50);
    let mut b = Harness::<Arena>::from_snapshot(&a.snapshot(), 1).unwrap();
    a.snapshot_restore();
    a.ticks(50);
    b.ticks(50);
    assert_eq!(a.snapshot(), b.snapshot());
    assert_eq!(a.view(p), b.view(p));
}
