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
    /// Modules defining more functions are refused before compiling (default 20,000).
    pub max_functions: u32,
    /// Modules with a larger function body (bytes of code) are refused before
    /// compiling (default 256 KiB).
    pub max_function_body_bytes: usize,
    /// Longest a module may take to compile; a slower one is refused (default 30 s).
    pub compile_timeout: Duration,
    /// Threads of the guest pool that runs every guest call and compile;
    /// `0` = four per available core (see `docs/ARCHITECTURE.md`).
    pub pool_threads: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_module_bytes: 8 << 20,
            max_memory_bytes: 32 << 20,
            call_timeout: Duration::from_millis(100),
            max_instances: 20_000,
            max_payload_bytes: 4 << 20,
            max_functions: 20_000,
            max_function_body_bytes: 256 << 10,
            compile_timeout: Duration::from_secs(30),
            pool_threads: 0,
        }
    }
}
