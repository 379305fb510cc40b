//! Plugins, assignments, API tenants and schedules.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, Row};

use super::{tenant_from_key, tenant_key};
use crate::plugin::model::TenantId;
use crate::store::{
    AccountId, Assignment, NewPlugin, PluginDeletion, PluginId, StoreError, StoredPlugin,
    StoredTenant, Timestamp,
};

const PLUGIN_COLUMNS: &str =
    "id, sha256, tenant_id, label, name, version, size, uploaded_by, created_at";

fn plugin_row(row: &Row<'_>) -> rusqlite::Result<StoredPlugin> {
    let tenant: Option<i64> = row.get(2)?;
    let size: i64 = row.get(6)?;
    Ok(StoredPlugin {
        id: row.get(0)?,
        sha256: row.get(1)?,
        tenant: tenant.map(tenant_from_key),
        label: row.get(3)?,
        name: row.get(4)?,
        version: row.get(5)?,
        size: u64::try_from(size).unwrap_or(0),
        uploaded_by: row.get(7)?,
        created_at: row.get(8)?,
    })
}

pub(super) fn add_plugin(
    conn: &mut Connection,
    plugin: &NewPlugin<'_>,
    now: Timestamp,
) -> Result<StoredPlugin, StoreError> {
    let owner = plugin.tenant.map(tenant_key);
    // The quota is read and the plugin added in one write transaction: two uploads
    // at once cannot both take the last place.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let existing = tx
        .prepare_cached(&format!(
            "SELECT {PLUGIN_COLUMNS} FROM plugins WHERE sha256 = ?1 AND coalesce(tenant_id, -1) = coalesce(?2, -1)"
        ))?
        .query_row((&plugin.sha256, owner), plugin_row)
        .optional()?;
    if let Some(existing) = existing {
        return Ok(existing);
    }
    let size = u64::try_from(plugin.component.len()).unwrap_or(u64::MAX);
    if let (Some(quota), Some(owner)) = (&plugin.quota, owner) {
        let (count, bytes): (i64, i64) = tx
            .prepare_cached(
                "SELECT count(*), coalesce(sum(size), 0) FROM plugins WHERE tenant_id = ?1",
            )?
            .query_row([owner], |row| Ok((row.get(0)?, row.get(1)?)))?;
        let count = u64::try_from(count).unwrap_or(0);
        let bytes = u64::try_from(bytes).unwrap_or(0);
        if count >= quota.max_count {
            return Err(StoreError::OverQuota {
                quota: "tenant_plugins",
                message: format!(
                    "The tenant has {count} plugins, as many as its quota allows ({}); delete one it no longer uses",
                    quota.max_count
                ),
            });
        }
        if bytes.saturating_add(size) > quota.max_bytes {
            return Err(StoreError::OverQuota {
                quota: "tenant_plugin_bytes",
                message: format!(
                    "The tenant's plugins take {bytes} bytes; this one's {size} would pass its quota of {}; delete one it no longer uses",
                    quota.max_bytes
                ),
            });
        }
    }
    let stored = {
        let mut stmt = tx.prepare_cached(&format!(
            "INSERT INTO plugins (sha256, tenant_id, label, name, version, size, component, uploaded_by, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) RETURNING {PLUGIN_COLUMNS}"
        ))?;
        super::insert_returning(
            &mut stmt,
            (
                &plugin.sha256,
                owner,
                &plugin.label,
                &plugin.name,
                &plugin.version,
                i64::try_from(size).unwrap_or(i64::MAX),
                plugin.component,
                plugin.uploaded_by,
                now,
            ),
            plugin_row,
        )?
    };
    tx.commit()?;
    Ok(stored)
}

/// Deletes plugin `id` with the versions (assignments) that name it, unless it is a
/// tenant's current plugin: then the tenant's id.
pub(super) fn delete_plugin(
    conn: &mut Connection,
    id: PluginId,
) -> Result<PluginDeletion, StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let current: Option<i64> = tx
        .prepare_cached(
            "SELECT tenant_id FROM tenant_plugins AS a WHERE plugin_id = ?1 \
             AND id = (SELECT max(id) FROM tenant_plugins WHERE tenant_id = a.tenant_id) LIMIT 1",
        )?
        .query_row([id], |row| row.get(0))
        .optional()?;
    if let Some(tenant) = current {
        return Ok(PluginDeletion::InUse(tenant_from_key(tenant)));
    }
    tx.execute("DELETE FROM tenant_plugins WHERE plugin_id = ?1", [id])?;
    let deleted = tx.execute("DELETE FROM plugins WHERE id = ?1", [id])? > 0;
    tx.commit()?;
    Ok(if deleted {
        PluginDeletion::Deleted
    } else {
        PluginDeletion::NotFound
    })
}

