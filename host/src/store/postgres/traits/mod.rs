//! The store traits on [`PostgresStore`]: each method takes a pooled connection (or
//! a transaction) and runs the statements of its module.

use std::collections::BTreeMap;

use super::{
    ANALYZE_AFTER, PostgresStore, Statements, accounts, apply, catalog, history, tasks, unsigned,
    users,
};
use crate::plugin::model::TenantId;
use crate::store::{
    Account, AccountId, AccountStore, Assignment, AuditEvent, AuditQuery, Avatar, CatalogStore,
    Change, ChangeCause, Dialect, HistoryLimits, LdapUserRef, Lease, NewAccount, NewPersonalToken,
    NewPlugin, PersonalToken, PluginDeletion, PluginId, SessionFacts, StoreError, StoredPlugin,
    StoredTenant, StoredUser, SyncRunRecord, SyncState, Task, TaskId, TaskState, TaskStore,
    Timestamp, UserId, UserIdentifiers, UserQuery, UserStore,
};

mod account_store;
mod task_store;

impl UserStore for PostgresStore {
    fn users_by_ldap_ids(
        &self,
        tenant: TenantId,
        ldap_ids: &[String],
    ) -> Result<Vec<StoredUser>, StoreError> {
        if ldap_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.with(async |conn| users::by_ldap_ids(conn, tenant, ldap_ids).await)
    }

    fn known_by_ldap_ids(
        &self,
        tenant: TenantId,
        ldap_ids: &[String],
    ) -> Result<Vec<LdapUserRef>, StoreError> {
        if ldap_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.with(async |conn| users::known_by_ldap_ids(conn, tenant, ldap_ids).await)
    }

    fn users_by_usernames(
        &self,
        tenant: TenantId,
        usernames: &[String],
    ) -> Result<Vec<StoredUser>, StoreError> {
        if usernames.is_empty() {
            return Ok(Vec::new());
        }
        self.with(async |conn| users::by_usernames(conn, tenant, usernames).await)
    }

    fn avatar(&self, tenant: TenantId, id: UserId) -> Result<Option<Avatar>, StoreError> {
        self.with(async |conn| users::avatar(conn, tenant, id).await)
    }

    fn find_users(
        &self,
        tenant: TenantId,
        identifiers: &UserIdentifiers,
    ) -> Result<Vec<StoredUser>, StoreError> {
        self.with(async |conn| users::find(conn, tenant, identifiers).await)
    }

    fn ldap_user_page(
        &self,
        tenant: TenantId,
        after: UserId,
        limit: u32,
    ) -> Result<Vec<LdapUserRef>, StoreError> {
        self.with(async |conn| users::ldap_page(conn, tenant, after, limit).await)
    }

    fn user(&self, tenant: TenantId, id: UserId) -> Result<Option<StoredUser>, StoreError> {
        self.with(async |conn| users::one(conn, tenant, id).await)
    }

    fn list_users(
        &self,
        tenant: TenantId,
        query: &UserQuery,
    ) -> Result<Vec<StoredUser>, StoreError> {
        self.with(async |conn| users::list(conn, tenant, query).await)
    }

    fn count_users(&self, tenant: TenantId) -> Result<u64, StoreError> {
        self.with(async |conn| users::count(conn, tenant).await)
    }

    fn count_ldap_users(&self, tenant: TenantId) -> Result<u64, StoreError> {
        self.with(async |conn| users::count_ldap(conn, tenant).await)
    }

    fn apply(
        &self,
        tenant: TenantId,
        changes: &[Change],
        cause: &ChangeCause,
    ) -> Result<Vec<UserId>, StoreError> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        let ids = self.transaction(async |tx| apply::apply(tx, tenant, changes, cause).await)?;
        let rows = changes
            .iter()
            .filter(|change| matches!(change, Change::Create { .. } | Change::Delete { .. }))
            .count();
        self.inner
            .written
            .fetch_add(rows as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(ids)
    }

    fn concurrent_applies(&self) -> usize {
        // Two: a sync's batches then write with two server processes, which is where
        // a first import spends its time, and leave the pool's other connections to
        // other tenants and the API.
        (self.inner.max / 4).clamp(1, 2)
    }

    fn audit_events(
        &self,
        tenant: TenantId,
        query: &AuditQuery,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        self.with(async |conn| history::events(conn, tenant, query).await)
    }

    fn sync_state(&self, tenant: TenantId) -> Result<SyncState, StoreError> {
        self.with(async |conn| history::sync_state(conn, tenant).await)
    }

    fn set_sync_state(&self, tenant: TenantId, state: &SyncState) -> Result<(), StoreError> {
        self.with(async |conn| history::set_sync_state(conn, tenant, state).await)
    }

    fn record_sync_run(&self, tenant: TenantId, run: &SyncRunRecord) -> Result<i64, StoreError> {
        let id = self.with(async |conn| history::record_run(conn, tenant, run).await)?;
        let written = &self.inner.written;
        if written.load(std::sync::atomic::Ordering::Relaxed) >= ANALYZE_AFTER {
            written.store(0, std::sync::atomic::Ordering::Relaxed);
            let analyzed = self.with(async |conn| {
                conn.client
                    // The columns the sync's lookups and pruning filter on: the
                    // whole table's (the JSONB values') would cost a second per
                    // 100,000 users, on the sync's time.
                    .batch_execute(
                        "ANALYZE users (tenant_id, ldap_id, username, source), \
                         audit_events (tenant_id)",
                    )
                    .await
                    .map_err(StoreError::from)
            });
            if let Err(err) = analyzed {
                tracing::warn!(%err, "cannot refresh the store's statistics; autovacuum will");
            }
        }
        Ok(id)
    }

