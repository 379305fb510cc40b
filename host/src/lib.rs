//! abacsync keeps an application's users and their ABAC attributes in step with LDAP and
//! Active Directory. Each tenant's directory entries go through the tenant's mapping
//! plugin, a sandboxed WebAssembly component, which decides who becomes a user and
//! with which attributes.
//!
//! - [`api`]: the HTTP API: the documented sync triggers, logins, tasks, admin.
//! - [`auth`]: accounts' passwords, sessions, two-factor codes, permissions.
//! - [`config`]: tenants and their settings, from a TOML file.
//! - [`ldap`]: reading a directory: paged searches, TLS, binary attributes, ranges, groups.
//! - [`plugin`]: the sandboxed plugin runtime and the contract's model.
//! - [`fixtures`]: LDIF and JSON fixture files, for testing mappings without a directory.
//! - [`mapping_test`]: run a plugin over fixtures and compare with expected output.
//! - [`store`]: the user store: users, ABAC attributes, audit trail, sync state.
//! - [`sync`]: the sync engine: read, map, diff, apply.

pub mod api;
pub mod auth;
pub mod config;
pub mod fixtures;
pub mod ldap;
pub mod mapping_test;
pub mod plugin;
pub mod store;
pub mod sync;
pub mod tls;
