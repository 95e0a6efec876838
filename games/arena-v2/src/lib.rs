//! Arena rules version 2, the hot-swap example: restores live v1 sessions.
//! Changes from `games/arena`: a coin is worth 2 points, and boosting costs
//! boost energy (a new `Player` field, `#[serde(default)]`, refilled by coins),
//! so the SDK's default `migrate` reads v1 state unchanged. `tests/migrate.rs`
//! restores a real v1 snapshot.

use minotaur_guest::{export_game, Cx, Game, PlayerId, Reject, Rng, Tick};
use serde::{Deserialize, Serialize};

/// Distance a player covers per tick (100 units/s at 20 Hz).
pub const SPEED: f32 = 5.0;
/// Speed factor while boosting.
pub const BOOST_FACTOR: f32 = 2.0;
/// How long a boost lasts, and how long until the next one, in ticks.
pub const BOOST_TICKS: u32 = 20;
pub const BOOST_COOLDOWN: u32 = 100;
/// A coin is taken when a player comes this close.
pub const PICKUP_RADIUS: f32 = 15.0;
/// Points per coin.
pub const COIN_VALUE: u32 = 2;
/// How many leaders every view lists.
pub const LEADERBOARD: usize = 10;
/// Longest player name accepted.
pub const MAX_NAME: usize = 24;
/// Boosts a player can store; each costs one, each coin gives one back.
pub const MAX_ENERGY: u32 = 3;

/// What players carried over from v1 start with.
fn full_energy() -> u32 {
    MAX_ENERGY
}

/// Per-session settings; every field may be omitted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// The field is `size` × `size` units.
    pub size: f32,
    /// How far a player sees.
    pub view_radius: f32,
    /// Coins on the field at any time.
    pub coins: u32,
    /// First to this score wins.
    pub target_score: u32,
    /// After this many ticks the best score wins.
    pub tick_limit: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            size: 1000.0,
            view_radius: 200.0,
            coins: 40,
            target_score: 50,
            tick_limit: 20 * 60 * 10,
        }
    }
}

/// A seated player.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Player {
    pub id: PlayerId,
    pub name: String,
    pub x: f32,
    pub y: f32,
    /// Movement direction, length ≤ 1.
    pub dir: [f32; 2],
    pub score: u32,
    /// Ticks of boost left, and ticks until a boost is allowed again.
    pub boost_left: u32,
    pub cooldown: u32,
    /// New in v2; absent in v1 snapshots.
    #[serde(default = "full_energy")]
    pub boost_energy: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Coin {
    pub x: f32,
    pub y: f32,
}

/// The whole session state.
#[derive(Debug, Serialize, Deserialize)]
pub struct Arena {
    pub config: Config,
    rng: Rng,
    /// Sorted by id, so iteration (and thus pickup ties) is deterministic.
    pub players: Vec<Player>,
    pub coins: Vec<Coin>,
    pub ticks: u64,
    pub over: bool,
}

/// `{"dir": [dx, dy]}` and/or `{"boost": true}`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Input {
    pub dir: Option<[f32; 2]>,
    pub boost: bool,
}

/// Someone or something you can see.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seen {
    pub id: PlayerId,
    pub x: f32,
    pub y: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    pub id: PlayerId,
    pub name: String,
    pub score: u32,
}

/// One player's view: themselves, what is within `view_radius`, the top of the scoreboard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct View {
    pub you: Option<Seen>,
    pub boost_left: u32,
    pub cooldown: u32,
    pub boost_energy: u32,
    pub score: u32,
    pub others: Vec<Seen>,
    pub coins: Vec<Coin>,
    /// The best `LEADERBOARD` players, best first, ties by id (the web
    /// client reads names from here).
    pub scoreboard: Vec<Score>,
    /// The field's side and the view radius, so clients can draw to scale.
    pub size: f32,
    pub view_radius: f32,
    pub over: bool,
}

/// The `detail` of the end effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Result {
    pub scoreboard: Vec<Score>,
    pub ticks: u64,
}

fn dist2(ax: f32, ay: f32, bx: f32, by: f32) -> f32 {
    (ax - bx) * (ax - bx) + (ay - by) * (ay - by)
}

impl Arena {
    /// A seated player by id.
    pub fn player(&self, id: PlayerId) -> Option<&Player> {
        self.players.iter().find(|p| p.id == id)
    }

    fn random_point(&mut self) -> (f32, f32) {
        let size = self.config.size;
        (self.rng.unit_f32() * size, self.rng.unit_f32() * size)
    }

    fn fill_coins(&mut self) {
        while self.coins.len() < self.config.coins as usize {
            let (x, y) = self.random_point();
            self.coins.push(Coin { x, y });
        }
    }

    /// The best `limit` players, best first, ties by id.
    fn scoreboard(&self, limit: usize) -> Vec<Score> {
        // Rank references first: only the few listed names get cloned (this
        // runs once per player per tick).
        let mut ranked: Vec<&Player> = self.players.iter().collect();
        ranked.sort_by(|a, b| b.score.cmp(&a.score).then(a.id.cmp(&b.id)));
        ranked
            .into_iter()
            .take(limit)
            .map(|p| Score {
                id: p.id,
                name: p.name.clone(),
                score: p.score,
            })
            .collect()
    }

