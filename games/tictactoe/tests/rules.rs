//! The rules of tic-tac-toe, played through the native harness.

use minotaur_guest::testing::Harness;
use minotaur_guest::{PlayerId, Reject};
use serde_json::json;
use tictactoe::{Mark, Outcome, TicTacToe, View};

fn game() -> (Harness<TicTacToe>, PlayerId, PlayerId) {
    let mut h = Harness::new(0, ());
    let x = h.join("xena").unwrap();
    let o = h.join("otto").unwrap();
    (h, x, o)
}

fn play(h: &mut Harness<TicTacToe>, moves: &[(PlayerId, usize)]) {
    for &(p, cell) in moves {
        h.input(p, &json!({ "cell": cell })).unwrap();
    }
}

#[test]
fn third_player_is_turned_away() {
    let (mut h, _, _) = game();
    assert_eq!(h.join("third"), Err(Reject::new("session full")));
}

#[test]
fn cannot_move_before_an_opponent_arrives() {
    let mut h = Harness::<TicTacToe>::new(0, ());
    let x = h.join("xena").unwrap();
    assert_eq!(
        h.input(x, &json!({"cell": 0})),
        Err(Reject::new("waiting for an opponent"))
    );
    assert_eq!(h.view(x).turn, None);
}

#[test]
fn turns_alternate_and_bad_moves_are_refused_with_reasons() {
    let (mut h, x, o) = game();
    assert_eq!(
        h.input(o, &json!({"cell": 0})),
        Err(Reject::new("not your turn"))
    );
    h.input(x, &json!({"cell": 4})).unwrap();
    assert_eq!(
        h.input(x, &json!({"cell": 0})),
        Err(Reject::new("not your turn"))
    );
    assert_eq!(
        h.input(o, &json!({"cell": 4})),
        Err(Reject::new("cell already taken"))
    );
    assert_eq!(
        h.input(o, &json!({"cell": 9})),
        Err(Reject::new("cell out of range (0..=8)"))
    );
    assert!(h
        .input(o, &json!({"cell": -1}))
        .unwrap_err()
        .0
        .starts_with("bad input"));
    assert!(h
        .input(o, &json!({"square": 1}))
        .unwrap_err()
        .0
        .starts_with("bad input"));
    h.input(o, &json!({"cell": 0})).unwrap();
    let view = h.view(x);
    assert_eq!(view.board[4], Some(Mark::X));
    assert_eq!(view.board[0], Some(Mark::O));
    assert_eq!(view.turn, Some(Mark::X));
}

#[test]
fn views_tell_each_player_their_mark_on_the_wire() {
    let (mut h, x, o) = game();
    h.input(x, &json!({"cell": 2})).unwrap();
    let vx: serde_json::Value = h.view_as(x).unwrap();
    let vo: serde_json::Value = h.view_as(o).unwrap();
    assert_eq!(vx["you"], "X");
    assert_eq!(vo["you"], "O");
    assert_eq!(vo["turn"], "O");
    assert_eq!(vo["board"][2], "X");
    assert_eq!(vo["board"][0], serde_json::Value::Null);
}

#[test]
fn a_line_wins_and_ends_the_game() {
    let (mut h, x, o) = game();
    play(&mut h, &[(x, 0), (o, 3), (x, 1), (o, 4)]);
    assert_eq!(h.ended::<Outcome>(), None);
    play(&mut h, &[(x, 2)]);
    let (winners, outcome) = h.ended::<Outcome>().unwrap();
    assert_eq!(winners, vec![x]);
    assert_eq!(
        outcome,
        Outcome::Win {
            mark: Mark::X,
            line: [0, 1, 2]
        }
    );
    assert_eq!(
        h.input(o, &json!({"cell": 5})),
        Err(Reject::new("game over"))
    );
    let view: View = h.view(o);
    assert_eq!(view.turn, None);
    assert_eq!(
        view.outcome,
        Some(Outcome::Win {
            mark: Mark::X,
            line: [0, 1, 2]
        })
    );
}

#[test]
fn every_line_is_detected() {
    let lines = [
        [0, 1, 2],
        [3, 4, 5],
        [6, 7, 8],
        [0, 3, 6],
        [1, 4, 7],
        [2, 5, 8],
        [0, 4, 8],
        [2, 4, 6],
    ];
    for line in lines {
        let (mut h, x, o) = game();
        // O plays the first free cells not on X's line, never completing a line
        // before X (O moves only twice).
        let mut free = (0..9).filter(|c| !line.contains(c));
        for (i, &cell) in line.iter().enumerate() {
            h.input(x, &json!({ "cell": cell })).unwrap();
            if i < 2 {
                h.input(o, &json!({ "cell": free.next().unwrap() }))
                    .unwrap();
            }
        }
        let (winners, outcome) = h.ended::<Outcome>().expect("won");
        assert_eq!(winners, vec![x], "line {line:?}");
        assert_eq!(
            outcome,
            Outcome::Win {
                mark: Mark::X,
                line
            }
        );
    }
}

#[test]
fn a_full_board_without_a_line_is_a_draw() {
    let (mut h, x, o) = game();
    // X O X / X O O / O X X
    play(
        &mut h,
        &[
            (x, 0),
            (o, 1),
            (x, 2),
            (o, 4),
            (x, 3),
            (o, 5),
            (x, 7),
            (o, 6),
            (x, 8),
        ],
    );
    assert_eq!(h.ended::<Outcome>(), Some((vec![], Outcome::Draw)));
}

#[test]
fn leaving_mid_game_forfeits() {
    let (mut h, x, o) = game();
    play(&mut h, &[(x, 0)]);
    h.leave(x);
    assert_eq!(
        h.ended::<Outcome>(),
        Some((vec![o], Outcome::Forfeit { mark: Mark::O }))
    );
    assert_eq!(h.join("late"), Err(Reject::new("game over")));
}

#[test]
fn state_survives_snapshot_and_restore() {
    let (mut h, x, o) = game();
    play(&mut h, &[(x, 0), (o, 4)]);
    h.snapshot_restore();
    assert_eq!(h.view_as::<View>(x).unwrap().board[4], Some(Mark::O));
    assert_eq!(
        h.input(o, &json!({"cell": 1})),
        Err(Reject::new("not your turn"))
    );
    play(&mut h, &[(x, 1), (o, 8), (x, 2)]);
    assert_eq!(h.ended::<Outcome>().unwrap().0, vec![x]);
}

#[test]
fn leaving_before_the_start_frees_the_seat() {
    let mut h = Harness::<TicTacToe>::new(0, ());
    let first = h.join("first").unwrap();
    h.leave(first);
    let x = h.join("xena").unwrap();
    let o = h.join("otto").unwrap();
    assert_eq!(h.view(x).you, Some(Mark::X));
    assert_eq!(h.view(o).you, Some(Mark::O));
    h.input(x, &json!({"cell": 0})).unwrap();
}
