//! What can go wrong loading or calling a plugin. Load errors name the plugin and the
//! part of the component at fault; call errors say which limit was hit and carry the
//! guest's own console output (a panic message, a traceback), bounded.

use super::model::MappingError;
use std::fmt;
use std::time::Duration;

/// A component was refused when loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Larger than the configured size cap.
    #[error("plugin `{plugin}` is {size} bytes, more than the {limit}-byte limit")]
    TooLarge {
        /// Plugin label.
        plugin: String,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Not WebAssembly at all.
    #[error("plugin `{plugin}` is not a WebAssembly component: {reason}")]
    NotWasm {
        /// Plugin label.
        plugin: String,
        /// What was found instead.
        reason: String,
    },
    /// A core module where a component is needed.
    #[error(
        "plugin `{plugin}` is a core WebAssembly module, not a component: build it for the \
         `wasm32-wasip2` target (or wrap it with `wasm-tools component new`)"
    )]
    CoreModule {
        /// Plugin label.
        plugin: String,
    },
    /// The bytes do not form a valid component.
    #[error("plugin `{plugin}` is not a valid component: {reason}")]
    Invalid {
        /// Plugin label.
        plugin: String,
        /// The validator's or compiler's message.
        reason: String,
    },
    /// An import outside the sandbox's allow-list.
    #[error("plugin `{plugin}` imports `{import}`, which the sandbox does not provide: {why}")]
    ForbiddenImport {
        /// Plugin label.
        plugin: String,
        /// The import's full name.
        import: String,
        /// Why it is refused.
        why: &'static str,
    },
    /// No `abacsync:mapping/mapper` export at all.
    #[error(
        "plugin `{plugin}` is a component of another world: it does not export \
         `abacsync:mapping/mapper` (its exports: {exports})"
    )]
    WrongWorld {
        /// Plugin label.
        plugin: String,
        /// What it does export.
        exports: String,
    },
    /// The mapper export is of a contract version this host does not know.
    #[error("plugin `{plugin}` targets abacsync:mapping@{found}; this host supports {supported}")]
    UnsupportedVersion {
        /// Plugin label.
        plugin: String,
        /// The version it exports.
        found: String,
        /// The versions the host loads.
        supported: String,
    },
    /// Imports or exports that do not type-check against the contract.
    #[error("plugin `{plugin}` does not fit the contract: {reason}")]
    Link {
        /// Plugin label.
        plugin: String,
        /// Wasmtime's explanation.
        reason: String,
    },
    /// The component loaded but its first call (`info`) failed.
    #[error("plugin `{plugin}` failed when asked for its name and version: {cause}")]
    Probe {
        /// Plugin label.
        plugin: String,
        /// The call's failure.
        cause: Box<CallError>,
    },
    /// The compiled-code cache could not be used (the plugin was still compiled).
    #[error("compiled-code cache at `{path}`: {cause}")]
    Cache {
        /// The cache file or folder.
        path: String,
        /// The I/O error.
        cause: std::io::Error,
    },
}

/// A call into a plugin failed.
#[derive(Debug, thiserror::Error)]
pub struct CallError {
    /// Plugin label.
    pub plugin: String,
    /// The export that was called.
    pub function: &'static str,
    /// What went wrong.
    pub kind: CallErrorKind,
    /// The guest's console output (stdout and stderr), bounded; empty when silent.
    pub console: String,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "plugin `{}` ({}): {}",
            self.plugin, self.function, self.kind
        )?;
        // A panic's own lines are already in the message; what the guest printed
        // before them (a Python traceback, say) is shown.
        let console = match self.kind {
            CallErrorKind::Panic { .. } => output_before_panic(&self.console),
            _ => &self.console,
        }
        .trim_end();
        if !console.is_empty() {
            write!(f, "; its output: {console}")?;
        }
        Ok(())
    }
}

/// The console output up to the line of a Rust panic (`thread '…' panicked at`).
fn output_before_panic(console: &str) -> &str {
    match console.find("panicked at ") {
        Some(at) => &console[..console[..at].rfind('\n').map_or(0, |newline| newline + 1)],
        None => console,
    }
}

