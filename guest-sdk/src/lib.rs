//! Write Minotaur games in Rust without ever seeing a pointer.
//!
//! A game is a serde struct plus `impl Game`, and one `export_game!(MyGame)`
//! line that generates the wasm exports of the guest ABI (`minotaur-abi`).
//! [`GuestRuntime`] is the glue both the exports and the native
//! [`testing::Harness`] go through: it decodes events, calls the game's hooks,
//! diffs per-player views and wraps snapshots. In wasm the exports also install
//! a panic hook that hands the panic message to the host (`minotaur`.`panic`).
//! See `docs/GUEST_ABI.md`.

mod cx;
#[cfg(test)]
mod doc_examples;
mod export;
#[cfg(target_arch = "wasm32")]
mod panic_hook;
mod rng;
mod runtime;
pub mod testing;
#[cfg(test)]
mod tests;

pub use cx::{Cx, Level};
pub use minotaur_abi::{decode, encode, GameInfo, PlayerId};
pub use rng::Rng;
pub use runtime::{GuestRuntime, SnapshotError};

#[doc(hidden)]
pub mod __private {
    #[cfg(target_arch = "wasm32")]
    pub use crate::export::glue;
    #[cfg(target_arch = "wasm32")]
    pub use crate::panic_hook::install as install_panic_hook;
}

use serde::{de::DeserializeOwned, Serialize};

/// Why a game refused a join or an input; the text reaches the player.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Reject(pub String);

impl Reject {
    /// A rejection with a reason for the player.
    pub fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
}

impl From<&str> for Reject {
    fn from(reason: &str) -> Self {
        Self(reason.to_owned())
    }
}

/// One beat of the fixed-rate clock, the only notion of time a guest has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// Tick number, counted by the host from 1 for the session.
    pub n: u64,
    /// Milliseconds since the previous tick.
    pub dt_ms: u32,
}

/// The rules of a game. The struct itself is the whole session state: it is
/// what a snapshot stores, so everything that matters (including the [`Rng`])
/// lives in it and nothing in globals. Use `BTreeMap`, not `HashMap`, so that
/// equal states encode to equal bytes.
///
/// **Rejections change nothing.** When `on_join` or `on_input` returns `Err`,
/// the SDK drops the effects the hook emitted, but it cannot undo mutations:
/// validate first, mutate after. The [`testing::Harness`] checks this on every
/// rejection by comparing the encoded state before and after.
///
/// **Seats** are tracked by the SDK (accepted joins minus leaves, kept in the
/// snapshot envelope): it rejects a join beyond `MAX_PLAYERS` with
/// `"session full"`, a second join of a seated player, and input from players
/// who are not seated, before the game sees them.
pub trait Game: Serialize + DeserializeOwned + Sized {
    /// Short game name, e.g. `"tictactoe"`.
    const NAME: &'static str;
    /// Version of these rules; raise it when the state or the rules change, and
    /// teach [`Game::migrate`] about older versions if the default cannot.
    const RULES_VERSION: u32 = 1;
    /// Fewest players for the game to make sense (informational).
    const MIN_PLAYERS: u32 = 1;
    /// Most players a session seats; the SDK rejects more.
    const MAX_PLAYERS: u32;
    /// Tick rate at start in Hz; `0` = purely event driven.
    const TICK_HZ: u32 = 0;
    /// Recompute views after every accepted input (the default). Real-time
    /// games whose inputs only steer what the next tick does set this to
    /// `false`: views are then recomputed after joins, leaves, ticks and
    /// restores only, which saves one `view` per seated player per input.
    const VIEWS_ON_INPUT: bool = true;

    /// Per-session configuration, decoded from `Init.config` (empty = default).
    type Config: DeserializeOwned + Default;
    /// What a player sends; decoded from MessagePack (the JSON the player sent).
    type Input: DeserializeOwned;
    /// What one player sees; sent whenever its encoding changes.
    type View: Serialize;

