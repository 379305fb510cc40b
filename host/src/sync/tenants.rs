//! The tenants a server knows: those of the configuration file (read-only through the
//! API) and those created through the API (kept in the store), with the schedule of
//! their background syncs.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use crate::config::TenantConfig;
use crate::plugin::model::TenantId;

/// Where a tenant's settings live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantSource {
    /// The configuration file: changed by editing it.
    File,
    /// The store: changed through the admin API.
    Api,
}

impl TenantSource {
    /// Name shown by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            TenantSource::File => "file",
            TenantSource::Api => "api",
        }
    }
}

/// A tenant and where it comes from.
#[derive(Debug, Clone)]
pub struct TenantEntry {
    /// Its settings.
    pub config: Arc<TenantConfig>,
    /// Where they live.
    pub source: TenantSource,
}

/// The tenants, changeable while the server runs.
#[derive(Debug, Default)]
pub struct Tenants {
    entries: RwLock<BTreeMap<TenantId, TenantEntry>>,
    /// Schedule overrides set through the API (`None`: no background syncs).
    schedules: RwLock<BTreeMap<TenantId, Option<u64>>>,
}

impl Tenants {
    /// Tenants from `file`, then `api` ones whose ids the file does not use (returned
    /// as conflicts), with schedule overrides.
    pub fn new(
        file: impl IntoIterator<Item = TenantConfig>,
        api: impl IntoIterator<Item = TenantConfig>,
        schedules: BTreeMap<TenantId, Option<u64>>,
    ) -> (Self, Vec<TenantId>) {
        let mut entries = BTreeMap::new();
        for tenant in file {
            entries.insert(
                tenant.id,
                TenantEntry {
                    config: Arc::new(tenant),
                    source: TenantSource::File,
                },
            );
        }
        let mut conflicts = Vec::new();
        for tenant in api {
            if entries.contains_key(&tenant.id) {
                conflicts.push(tenant.id);
                continue;
            }
            entries.insert(
                tenant.id,
                TenantEntry {
                    config: Arc::new(tenant),
                    source: TenantSource::Api,
                },
            );
        }
        (
            Self {
                entries: RwLock::new(entries),
                schedules: RwLock::new(schedules),
            },
            conflicts,
        )
    }

    /// One tenant.
    pub fn get(&self, id: TenantId) -> Option<TenantEntry> {
        self.read().get(&id).cloned()
    }

    /// Every tenant, ordered by id.
    pub fn all(&self) -> Vec<TenantEntry> {
        self.read().values().cloned().collect()
    }

    /// Takes `fresh`'s tenants and schedules in place of these (reloaded from the
    /// store after another replica changed them).
    pub fn replace_with(&self, fresh: Tenants) {
        let Tenants { entries, schedules } = fresh;
        *self.entries.write().unwrap_or_else(PoisonError::into_inner) =
            entries.into_inner().unwrap_or_else(PoisonError::into_inner);
        *self
            .schedules
            .write()
            .unwrap_or_else(PoisonError::into_inner) = schedules
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
    }

    /// Adds or replaces an API tenant.
    pub fn put(&self, tenant: TenantConfig) {
        self.entries
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                tenant.id,
                TenantEntry {
                    config: Arc::new(tenant),
                    source: TenantSource::Api,
                },
            );
    }

    /// Puts back an entry [`Self::remove`] returned (a deletion that failed).
    pub fn restore(&self, entry: TenantEntry) {
        self.entries
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(entry.config.id, entry);
    }

    /// Removes a tenant and its schedule override.
    pub fn remove(&self, id: TenantId) -> Option<TenantEntry> {
        self.schedules
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        self.entries
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id)
    }

    /// Seconds between the tenant's background syncs, and whether an override set
    /// them (`api`) or the tenant's settings (`settings`).
    pub fn interval(&self, id: TenantId) -> (Option<u64>, &'static str) {
        if let Some(interval) = self
            .schedules
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
        {
            return (*interval, "api");
        }
        let interval = self
            .get(id)
            .and_then(|entry| entry.config.sync_interval_secs);
        (interval.filter(|&secs| secs > 0), "settings")
    }

    /// Overrides the tenant's schedule.
    pub fn set_interval(&self, id: TenantId, interval: Option<u64>) {
        self.schedules
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, interval);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<TenantId, TenantEntry>> {
        // Writes replace whole entries: a panic cannot leave the map torn.
        self.entries.read().unwrap_or_else(PoisonError::into_inner)
    }
}
