//! Logging to the host's log. Inside the sandbox this calls the host's `log`
//! import; in native tests the messages are kept for [`crate::testing::take_logs`].

use crate::LogLevel;

/// Log `message` at `level`. The host caps the bytes one call may log (64 KiB by
/// default) and stops a plugin that logs more.
pub fn log(level: LogLevel, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::abacsync::mapping::host::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::record_log(level, message);
}

/// Log at `debug` level.
pub fn debug(message: &str) {
    log(LogLevel::Debug, message);
}

/// Log at `info` level.
pub fn info(message: &str) {
    log(LogLevel::Info, message);
}

/// Log at `warn` level.
pub fn warn(message: &str) {
    log(LogLevel::Warn, message);
}

/// Log at `error` level.
pub fn error(message: &str) {
    log(LogLevel::Error, message);
}