    /// What the module tells the host about itself.
    fn info() -> GameInfo {
        GameInfo {
            name: Self::NAME.into(),
            rules_version: Self::RULES_VERSION,
            min_players: Self::MIN_PLAYERS,
            max_players: Self::MAX_PLAYERS,
            tick_hz: Self::TICK_HZ,
        }
    }

    /// A new session. Seed your [`Rng`] from `cx.seed()` here.
    fn init(cx: &mut Cx, config: Self::Config) -> Self;

    /// A player asks for a seat. Default: accept.
    fn on_join(&mut self, player: PlayerId, name: &str, cx: &mut Cx) -> Result<(), Reject> {
        let _ = (player, name, cx);
        Ok(())
    }

    /// A seated player left for good. Default: nothing.
    fn on_leave(&mut self, player: PlayerId, cx: &mut Cx) {
        let _ = (player, cx);
    }

    /// A seated player's input.
    fn on_input(&mut self, player: PlayerId, input: Self::Input, cx: &mut Cx)
        -> Result<(), Reject>;

    /// The clock. Default: nothing.
    fn on_tick(&mut self, tick: Tick, cx: &mut Cx) {
        let _ = (tick, cx);
    }

    /// What `player` may see. Hide here whatever they must not know.
    fn view(&self, player: PlayerId) -> Self::View;

    /// Rebuild the state from a snapshot taken by rules `from_version`; `state`
    /// is the MessagePack of that version's game struct. The default decodes it
    /// as `Self`, so added fields with `#[serde(default)]` just work; override
    /// to convert older shapes (decode into the old struct, then map it).
    fn migrate(from_version: u32, state: &[u8]) -> Result<Self, Reject> {
        let _ = from_version;
        minotaur_abi::decode(state).map_err(|e| Reject::new(format!("cannot restore state: {e}")))
    }
}

/// Generate the wasm exports of the guest ABI for a [`Game`].
///
/// Only on `wasm32` targets, so native builds and tests of a game crate (and
/// crates linking several games) are unaffected.
#[macro_export]
macro_rules! export_game {
    ($game:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::__private::glue;
            ::std::thread_local! {
                static RUNTIME: ::core::cell::RefCell<$crate::GuestRuntime<$game>> =
                    ::core::cell::RefCell::new($crate::GuestRuntime::new());
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn minotaur_abi_version() -> i32 {
                $crate::__private::install_panic_hook();
                glue::abi_version()
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn minotaur_alloc(len: i32) -> i32 {
                $crate::__private::install_panic_hook();
                glue::alloc(len)
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn minotaur_free(ptr: i32, len: i32) {
                $crate::__private::install_panic_hook();
                unsafe { glue::free(ptr, len) }
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn minotaur_info() -> i64 {
                $crate::__private::install_panic_hook();
                glue::info::<$game>()
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn minotaur_init(ptr: i32, len: i32) -> i64 {
                $crate::__private::install_panic_hook();
                let input = unsafe { glue::take_input(ptr, len) };
                RUNTIME.with(|rt| glue::output(&rt.borrow_mut().init(&input)))
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn minotaur_event(ptr: i32, len: i32) -> i64 {
                $crate::__private::install_panic_hook();
                let input = unsafe { glue::take_input(ptr, len) };
                RUNTIME.with(|rt| glue::output(&rt.borrow_mut().handle_event(&input)))
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn minotaur_snapshot() -> i64 {
                $crate::__private::install_panic_hook();
                RUNTIME.with(|rt| glue::snapshot(&rt.borrow()))
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn minotaur_restore(ptr: i32, len: i32) -> i64 {
                $crate::__private::install_panic_hook();
                let input = unsafe { glue::take_input(ptr, len) };
                RUNTIME.with(|rt| glue::output(&rt.borrow_mut().restore(&input)))
            }
        };
    };
}

/// The README's game snippet is compiled and run as a doc test, so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
