//! Player bots: the per-game logic (a [`Brain`]: arena steers at random,
//! tictactoe plays legal moves on its turn) and the loop that drives one bot's
//! websocket, times its inputs by `seq` and re-queues after a game ends.
//! `run` spawns one [`run_bot`] per player.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::{json, Value};
use tokio::time::{Instant, MissedTickBehavior};

use crate::client::{ClientError, ClientMsg, Connection, Encoding, Incoming, Kind};
use crate::stats::{record, BotLatencies, Stats};

/// A game's bot logic. The driving loop owns the socket and the timing.
pub trait Brain: Send + 'static {
    /// How this bot decodes `view.data` (`IgnoredAny` if it never reads it).
    type View: DeserializeOwned + Send;
    fn game(&self) -> &'static str;
    /// We hold a seat as `player`.
    fn joined(&mut self, _player: Option<&Value>) {}
    fn view(&mut self, _view: Self::View) {}
    /// The bot's input clock ticked (at `--rate`): the input to send, if any.
    fn tick(&mut self, rng: &mut Rng) -> Option<Value>;
    /// An input of ours was refused (`error` with its `seq`).
    fn refused(&mut self) {}
    /// The game ended; forget it.
    fn reset(&mut self) {}
}

/// Arena: change direction at every tick; views are only timed, never read.
#[derive(Default)]
pub struct ArenaBot {
    last: Option<usize>,
}

/// Eight unit directions (diagonals normalised), as the floats `games/arena` reads.
const DIRS: [[f32; 2]; 8] = {
    const D: f32 = std::f32::consts::FRAC_1_SQRT_2;
    [
        [1.0, 0.0],
        [D, D],
        [0.0, 1.0],
        [-D, D],
        [-1.0, 0.0],
        [-D, -D],
        [0.0, -1.0],
        [D, -D],
    ]
};

impl Brain for ArenaBot {
    type View = IgnoredAny;
    fn game(&self) -> &'static str {
        "arena"
    }
    fn tick(&mut self, rng: &mut Rng) -> Option<Value> {
        // A new direction every time, so each input really changes something.
        let mut i = rng.below(DIRS.len() as u64) as usize;
        if Some(i) == self.last {
            i = (i + 1) % DIRS.len();
        }
        self.last = Some(i);
        Some(json!({ "dir": DIRS[i] }))
    }
}

/// Tictactoe: on its turn (read from its latest view) play one legal move and
/// wait for the next view before moving again.
#[derive(Default)]
pub struct TicTacToeBot {
    me: Option<Value>,
    view: Option<Value>,
    /// A move is in flight: the view we hold is stale until the next arrives.
    moved: bool,
}

impl Brain for TicTacToeBot {
    type View = Value;
    fn game(&self) -> &'static str {
        "tictactoe"
    }
    fn joined(&mut self, player: Option<&Value>) {
        self.me = player.cloned();
    }
    fn view(&mut self, view: Value) {
        self.view = Some(view);
        self.moved = false;
    }
    fn tick(&mut self, _rng: &mut Rng) -> Option<Value> {
        if self.moved {
            return None;
        }
        let board = Board::from_view(self.view.as_ref()?, self.me.as_ref())?;
        let cell = board.my_move()?;
        self.moved = true;
        Some(json!({ "cell": cell }))
    }
    fn refused(&mut self) {
        self.moved = false;
    }
    fn reset(&mut self) {
        self.view = None;
        self.moved = false;
    }
}

/// A tictactoe position as this bot sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Board {
    /// `None` = empty; otherwise the mark (or player) in the cell.
    pub cells: [Option<Value>; 9],
    pub my_turn: bool,
    /// Our own mark, if the view tells it (for winning/blocking).
    pub mine: Option<Value>,
}

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

