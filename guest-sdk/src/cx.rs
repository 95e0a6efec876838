//! `Cx`, the effects context handed to every [`crate::Game`] hook: the only way
//! a game talks to players and to the host. Built by [`crate::GuestRuntime`].

use minotaur_abi::{Effect, PlayerId};
use serde::Serialize;

/// Severity of a [`Cx::log`] line, as numbered by the ABI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
}

/// Collects the effects of one event. Effects of a rejected join or input are
/// discarded, so a game may emit before it decides to reject.
pub struct Cx<'a> {
    seed: u64,
    players: &'a [PlayerId],
    effects: Vec<Effect>,
}

impl<'a> Cx<'a> {
    pub(crate) fn new(seed: u64, players: &'a [PlayerId]) -> Self {
        Self {
            seed,
            players,
            effects: Vec::new(),
        }
    }

    pub(crate) fn into_effects(self) -> Vec<Effect> {
        self.effects
    }

    /// The session's seed (`Init.seed`). Use it once, in `init`, to build the
    /// [`crate::Rng`] you keep in your state.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Players seated right now, in join order. During `on_join` the joiner is
    /// not yet in it; during `on_leave` the leaver no longer is.
    pub fn players(&self) -> &[PlayerId] {
        self.players
    }

    /// Send `msg` to one player.
    pub fn send(&mut self, to: PlayerId, msg: &impl Serialize) {
        if let Some(msg) = self.encode(msg) {
            self.effects.push(Effect::Send { to, msg });
        }
    }

    /// Send `msg` to every player of the session.
    pub fn broadcast(&mut self, msg: &impl Serialize) {
        if let Some(msg) = self.encode(msg) {
            self.effects.push(Effect::Broadcast { msg });
        }
    }

    /// End the game: `winners` (empty for a draw) and a game-specific result.
    pub fn end(&mut self, winners: Vec<PlayerId>, detail: &impl Serialize) {
        if let Some(detail) = self.encode(detail) {
            self.effects.push(Effect::End { winners, detail });
        }
    }

    /// Change the tick rate; `0` stops ticking.
    pub fn set_tick_rate(&mut self, hz: u32) {
        self.effects.push(Effect::SetTickRate { hz });
    }

    /// A log line for the operator.
    pub fn log(&mut self, level: Level, msg: impl Into<String>) {
        self.effects.push(Effect::Log {
            level: level as u8,
            msg: msg.into(),
        });
    }

    fn encode(&mut self, value: &impl Serialize) -> Option<Vec<u8>> {
        match minotaur_abi::encode(value) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                // A game value that cannot be encoded is an author bug; tell the
                // operator rather than trap the whole session.
                self.log(Level::Error, format!("cannot encode game message: {e}"));
                None
            }
        }
    }
}