pub(super) fn list_plugins(
    conn: &Connection,
    tenant: Option<TenantId>,
) -> Result<Vec<StoredPlugin>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {PLUGIN_COLUMNS} FROM plugins \
         WHERE ?1 IS NULL OR tenant_id IS NULL OR tenant_id = ?1 ORDER BY id"
    ))?;
    let rows = stmt.query_map([tenant.map(tenant_key)], plugin_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn plugin(conn: &Connection, id: PluginId) -> Result<Option<StoredPlugin>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {PLUGIN_COLUMNS} FROM plugins WHERE id = ?1"
    ))?;
    Ok(stmt.query_row([id], plugin_row).optional()?)
}

pub(super) fn plugin_component(
    conn: &Connection,
    id: PluginId,
) -> Result<Option<Vec<u8>>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT component FROM plugins WHERE id = ?1")?;
    Ok(stmt.query_row([id], |row| row.get(0)).optional()?)
}

type RawAssignment = (Assignment, String);

fn assignment_row(row: &Row<'_>) -> rusqlite::Result<RawAssignment> {
    let tenant: i64 = row.get(1)?;
    Ok((
        Assignment {
            id: row.get(0)?,
            tenant: tenant_from_key(tenant),
            plugin: row.get(2)?,
            settings: BTreeMap::new(),
            assigned_by: row.get(4)?,
            assigned_at: row.get(5)?,
            reason: row.get(6)?,
        },
        row.get(3)?,
    ))
}

fn finish_assignment((mut assignment, settings): RawAssignment) -> Result<Assignment, StoreError> {
    assignment.settings = serde_json::from_str(&settings).map_err(|err| StoreError::Corrupt {
        table: "tenant_plugins",
        column: "settings",
        reason: err.to_string(),
    })?;
    Ok(assignment)
}

const ASSIGNMENT_COLUMNS: &str =
    "id, tenant_id, plugin_id, settings, assigned_by, assigned_at, reason";

pub(super) fn assign(
    conn: &Connection,
    tenant: TenantId,
    plugin: PluginId,
    settings: &BTreeMap<String, String>,
    by: Option<AccountId>,
    reason: &str,
    now: Timestamp,
) -> Result<Assignment, StoreError> {
    let settings = serde_json::to_string(settings).unwrap_or_else(|_| "{}".into());
    let mut stmt = conn.prepare_cached(&format!(
        "INSERT INTO tenant_plugins (tenant_id, plugin_id, settings, assigned_by, assigned_at, reason) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING {ASSIGNMENT_COLUMNS}"
    ))?;
    finish_assignment(super::insert_returning(
        &mut stmt,
        (tenant_key(tenant), plugin, settings, by, now, reason),
        assignment_row,
    )?)
}

pub(super) fn assignments(
    conn: &Connection,
    tenant: TenantId,
) -> Result<Vec<Assignment>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ASSIGNMENT_COLUMNS} FROM tenant_plugins WHERE tenant_id = ?1 ORDER BY id DESC"
    ))?;
    let rows = stmt.query_map([tenant_key(tenant)], assignment_row)?;
    rows.map(|row| finish_assignment(row?)).collect()
}

