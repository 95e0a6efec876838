//! Cluster tests over real processes: several `minotaur serve` nodes on loopback, seeded
//! with each other (see `harness.rs`). One test binary for all cluster scenarios.

#[path = "../common/mod.rs"]
mod common;

mod batch;
mod drain;
mod harness;
mod membership;
mod partition;
mod rolling;
mod routing;
mod takeover;
