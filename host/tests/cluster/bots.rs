//! Bots: real websocket players that keep playing through drains, crashes, pauses and
//! database restarts, and record every input the cluster acknowledged. They follow `moved`,
//! and after a lost connection (or no answer within [`Ctx::answer`]) resume with their
//! tokens through any node. Each resume re-reads the session and checks that every input
//! acknowledged so far is in it; at the end [`Fleet::finish`] stops them and checks every
//! session through fresh connections. A violation is recorded, never retried away.
//!
//! - `tictactoe`: a bot plays both seats of a game along a fixed plan of 8 moves that
//!   never ends the game (one cell stays free), then starts the next game. Every
//!   acknowledged move's mark must be on the board whenever the bot reads it again (at
//!   each resume, and at the end), and the board must be a prefix of the plan.
//! - `chaos` (a test guest: `echo` adds 1 to a counter and broadcasts the new count): one
//!   input in flight, so the echo of an acknowledged input carries the count with it; the
//!   count in any later state must be at least that (and never above the inputs sent).
//! - `arena` (20 Hz ticks): direction changes in a cycle; at the end the last
//!   acknowledged direction must be the one the player moves in.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, RwLock,
    },
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use crate::{
    common::{Client, Enc, Incoming},
    harness::{wait_until, TestCluster},
};

/// Longest a websocket connect (and its `welcome`) may take: a paused node accepts TCP
/// connections but never answers.
const CONNECT: Duration = Duration::from_secs(2);
/// How long a bot keeps trying to get its seat back before it reports a violation.
const RESUME_DEADLINE: Duration = Duration::from_secs(60);
/// The tictactoe plan: X and O alternate; after these 8 moves nobody has a line and cell
/// 8 is still free, so the game (and its session) stays alive.
pub const PLAN: [usize; 8] = [0, 1, 2, 4, 3, 5, 7, 6];

fn mark_of_move(k: usize) -> &'static str {
    if k.is_multiple_of(2) {
        "X"
    } else {
        "O"
    }
}

/// Counters every bot adds to (for the tests' progress conditions and summaries).
#[derive(Default, Debug)]
pub struct Stats {
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub moved: AtomicU64,
    pub resumes: AtomicU64,
    pub sessions: AtomicU64,
}

/// What the bots share.
#[derive(Clone)]
pub struct Ctx {
    /// The nodes to try when a bot must find its session again (the tests update it).
    pub urls: Arc<RwLock<Vec<String>>>,
    pub stop: Arc<AtomicBool>,
    pub stats: Arc<Stats>,
    /// How long a bot waits for the answer to an input before it resumes elsewhere.
    pub answer: Duration,
    /// Think time between two inputs of one bot.
    pub pace: Duration,
    /// Games a tictactoe bot plays at most (then it idles): bounds the sessions a test
    /// makes, e.g. to keep the nodes' loads below the rebalancing threshold.
    pub tictactoe_games: usize,
    /// Think time between two tictactoe moves.
    pub tictactoe_pace: Duration,
}

impl Ctx {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn url(&self, k: usize) -> String {
        let urls = self.urls.read().unwrap();
        urls[k % urls.len()].clone()
    }
}

/// Per session, what the bots were told was acknowledged.
#[derive(Debug, Clone)]
pub enum Acked {
    /// (cell, mark) of every acknowledged move.
    TicTacToe(Vec<(usize, String)>),
    /// Acknowledged and sent `echo` inputs, and the highest count echoed by an
    /// acknowledged one.
    Chaos { acked: u64, sent: u64, echo: u64 },
    /// Acknowledged inputs, the last acknowledged direction, and the direction of an input
    /// sent after it whose answer never came (it may or may not be in effect).
    Arena {
        acked: u64,
        dir: Option<[i64; 2]>,
        maybe: Option<[i64; 2]>,
    },
}

/// One session a bot played.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub session: String,
    pub game: &'static str,
    /// The websocket URL of the node it was created on (its owner at epoch 1).
    pub created_on: String,
    /// Every seat's token.
    pub tokens: Vec<String>,
    pub acked: Acked,
}

/// What one bot did.
#[derive(Debug, Default)]
pub struct BotReport {
    pub sessions: Vec<SessionRecord>,
    pub violations: Vec<String>,
}

