//! The [`Mapping`] trait and the glue that exports it as the WIT `mapper` interface.

use crate::bindings::abacsync::mapping::types::{DecisionBatch, EntryBatch};
use crate::bindings::exports::abacsync::mapping::mapper::Guest;
use crate::{Decision, Entry, MappingContext, MappingError, PluginInfo};
use std::marker::PhantomData;

/// A mapping from LDAP entries to users with ABAC attributes.
///
/// The host creates the mapping afresh for every call with [`Mapping::new`], from the
/// call's context: parse the tenant's settings there, once, rather than per entry.
/// Nothing survives between calls.
pub trait Mapping: Sized {
    /// The plugin's name and version.
    fn info() -> PluginInfo;

    /// Prepare the mapping for one call. Return [`MappingError::InvalidSettings`] for
    /// settings the mapping cannot work with; the host then refuses them.
    fn new(context: &MappingContext) -> Result<Self, MappingError>;

    /// The LDAP attributes [`Mapping::map`] reads; the host fetches only these.
    fn required_attributes(&self) -> Vec<String>;

    /// Decide what one entry becomes.
    fn map(&self, entry: &Entry) -> Result<Decision, MappingError>;

    /// Decide for a batch of entries, one result per entry in order. The default maps
    /// each entry with [`Mapping::map`]; override it only to share work across a batch.
    fn map_all(&self, entries: &[Entry]) -> Vec<Result<Decision, MappingError>> {
        entries.iter().map(|entry| self.map(entry)).collect()
    }
}

/// Implements the generated `mapper` export for any [`Mapping`].
#[doc(hidden)]
pub struct Exported<M>(PhantomData<M>);

impl<M: Mapping> Guest for Exported<M> {
    fn info() -> PluginInfo {
        M::info()
    }

    fn required_attributes(context: MappingContext) -> Result<Vec<String>, MappingError> {
        Ok(M::new(&context)?.required_attributes())
    }

    fn map_batch(
        context: MappingContext,
        batch: EntryBatch,
    ) -> Result<DecisionBatch, MappingError> {
        let mapping = M::new(&context)?;
        let entries = crate::columns::read_entries(batch).map_err(|err| {
            MappingError::Other(format!(
                "abacsync-guest {} cannot read the batch the host sent: {err}",
                env!("CARGO_PKG_VERSION")
            ))
        })?;
        Ok(crate::columns::write_decisions(&mapping.map_all(&entries)))
    }
}

/// Export a [`Mapping`] as the plugin's `abacsync:mapping/mapper@0.3.0` interface.
///
/// Use it once, in the plugin's `lib.rs`. It exports only when compiling to
/// WebAssembly, so the crate can also be linked natively (for tests and benchmarks).
#[macro_export]
macro_rules! export_mapping {
    ($mapping:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type __AbacsyncExport = $crate::__private::Exported<$mapping>;
            $crate::__private::__export_mapping_world!(__AbacsyncExport with_types_in $crate::bindings);
        };
    };
}
