//! Placeholder; the guest SDK lands next.
