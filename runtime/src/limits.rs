//! Sandbox limits for every game module and instance a [`crate::Runtime`] runs.
//! Built by the host from its configuration and handed to [`crate::Runtime::new`].

use std::time::Duration;

/// Sandbox limits; `Default` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Larger modules are refused at load (default 8 MiB).
    pub max_module_bytes: usize,
    /// Linear memory cap per instance, i.e. per session (default 32 MiB).
    pub max_memory_bytes: usize,
    /// Wall time per guest call, enforced by epoch interruption (default 100 ms).
    pub call_timeout: Duration,
    /// Pooled instance slots: how many instances may be alive at once (default 20,000).
    pub max_instances: u32,
    /// An output or snapshot region larger than this is an error (default 4 MiB).
    pub max_payload_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_module_bytes: 8 << 20,
            max_memory_bytes: 32 << 20,
            call_timeout: Duration::from_millis(100),
            max_instances: 20_000,
            max_payload_bytes: 4 << 20,
        }
    }
}