pub(super) fn api_tenants(conn: &Connection) -> Result<Vec<StoredTenant>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT id, config, created_at, updated_at FROM tenants ORDER BY id")?;
    let rows = stmt.query_map([], |row| {
        let id: i64 = row.get(0)?;
        Ok(StoredTenant {
            id: tenant_from_key(id),
            config: row.get(1)?,
            created_at: row.get(2)?,
            updated_at: row.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn put_tenant(
    conn: &Connection,
    id: TenantId,
    config: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO tenants (id, config, created_at, updated_at) VALUES (?1, ?2, ?3, ?3) \
         ON CONFLICT (id) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at",
        (tenant_key(id), config, now),
    )?;
    Ok(())
}

/// Deletes an API tenant with its schedule and plugin assignments, in one transaction:
/// a tenant created again with the same id starts afresh.
pub(super) fn delete_tenant(conn: &mut Connection, id: TenantId) -> Result<bool, StoreError> {
    let tx = conn.transaction()?;
    let key = tenant_key(id);
    let existed = tx.execute("DELETE FROM tenants WHERE id = ?1", [key])? > 0;
    if existed {
        // Children before parents: sessions, codes and verifications reference
        // accounts; assignments reference plugins.
        for statement in [
            "DELETE FROM schedules WHERE tenant_id = ?1",
            "DELETE FROM tenant_plugins WHERE tenant_id = ?1",
            "DELETE FROM plugins WHERE tenant_id = ?1",
            "DELETE FROM user_attributes WHERE tenant_id = ?1",
            "DELETE FROM users WHERE tenant_id = ?1",
            "DELETE FROM tenant_usage WHERE tenant_id = ?1",
            "DELETE FROM audit_events WHERE tenant_id = ?1",
            "DELETE FROM sync_runs WHERE tenant_id = ?1",
            "DELETE FROM sync_state WHERE tenant_id = ?1",
            "DELETE FROM tasks WHERE tenant_id = ?1",
            "DELETE FROM tenant_runs WHERE tenant_id = ?1",
            "DELETE FROM schedule_fires WHERE tenant_id = ?1",
            "DELETE FROM plugin_health WHERE tenant_id = ?1",
            "DELETE FROM watchers WHERE tenant_id = ?1",
            "DELETE FROM sessions WHERE account_id IN (SELECT id FROM accounts WHERE tenant_id = ?1)",
            "DELETE FROM email_codes WHERE account_id IN (SELECT id FROM accounts WHERE tenant_id = ?1)",
            "DELETE FROM email_verifications WHERE account_id IN (SELECT id FROM accounts WHERE tenant_id = ?1)",
            "DELETE FROM accounts WHERE tenant_id = ?1",
        ] {
            tx.execute(statement, [key])?;
        }
    }
    tx.commit()?;
    Ok(existed)
}

pub(super) fn schedules(conn: &Connection) -> Result<BTreeMap<TenantId, Option<u64>>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT tenant_id, interval_secs FROM schedules")?;
    let rows = stmt.query_map([], |row| {
        let id: i64 = row.get(0)?;
        let secs: Option<i64> = row.get(1)?;
        Ok((
            tenant_from_key(id),
            secs.map(|s| u64::try_from(s).unwrap_or(0)),
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn set_schedule(
    conn: &Connection,
    tenant: TenantId,
    interval_secs: Option<u64>,
    now: Timestamp,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO schedules (tenant_id, interval_secs, updated_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (tenant_id) DO UPDATE SET interval_secs = excluded.interval_secs, updated_at = excluded.updated_at",
        (
            tenant_key(tenant),
            interval_secs.map(|s| i64::try_from(s).unwrap_or(i64::MAX)),
            now,
        ),
    )?;
    Ok(())
}

pub(super) fn record_plugin_result(
    conn: &Connection,
    tenant: TenantId,
    failure: Option<&str>,
    suspend_after: u32,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let key = tenant_key(tenant);
    let Some(message) = failure else {
        conn.execute("DELETE FROM plugin_health WHERE tenant_id = ?1", [key])?;
        return Ok(false);
    };
    // One statement: the count moves on atomically, and the failure that reaches the
    // bound is the only one that sees it reached.
    let (failures, suspended): (u32, bool) = conn
        .prepare_cached(
            "INSERT INTO plugin_health (tenant_id, failures, last_error, suspended, updated_at) \
             VALUES (?1, 1, ?2, ?3 <= 1, ?4) ON CONFLICT (tenant_id) DO UPDATE SET \
             failures = failures + 1, last_error = excluded.last_error, \
             suspended = suspended OR failures + 1 >= ?3, updated_at = excluded.updated_at \
             RETURNING failures, suspended",
        )?
        .query_row((key, message, suspend_after, now), |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?;
    Ok(suspended && failures == suspend_after.max(1))
}

pub(super) fn plugin_health(
    conn: &Connection,
    tenant: TenantId,
) -> Result<crate::store::PluginHealthRecord, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT failures, last_error, suspended FROM plugin_health WHERE tenant_id = ?1",
        )?
        .query_row([tenant_key(tenant)], |row| {
            Ok(crate::store::PluginHealthRecord {
                failures: row.get(0)?,
                last_error: row.get(1)?,
                suspended: row.get(2)?,
            })
        })
        .optional()?
        .unwrap_or_default())
}
