//! Native test support: run a [`Mapping`] the way the host does, without WebAssembly.
//!
//! ```
//! # use abacsync_guest::prelude::*;
//! # struct M;
//! # impl Mapping for M {
//! #     fn info() -> PluginInfo { PluginInfo::new("m", "0") }
//! #     fn new(_: &MappingContext) -> Result<Self, MappingError> { Ok(M) }
//! #     fn required_attributes(&self) -> Vec<String> { vec![] }
//! #     fn map(&self, e: &Entry) -> Result<Decision, MappingError> { Ok(Decision::skip(e.dn.clone())) }
//! # }
//! use abacsync_guest::testing;
//! let entry = Entry::new("uid=alice,dc=example").with("mail", ["alice@example.org"]);
//! let decisions = testing::map::<M>(&testing::context(), vec![entry]).unwrap();
//! assert_eq!(decisions.len(), 1);
//! ```

use crate::bindings::exports::abacsync::mapping::mapper::Guest;
use crate::export::Exported;
use crate::{Decision, Entry, LogLevel, Mapping, MappingContext, MappingError, SyncMode};
use std::cell::RefCell;

/// A full-sync context for tenant 1 with no settings.
pub fn context() -> MappingContext {
    MappingContext::new(1, SyncMode::Full)
}

/// Map a batch natively as the plugin's `map-batch` export does: create the mapping
/// for `context`, then decide for each entry. (The columns the export reads and writes
/// are [`crate::columns`]'s, tested on their own.)
pub fn map<M: Mapping>(
    context: &MappingContext,
    entries: Vec<Entry>,
) -> Result<Vec<Result<Decision, MappingError>>, MappingError> {
    Ok(M::new(context)?.map_all(&entries))
}

/// Map one entry: the inner result of [`map`] for a batch of one.
pub fn map_one<M: Mapping>(
    context: &MappingContext,
    entry: Entry,
) -> Result<Decision, MappingError> {
    map::<M>(context, vec![entry])?
        .pop()
        .unwrap_or_else(|| Err(MappingError::Other("the mapping returned no result".into())))
}

/// Call the plugin's `required-attributes` export natively.
pub fn required_attributes<M: Mapping>(
    context: &MappingContext,
) -> Result<Vec<String>, MappingError> {
    <Exported<M> as Guest>::required_attributes(context.clone())
}

thread_local! {
    static LOGS: RefCell<Vec<(LogLevel, String)>> = const { RefCell::new(Vec::new()) };
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn record_log(level: LogLevel, message: &str) {
    LOGS.with(|logs| logs.borrow_mut().push((level, message.to_owned())));
}

/// The messages logged on this thread since the last call.
pub fn take_logs() -> Vec<(LogLevel, String)> {
    LOGS.with(|logs| std::mem::take(&mut *logs.borrow_mut()))
}
