//! abacsync's integration tests: one binary, a module per area. Plugins are compiled
//! from `plugins/` and `tests/plugins/`; nothing is mocked.

// Test code: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod active_directory;
mod api;
mod changes;
mod cli;
mod golden;
mod languages;
mod loading;
mod plugin_kit;
mod registry;
mod samba;
mod sandbox;
mod sync;
