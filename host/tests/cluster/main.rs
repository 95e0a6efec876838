//! Cluster tests over real processes: `minotaur serve` nodes on loopback around a real,
//! throwaway PostgreSQL server (`harness.rs`, `minotaur_cluster::testing`), with bots that play
//! through drains, crashes, pauses and database restarts and record every acknowledged
//! input (`bots.rs`). One test binary for all cluster scenarios; they run one at a time.

#[path = "../common/mod.rs"]
mod common;

mod bots;
mod harness;
mod logs;

mod database;
mod drain;
mod outage;
mod pause;
mod placement;
mod publish;
mod rolling;
mod routing;
mod takeover;
