//! Placeholder; the host lands next.
