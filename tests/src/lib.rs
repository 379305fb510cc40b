//! Shared fixtures for abacsync's integration tests (`tests/it`, run as the `abacsync`
//! package's `it` test) and benchmarks (`tests/benches`).
//!
//! - [`plugins`]: the plugins of `plugins/` and `tests/plugins/`, compiled to
//!   components once per test run.
//! - [`slapd`]: a real OpenLDAP server on free loopback ports, with TLS, `memberOf`
//!   and bulk-loaded entries on request.
//! - [`directory`]: deterministic LDIF of people and groups for that server.
//! - [`smtp`]: a mail sink on a free loopback port, for codes sent by email.
//! - [`postgres`]: a real PostgreSQL server on a free loopback port, with TLS on
//!   request.
//! - [`samba`]: a real Active Directory domain controller (Samba) on a loopback
//!   address of its own, with LDAPS from a private CA.
//! - [`certificates`]: a private CA and a server certificate, for the TLS fixtures.
//! - [`http`]: one JSON request over real HTTP.
//! - [`stall`]: a TCP proxy that stalls the server's answers once, a slow link.

// Test support: a panic is how a test or benchmark fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod ad_server;
pub mod certificates;
pub mod directory;
pub mod http;
pub mod plugins;
pub mod postgres;
pub mod samba;
pub mod slapd;
pub mod smtp;
pub mod stall;

use std::path::PathBuf;

/// The workspace's root folder.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// The number after `name` on a benchmark's command line (`--runs 5`), or `default`.
pub fn bench_arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|arg| arg == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Whether the suite runs under CI, where a missing prerequisite fails instead of
/// skipping.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true" || value == "1")
}