    fn sync_runs(&self, tenant: TenantId, limit: u32) -> Result<Vec<SyncRunRecord>, StoreError> {
        self.with(async |conn| history::runs(conn, tenant, limit).await)
    }

    fn attribute_bytes(&self, tenant: TenantId) -> Result<u64, StoreError> {
        self.with(async |conn| history::attribute_bytes(conn, tenant).await)
    }

    fn prune_history(&self, tenant: TenantId, limits: &HistoryLimits) -> Result<u64, StoreError> {
        self.with(async |conn| history::prune(conn, tenant, limits).await)
    }
}

impl CatalogStore for PostgresStore {
    fn record_plugin_result(
        &self,
        tenant: TenantId,
        failure: Option<&str>,
        suspend_after: u32,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.with(async |conn| {
            catalog::record_plugin_result(conn, tenant, failure, suspend_after, now).await
        })
    }

    fn plugin_health(
        &self,
        tenant: TenantId,
    ) -> Result<crate::store::PluginHealthRecord, StoreError> {
        self.with(async |conn| catalog::plugin_health(conn, tenant).await)
    }

    fn resume_plugin(&self, tenant: TenantId) -> Result<(), StoreError> {
        self.with(async |conn| {
            conn.execute(
                "DELETE FROM plugin_health WHERE tenant_id = $1",
                &[&crate::store::tenant_key(tenant)],
            )
            .await
            .map(drop)
        })
    }

    fn catalog_generation(&self) -> Result<i64, StoreError> {
        self.with(async |conn| {
            let row = conn
                .query_opt(
                    "SELECT value FROM store_generations WHERE name = 'catalog'",
                    &[],
                )
                .await?
                .ok_or(StoreError::Corrupt {
                    table: "store_generations",
                    column: "value",
                    reason: "the catalog's generation is missing".into(),
                })?;
            Ok(row.try_get(0)?)
        })
    }

    fn add_plugin(
        &self,
        plugin: &NewPlugin<'_>,
        now: Timestamp,
    ) -> Result<StoredPlugin, StoreError> {
        self.transaction(async |tx| catalog::add_plugin(tx, plugin, now).await)
    }

    fn delete_plugin(&self, id: PluginId) -> Result<PluginDeletion, StoreError> {
        self.transaction(async |tx| catalog::delete_plugin(tx, id).await)
    }

    fn list_plugins(&self, tenant: Option<TenantId>) -> Result<Vec<StoredPlugin>, StoreError> {
        self.with(async |conn| catalog::list_plugins(conn, tenant).await)
    }

    fn plugin(&self, id: PluginId) -> Result<Option<StoredPlugin>, StoreError> {
        self.with(async |conn| catalog::plugin(conn, id).await)
    }

    fn plugin_component(&self, id: PluginId) -> Result<Option<Vec<u8>>, StoreError> {
        self.with(async |conn| {
            let row = conn
                .query_opt("SELECT component FROM plugins WHERE id = $1", &[&id])
                .await?;
            Ok(row.map(|row| row.try_get(0)).transpose()?)
        })
    }

    fn assign_plugin(
        &self,
        tenant: TenantId,
        plugin: PluginId,
        settings: &BTreeMap<String, String>,
        by: Option<AccountId>,
        reason: &str,
        now: Timestamp,
    ) -> Result<Assignment, StoreError> {
        self.with(async |conn| {
            catalog::assign(conn, tenant, plugin, settings, by, reason, now).await
        })
    }

    fn assignments(&self, tenant: TenantId) -> Result<Vec<Assignment>, StoreError> {
        self.with(async |conn| catalog::assignments(conn, tenant).await)
    }

    fn api_tenants(&self) -> Result<Vec<StoredTenant>, StoreError> {
        self.with(async |conn| catalog::api_tenants(conn).await)
    }

    fn put_tenant(&self, id: TenantId, config: &str, now: Timestamp) -> Result<(), StoreError> {
        self.with(async |conn| {
            conn.execute(
                "INSERT INTO tenants (id, config, created_at, updated_at) VALUES ($1, $2, $3, $3) \
                 ON CONFLICT (id) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at",
                &[&crate::store::tenant_key(id), &config, &now],
            )
            .await
            .map(drop)
        })
    }

    fn delete_tenant(&self, id: TenantId) -> Result<bool, StoreError> {
        self.transaction(async |tx| catalog::delete_tenant(tx, id).await)
    }

    fn schedules(&self) -> Result<BTreeMap<TenantId, Option<u64>>, StoreError> {
        self.with(async |conn| catalog::schedules(conn).await)
    }

    fn set_schedule(
        &self,
        tenant: TenantId,
        interval_secs: Option<u64>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let interval = interval_secs.map(|secs| i64::try_from(secs).unwrap_or(i64::MAX));
        self.with(async |conn| {
            conn.execute(
                "INSERT INTO schedules (tenant_id, interval_secs, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant_id) DO UPDATE SET interval_secs = excluded.interval_secs, \
                 updated_at = excluded.updated_at",
                &[&crate::store::tenant_key(tenant), &interval, &now],
            )
            .await
            .map(drop)
        })
    }
}