    fn step(&mut self) {
        let size = self.config.size;
        for p in &mut self.players {
            let speed = if p.boost_left > 0 {
                SPEED * BOOST_FACTOR
            } else {
                SPEED
            };
            p.x = (p.x + p.dir[0] * speed).clamp(0.0, size);
            p.y = (p.y + p.dir[1] * speed).clamp(0.0, size);
            p.boost_left = p.boost_left.saturating_sub(1);
            p.cooldown = p.cooldown.saturating_sub(1);
            let r2 = PICKUP_RADIUS * PICKUP_RADIUS;
            let before = self.coins.len();
            self.coins.retain(|c| dist2(c.x, c.y, p.x, p.y) > r2);
            let taken = (before - self.coins.len()) as u32;
            p.score += taken * COIN_VALUE;
            p.boost_energy = (p.boost_energy + taken).min(MAX_ENERGY);
        }
        self.fill_coins();
    }

    fn check_end(&mut self, cx: &mut Cx) {
        let best = self.players.iter().map(|p| p.score).max().unwrap_or(0);
        let reached = best >= self.config.target_score;
        if !reached && self.ticks < self.config.tick_limit {
            return;
        }
        let winners = if best == 0 {
            Vec::new()
        } else {
            self.players
                .iter()
                .filter(|p| p.score == best)
                .map(|p| p.id)
                .collect()
        };
        self.over = true;
        cx.end(
            winners,
            &Result {
                scoreboard: self.scoreboard(usize::MAX),
                ticks: self.ticks,
            },
        );
        cx.set_tick_rate(0);
    }
}

impl Game for Arena {
    const NAME: &'static str = "arena";
    const RULES_VERSION: u32 = 2;
    const MAX_PLAYERS: u32 = 64;
    const TICK_HZ: u32 = 20;
    // Inputs only steer the next tick; views follow on that tick.
    const VIEWS_ON_INPUT: bool = false;
    type Config = Config;
    type Input = Input;
    type View = View;

    fn init(cx: &mut Cx, config: Config) -> Self {
        let mut arena = Arena {
            config,
            rng: Rng::new(cx.seed()),
            players: Vec::new(),
            coins: Vec::new(),
            ticks: 0,
            over: false,
        };
        arena.fill_coins();
        arena
    }

    fn on_join(
        &mut self,
        id: PlayerId,
        name: &str,
        _cx: &mut Cx,
    ) -> std::result::Result<(), Reject> {
        if self.over {
            return Err("game over".into());
        }
        if name.chars().count() > MAX_NAME {
            return Err("name too long".into());
        }
        let (x, y) = self.random_point();
        let at = self.players.partition_point(|p| p.id < id);
        self.players.insert(
            at,
            Player {
                id,
                name: name.to_owned(),
                x,
                y,
                dir: [0.0, 0.0],
                score: 0,
                boost_left: 0,
                cooldown: 0,
                boost_energy: MAX_ENERGY,
            },
        );
        Ok(())
    }

    fn on_leave(&mut self, id: PlayerId, _cx: &mut Cx) {
        self.players.retain(|p| p.id != id);
    }

    fn on_input(
        &mut self,
        id: PlayerId,
        input: Input,
        _cx: &mut Cx,
    ) -> std::result::Result<(), Reject> {
        if self.over {
            return Err("game over".into());
        }
        let p = self.player(id).ok_or("not a player")?;
        let dir = match input.dir {
            Some([dx, dy]) if !(dx.is_finite() && dy.is_finite()) => {
                return Err("dir must be two finite numbers".into())
            }
            Some([dx, dy]) => {
                let len = (dx * dx + dy * dy).sqrt();
                // Longer than 1 is clamped, so nobody outruns SPEED.
                if len > 1.0 {
                    [dx / len, dy / len]
                } else {
                    [dx, dy]
                }
            }
            None => p.dir,
        };
        if input.boost && p.cooldown > 0 {
            return Err("boost recharging".into());
        }
        if input.boost && p.boost_energy == 0 {
            return Err("no boost energy: collect a coin".into());
        }
        if input.dir.is_none() && !input.boost {
            return Err("empty input: send dir and/or boost".into());
        }
        let p = self
            .players
            .iter_mut()
            .find(|p| p.id == id)
            .ok_or("not a player")?;
        p.dir = dir;
        if input.boost {
            p.boost_left = BOOST_TICKS;
            p.cooldown = BOOST_COOLDOWN;
            p.boost_energy -= 1;
        }
        Ok(())
    }

    fn on_tick(&mut self, _tick: Tick, cx: &mut Cx) {
        if self.over {
            return;
        }
        self.ticks += 1;
        self.step();
        self.check_end(cx);
    }

    fn view(&self, id: PlayerId) -> View {
        let me = self.player(id);
        let r2 = self.config.view_radius * self.config.view_radius;
        let near = |x: f32, y: f32| me.is_some_and(|m| dist2(m.x, m.y, x, y) <= r2);
        View {
            you: me.map(|m| Seen { id, x: m.x, y: m.y }),
            boost_left: me.map_or(0, |m| m.boost_left),
            cooldown: me.map_or(0, |m| m.cooldown),
            score: me.map_or(0, |m| m.score),
            boost_energy: me.map_or(0, |m| m.boost_energy),
            others: self
                .players
                .iter()
                .filter(|p| p.id != id && near(p.x, p.y))
                .map(|p| Seen {
                    id: p.id,
                    x: p.x,
                    y: p.y,
                })
                .collect(),
            coins: self
                .coins
                .iter()
                .filter(|c| near(c.x, c.y))
                .cloned()
                .collect(),
            scoreboard: self.scoreboard(LEADERBOARD),
            size: self.config.size,
            view_radius: self.config.view_radius,
            over: self.over,
        }
    }
}

export_game!(Arena);