/// The ways a call can fail.
#[derive(Debug, thiserror::Error)]
pub enum CallErrorKind {
    /// The wall-clock deadline passed.
    #[error("stopped after running past its {0:?} deadline")]
    Deadline(Duration),
    /// Linear memory would have grown past the limit.
    #[error("stopped for using more than {limit} bytes of memory")]
    MemoryLimit {
        /// The limit in bytes.
        limit: usize,
    },
    /// The fuel budget ran out.
    #[error("stopped after using all of its {0} units of fuel")]
    OutOfFuel(u64),
    /// The wasm call stack overflowed.
    #[error("stopped by a stack overflow (unbounded recursion?)")]
    StackOverflow,
    /// The guest panicked (Rust) and said why.
    #[error("panicked: {message}")]
    Panic {
        /// The panic message.
        message: String,
    },
    /// The guest logged more than its budget.
    #[error("stopped for logging more than {limit} bytes in one call")]
    LogBudget {
        /// The budget in bytes.
        limit: usize,
    },
    /// Returned more data than allowed.
    #[error("returned more than the {limit}-byte limit of results")]
    OversizedOutput {
        /// The limit.
        limit: usize,
    },
    /// Returned a different number of results than entries sent.
    #[error("returned {got} results for {expected} entries")]
    ResultCount {
        /// Entries sent.
        expected: usize,
        /// Results returned.
        got: usize,
    },
    /// Returned a batch result that is not what the contract specifies (contract
    /// 0.2.0: not a JSON array; 0.3.0: numbers and texts that do not add up).
    #[error("returned a batch result that does not fit the contract: {0}")]
    MalformedOutput(String),
    /// The guest refused the whole batch (its outer `mapping-error`).
    #[error("refused the batch: {0}")]
    Refused(MappingError),
    /// Any other trap.
    #[error("trapped: {0}")]
    Trap(String),
    /// The instance could not be created.
    #[error("could not be instantiated: {0}")]
    Instantiate(String),
    /// Not run: the caller's lane already had as many calls waiting as it may.
    #[error(
        "not run: {lane} already has {max_queued} plugin calls waiting; try again once they are done"
    )]
    Busy {
        /// Whose calls (`tenant 4`).
        lane: String,
        /// Calls that may wait per lane.
        max_queued: usize,
    },
    /// The host lost the call (its thread ended without an answer).
    #[error("lost by the host: {0}")]
    Lost(String),
}

impl CallErrorKind {
    /// A stable short name for metrics and JSON (`deadline`, `memory-limit`, …).
    pub fn code(&self) -> &'static str {
        match self {
            CallErrorKind::Deadline(_) => "deadline",
            CallErrorKind::MemoryLimit { .. } => "memory-limit",
            CallErrorKind::OutOfFuel(_) => "out-of-fuel",
            CallErrorKind::StackOverflow => "stack-overflow",
            CallErrorKind::Panic { .. } => "panic",
            CallErrorKind::LogBudget { .. } => "log-budget",
            CallErrorKind::OversizedOutput { .. } => "oversized-output",
            CallErrorKind::ResultCount { .. } => "result-count",
            CallErrorKind::MalformedOutput(_) => "malformed-output",
            CallErrorKind::Refused(_) => "refused",
            CallErrorKind::Trap(_) => "trap",
            CallErrorKind::Instantiate(_) => "instantiate",
            CallErrorKind::Busy { .. } => "busy",
            CallErrorKind::Lost(_) => "lost",
        }
    }
}

/// Why a `map-batch` result as a whole could not be used, whatever the contract.
#[derive(Debug)]
pub(crate) enum BatchError {
    /// It does not fit the contract (0.2.0: not a JSON array; 0.3.0: numbers and texts
    /// that do not add up).
    Malformed(String),
    /// A well-formed result with the wrong number of decisions.
    Count(usize),
}

impl BatchError {
    /// The call's error kind, for a batch of `expected` entries.
    pub(crate) fn into_kind(self, expected: usize) -> CallErrorKind {
        match self {
            BatchError::Malformed(reason) => CallErrorKind::MalformedOutput(reason),
            BatchError::Count(got) => CallErrorKind::ResultCount { expected, got },
        }
    }
}