/// The answer to one input.
#[derive(Debug)]
enum Answer {
    Ack,
    Error(Value),
    Moved(String),
    Ended(Value),
    /// Closed, not answered in time, or the seat was taken.
    Lost(String),
}

impl Answer {
    /// For violation reports: why the bot went looking for its seat.
    fn describe(&self) -> String {
        match self {
            Answer::Ack => "ack".into(),
            Answer::Error(m) | Answer::Ended(m) => m.to_string(),
            Answer::Moved(url) => format!("moved to {url}"),
            Answer::Lost(why) => why.clone(),
        }
    }
}

/// One seat held over a websocket.
struct Player {
    client: Client,
    url: String,
    token: String,
    seq: u64,
    view: Option<Value>,
}

impl Player {
    /// Sends `data` and waits for its answer; `on_msg` sees everything else that arrives.
    async fn input(
        &mut self,
        data: Value,
        ctx: &Ctx,
        on_msg: &mut (dyn FnMut(&Value) + Send),
    ) -> Answer {
        self.seq += 1;
        let seq = self.seq;
        let msg = json!({"type": "input", "data": data, "seq": seq});
        if !self.client.send_lossy(msg).await {
            return Answer::Lost("send failed".into());
        }
        ctx.stats.sent.fetch_add(1, Ordering::Relaxed);
        let end = Instant::now() + ctx.answer;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let m = match self.client.next(left).await {
                None => return Answer::Lost(format!("no answer within {:?}", ctx.answer)),
                Some(Incoming::Closed(f)) => return Answer::Lost(format!("closed: {f:?}")),
                Some(Incoming::Msg(m)) => m,
            };
            if let Some(a) = self.classify(&m, Some(seq), on_msg) {
                return a;
            }
        }
    }

    /// Reads what arrives for `d` (think time); `Some` if the seat went away meanwhile.
    async fn idle(
        &mut self,
        d: Duration,
        on_msg: &mut (dyn FnMut(&Value) + Send),
    ) -> Option<Answer> {
        let end = Instant::now() + d;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            match self.client.next(left).await {
                None => return None,
                Some(Incoming::Closed(f)) => return Some(Answer::Lost(format!("closed: {f:?}"))),
                Some(Incoming::Msg(m)) => {
                    if let Some(a) = self.classify(&m, None, on_msg) {
                        return Some(a);
                    }
                }
            }
        }
    }

    fn classify(
        &mut self,
        m: &Value,
        seq: Option<u64>,
        on_msg: &mut (dyn FnMut(&Value) + Send),
    ) -> Option<Answer> {
        let is_answer = seq.is_some() && m["seq"].as_u64() == seq;
        match m["type"].as_str().unwrap_or("") {
            "ack" if is_answer => Some(Answer::Ack),
            "error" if is_answer => Some(Answer::Error(m.clone())),
            "error" if m["code"] == "session_ended" => Some(Answer::Ended(m.clone())),
            "error" if m["code"] == "session_moved" => Some(Answer::Lost("session_moved".into())),
            "moved" => Some(Answer::Moved(
                m["url"].as_str().unwrap_or_default().to_owned(),
            )),
            "ended" => Some(Answer::Ended(m.clone())),
            "left" => Some(Answer::Lost("the seat was taken".into())),
            "view" => {
                self.view = Some(m["data"].clone());
                on_msg(m);
                None
            }
            _ => {
                on_msg(m);
                None
            }
        }
    }
}

/// Connects to `url` within [`CONNECT`].
async fn connect(url: &str) -> Option<Client> {
    tokio::time::timeout(CONNECT, Client::try_connect_url(url, Enc::Json))
        .await
        .ok()
        .flatten()
}

/// Reads `c` until a message `pred` accepts, or a close, or `within`.
async fn answer_of(
    c: &mut Client,
    within: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Option<Value> {
    let end = Instant::now() + within;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match c.next(left).await {
            Some(Incoming::Msg(m)) if pred(&m) => return Some(m),
            Some(Incoming::Msg(_)) => {}
            _ => return None,
        }
    }
}

