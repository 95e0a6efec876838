//! `GuestRuntime<G>`: the guest half of the ABI over typed values. The wasm
//! exports (`export_game!`) and the native `testing::Harness` both drive a game
//! through it, so tests exercise the same decode, seat, view-diff and snapshot
//! code as production.

use crate::{Cx, Game, Reject, Tick};
use minotaur_abi::{decode, encode, Effect, Event, Init, Output, PlayerId, Restore};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the SDK's snapshot envelope (not of the ABI, not of the rules).
const ENVELOPE_VERSION: u32 = 1;

/// Why [`GuestRuntime::snapshot`] has nothing to give.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("the session was never initialised")]
    NotInitialised,
    #[error("cannot encode the game state: {0}")]
    Encode(#[from] minotaur_abi::EncodeError),
}

/// The snapshot layout: SDK bookkeeping around the game's own state. Kept as
/// nested maps (not a byte blob) so the host can reconcile it field by field.
#[derive(Serialize)]
struct EnvelopeRef<'a, G> {
    sdk: u32,
    seed: u64,
    players: &'a [PlayerId],
    game: &'a G,
}

#[derive(Deserialize)]
struct EnvelopeOwned {
    #[allow(dead_code)] // read for a future layout change
    sdk: u32,
    seed: u64,
    players: Vec<PlayerId>,
    game: rmpv::Value,
}

/// One session's game plus the SDK's bookkeeping (seats, last views sent).
pub struct GuestRuntime<G: Game> {
    game: Option<G>,
    seed: u64,
    /// Seated players in join order.
    players: Vec<PlayerId>,
    /// Encoded view last sent to each player; not part of the snapshot, so a
    /// restored session sends every view again.
    last_views: BTreeMap<PlayerId, Vec<u8>>,
    /// Reused buffer for encoding views, so an unchanged view costs no allocation.
    scratch: Vec<u8>,
}

impl<G: Game> Default for GuestRuntime<G> {
    fn default() -> Self {
        Self::new()
    }
}

fn rejected(reason: impl Into<String>) -> Output {
    Output {
        reject: Some(reason.into()),
        effects: Vec::new(),
    }
}

impl<G: Game> GuestRuntime<G> {
    /// An instance before `init` or `restore`.
    pub fn new() -> Self {
        Self {
            game: None,
            seed: 0,
            players: Vec::new(),
            last_views: BTreeMap::new(),
            scratch: Vec::new(),
        }
    }

    /// The game state, once initialised or restored.
    pub fn game(&self) -> Option<&G> {
        self.game.as_ref()
    }

    /// Seated players in join order.
    pub fn players(&self) -> &[PlayerId] {
        &self.players
    }

    /// `minotaur_init`: decode an [`Init`] and start the game.
    pub fn init(&mut self, bytes: &[u8]) -> Output {
        let init: Init = match decode(bytes) {
            Ok(init) => init,
            Err(e) => return rejected(format!("bad init: {e}")),
        };
        let config = if init.config.is_empty() {
            G::Config::default()
        } else {
            match decode(&init.config) {
                Ok(config) => config,
                Err(e) => return rejected(format!("bad config: {e}")),
            }
        };
        self.init_with(init.seed, config)
    }

    /// [`Self::init`] with an already typed config.
    pub fn init_with(&mut self, seed: u64, config: G::Config) -> Output {
        self.seed = seed;
        self.players.clear();
        self.last_views.clear();
        let mut cx = Cx::new(seed, &[]);
        self.game = Some(G::init(&mut cx, config));
        let effects = cx.into_effects();
        Output {
            reject: None,
            effects,
        }
    }

    /// `minotaur_event`: decode an [`Event`] and dispatch it.
    pub fn handle_event(&mut self, bytes: &[u8]) -> Output {
        match decode(bytes) {
            Ok(event) => self.dispatch(event),
            Err(e) => rejected(format!("bad event: {e}")),
        }
    }

