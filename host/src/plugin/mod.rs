//! The plugin runtime: mapping plugins are WebAssembly components run by wasmtime in a
//! strict sandbox, one fresh instance per call.
//!
//! [`PluginEngine`] is shared by all tenants; [`PluginEngine::load`] checks a component
//! ([`inspect`]: size, kind, allowed imports, contract version), compiles it (or takes
//! it from the disk cache) and returns a [`Plugin`] whose calls run under the limits of
//! [`SandboxConfig`]. [`PluginRegistry`] holds each tenant's plugin and settings.

/// What every contract version's module needs from its generated bindings, the same
/// for each: the `host` import (logging), linking, and the conversions of the typed
/// values every version shares (context, plugin info, errors). Expanded inside a
/// version's module, after its `bindgen!` and `use self::abacsync::mapping::{host, types}`.
macro_rules! contract_glue {
    () => {
        impl types::Host for super::state::StoreState {}

        impl host::Host for super::state::StoreState {
            fn log(&mut self, level: host::LogLevel, message: String) -> wasmtime::Result<()> {
                use super::model::LogLevel;
                let level = match level {
                    host::LogLevel::Trace => LogLevel::Trace,
                    host::LogLevel::Debug => LogLevel::Debug,
                    host::LogLevel::Info => LogLevel::Info,
                    host::LogLevel::Warn => LogLevel::Warn,
                    host::LogLevel::Error => LogLevel::Error,
                };
                self.guest_log(level, message)
            }
        }

        /// Adds the contract's imports to `linker`.
        pub(crate) fn add_to_linker(
            linker: &mut wasmtime::component::Linker<super::state::StoreState>,
        ) -> wasmtime::Result<()> {
            use super::state::StoreState;
            MappingPlugin::add_to_linker::<StoreState, wasmtime::component::HasSelf<StoreState>>(
                linker,
                |state| state,
            )
        }

        impl From<&super::model::MappingContext> for types::MappingContext {
            fn from(context: &super::model::MappingContext) -> Self {
                use super::model::SyncMode;
                Self {
                    tenant_id: context.tenant_id,
                    mode: match context.mode {
                        SyncMode::Full => types::SyncMode::Full,
                        SyncMode::Incremental => types::SyncMode::Incremental,
                        SyncMode::Targeted => types::SyncMode::Targeted,
                    },
                    settings: context
                        .settings
                        .iter()
                        .map(|(key, value)| types::Setting {
                            key: key.clone(),
                            value: value.clone(),
                        })
                        .collect(),
                }
            }
        }

        impl From<types::PluginInfo> for super::model::PluginInfo {
            fn from(info: types::PluginInfo) -> Self {
                Self {
                    name: info.name,
                    version: info.version,
                }
            }
        }

        impl From<types::MappingError> for super::model::MappingError {
            fn from(error: types::MappingError) -> Self {
                use super::model::MappingErrorKind;
                match error {
                    types::MappingError::MissingAttribute(name) => Self::missing_attribute(name),
                    types::MappingError::InvalidAttribute(attr) => {
                        Self::invalid_attribute(attr.name, &attr.reason)
                    }
                    types::MappingError::InvalidSettings(reason) => {
                        Self::reported(MappingErrorKind::InvalidSettings, reason)
                    }
                    types::MappingError::Other(reason) => {
                        Self::reported(MappingErrorKind::Other, reason)
                    }
                }
            }
        }
    };
}
use contract_glue;

mod cache;
mod console;
mod engine;
mod error;
mod executor;
mod inspect;
mod limits;
pub mod model;
mod output;
mod registry;
mod state;
mod v0_1_0;
mod v0_2_0;
mod v0_3_0;

pub use cache::CompileCache;
pub use engine::{
    BatchOutput, CallStats, EngineError, LoadStats, Plugin, PluginEngine, RawBatch, RawDecision,
};
pub use error::{CallError, CallErrorKind, LoadError};
pub use executor::ExecutorLoad;
pub(crate) use inspect::hex;
pub use inspect::{CONTRACT_PACKAGE, ComponentReport, SUPPORTED_VERSIONS, inspect};
pub use limits::{CallLimits, MemoryLimitExceeded, SandboxConfig};
pub use registry::{PluginRegistry, RegistryError, TenantPlugin};
pub use state::LogBudgetExceeded;
