//! What the admin API manages besides users: uploaded plugins, their assignments to
//! tenants (the versions a tenant had, for rollback), tenants created through the
//! API, and background-sync schedules.

use std::collections::BTreeMap;

use super::{AccountId, StoreError, Timestamp};
use crate::plugin::model::TenantId;

/// An uploaded plugin's id.
pub type PluginId = i64;

/// An uploaded plugin, without its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPlugin {
    /// Id.
    pub id: PluginId,
    /// Hex SHA-256 of the component.
    pub sha256: String,
    /// `None`: visible to every tenant; else the only tenant that sees it.
    pub tenant: Option<TenantId>,
    /// The name it was uploaded under.
    pub label: String,
    /// The plugin's own name.
    pub name: String,
    /// The plugin's own version.
    pub version: String,
    /// Bytes.
    pub size: u64,
    /// Who uploaded it.
    pub uploaded_by: Option<AccountId>,
    /// When.
    pub created_at: Timestamp,
}

/// A plugin to store.
#[derive(Debug, Clone)]
pub struct NewPlugin<'a> {
    /// Hex SHA-256 of `component`.
    pub sha256: String,
    /// Owner tenant, or `None` for all.
    pub tenant: Option<TenantId>,
    /// Upload name.
    pub label: String,
    /// The plugin's own name.
    pub name: String,
    /// The plugin's own version.
    pub version: String,
    /// The component.
    pub component: &'a [u8],
    /// Who uploads it.
    pub uploaded_by: Option<AccountId>,
    /// The owner tenant's plugin quota, checked in the same transaction as the
    /// insert ([`StoreError::OverQuota`]); `None`: unbounded (system uploads).
    pub quota: Option<PluginQuota>,
}

/// How many plugins, and how many bytes of them, a tenant may own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginQuota {
    /// Plugins.
    pub max_count: u64,
    /// Bytes of their components together.
    pub max_bytes: u64,
}

/// What [`CatalogStore::delete_plugin`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginDeletion {
    /// Deleted, with the versions naming it.
    Deleted,
    /// No such plugin.
    NotFound,
    /// Kept: it is this tenant's current plugin.
    InUse(TenantId),
}

/// One assignment of a plugin to a tenant: a version in the tenant's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// Id (increasing: the newest is current).
    pub id: i64,
    /// The tenant.
    pub tenant: TenantId,
    /// The plugin.
    pub plugin: PluginId,
    /// Its settings for the tenant.
    pub settings: BTreeMap<String, String>,
    /// Who assigned it.
    pub assigned_by: Option<AccountId>,
    /// When.
    pub assigned_at: Timestamp,
    /// `assign` or `rollback`.
    pub reason: String,
}

/// A tenant created through the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTenant {
    /// The tenant id.
    pub id: TenantId,
    /// Its settings as JSON (the configuration file's schema).
    pub config: String,
    /// Created.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// A tenant's plugin health as stored: failed syncs in a row caused by the plugin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginHealthRecord {
    /// Failed syncs in a row.
    pub failures: u32,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// Whether the plugin is suspended.
    pub suspended: bool,
}

/// Plugins, assignments, API tenants and schedules.
pub trait CatalogStore: Send + Sync {
    /// Records a sync's end for `tenant`'s plugin: `Some(message)` when the plugin
    /// failed it (one more failure in a row; suspended at `suspend_after`), `None` when
    /// it did not (healthy again). True when this failure suspended the plugin: once,
    /// whichever replica recorded it.
    fn record_plugin_result(
        &self,
        tenant: TenantId,
        failure: Option<&str>,
        suspend_after: u32,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    /// The health of `tenant`'s plugin (the default when healthy).
    fn plugin_health(&self, tenant: TenantId) -> Result<PluginHealthRecord, StoreError>;

    /// Lifts a suspension and forgets the failures of `tenant`'s plugin.
    fn resume_plugin(&self, tenant: TenantId) -> Result<(), StoreError>;

    /// A number that moves on with every change of tenants, schedules or plugin
    /// assignments, whoever made it: a replica that sees it move reloads them.
    fn catalog_generation(&self) -> Result<i64, StoreError>;

    /// Stores a plugin; an identical component of the same owner is returned as is.
    fn add_plugin(
        &self,
        plugin: &NewPlugin<'_>,
        now: Timestamp,
    ) -> Result<StoredPlugin, StoreError>;

    /// Deletes a plugin that is no tenant's current one, with the versions naming it
    /// (they can no longer be rolled back to).
    fn delete_plugin(&self, id: PluginId) -> Result<PluginDeletion, StoreError>;

    /// Plugins visible to `tenant` (its own and system-wide ones); all when `None`.
    fn list_plugins(&self, tenant: Option<TenantId>) -> Result<Vec<StoredPlugin>, StoreError>;

    /// One plugin.
    fn plugin(&self, id: PluginId) -> Result<Option<StoredPlugin>, StoreError>;

    /// A plugin's component bytes.
    fn plugin_component(&self, id: PluginId) -> Result<Option<Vec<u8>>, StoreError>;

    /// Records an assignment; it becomes the tenant's current one.
    fn assign_plugin(
        &self,
        tenant: TenantId,
        plugin: PluginId,
        settings: &BTreeMap<String, String>,
        by: Option<AccountId>,
        reason: &str,
        now: Timestamp,
    ) -> Result<Assignment, StoreError>;

    /// The tenant's assignments, newest (current) first.
    fn assignments(&self, tenant: TenantId) -> Result<Vec<Assignment>, StoreError>;

    /// Tenants created through the API.
    fn api_tenants(&self) -> Result<Vec<StoredTenant>, StoreError>;

    /// Creates or replaces an API tenant.
    fn put_tenant(&self, id: TenantId, config: &str, now: Timestamp) -> Result<(), StoreError>;

    /// Deletes an API tenant and everything that belonged to it, in one transaction:
    /// its schedule, plugins and assignments, users and their values, audit events,
    /// runs, sync state and tasks, and its accounts with their sessions and codes. A
    /// tenant created later with the same id starts empty. Whether it existed.
    fn delete_tenant(&self, id: TenantId) -> Result<bool, StoreError>;

    /// Schedule overrides: tenant → interval (`None`: no background syncs).
    fn schedules(&self) -> Result<BTreeMap<TenantId, Option<u64>>, StoreError>;

    /// Sets a tenant's schedule override.
    fn set_schedule(
        &self,
        tenant: TenantId,
        interval_secs: Option<u64>,
        now: Timestamp,
    ) -> Result<(), StoreError>;
}