    /// Run one event through the game, then append the views that changed.
    pub fn dispatch(&mut self, event: Event) -> Output {
        let Some(game) = self.game.as_mut() else {
            return rejected("session not initialised");
        };
        let views_after = !matches!(event, Event::Input { .. }) || G::VIEWS_ON_INPUT;
        let result: Result<Vec<Effect>, Reject> = match event {
            Event::Join { player, name } => {
                if self.players.contains(&player) {
                    return rejected("already seated");
                }
                if self.players.len() >= G::MAX_PLAYERS as usize {
                    return rejected("session full");
                }
                let mut cx = Cx::new(self.seed, &self.players);
                let r = game.on_join(player, &name, &mut cx);
                let effects = cx.into_effects();
                r.map(|()| {
                    self.players.push(player);
                    effects
                })
            }
            Event::Leave { player } => {
                let Some(i) = self.players.iter().position(|p| *p == player) else {
                    return Output::default();
                };
                self.players.remove(i);
                self.last_views.remove(&player);
                let mut cx = Cx::new(self.seed, &self.players);
                game.on_leave(player, &mut cx);
                Ok(cx.into_effects())
            }
            Event::Input { player, data } => {
                if !self.players.contains(&player) {
                    return rejected("not seated");
                }
                let input = match decode::<G::Input>(&data) {
                    Ok(input) => input,
                    Err(e) => return rejected(format!("bad input: {e}")),
                };
                let mut cx = Cx::new(self.seed, &self.players);
                let r = game.on_input(player, input, &mut cx);
                r.map(|()| cx.into_effects())
            }
            Event::Tick { n, dt_ms } => {
                let mut cx = Cx::new(self.seed, &self.players);
                game.on_tick(Tick { n, dt_ms }, &mut cx);
                Ok(cx.into_effects())
            }
        };
        match result {
            Ok(mut effects) => {
                if views_after {
                    self.push_views(&mut effects);
                }
                Output {
                    reject: None,
                    effects,
                }
            }
            // The state is unchanged (the game's contract), so no view moved.
            Err(reason) => rejected(reason.0),
        }
    }

    /// Append an `Effect::View` for every seated player whose encoded view
    /// differs from the one last sent.
    fn push_views(&mut self, effects: &mut Vec<Effect>) {
        let Some(game) = self.game.as_ref() else {
            return;
        };
        for &player in &self.players {
            self.scratch.clear();
            // Same encoding as `minotaur_abi::encode`, into the reused buffer.
            if let Err(e) = rmp_serde::encode::write_named(&mut self.scratch, &game.view(player)) {
                effects.push(Effect::Log {
                    level: 0,
                    msg: format!("cannot encode view: {e}"),
                });
                continue;
            }
            let last = self.last_views.entry(player).or_default();
            if *last != self.scratch {
                last.clear();
                last.extend_from_slice(&self.scratch);
                effects.push(Effect::View {
                    to: player,
                    data: self.scratch.clone(),
                });
            }
        }
    }

    /// `minotaur_snapshot`: the session state as MessagePack (named maps):
    /// `{sdk, seed, players, game}` where `game` is the game struct.
    pub fn snapshot(&self) -> Result<Vec<u8>, SnapshotError> {
        let game = self.game.as_ref().ok_or(SnapshotError::NotInitialised)?;
        Ok(encode(&EnvelopeRef {
            sdk: ENVELOPE_VERSION,
            seed: self.seed,
            players: &self.players,
            game,
        })?)
    }

    /// `minotaur_restore`: decode a [`Restore`], migrate the game state and send
    /// every seated player their view. A rejection leaves this instance as it was.
    pub fn restore(&mut self, bytes: &[u8]) -> Output {
        let restore: Restore = match decode(bytes) {
            Ok(r) => r,
            Err(e) => return rejected(format!("bad restore: {e}")),
        };
        let envelope: EnvelopeOwned = match decode(&restore.state) {
            Ok(env) => env,
            Err(e) => return rejected(format!("bad snapshot: {e}")),
        };
        let mut state = Vec::new();
        if let Err(e) = rmpv::encode::write_value(&mut state, &envelope.game) {
            return rejected(format!("bad snapshot: {e}"));
        }
        let game = match G::migrate(restore.from_version, &state) {
            Ok(game) => game,
            Err(reason) => return rejected(reason.0),
        };
        self.game = Some(game);
        self.seed = envelope.seed;
        self.players = envelope.players;
        self.last_views.clear();
        let mut effects = Vec::new();
        self.push_views(&mut effects);
        Output {
            reject: None,
            effects,
        }
    }
}
