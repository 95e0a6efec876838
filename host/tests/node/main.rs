//! End-to-end tests of one `minotaur serve` process: real websockets, real
//! wasm games from `games/dist` (run `scripts/build-games.sh` first). One
//! test binary, one module per area, to keep link time down.

#[path = "../common/mod.rs"]
mod common;

mod admin;
mod arena;
mod bad_input;
mod chaos;
mod dry_run;
mod hotswap;
mod isolation;
mod limits;
mod lobby;
mod metrics;
mod panics;
mod persist;
mod reaping;
mod tictactoe;