impl Board {
    /// Read a view. Tolerant of the usual shapes: `board`/`cells` as 9 cells or
    /// 3 rows (empty = null, "", " ", "-", "." or 0); whose turn from
    /// `your_turn`/`my_turn`, or `turn`/`to_move`/`next` compared with our
    /// player id or our mark (`you`/`mark`/`me`/`your_mark`); a finished game
    /// (`winner`/`outcome` set, `over`/`finished`/`ended` true) is nobody's
    /// turn. `games/tictactoe` sends `{board, you, turn, outcome}`.
    pub fn from_view(view: &Value, me: Option<&Value>) -> Option<Board> {
        let raw = view
            .get("board")
            .or_else(|| view.get("cells"))?
            .as_array()?;
        let flat: Vec<&Value> = if raw.len() == 3 && raw.iter().all(Value::is_array) {
            raw.iter()
                .flat_map(|row| row.as_array().into_iter().flatten())
                .collect()
        } else {
            raw.iter().collect()
        };
        if flat.len() != 9 {
            return None;
        }
        let cells: [Option<Value>; 9] =
            std::array::from_fn(|i| (!is_empty_cell(flat[i])).then(|| flat[i].clone()));
        let mine = ["you", "mark", "me", "your_mark", "my_mark"]
            .iter()
            .find_map(|k| view.get(*k).filter(|v| !v.is_null()).cloned());
        let over = ["over", "finished", "ended", "game_over"]
            .iter()
            .any(|k| view.get(*k) == Some(&Value::Bool(true)))
            || ["winner", "outcome"]
                .iter()
                .any(|k| view.get(*k).is_some_and(|w| !w.is_null()));
        let my_turn = !over
            && if let Some(b) = ["your_turn", "my_turn"]
                .iter()
                .find_map(|k| view.get(*k)?.as_bool())
            {
                b
            } else {
                let turn = ["turn", "to_move", "next"]
                    .iter()
                    .find_map(|k| view.get(*k))?;
                (me.is_some() && same(turn, me)) || (mine.is_some() && same(turn, mine.as_ref()))
            };
        Some(Board {
            cells,
            my_turn,
            mine,
        })
    }

    /// Our move, if it is our turn and a cell is free: win if we can, block if
    /// we must, else centre, corners, edges.
    pub fn my_move(&self) -> Option<u8> {
        if !self.my_turn {
            return None;
        }
        let free = |i: usize| self.cells[i].is_none();
        let completing = |who: &dyn Fn(&Value) -> bool| {
            LINES.iter().find_map(|line| {
                let owned = line
                    .iter()
                    .filter(|&&i| self.cells[i].as_ref().is_some_and(who))
                    .count();
                let empty: Vec<usize> = line.iter().copied().filter(|&i| free(i)).collect();
                (owned == 2 && empty.len() == 1).then(|| empty[0])
            })
        };
        if let Some(mine) = &self.mine {
            if let Some(i) = completing(&|c| c == mine) {
                return Some(i as u8);
            }
            if let Some(i) = completing(&|c| c != mine) {
                return Some(i as u8);
            }
        }
        [4, 0, 2, 6, 8, 1, 3, 5, 7]
            .into_iter()
            .find(|&i| free(i))
            .map(|i| i as u8)
    }
}

fn is_empty_cell(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => matches!(s.trim(), "" | "-" | "."),
        Value::Number(n) => n.as_u64() == Some(0),
        _ => false,
    }
}

/// Ids may come as strings or numbers; compare loosely.
fn same(a: &Value, b: Option<&Value>) -> bool {
    let Some(b) = b else { return false };
    a == b || (a.to_string().trim_matches('"') == b.to_string().trim_matches('"'))
}

/// A small deterministic PRNG (splitmix64): bots need variety, not security.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// What every bot of a run shares.
pub struct BotPlan {
    pub url: String,
    pub encoding: Encoding,
    pub rate: f64,
    pub stop_at: Instant,
    pub connect_timeout: Duration,
}

enum Phase {
    Joining,
    Playing,
    Leaving,
}

/// Why a connection's loop ended.
enum Exit {
    Stop,
    Dropped,
}

