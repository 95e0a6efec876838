//! The Minotaur guest ABI, written once and shared by both sides.
//!
//! The host (`minotaur-runtime`) and the guest SDK (`minotaur-guest`) both depend
//! on this crate, so the version number, the export names and the MessagePack
//! message types cannot drift apart. `docs/GUEST_ABI.md` describes the same
//! contract for authors who write a guest in another language.
//!
//! Every payload crossing the boundary is MessagePack with structs encoded as
//! maps keyed by field name (`rmp_serde::to_vec_named`) and enums externally
//! tagged (`{"Join": {...}}`); use [`encode`] and [`decode`].

use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// The ABI version this crate describes. A host refuses a module whose
/// `minotaur_abi_version` export returns anything else.
pub const ABI_VERSION: u32 = 1;

/// Names of the functions a game module must export.
pub mod exports {
    /// `() -> i32`: the ABI version the module speaks.
    pub const ABI_VERSION: &str = "minotaur_abi_version";
    /// `(len: i32) -> i32`: allocate `len` bytes for the host to write into.
    pub const ALLOC: &str = "minotaur_alloc";
    /// `(ptr: i32, len: i32)`: free a region returned by `minotaur_alloc`.
    pub const FREE: &str = "minotaur_free";
    /// `() -> i64`: packed region holding a [`super::GameInfo`].
    pub const INFO: &str = "minotaur_info";
    /// `(ptr: i32, len: i32) -> i64`: [`super::Init`] in, [`super::Output`] out.
    pub const INIT: &str = "minotaur_init";
    /// `(ptr: i32, len: i32) -> i64`: [`super::Event`] in, [`super::Output`] out.
    pub const EVENT: &str = "minotaur_event";
    /// `() -> i64`: packed region holding the game state as MessagePack.
    pub const SNAPSHOT: &str = "minotaur_snapshot";
    /// `(ptr: i32, len: i32) -> i64`: [`super::Restore`] in, [`super::Output`] out.
    pub const RESTORE: &str = "minotaur_restore";
    /// The linear memory.
    pub const MEMORY: &str = "memory";

    /// Every function export the host requires, for validation.
    pub const REQUIRED_FUNCS: [&str; 8] = [
        ABI_VERSION,
        ALLOC,
        FREE,
        INFO,
        INIT,
        EVENT,
        SNAPSHOT,
        RESTORE,
    ];
}

/// The one function a module MAY import (optional; everything else is refused).
pub mod imports {
    /// The import module name of every host function.
    pub const MODULE: &str = "minotaur";
    /// `(ptr: i32, len: i32) -> ()`: the guest is about to trap because it
    /// panicked; `ptr`/`len` hold the panic message (UTF-8 text). The host
    /// keeps the last one given during a call and attaches it to the trap
    /// that ends the call. It never fails and never traps by itself.
    pub const PANIC: &str = "panic";
    /// The host reads at most this many bytes of a panic message; a guest
    /// should not send more (the Rust SDK cuts its messages to it).
    pub const MAX_PANIC_BYTES: usize = 1024;
}

/// Pack a guest memory region into the `i64` returned by guest exports:
/// pointer in the high 32 bits, length in the low 32 bits.
pub const fn pack_region(ptr: u32, len: u32) -> u64 {
    ((ptr as u64) << 32) | len as u64
}

/// Inverse of [`pack_region`]: `(ptr, len)`.
pub const fn unpack_region(packed: u64) -> (u32, u32) {
    ((packed >> 32) as u32, packed as u32)
}

/// A player's identity inside one session, assigned by the host on join and
/// stable for the life of the session (also across reconnects and migrations).
pub type PlayerId = u64;

/// What a module says about itself; read once when the host loads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GameInfo {
    /// Short game name, e.g. `"tictactoe"`.
    pub name: String,
    /// Version of the rules; passed back as `from_version` on restore so newer
    /// rules can migrate older state.
    pub rules_version: u32,
    /// Fewest players for the game to make sense (informational for lobbies).
    pub min_players: u32,
    /// Most players a session accepts; the host rejects joins beyond it.
    pub max_players: u32,
    /// Tick rate at start in Hz; `0` means the game is purely event driven.
    pub tick_hz: u32,
}

