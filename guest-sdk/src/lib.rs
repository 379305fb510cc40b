//! Write an abacsync mapping plugin in a few lines.
//!
//! A mapping plugin decides which LDAP entries become users of an application and
//! which ABAC attributes they get. Implement [`Mapping`] for a type, export it with
//! [`export_mapping!`], and build with `cargo build --target wasm32-wasip2`:
//!
//! ```
//! use abacsync_guest::prelude::*;
//!
//! struct Example;
//!
//! impl Mapping for Example {
//!     fn info() -> PluginInfo {
//!         PluginInfo::new("example", "1.0.0")
//!     }
//!     fn new(_context: &MappingContext) -> Result<Self, MappingError> {
//!         Ok(Example)
//!     }
//!     fn required_attributes(&self) -> Vec<String> {
//!         attributes(&["uid", "mail", "entryUUID", "departmentNumber"])
//!     }
//!     fn map(&self, entry: &Entry) -> Result<Decision, MappingError> {
//!         let Some(mail) = entry.first("mail") else {
//!             return Ok(Decision::skip("no mail"));
//!         };
//!         let user = User::new(entry.require("uid")?, entry.require("entryUUID")?)
//!             .email(mail)
//!             .attribute("department", entry.values("departmentNumber"));
//!         Ok(Decision::Upsert(user))
//!     }
//! }
//!
//! abacsync_guest::export_mapping!(Example);
//! ```
//!
//! The same code runs natively, so the mapping can be unit-tested with `cargo test`
//! (see [`testing`]).

// Compiled where it is installed, and for its tests; never for threads.
#[cfg(all(
    feature = "call-allocator",
    any(test, all(target_arch = "wasm32", not(target_feature = "atomics")))
))]
mod alloc;
pub mod columns;
pub mod dn;
mod entry;
mod export;
pub mod guid;
pub mod log;
mod model;
pub mod testing;

/// The instance's allocator: see `src/alloc.rs`.
#[cfg(all(
    feature = "call-allocator",
    target_arch = "wasm32",
    not(target_feature = "atomics")
))]
#[global_allocator]
static ALLOCATOR: alloc::CallAllocator = alloc::CallAllocator::new();

#[doc(hidden)]
pub mod bindings {
    //! Bindings generated from `wit/v0.3.0` by wit-bindgen. Use the re-exports at the
    //! crate root instead.
    #![allow(missing_docs)]
    wit_bindgen::generate!({
        path: "wit",
        world: "mapping-plugin",
        default_bindings_module: "abacsync_guest::bindings",
        pub_export_macro: true,
        export_macro_name: "__export_mapping_world",
        additional_derives: [PartialEq, Eq, Clone],
    });
}

pub use bindings::abacsync::mapping::host::LogLevel;
pub use bindings::abacsync::mapping::types::{
    InvalidAttribute, MappingContext, MappingError, PluginInfo, Setting, SyncMode,
};
pub use export::Mapping;
pub use model::{
    AbacAttribute, BinaryAttribute, Deactivation, Decision, Entry, TextAttribute, User, attributes,
};

/// Everything a plugin usually needs: `use abacsync_guest::prelude::*;`.
pub mod prelude {
    pub use crate::dn::Dn;
    pub use crate::{
        AbacAttribute, Decision, Entry, Mapping, MappingContext, MappingError, PluginInfo,
        SyncMode, User, attributes,
    };
}

#[doc(hidden)]
pub mod __private {
    //! Used by [`export_mapping!`](crate::export_mapping); not part of the API.
    pub use crate::bindings::__export_mapping_world;
    pub use crate::export::Exported;
}

#[cfg(test)]
mod contract_version {
    #[test]
    fn the_crate_speaks_the_contract_of_its_version() {
        let wit = include_str!("../wit/mapper.wit");
        let contract = wit
            .lines()
            .find_map(|line| line.strip_prefix("package abacsync:mapping@"))
            .and_then(|rest| rest.strip_suffix(';'))
            .expect("the WIT names its package");
        let major_minor =
            |version: &str| -> String { version.split('.').take(2).collect::<Vec<_>>().join(".") };
        assert_eq!(
            major_minor(env!("CARGO_PKG_VERSION")),
            major_minor(contract),
            "abacsync-guest's version must follow the contract it speaks"
        );
    }
}
