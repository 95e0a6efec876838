//! The runtime's error types. Each variant has a stable `code()` that the host
//! puts in player- and operator-facing errors, so never rename a code.

/// Why a module was refused at load.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The bytes are not a wasm binary (no `\0asm` magic).
    #[error("not a wasm module: {0}")]
    NotWasm(String),
    /// The module is larger than `Limits::max_module_bytes`.
    #[error("module is {size} bytes, the limit is {max}")]
    TooLarge { size: usize, max: usize },
    /// A required export is missing or has the wrong type (the message says which).
    #[error("{0}")]
    MissingExport(String),
    /// `minotaur_abi_version` returned a version this host does not speak.
    #[error("module speaks guest ABI version {found}, this host speaks {expected}")]
    WrongAbiVersion { found: u32, expected: u32 },
    /// Wasm that does not validate or compile.
    #[error("module does not compile: {0}")]
    Compile(String),
    /// `minotaur_info` (or `minotaur_abi_version`) trapped or returned garbage.
    #[error("could not read the module's game info: {0}")]
    Info(GuestError),
    /// The module imports something; Minotaur links no imports at all.
    #[error("{0}")]
    ForbiddenImport(String),
    /// The probe instance used to read the game info could not be created
    /// (e.g. its initial memory exceeds the cap, its start function trapped,
    /// or the instance pool is exhausted).
    #[error("could not instantiate the module: {0}")]
    Instantiate(GuestError),
    /// A string that should have been a module hash is not one.
    #[error("{0}")]
    BadHash(String),
    /// The module uses a wasm feature the guest ABI does not allow (named as in
    /// `precheck::REFUSED`, e.g. `memory64`); refused before compiling.
    #[error("module uses the wasm feature `{feature}`, which guests may not use: {message}")]
    ForbiddenFeature {
        feature: &'static str,
        message: String,
    },
    /// The module defines more functions than `Limits::max_functions`.
    #[error("module defines {count} functions, the limit is {max}")]
    TooManyFunctions { count: u32, max: u32 },
    /// A function body is larger than `Limits::max_function_body_bytes`.
    #[error("function {index} is {size} bytes of code, the limit is {max}")]
    FunctionTooLarge { index: u32, size: usize, max: usize },
    /// Compiling took longer than `Limits::compile_timeout`.
    #[error("module did not compile within {0:?}")]
    CompileTimeout(std::time::Duration),
}

impl LoadError {
    /// Stable snake_case code for player/operator-facing errors.
    pub fn code(&self) -> &'static str {
        match self {
            LoadError::NotWasm(_) => "not_wasm",
            LoadError::TooLarge { .. } => "module_too_large",
            LoadError::MissingExport(_) => "missing_export",
            LoadError::WrongAbiVersion { .. } => "wrong_abi_version",
            LoadError::Compile(_) => "compile_failed",
            LoadError::Info(_) => "bad_game_info",
            LoadError::ForbiddenImport(_) => "forbidden_import",
            LoadError::Instantiate(_) => "instantiate_failed",
            LoadError::BadHash(_) => "bad_module_hash",
            LoadError::ForbiddenFeature { .. } => "forbidden_feature",
            LoadError::TooManyFunctions { .. } => "too_many_functions",
            LoadError::FunctionTooLarge { .. } => "function_too_large",
            LoadError::CompileTimeout(_) => "compile_timeout",
        }
    }
}

/// Why a guest call failed. After any `GuestError` the instance is poisoned:
/// every further call fails at once, and the session throws the instance away
/// (rolls back to its last good snapshot in a fresh instance, or ends).
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// The guest trapped (panic, `unreachable`, out-of-bounds access, stack
    /// overflow), or the instance was already poisoned by an earlier error.
    #[error("guest trapped: {0}")]
    Trap(String),
    /// The guest panicked: it handed its panic message to the host
    /// (`minotaur`.`panic`, at most 1 KiB, cleaned of control characters)
    /// and then trapped. Same code as [`GuestError::Trap`]: a panic is a trap,
    /// this variant only knows why.
    #[error("guest panicked: {message}")]
    Panicked { message: String },
    /// The call exceeded `Limits::call_timeout` (e.g. an infinite loop).
    #[error("guest call exceeded its time limit")]
    Timeout,
    /// The guest tried to grow its memory past `Limits::max_memory_bytes`.
    #[error("guest exceeded its memory limit")]
    MemoryLimit,
    /// The returned region is out of bounds, too large, or not valid
    /// MessagePack for the expected type.
    #[error("guest returned bad output: {0}")]
    BadOutput(String),
    /// A fresh instance could not be created (e.g. the pool is exhausted).
    #[error("could not instantiate guest: {0}")]
    Instantiate(String),
}

impl GuestError {
    /// Stable snake_case code for player/operator-facing errors.
    pub fn code(&self) -> &'static str {
        match self {
            GuestError::Trap(_) | GuestError::Panicked { .. } => "guest_trap",
            GuestError::Timeout => "guest_timeout",
            GuestError::MemoryLimit => "guest_memory_limit",
            GuestError::BadOutput(_) => "guest_bad_output",
            GuestError::Instantiate(_) => "instantiate_failed",
        }
    }

    /// The guest's own panic message, if it panicked and said so.
    pub fn panic_message(&self) -> Option<&str> {
        match self {
            GuestError::Panicked { message } => Some(message),
            _ => None,
        }
    }
}

/// The engine could not be created from these limits.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("runtime configuration: {0}")]
    Config(String),
    /// The guest pool's threads could not be started.
    #[error("cannot start the guest pool: {0}")]
    Pool(String),
}

impl RuntimeError {
    /// Stable snake_case code for operator-facing errors.
    pub fn code(&self) -> &'static str {
        match self {
            RuntimeError::Config(_) => "runtime_config",
            RuntimeError::Pool(_) => "runtime_pool",
        }
    }
}

/// The message a poisoned instance answers every call with.
#[cfg(feature = "engine")]
pub(crate) const POISONED: &str = "instance poisoned by earlier error";