/// Takes back the seat of `token` through any node: `hint` first, then the nodes in turn,
/// following `moved`, retrying (with backoff) refusals, dead and paused nodes. Waits for the
/// view a resume sends at once. `Err` after [`RESUME_DEADLINE`], or as soon as the bots are
/// stopped if `until_stop`.
async fn resume_anywhere(
    ctx: &Ctx,
    token: &str,
    hint: Option<String>,
    until_stop: bool,
) -> Result<Player, String> {
    let start = Instant::now();
    let mut hint = hint.filter(|h| !h.is_empty());
    let mut k = rand::random::<u32>() as usize;
    let mut backoff = Duration::from_millis(50);
    let mut last = String::from("no attempt");
    loop {
        if start.elapsed() > RESUME_DEADLINE {
            return Err(format!(
                "no seat for {token} after {RESUME_DEADLINE:?}: {last}"
            ));
        }
        if until_stop && ctx.stopped() {
            return Err("stopped".into());
        }
        let followed = hint.is_some();
        let url = hint.take().unwrap_or_else(|| {
            k += 1;
            ctx.url(k)
        });
        let pause = |b: Duration| tokio::time::sleep(b);
        let Some(mut c) = connect(&url).await else {
            last = format!("{url}: no connection");
            pause(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
            continue;
        };
        if !c
            .send_lossy(json!({"type": "resume", "token": token}))
            .await
        {
            continue;
        }
        let r = answer_of(&mut c, ctx.answer, |m| {
            ["joined", "moved", "error"].contains(&m["type"].as_str().unwrap_or(""))
        })
        .await;
        match r {
            Some(m) if m["type"] == "joined" => {
                ctx.stats.resumes.fetch_add(1, Ordering::Relaxed);
                let view = answer_of(&mut c, ctx.answer, |m| m["type"] == "view")
                    .await
                    .map(|v| v["data"].clone());
                if view.is_none() {
                    last = format!("{url}: joined but no view followed");
                    continue;
                }
                return Ok(Player {
                    client: c,
                    url,
                    token: token.to_owned(),
                    seq: 0,
                    view,
                });
            }
            Some(m) if m["type"] == "moved" => {
                last = format!("{url}: {m}");
                hint = m["url"].as_str().map(str::to_owned);
                // A moved that points back and forth: do not spin.
                if followed {
                    pause(Duration::from_millis(20)).await;
                }
            }
            Some(m) => {
                last = format!("{url}: {m}");
                pause(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
            None => {
                last = format!("{url}: no answer to resume");
            }
        }
    }
}

/// Creates a session of `game` on `url` and takes a seat in it: (player, session).
async fn create_and_join(
    ctx: &Ctx,
    url: &str,
    game: &str,
    config: Option<Value>,
    name: &str,
) -> Result<(Player, String), String> {
    let mut c = connect(url)
        .await
        .ok_or_else(|| format!("{url}: no connection"))?;
    let mut create = json!({"type": "create", "game": game});
    if let Some(cfg) = config {
        create["config"] = cfg;
    }
    c.send_lossy(create).await;
    let created = answer_of(&mut c, ctx.answer, |m| {
        m["type"] == "created" || m["type"] == "error"
    })
    .await
    .ok_or_else(|| format!("{url}: no answer to create"))?;
    let session = created["session"]
        .as_str()
        .ok_or_else(|| format!("{url}: create: {created}"))?
        .to_owned();
    let p = join(ctx, c, url, &session, name).await?;
    Ok((p, session))
}

/// Joins `session` on the connection `c` (to `url`).
async fn join(
    ctx: &Ctx,
    mut c: Client,
    url: &str,
    session: &str,
    name: &str,
) -> Result<Player, String> {
    c.send_lossy(json!({"type": "join", "session": session, "name": name}))
        .await;
    let j = answer_of(&mut c, ctx.answer, |m| {
        ["joined", "error", "moved"].contains(&m["type"].as_str().unwrap_or(""))
    })
    .await
    .ok_or_else(|| format!("{url}: no answer to join {session}"))?;
    if j["type"] != "joined" {
        return Err(format!("{url}: join {session}: {j}"));
    }
    ctx.stats.sessions.fetch_add(1, Ordering::Relaxed);
    Ok(Player {
        client: c,
        url: url.to_owned(),
        token: j["token"].as_str().unwrap_or_default().to_owned(),
        seq: 0,
        view: None,
    })
}

/// The (cell, mark) pairs on a tictactoe board view.
fn marks(view: &Value) -> Vec<(usize, String)> {
    view["board"]
        .as_array()
        .map(|b| {
            b.iter()
                .enumerate()
                .filter_map(|(i, m)| m.as_str().map(|m| (i, m.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// What is wrong with a tictactoe `view` given the `acked` moves: an acknowledged mark
/// missing, or a board that is not a prefix of [`PLAN`]. Returns the moves on the board.
fn check_board(view: &Value, acked: &[(usize, String)]) -> Result<usize, String> {
    let on = marks(view);
    for a in acked {
        if !on.contains(a) {
            return Err(format!(
                "acknowledged move {a:?} missing from the board {on:?}"
            ));
        }
    }
    let k = on.len();
    for (j, cell) in PLAN.iter().enumerate().take(k) {
        if !on.contains(&(*cell, mark_of_move(j).to_owned())) {
            return Err(format!(
                "the board {on:?} is not the first {k} moves of the plan"
            ));
        }
    }
    Ok(k)
}

/// A tictactoe bot (see the module doc): starts its first game on `url`.
async fn tictactoe_bot(
    ctx: Ctx,
    url: String,
    first: Option<(Player, Player, SessionRecord)>,
) -> BotReport {
    let mut report = BotReport::default();
    let mut url = url;
    let mut first = first;
    let mut k_url = rand::random::<u32>() as usize;
    'games: while !ctx.stopped() {
        if report.sessions.len() >= ctx.tictactoe_games {
            // Done playing; the checks at the end still cover every game.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let (mut x, mut o, rec) = match first.take() {
            Some(g) => g,
            None => match new_tictactoe(&ctx, &url).await {
                Ok(g) => g,
                Err(_) => {
                    // That node is going away or draining: start the next game elsewhere.
                    k_url += 1;
                    url = ctx.url(k_url);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        report.sessions.push(rec);
        let gi = report.sessions.len() - 1;
        let mut acked: Vec<(usize, String)> = Vec::new();
        let mut k = 0usize;
        while k < PLAN.len() && !ctx.stopped() {
            let mover = if k.is_multiple_of(2) { &mut x } else { &mut o };
            let answer = mover
                .input(json!({"cell": PLAN[k]}), &ctx, &mut |_| {})
                .await;
            let why = answer.describe();
            let hint = match answer {
                Answer::Ack => {
                    acked.push((PLAN[k], mark_of_move(k).to_owned()));
                    report.sessions[gi].acked = Acked::TicTacToe(acked.clone());
                    ctx.stats.acked.fetch_add(1, Ordering::Relaxed);
                    k += 1;
                    tokio::time::sleep(ctx.tictactoe_pace).await;
                    continue;
                }
                Answer::Ended(m) => {
                    let s = &report.sessions[gi].session;
                    report
                        .violations
                        .push(format!("tictactoe {s}: the session ended: {m}"));
                    continue 'games;
                }
                Answer::Moved(u) => {
                    ctx.stats.moved.fetch_add(1, Ordering::Relaxed);
                    Some(u)
                }
                Answer::Error(_) | Answer::Lost(_) => None,
            };
            // Find the game again (both seats) and re-read the board.
            let tokens = (x.token.clone(), o.token.clone());
            let again = async {
                let x2 = resume_anywhere(&ctx, &tokens.0, hint, true).await?;
                let o2 = resume_anywhere(&ctx, &tokens.1, Some(x2.url.clone()), true).await?;
                Ok::<_, String>((x2, o2))
            };
            match again.await {
                Ok((x2, o2)) => {
                    let view = o2.view.clone().unwrap_or_default();
                    match check_board(&view, &acked) {
                        Ok(on) => k = on,
                        Err(e) => {
                            let s = &report.sessions[gi].session;
                            report
                                .violations
                                .push(format!("tictactoe {s}: after {why}: {e}"));
                            continue 'games;
                        }
                    }
                    (x, o) = (x2, o2);
                }
                Err(e) if ctx.stopped() => {
                    let _ = e;
                    break 'games;
                }
                Err(e) => {
                    let s = &report.sessions[gi].session;
                    report
                        .violations
                        .push(format!("tictactoe {s}: after {why}: {e}"));
                    break 'games;
                }
            }
        }
        url = x.url.clone();
    }
    report
}

/// A new tictactoe game on `url` with both seats taken.
async fn new_tictactoe(ctx: &Ctx, url: &str) -> Result<(Player, Player, SessionRecord), String> {
    let (x, session) = create_and_join(ctx, url, "tictactoe", None, "x").await?;
    let c = connect(url)
        .await
        .ok_or_else(|| format!("{url}: no connection"))?;
    let o = join(ctx, c, url, &session, "o").await?;
    let rec = SessionRecord {
        session,
        game: "tictactoe",
        created_on: url.to_owned(),
        tokens: vec![x.token.clone(), o.token.clone()],
        acked: Acked::TicTacToe(Vec::new()),
    };
    Ok((x, o, rec))
}

/// A chaos counter bot (see the module doc) on its session.
async fn chaos_bot(ctx: Ctx, mut p: Player, mut rec: SessionRecord) -> BotReport {
    let mut report = BotReport::default();
    let (mut acked, mut sent, mut echo) = (0u64, 0u64, 0u64);
    let s = rec.session.clone();
    while !ctx.stopped() {
        let mut echoed: Option<u64> = None;
        let answer = p
            .input(json!({"do": "echo", "n": 1}), &ctx, &mut |m| {
                if m["type"] == "message" {
                    echoed = m["data"]["count"].as_u64();
                }
            })
            .await;
        sent += 1;
        let why = answer.describe();
        let hint = match answer {
            Answer::Ack => {
                acked += 1;
                ctx.stats.acked.fetch_add(1, Ordering::Relaxed);
                match echoed {
                    Some(c) if c <= echo || c < acked => {
                        report.violations.push(format!(
                            "chaos {s}: input {acked} acknowledged with count {c}, but an earlier acknowledged input had made it {echo}"
                        ));
                        break;
                    }
                    Some(c) => echo = c,
                    None => report
                        .violations
                        .push(format!("chaos {s}: an acknowledged input was not echoed")),
                }
                rec.acked = Acked::Chaos { acked, sent, echo };
                tokio::time::sleep(ctx.pace).await;
                continue;
            }
            Answer::Ended(m) => {
                report
                    .violations
                    .push(format!("chaos {s}: the session ended: {m}"));
                break;
            }
            Answer::Moved(u) => {
                ctx.stats.moved.fetch_add(1, Ordering::Relaxed);
                Some(u)
            }
            Answer::Error(_) | Answer::Lost(_) => None,
        };
        rec.acked = Acked::Chaos { acked, sent, echo };
        match resume_anywhere(&ctx, &p.token, hint, true).await {
            Ok(p2) => {
                let count = p2
                    .view
                    .as_ref()
                    .and_then(|v| v["count"].as_u64())
                    .unwrap_or(0);
                if count < echo {
                    report.violations.push(format!(
                        "chaos {s}: resumed at count {count}, below the acknowledged {echo}"
                    ));
                    break;
                }
                p = p2;
            }
            Err(_) if ctx.stopped() => break,
            Err(e) => {
                report
                    .violations
                    .push(format!("chaos {s}: after {why}: {e}"));
                break;
            }
        }
    }
    rec.acked = Acked::Chaos { acked, sent, echo };
    report.sessions.push(rec);
    report
}

const DIRS: [[i64; 2]; 4] = [[1, 0], [0, 1], [-1, 0], [0, -1]];

/// An arena bot (see the module doc) on its session.
async fn arena_bot(ctx: Ctx, mut p: Player, mut rec: SessionRecord) -> BotReport {
    let mut report = BotReport::default();
    let (mut acked, mut dir, mut i) = (0u64, None, 0usize);
    let s = rec.session.clone();
    while !ctx.stopped() {
        let d = DIRS[i % DIRS.len()];
        // Until answered, `d` may or may not be in effect.
        rec.acked = Acked::Arena {
            acked,
            dir,
            maybe: Some(d),
        };
        let mut answer = p.input(json!({"dir": d}), &ctx, &mut |_| {}).await;
        if let Answer::Ack = answer {
            acked += 1;
            i += 1;
            dir = Some(d);
            ctx.stats.acked.fetch_add(1, Ordering::Relaxed);
            rec.acked = Acked::Arena {
                acked,
                dir,
                maybe: None,
            };
            match p.idle(ctx.pace, &mut |_| {}).await {
                None => continue,
                Some(a) => answer = a,
            }
        }
        let why = answer.describe();
        let hint = match answer {
            Answer::Ended(m) => {
                report
                    .violations
                    .push(format!("arena {s}: the session ended: {m}"));
                break;
            }
            Answer::Moved(u) => {
                ctx.stats.moved.fetch_add(1, Ordering::Relaxed);
                Some(u)
            }
            _ => None,
        };
        match resume_anywhere(&ctx, &p.token, hint, true).await {
            Ok(p2) => p = p2,
            Err(_) if ctx.stopped() => break,
            Err(e) => {
                report
                    .violations
                    .push(format!("arena {s}: after {why}: {e}"));
                break;
            }
        }
    }
    report.sessions.push(rec);
    report
}

/// A set of bots and what they share.
pub struct Fleet {
    pub ctx: Ctx,
    tasks: Vec<JoinHandle<BotReport>>,
}

impl Fleet {
    /// Bots that find their sessions through `urls`.
    pub fn new(urls: Vec<String>) -> Fleet {
        Fleet {
            ctx: Ctx {
                urls: Arc::new(RwLock::new(urls)),
                stop: Arc::new(AtomicBool::new(false)),
                stats: Arc::new(Stats::default()),
                answer: Duration::from_secs(3),
                pace: Duration::from_millis(60),
                tictactoe_games: usize::MAX,
                tictactoe_pace: Duration::from_millis(60),
            },
            tasks: Vec::new(),
        }
    }

    /// The nodes bots try when they look for their sessions.
    pub fn set_urls(&self, urls: Vec<String>) {
        *self.ctx.urls.write().unwrap() = urls;
    }

    /// `n` tictactoe bots whose first games are created on `url` (returns once they are).
    pub async fn tictactoe(&mut self, url: &str, n: usize) {
        for _ in 0..n {
            let first = new_tictactoe(&self.ctx, url)
                .await
                .unwrap_or_else(|e| panic!("a first tictactoe game: {e}"));
            let ctx = self.ctx.clone();
            let url = url.to_owned();
            self.tasks
                .push(tokio::spawn(tictactoe_bot(ctx, url, Some(first))));
        }
    }

    /// `n` chaos counter bots, each on a session of its own created on `url`.
    pub async fn chaos(&mut self, url: &str, n: usize) {
        self.chaos_waiting(url, n, self.ctx.answer).await
    }

    /// Like [`Fleet::chaos`], waiting up to `answer` for each answer on the same
    /// connection before resuming elsewhere: with a long one, the bot stays with a paused
    /// node and its inputs queue there.
    pub async fn chaos_waiting(&mut self, url: &str, n: usize, answer: Duration) {
        for _ in 0..n {
            let (p, session) = create_and_join(&self.ctx, url, "chaos", None, "c")
                .await
                .unwrap_or_else(|e| panic!("a chaos session: {e}"));
            let rec = SessionRecord {
                session,
                game: "chaos",
                created_on: url.to_owned(),
                tokens: vec![p.token.clone()],
                acked: Acked::Chaos {
                    acked: 0,
                    sent: 0,
                    echo: 0,
                },
            };
            let ctx = Ctx {
                answer,
                ..self.ctx.clone()
            };
            self.tasks.push(tokio::spawn(chaos_bot(ctx, p, rec)));
        }
    }

    /// `n` arena bots, each on a session of its own (no coins: nobody wins) created on `url`.
    pub async fn arena(&mut self, url: &str, n: usize) {
        for _ in 0..n {
            let cfg = json!({"coins": 0});
            let (p, session) = create_and_join(&self.ctx, url, "arena", Some(cfg), "a")
                .await
                .unwrap_or_else(|e| panic!("an arena session: {e}"));
            let rec = SessionRecord {
                session,
                game: "arena",
                created_on: url.to_owned(),
                tokens: vec![p.token.clone()],
                acked: Acked::Arena {
                    acked: 0,
                    dir: None,
                    maybe: None,
                },
            };
            self.tasks
                .push(tokio::spawn(arena_bot(self.ctx.clone(), p, rec)));
        }
    }

    pub fn acked(&self) -> u64 {
        self.ctx.stats.acked.load(Ordering::Relaxed)
    }

    pub fn moved(&self) -> u64 {
        self.ctx.stats.moved.load(Ordering::Relaxed)
    }

    /// Waits until the bots got `more` acknowledgements past the current count (progress).
    pub async fn wait_acks(&self, more: u64, deadline: Duration, what: &str) {
        let target = self.acked() + more;
        let what = format!("{more} more acknowledged inputs ({what})");
        wait_until(deadline, &what, || async move { self.acked() >= target }).await;
    }

    /// Stops the bots and checks everything (see [`verify`]); returns the sessions.
    pub async fn finish(self, cluster: &TestCluster) -> Vec<SessionRecord> {
        self.ctx.stop.store(true, Ordering::Relaxed);
        let mut sessions = Vec::new();
        let mut violations = Vec::new();
        for t in self.tasks {
            let r = t.await.expect("a bot panicked");
            sessions.extend(r.sessions);
            violations.extend(r.violations);
        }
        assert!(
            violations.is_empty(),
            "the bots saw acknowledged inputs lost or sessions gone:\n{}",
            violations.join("\n")
        );
        let s = &self.ctx.stats;
        eprintln!(
            "bots: {} sessions, {} inputs sent, {} acknowledged, {} moved, {} resumes",
            sessions.len(),
            s.sent.load(Ordering::Relaxed),
            s.acked.load(Ordering::Relaxed),
            s.moved.load(Ordering::Relaxed),
            s.resumes.load(Ordering::Relaxed),
        );
        verify(cluster, &self.ctx, &sessions).await;
        sessions
    }
}

/// The end-of-run checks: every session is served by exactly the node the directory names
/// (and no other), never had two owners at one epoch, and holds every acknowledged input —
/// read through fresh resumes of every seat.
pub async fn verify(cluster: &TestCluster, ctx: &Ctx, sessions: &[SessionRecord]) {
    let ids: Vec<String> = sessions.iter().map(|s| s.session.clone()).collect();
    cluster
        .wait_served_once(&ids, Duration::from_secs(30))
        .await;
    let created: Vec<(String, String)> = sessions
        .iter()
        .map(|s| {
            let node = cluster
                .id_of_url(&s.created_on)
                .unwrap_or_else(|| s.created_on.clone());
            (s.session.clone(), node)
        })
        .collect();
    cluster.assert_single_owner(&created);
    let ctx = Ctx {
        urls: Arc::new(RwLock::new(cluster.urls())),
        stop: Arc::new(AtomicBool::new(false)),
        stats: Arc::new(Stats::default()),
        answer: Duration::from_secs(5),
        ..ctx.clone()
    };
    let problems: Vec<String> = futures_util::stream::iter(sessions)
        .map(|s| verify_session(&ctx, s))
        .buffer_unordered(8)
        .filter_map(|r| async move { r.err() })
        .collect()
        .await;
    assert!(
        problems.is_empty(),
        "sessions that lost acknowledged inputs:\n{}",
        problems.join("\n")
    );
    let mut per_game: BTreeMap<&str, usize> = BTreeMap::new();
    for s in sessions {
        *per_game.entry(s.game).or_default() += 1;
    }
    eprintln!("verified: {per_game:?}, every acknowledged input present");
}

async fn verify_session(ctx: &Ctx, s: &SessionRecord) -> Result<(), String> {
    let id = &s.session;
    let mut players = Vec::new();
    for t in &s.tokens {
        players.push(
            resume_anywhere(ctx, t, None, false)
                .await
                .map_err(|e| format!("{id}: {e}"))?,
        );
    }
    let view = players
        .last()
        .and_then(|p| p.view.clone())
        .unwrap_or_default();
    match &s.acked {
        Acked::TicTacToe(acked) => check_board(&view, acked)
            .map(|_| ())
            .map_err(|e| format!("tictactoe {id}: {e}")),
        Acked::Chaos { acked, sent, echo } => {
            let count = view["count"].as_u64().unwrap_or(0);
            if count < *echo || count < *acked || count > *sent {
                Err(format!(
                    "chaos {id}: count {count}; {acked} acknowledged (the last echoed {echo}), {sent} sent"
                ))
            } else {
                Ok(())
            }
        }
        Acked::Arena { dir: None, .. } | Acked::Arena { acked: 0, .. } => Ok(()),
        Acked::Arena {
            dir: Some(d),
            maybe,
            ..
        } => {
            let dirs: Vec<[i64; 2]> = std::iter::once(*d).chain(*maybe).collect();
            let mut p = players.pop().expect("a seat");
            // The session may move (rebalancing) while we watch: then watch it again.
            for _ in 0..5 {
                match check_arena_dir(&mut p, &dirs).await {
                    Err(Watch::Interrupted) => {
                        p = resume_anywhere(ctx, &s.tokens[0], None, false)
                            .await
                            .map_err(|e| format!("{id}: {e}"))?;
                    }
                    Err(Watch::Wrong(e)) => return Err(format!("arena {id}: {e}")),
                    Ok(()) => return Ok(()),
                }
            }
            Err(format!(
                "arena {id}: never seen moving in {dirs:?} (nor stuck at that wall) in 5 watches"
            ))
        }
    }
}

/// Why watching an arena player did not confirm its direction.
enum Watch {
    /// The session moved or the connection closed: watch again.
    Interrupted,
    Wrong(String),
}

/// The player moves in one of `dirs`: a later view's position differs from the first in
/// that direction's sign, or the player is at the wall it points to (and so no view
/// changes).
async fn check_arena_dir(p: &mut Player, dirs: &[[i64; 2]]) -> Result<(), Watch> {
    let pos = |v: &Value| -> Option<[f64; 2]> {
        Some([v["you"]["x"].as_f64()?, v["you"]["y"].as_f64()?])
    };
    let first = p
        .view
        .as_ref()
        .and_then(pos)
        .ok_or_else(|| Watch::Wrong("no position in the view".into()))?;
    let size = p
        .view
        .as_ref()
        .and_then(|v| v["size"].as_f64())
        .unwrap_or(1000.0);
    let at_wall = |d: [i64; 2], q: [f64; 2]| {
        (0..2).any(|a| (d[a] > 0 && q[a] >= size - 0.01) || (d[a] < 0 && q[a] <= 0.01))
    };
    let end = Instant::now() + Duration::from_secs(2);
    let mut last = first;
    while Instant::now() < end {
        let left = end.saturating_duration_since(Instant::now());
        match p.client.next(left).await {
            Some(Incoming::Msg(m)) if m["type"] == "view" => {
                if let Some(q) = pos(&m["data"]) {
                    last = q;
                    if q != first {
                        break;
                    }
                }
            }
            Some(Incoming::Msg(m)) if m["type"] == "moved" || m["type"] == "error" => {
                return Err(Watch::Interrupted)
            }
            Some(Incoming::Msg(_)) => {}
            Some(Incoming::Closed(_)) => return Err(Watch::Interrupted),
            None => break,
        }
    }
    let moved = [last[0] - first[0], last[1] - first[1]];
    let along = |d: [i64; 2]| {
        (0..2).all(|a| match d[a] {
            0 => moved[a].abs() < 0.01,
            s => moved[a] * s as f64 > 0.0,
        })
    };
    if dirs
        .iter()
        .any(|&d| along(d) || (moved == [0.0, 0.0] && at_wall(d, first)))
    {
        Ok(())
    } else if moved == [0.0, 0.0] {
        // No tick seen (the session paused for a moment): watch again.
        Err(Watch::Interrupted)
    } else {
        Err(Watch::Wrong(format!(
            "the last acknowledged direction was {:?} (or the unanswered {:?}), but the player went from {first:?} to {last:?}",
            dirs[0],
            dirs.get(1)
        )))
    }
}

#[test]
fn the_board_check_finds_a_lost_move_and_a_board_off_the_plan() {
    let board = |cells: &[(usize, &str)]| {
        let mut b = vec![Value::Null; 9];
        for (c, m) in cells {
            b[*c] = json!(m);
        }
        json!({ "board": b })
    };
    let acked = vec![(0, "X".to_owned()), (1, "O".to_owned())];
    assert_eq!(check_board(&board(&[(0, "X"), (1, "O")]), &acked), Ok(2));
    // One more move than acknowledged (applied, its ack lost): fine.
    assert_eq!(
        check_board(&board(&[(0, "X"), (1, "O"), (2, "X")]), &acked),
        Ok(3)
    );
    // An acknowledged move missing.
    assert!(check_board(&board(&[(0, "X")]), &acked).is_err());
    // Not the plan's order.
    assert!(check_board(&board(&[(0, "X"), (1, "O"), (4, "X")]), &acked).is_err());
}
