//! abacsync keeps an application's users and their ABAC attributes in step with LDAP and
//! Active Directory. Each tenant's directory entries go through the tenant's mapping
//! plugin, a sandboxed WebAssembly component, which decides who becomes a user and
//! with which attributes.
//!
//! - [`plugin`]: the sandboxed plugin runtime and the contract's model.
//! - [`fixtures`]: LDIF and JSON fixture files, for testing mappings without a directory.
//! - [`mapping_test`]: run a plugin over fixtures and compare with expected output.

pub mod fixtures;
pub mod mapping_test;
pub mod plugin;
