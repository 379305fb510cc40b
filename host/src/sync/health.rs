//! Plugin health per tenant: a plugin whose whole calls keep failing (traps,
//! timeouts, limits, refused settings, a component that no longer loads) is suspended
//! for its tenant after [`SUSPEND_AFTER`] failed syncs in a row, so that it stops
//! costing the host a sandbox's worth of time on every trigger. A new assignment or
//! an explicit resume lifts the suspension; a successful sync resets the count.
//!
//! The counts and the suspension are kept in the store: every replica counts the same
//! failures and honours the same suspension, and a restart does not lift it.

use std::sync::Arc;

use serde::Serialize;

use super::engine::Clock;
use crate::plugin::model::TenantId;
use crate::store::{CatalogStore, PluginHealthRecord};

/// Failed syncs in a row that suspend a tenant's plugin.
pub const SUSPEND_AFTER: u32 = 3;

/// A tenant's plugin health, as the admin API shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginStatus {
    /// `active` or `suspended`.
    pub status: &'static str,
    /// Failed syncs in a row, caused by the plugin.
    pub consecutive_failures: u32,
    /// The last failure's message.
    pub last_error: Option<String>,
}

/// Health of every tenant's plugin, in the store. Every method blocks on the store;
/// when the store fails, the failure is logged and the plugin taken as healthy (a
/// sync that then runs fails on the store itself).
pub struct PluginHealth {
    store: Arc<dyn CatalogStore>,
    clock: Clock,
}

impl PluginHealth {
    /// Health kept in `store`.
    pub fn new(store: Arc<dyn CatalogStore>, clock: Clock) -> Self {
        Self { store, clock }
    }

    /// Records a sync's end for `tenant`: `Some(message)` when the plugin failed it.
    /// Returns true when this failure suspended the plugin.
    pub fn record(&self, tenant: TenantId, plugin_failure: Option<&str>) -> bool {
        self.store
            .record_plugin_result(tenant, plugin_failure, SUSPEND_AFTER, (self.clock)())
            .unwrap_or_else(|err| {
                tracing::warn!(tenant, %err, "cannot record the plugin's health");
                false
            })
    }

    /// Why `tenant`'s plugin is suspended, when it is.
    pub fn suspended(&self, tenant: TenantId) -> Option<String> {
        let health = self.read(tenant);
        health.suspended.then(|| {
            format!(
                "the plugin is suspended after {} failed syncs in a row (last: {}); assign a plugin or resume it",
                health.failures,
                health.last_error.as_deref().unwrap_or("unknown")
            )
        })
    }

    /// The status shown for `tenant`.
    pub fn status(&self, tenant: TenantId) -> PluginStatus {
        let health = self.read(tenant);
        PluginStatus {
            status: if health.suspended {
                "suspended"
            } else {
                "active"
            },
            consecutive_failures: health.failures,
            last_error: health.last_error,
        }
    }

    /// Lifts a suspension and forgets the failures.
    pub fn resume(&self, tenant: TenantId) {
        if let Err(err) = self.store.resume_plugin(tenant) {
            tracing::warn!(tenant, %err, "cannot lift the plugin's suspension");
        }
    }

    fn read(&self, tenant: TenantId) -> PluginHealthRecord {
        self.store.plugin_health(tenant).unwrap_or_else(|err| {
            tracing::warn!(tenant, %err, "cannot read the plugin's health");
            PluginHealthRecord::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    #[test]
    fn suspends_after_failures_in_a_row_and_resumes() {
        let store = Arc::new(SqliteStore::open_in_memory().unwrap());
        let health = PluginHealth::new(store.clone(), Arc::new(|| 0));
        assert!(!health.record(1, Some("trap")));
        assert!(!health.record(1, None), "a success resets the count");
        for _ in 1..SUSPEND_AFTER {
            assert!(!health.record(1, Some("trap")));
        }
        assert!(health.suspended(1).is_none());
        assert!(health.record(1, Some("timeout")));
        assert!(!health.record(1, Some("timeout")), "suspended once");
        assert!(health.suspended(1).unwrap().contains("timeout"));
        assert_eq!(health.status(1).status, "suspended");
        assert_eq!(health.status(2).status, "active");
        // Another replica on the same store sees it.
        let other = PluginHealth::new(store, Arc::new(|| 0));
        assert!(other.suspended(1).is_some());
        other.resume(1);
        assert!(health.suspended(1).is_none());
    }
}
