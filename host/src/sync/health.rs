//! Plugin health per tenant: a plugin whose whole calls keep failing (traps,
//! timeouts, limits, refused settings, a component that no longer loads) is suspended
//! for its tenant after [`SUSPEND_AFTER`] failed syncs in a row, so that it stops
//! costing the host a sandbox's worth of time on every trigger. A new assignment or
//! an explicit resume lifts the suspension; a successful sync resets the count.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::Serialize;

use crate::plugin::model::TenantId;

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

#[derive(Debug, Default)]
struct Health {
    failures: u32,
    last_error: Option<String>,
    suspended: bool,
}

/// Health of every tenant's plugin (in memory: a restart gives each plugin a fresh
/// start).
#[derive(Debug, Default)]
pub struct PluginHealth {
    tenants: Mutex<HashMap<TenantId, Health>>,
}

impl PluginHealth {
    /// Records a sync's end for `tenant`: `Some(message)` when the plugin failed it.
    /// Returns true when this failure suspended the plugin.
    pub fn record(&self, tenant: TenantId, plugin_failure: Option<&str>) -> bool {
        let mut tenants = self.lock();
        let health = tenants.entry(tenant).or_default();
        match plugin_failure {
            None => {
                *health = Health::default();
                false
            }
            Some(message) => {
                health.failures += 1;
                health.last_error = Some(message.to_owned());
                let newly = !health.suspended && health.failures >= SUSPEND_AFTER;
                health.suspended |= newly;
                newly
            }
        }
    }

    /// Why `tenant`'s plugin is suspended, when it is.
    pub fn suspended(&self, tenant: TenantId) -> Option<String> {
        self.lock()
            .get(&tenant)
            .filter(|health| health.suspended)
            .map(|health| {
                format!(
                    "the plugin is suspended after {} failed syncs in a row (last: {}); assign a plugin or resume it",
                    health.failures,
                    health.last_error.as_deref().unwrap_or("unknown")
                )
            })
    }

    /// The status shown for `tenant`.
    pub fn status(&self, tenant: TenantId) -> PluginStatus {
        let tenants = self.lock();
        let health = tenants.get(&tenant);
        PluginStatus {
            status: if health.is_some_and(|h| h.suspended) {
                "suspended"
            } else {
                "active"
            },
            consecutive_failures: health.map_or(0, |h| h.failures),
            last_error: health.and_then(|h| h.last_error.clone()),
        }
    }

    /// Lifts a suspension and forgets the failures.
    pub fn resume(&self, tenant: TenantId) {
        self.lock().remove(&tenant);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<TenantId, Health>> {
        // Counters updated in single statements: a panic cannot leave them torn.
        self.tenants.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suspends_after_failures_in_a_row_and_resumes() {
        let health = PluginHealth::default();
        assert!(!health.record(1, Some("trap")));
        assert!(!health.record(1, None), "a success resets the count");
        for _ in 1..SUSPEND_AFTER {
            assert!(!health.record(1, Some("trap")));
        }
        assert!(health.suspended(1).is_none());
        assert!(health.record(1, Some("timeout")));
        assert!(health.suspended(1).unwrap().contains("timeout"));
        assert_eq!(health.status(1).status, "suspended");
        assert_eq!(health.status(2).status, "active");
        health.resume(1);
        assert!(health.suspended(1).is_none());
    }
}
