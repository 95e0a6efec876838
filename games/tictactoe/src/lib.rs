//! Tic-tac-toe, the smallest complete Minotaur game: two seats, turns, a win
//! or a draw. Built to wasm with `scripts/build-games.sh`; rules tested natively
//! through `minotaur_guest::testing::Harness` in `tests/rules.rs`.

use minotaur_guest::{export_game, Cx, Game, PlayerId, Reject};
use serde::{Deserialize, Serialize};

/// A mark on the board; X moves first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mark {
    X,
    O,
}

impl Mark {
    fn other(self) -> Mark {
        match self {
            Mark::X => Mark::O,
            Mark::O => Mark::X,
        }
    }
}

/// The eight lines that win.
const LINES: [[usize; 3]; 8] = [
    [0, 1, 2],
    [3, 4, 5],
    [6, 7, 8],
    [0, 3, 6],
    [1, 4, 7],
    [2, 5, 8],
    [0, 4, 8],
    [2, 4, 6],
];

/// The whole session state.
#[derive(Debug, Serialize, Deserialize)]
pub struct TicTacToe {
    /// Cells 0..9, row by row.
    board: [Option<Mark>; 9],
    /// `seats[0]` plays X, `seats[1]` plays O.
    seats: Vec<PlayerId>,
    turn: Mark,
    outcome: Option<Outcome>,
}

/// How the game ended; also the `detail` of the end effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// `mark` completed the line of cells `line`.
    Win {
        mark: Mark,
        line: [usize; 3],
    },
    Draw,
    /// The other player left.
    Forfeit {
        mark: Mark,
    },
}

/// A move: `{"cell": 4}` for the centre.
#[derive(Debug, Serialize, Deserialize)]
pub struct Move {
    pub cell: usize,
}

/// What a player sees (nothing is hidden in this game).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    pub board: [Option<Mark>; 9],
    /// Your mark, if you hold a seat.
    pub you: Option<Mark>,
    /// Whose turn it is, `None` once the game is over or not yet started.
    pub turn: Option<Mark>,
    pub outcome: Option<Outcome>,
}

impl TicTacToe {
    fn mark_of(&self, p: PlayerId) -> Option<Mark> {
        match self.seats.iter().position(|s| *s == p) {
            Some(0) => Some(Mark::X),
            Some(1) => Some(Mark::O),
            _ => None,
        }
    }

    fn seat_of(&self, mark: Mark) -> Option<PlayerId> {
        self.seats.get(mark as usize).copied()
    }

    fn finish(&mut self, outcome: Outcome, cx: &mut Cx) {
        let winners = match &outcome {
            Outcome::Win { mark, .. } | Outcome::Forfeit { mark } => {
                self.seat_of(*mark).into_iter().collect()
            }
            Outcome::Draw => Vec::new(),
        };
        cx.end(winners, &outcome);
        self.outcome = Some(outcome);
    }
}

impl Game for TicTacToe {
    const NAME: &'static str = "tictactoe";
    const MIN_PLAYERS: u32 = 2;
    const MAX_PLAYERS: u32 = 2;
    type Config = ();
    type Input = Move;
    type View = View;

    fn init(_cx: &mut Cx, _config: ()) -> Self {
        TicTacToe {
            board: [None; 9],
            seats: Vec::new(),
            turn: Mark::X,
            outcome: None,
        }
    }

    fn on_join(&mut self, p: PlayerId, _name: &str, _cx: &mut Cx) -> Result<(), Reject> {
        // The SDK already refuses a third seat ("session full"); a seat freed by
        // a leaver is not handed out again because that game is over.
        if self.outcome.is_some() {
            return Err("game over".into());
        }
        self.seats.push(p);
        Ok(())
    }

    fn on_leave(&mut self, p: PlayerId, cx: &mut Cx) {
        if self.seats.len() < 2 {
            // Not started: free the seat for the next comer.
            self.seats.retain(|s| *s != p);
        } else if self.outcome.is_none() {
            if let Some(mark) = self.mark_of(p) {
                self.finish(Outcome::Forfeit { mark: mark.other() }, cx);
            }
        }
    }

    fn on_input(&mut self, p: PlayerId, m: Move, cx: &mut Cx) -> Result<(), Reject> {
        if self.outcome.is_some() {
            return Err("game over".into());
        }
        let mark = self.mark_of(p).ok_or("not a player")?;
        if self.seats.len() < 2 {
            return Err("waiting for an opponent".into());
        }
        if mark != self.turn {
            return Err("not your turn".into());
        }
        let cell = self.board.get(m.cell).ok_or("cell out of range (0..=8)")?;
        if cell.is_some() {
            return Err("cell already taken".into());
        }
        // Valid: only now change the state.
        self.board[m.cell] = Some(mark);
        self.turn = mark.other();
        let won = LINES
            .iter()
            .find(|line| line.iter().all(|&i| self.board[i] == Some(mark)));
        if let Some(&line) = won {
            self.finish(Outcome::Win { mark, line }, cx);
        } else if self.board.iter().all(Option::is_some) {
            self.finish(Outcome::Draw, cx);
        }
        Ok(())
    }

    fn view(&self, p: PlayerId) -> View {
        let playing = self.outcome.is_none() && self.seats.len() == 2;
        View {
            board: self.board,
            you: self.mark_of(p),
            turn: playing.then_some(self.turn),
            outcome: self.outcome.clone(),
        }
    }
}

export_game!(TicTacToe);
