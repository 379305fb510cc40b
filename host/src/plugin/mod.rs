//! The plugin runtime: mapping plugins are WebAssembly components run by wasmtime in a
//! strict sandbox, one fresh instance per call.
//!
//! [`PluginEngine`] is shared by all tenants; [`PluginEngine::load`] checks a component
//! ([`inspect`]: size, kind, allowed imports, contract version), compiles it (or takes
//! it from the disk cache) and returns a [`Plugin`] whose calls run under the limits of
//! [`SandboxConfig`]. [`PluginRegistry`] holds each tenant's plugin and settings.

mod cache;
mod console;
mod engine;
mod error;
mod inspect;
mod limits;
pub mod model;
mod output;
mod registry;
mod state;
mod v0_1_0;
mod v0_2_0;

pub use cache::CompileCache;
pub use engine::{BatchOutput, CallStats, EngineError, LoadStats, Plugin, PluginEngine};
pub use error::{CallError, CallErrorKind, LoadError};
pub(crate) use inspect::hex;
pub use inspect::{CONTRACT_PACKAGE, ComponentReport, SUPPORTED_VERSIONS, inspect};
pub use limits::{CallLimits, MemoryLimitExceeded, SandboxConfig};
pub use registry::{PluginRegistry, RegistryError, TenantPlugin};
pub use state::LogBudgetExceeded;
