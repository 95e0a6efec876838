//! Placeholder; the state layer lands next.
