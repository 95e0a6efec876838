//! Placeholder; the runtime lands next.