/// First call into a fresh instance of a new session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Init {
    /// The session id (opaque to the guest; useful in logs).
    pub session: String,
    /// Seed for the game's deterministic RNG; the SDK keeps the RNG in the state.
    pub seed: u64,
    /// Game-specific configuration as MessagePack (empty = defaults).
    #[serde(with = "serde_bytes")]
    pub config: Vec<u8>,
}

/// An event delivered to a running session, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// A player asks for a seat. The guest may reject it (see [`Output::reject`]).
    Join { player: PlayerId, name: String },
    /// A seated player left for good (not a mere disconnect).
    Leave { player: PlayerId },
    /// A player's input as MessagePack of the game's input type.
    Input {
        player: PlayerId,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// The fixed-rate clock: tick number `n`, `dt_ms` since the previous tick.
    Tick { n: u64, dt_ms: u32 },
}

/// Put a previously taken snapshot into a fresh instance, possibly of newer rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restore {
    /// The guest state as produced by `minotaur_snapshot`.
    #[serde(with = "serde_bytes")]
    pub state: Vec<u8>,
    /// `rules_version` of the module that produced `state`.
    pub from_version: u32,
}

/// What a guest call produced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    /// `Some(reason)` if the guest refused the event (a join or an input);
    /// the guest guarantees its state is unchanged by a rejected event.
    pub reject: Option<String>,
    /// Effects for the host to carry out, in order.
    pub effects: Vec<Effect>,
}

/// Something the guest asks the host to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    /// A message (MessagePack) to one player.
    Send {
        to: PlayerId,
        #[serde(with = "serde_bytes")]
        msg: Vec<u8>,
    },
    /// A message (MessagePack) to every player in the session.
    Broadcast {
        #[serde(with = "serde_bytes")]
        msg: Vec<u8>,
    },
    /// The current view (MessagePack) for one player; replaces the previous one.
    View {
        to: PlayerId,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// The game is over: winners (empty for a draw) and a game-specific detail.
    End {
        winners: Vec<PlayerId>,
        #[serde(with = "serde_bytes")]
        detail: Vec<u8>,
    },
    /// Change the tick rate (Hz); `0` stops ticking.
    SetTickRate { hz: u32 },
    /// A log line for the operator (level: 0 error, 1 warn, 2 info, 3 debug).
    Log { level: u8, msg: String },
}

/// Error from [`decode`].
pub type DecodeError = rmp_serde::decode::Error;
/// Error from [`encode`].
pub type EncodeError = rmp_serde::encode::Error;

/// Encode an ABI value the way both sides expect (structs as named maps).
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, EncodeError> {
    rmp_serde::to_vec_named(value)
}

/// Decode an ABI value.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    rmp_serde::from_slice(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_packing_round_trips() {
        for (p, l) in [(0, 0), (1, 2), (u32::MAX, u32::MAX), (65536, 17)] {
            assert_eq!(unpack_region(pack_region(p, l)), (p, l));
        }
    }

    #[test]
    fn events_round_trip_as_named_maps() {
        let ev = Event::Input {
            player: 7,
            data: vec![1, 2, 3],
        };
        let bytes = encode(&ev).unwrap();
        // Externally tagged enum: a one-entry map whose key is the variant name.
        let v: rmpv::Value = rmp_serde::from_slice(&bytes).unwrap();
        let map = v.as_map().expect("map");
        assert_eq!(map[0].0.as_str(), Some("Input"));
        assert_eq!(decode::<Event>(&bytes).unwrap(), ev);
    }

    #[test]
    fn output_round_trips() {
        let out = Output {
            reject: None,
            effects: vec![
                Effect::View {
                    to: 1,
                    data: vec![0x90],
                },
                Effect::End {
                    winners: vec![1],
                    detail: vec![],
                },
                Effect::SetTickRate { hz: 20 },
            ],
        };
        assert_eq!(decode::<Output>(&encode(&out).unwrap()).unwrap(), out);
    }
}