/// Drive one bot from `start_at` until the plan's `stop_at`: connect, quick-match,
/// play, re-queue after each game, reconnect after a dropped socket, leave at
/// the end. Latencies are merged into `stats` when it returns.
pub async fn run_bot<B: Brain>(
    id: u64,
    plan: Arc<BotPlan>,
    stats: Arc<Stats>,
    mut brain: B,
    start_at: Instant,
) {
    let mut lat = BotLatencies::default();
    let mut rng = Rng::new(id ^ 0x5EED);
    let mut seq = 0u64;
    tokio::time::sleep_until(start_at).await;
    while Instant::now() < plan.stop_at {
        let conn = tokio::select! {
            c = Connection::connect(&plan.url, plan.encoding, plan.connect_timeout) => c,
            _ = tokio::time::sleep_until(plan.stop_at) => break,
        };
        let mut conn = match conn {
            Ok(c) => c,
            Err(e) => {
                stats.error(e.code());
                // Back off so a refused port does not become a busy loop.
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        stats.connection_opened();
        let exit = play(
            id, &plan, &stats, &mut brain, &mut conn, &mut lat, &mut rng, &mut seq,
        )
        .await;
        stats.connection_closed();
        brain.reset();
        match exit {
            Exit::Stop => {
                give_up_seat(&mut conn).await;
                conn.close().await;
                break;
            }
            Exit::Dropped => {
                stats.disconnects.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    stats.merge(&lat);
}

/// At the end of the run, `leave` rather than just hang up: a dropped socket
/// keeps its seat for a resume, and a node reused for the next run should not
/// be full of ghosts. Bounded by one second; any refusal is fine here.
async fn give_up_seat(conn: &mut Connection) {
    let left = async {
        conn.send(&ClientMsg::Leave).await.ok()?;
        loop {
            let msg = conn.recv::<IgnoredAny>().await.ok()??;
            if matches!(msg.kind, Kind::Left | Kind::Error) {
                return Some(());
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), left).await;
}

/// One connection's life. Returns at `stop_at` or when the socket drops.
#[allow(clippy::too_many_arguments)]
async fn play<B: Brain>(
    id: u64,
    plan: &BotPlan,
    stats: &Stats,
    brain: &mut B,
    conn: &mut Connection,
    lat: &mut BotLatencies,
    rng: &mut Rng,
    seq: &mut u64,
) -> Exit {
    let name = format!("bot-{id}");
    let game = brain.game();
    // seq -> when sent; acks normally come in order, so this stays tiny.
    let mut awaiting_ack: BTreeMap<u64, Instant> = BTreeMap::new();
    // Inputs sent since the last view: the next view closes them all.
    let mut awaiting_view: Vec<Instant> = Vec::new();
    let mut session: Option<String> = None;
    let mut phase = Phase::Joining;
    // A refused join (full, overloaded) is tried again after a pause.
    let mut rejoin_at: Option<Instant> = None;
    // The last seq sent before `ended` arrived: refusals of those are a race, not a fault.
    let mut ended_at_seq: Option<u64> = None;
    let period = Duration::from_secs_f64(1.0 / plan.rate);
    // Spread the bots' ticks over one period instead of firing in lock-step.
    let phase_offset = period.mul_f64(rng.below(1000) as f64 / 1000.0);
    let mut ticker = tokio::time::interval_at(Instant::now() + phase_offset, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);

    let exit = 'conn: {
        if let Err(e) = conn.send(&ClientMsg::Join { game, name: &name }).await {
            stats.error(e.code());
            break 'conn Exit::Dropped;
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(plan.stop_at) => break 'conn Exit::Stop,
                _ = tokio::time::sleep_until(rejoin_at.unwrap_or(plan.stop_at)), if rejoin_at.is_some() => {
                    rejoin_at = None;
                    if let Err(e) = conn.send(&ClientMsg::Join { game, name: &name }).await {
                        stats.error(e.code());
                        break 'conn Exit::Dropped;
                    }
                }
                _ = ticker.tick(), if matches!(phase, Phase::Playing) => {
                    let Some(data) = brain.tick(rng) else { continue };
                    *seq += 1;
                    let now = Instant::now();
                    awaiting_ack.insert(*seq, now);
                    awaiting_view.push(now);
                    stats.inputs.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = conn.send(&ClientMsg::Input { data: &data, seq: *seq }).await {
                        stats.error(e.code());
                        break 'conn Exit::Dropped;
                    }
                }
                msg = conn.recv::<B::View>() => {
                    let msg: Incoming<B::View> = match msg {
                        Ok(Some(m)) => m,
                        Ok(None) => break 'conn Exit::Dropped,
                        Err(e @ ClientError::Decode(_)) => { stats.error(e.code()); continue; }
                        Err(e) => { stats.error(e.code()); break 'conn Exit::Dropped; }
                    };
                    match msg.kind {
                        Kind::Joined => {
                            stats.seated.fetch_add(1, Ordering::Relaxed);
                            brain.joined(msg.player.as_ref());
                            session = msg.session;
                            phase = Phase::Playing;
                        }
                        Kind::View => {
                            stats.views.fetch_add(1, Ordering::Relaxed);
                            let now = Instant::now();
                            for sent in awaiting_view.drain(..) {
                                record(&mut lat.view, now - sent);
                            }
                            if let Some(view) = msg.data {
                                brain.view(view);
                            }
                        }
                        Kind::Ack => {
                            if let Some(sent) = msg.seq.and_then(|s| awaiting_ack.remove(&s)) {
                                stats.acks.fetch_add(1, Ordering::Relaxed);
                                record(&mut lat.ack, sent.elapsed());
                            }
                        }
                        Kind::Ended => {
                            if let Some(s) = &session {
                                stats.game_finished(s);
                            }
                            brain.reset();
                            awaiting_view.clear();
                            ended_at_seq = Some(*seq);
                            phase = Phase::Leaving;
                            if let Err(e) = conn.send(&ClientMsg::Leave).await {
                                stats.error(e.code());
                                break 'conn Exit::Dropped;
                            }
                        }
                        Kind::Left => {
                            // Re-queue for the next game.
                            session = None;
                            phase = Phase::Joining;
                            if let Err(e) = conn.send(&ClientMsg::Join { game, name: &name }).await {
                                stats.error(e.code());
                                break 'conn Exit::Dropped;
                            }
                        }
                        Kind::Error => {
                            let code = msg.code.as_deref().unwrap_or("missing_code");
                            if let Some(s) = msg.seq {
                                awaiting_ack.remove(&s);
                                brain.refused();
                                let in_flight_at_end = ended_at_seq.is_some_and(|e| s <= e);
                                if in_flight_at_end && matches!(code, "rejected" | "session_ended") {
                                    stats.late_inputs.fetch_add(1, Ordering::Relaxed);
                                    continue;
                                }
                            }
                            let leaving_ended = matches!(phase, Phase::Leaving)
                                && matches!(code, "session_ended" | "not_seated");
                            if leaving_ended {
                                // The seat went with the game: nothing to leave, not a fault.
                                phase = Phase::Joining;
                                if let Err(e) = conn.send(&ClientMsg::Join { game, name: &name }).await {
                                    stats.error(e.code());
                                    break 'conn Exit::Dropped;
                                }
                            } else {
                                stats.error(code);
                                if matches!(phase, Phase::Joining) && msg.seq.is_none() {
                                    rejoin_at = Some(Instant::now() + Duration::from_millis(500));
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    };
    stats
        .unacked
        .fetch_add(awaiting_ack.len() as u64, Ordering::Relaxed);
    exit
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board(view: Value, me: Value) -> Board {
        Board::from_view(&view, Some(&me)).expect("view parses")
    }

    #[test]
    fn reads_the_real_tictactoe_view() {
        // games/tictactoe's View: board of Option<Mark>, you, turn, outcome.
        let mid = json!({"board": ["X", null, null, null, "O", null, null, null, "X"], "you": "O", "turn": "O", "outcome": null});
        let b = board(mid, json!(2));
        assert!(b.my_turn);
        assert_eq!(b.mine, Some(json!("O")));
        assert_eq!(
            b.my_move(),
            Some(2),
            "no line to win or block: first free corner"
        );
        let theirs = json!({"board": [null, null, null, null, "X", null, null, null, null], "you": "O", "turn": "X", "outcome": null});
        assert_eq!(board(theirs, json!(2)).my_move(), None);
        let waiting = json!({"board": [null, null, null, null, null, null, null, null, null], "you": "X", "turn": null, "outcome": null});
        assert_eq!(board(waiting, json!(1)).my_move(), None, "no opponent yet");
        let won = json!({"board": ["X", "X", "X", "O", "O", null, null, null, null], "you": "O", "turn": "O",
            "outcome": {"Win": {"mark": "X", "line": [0, 1, 2]}}});
        assert_eq!(board(won, json!(2)).my_move(), None);
    }

    #[test]
    fn plays_only_on_its_turn() {
        let v =
            json!({"board": [null, null, null, null, null, null, null, null, null], "turn": "p2"});
        assert_eq!(board(v.clone(), json!("p1")).my_move(), None);
        assert_eq!(board(v, json!("p2")).my_move(), Some(4), "centre first");
    }

    #[test]
    fn never_picks_an_occupied_cell() {
        let v = json!({"board": ["X", "O", "X", "O", "X", "O", "O", "X", null], "your_turn": true});
        assert_eq!(board(v, json!("a")).my_move(), Some(8));
        let full =
            json!({"board": ["X", "O", "X", "O", "X", "O", "O", "X", "O"], "your_turn": true});
        assert_eq!(board(full, json!("a")).my_move(), None);
    }

    #[test]
    fn wins_before_blocking() {
        // We are X: X X _ / O O _ / _ _ _  -> win at 2 rather than block at 5.
        let v = json!({"board": ["X", "X", "", "O", "O", "", "", "", ""], "turn": "X", "you": "X"});
        assert_eq!(board(v, json!("p1")).my_move(), Some(2));
    }

    #[test]
    fn blocks_the_opponent() {
        // We are O: X X _ / _ O _ / _ _ _ -> block at 2.
        let v = json!({"board": [["X", "X", null], [null, "O", null], [null, null, null]], "turn": "O", "mark": "O"});
        assert_eq!(board(v, json!(7)).my_move(), Some(2));
    }

    #[test]
    fn a_finished_game_is_nobodys_turn() {
        let v = json!({"board": ["X", "X", "X", "O", "O", null, null, null, null], "turn": "p1", "winner": "p1"});
        assert_eq!(board(v, json!("p1")).my_move(), None);
    }

    #[test]
    fn numeric_player_ids_compare_with_strings() {
        let v = json!({"cells": [0, 0, 0, 0, 0, 0, 0, 0, 0], "to_move": "7"});
        assert_eq!(board(v, json!(7)).my_move(), Some(4));
    }

    #[test]
    fn unreadable_views_give_no_move() {
        assert!(Board::from_view(&json!({"board": [null, null]}), None).is_none());
        assert!(Board::from_view(&json!({"nothing": true}), None).is_none());
    }

    #[test]
    fn tictactoe_bot_waits_for_a_fresh_view_after_moving() {
        let mut bot = TicTacToeBot::default();
        let mut rng = Rng::new(1);
        bot.joined(Some(&json!("p1")));
        assert_eq!(bot.tick(&mut rng), None, "no view yet");
        bot.view(
            json!({"board": [null, null, null, null, null, null, null, null, null], "turn": "p1"}),
        );
        assert_eq!(bot.tick(&mut rng), Some(json!({"cell": 4})));
        assert_eq!(bot.tick(&mut rng), None, "move in flight");
        bot.refused();
        assert_eq!(bot.tick(&mut rng), Some(json!({"cell": 4})));
    }

    #[test]
    fn arena_bot_always_changes_direction() {
        let mut bot = ArenaBot::default();
        let mut rng = Rng::new(3);
        let mut last = None;
        for _ in 0..100 {
            let input = bot.tick(&mut rng).unwrap();
            let dir = input["dir"].clone();
            assert_eq!(dir.as_array().unwrap().len(), 2);
            assert_ne!(Some(dir.clone()), last);
            last = Some(dir);
        }
    }
}
