//! Plugins, assignments, API tenants and schedules.

use std::collections::BTreeMap;

use tokio_postgres::Row;

use super::{Conn, Statements, Tx, unsigned};
use crate::plugin::model::TenantId;
use crate::store::{
    AccountId, Assignment, NewPlugin, PluginDeletion, PluginId, StoreError, StoredPlugin,
    StoredTenant, Timestamp, tenant_from_key, tenant_key,
};

const PLUGIN_COLUMNS: &str =
    "id, sha256, tenant_id, label, name, version, size, uploaded_by, created_at";

const ASSIGNMENT_COLUMNS: &str =
    "id, tenant_id, plugin_id, settings, assigned_by, assigned_at, reason";

/// The advisory lock of a tenant's plugin quota (added to its key).
const PLUGIN_QUOTA_LOCK: i64 = 0x706c_7567_696e; // "plugin"

fn plugin_row(row: &Row) -> Result<StoredPlugin, StoreError> {
    let tenant: Option<i64> = row.try_get(2)?;
    Ok(StoredPlugin {
        id: row.try_get(0)?,
        sha256: row.try_get(1)?,
        tenant: tenant.map(tenant_from_key),
        label: row.try_get(3)?,
        name: row.try_get(4)?,
        version: row.try_get(5)?,
        size: unsigned(row.try_get(6)?),
        uploaded_by: row.try_get(7)?,
        created_at: row.try_get(8)?,
    })
}

pub(super) async fn add_plugin(
    tx: &mut Tx<'_>,
    plugin: &NewPlugin<'_>,
    now: Timestamp,
) -> Result<StoredPlugin, StoreError> {
    let owner = plugin.tenant.map(tenant_key);
    // Uploads of one owner queue here, so that two at once cannot both take the last
    // place of its quota, nor both insert the same component.
    tx.lock(PLUGIN_QUOTA_LOCK.wrapping_add(owner.unwrap_or(-1)))
        .await?;
    let existing = tx
        .query_opt(
            &format!(
                "SELECT {PLUGIN_COLUMNS} FROM plugins WHERE sha256 = $1 \
                 AND coalesce(tenant_id, -1) = coalesce($2::bigint, -1)"
            ),
            &[&plugin.sha256, &owner],
        )
        .await?;
    if let Some(existing) = existing {
        return plugin_row(&existing);
    }
    let size = u64::try_from(plugin.component.len()).unwrap_or(u64::MAX);
    if let (Some(quota), Some(owner)) = (&plugin.quota, owner) {
        let row = tx
            .query_one(
                "SELECT count(*), coalesce(sum(size), 0)::bigint FROM plugins WHERE tenant_id = $1",
                &[&owner],
            )
            .await?;
        let count = unsigned(row.try_get(0)?);
        let bytes = unsigned(row.try_get(1)?);
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
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO plugins (sha256, tenant_id, label, name, version, size, component, \
                 uploaded_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 RETURNING {PLUGIN_COLUMNS}"
            ),
            &[
                &plugin.sha256,
                &owner,
                &plugin.label,
                &plugin.name,
                &plugin.version,
                &i64::try_from(size).unwrap_or(i64::MAX),
                &plugin.component,
                &plugin.uploaded_by,
                &now,
            ],
        )
        .await?;
    plugin_row(&row)
}

/// Deletes plugin `id` with the versions (assignments) that name it, unless it is a
/// tenant's current plugin: then the tenant's id.
pub(super) async fn delete_plugin(
    tx: &mut Tx<'_>,
    id: PluginId,
) -> Result<PluginDeletion, StoreError> {
    // Locked first: an assignment made meanwhile waits for the deletion's end.
    let locked = tx
        .query_opt("SELECT id FROM plugins WHERE id = $1 FOR UPDATE", &[&id])
        .await?;
    if locked.is_none() {
        return Ok(PluginDeletion::NotFound);
    }
    let current = tx
        .query_opt(
            "SELECT tenant_id FROM tenant_plugins AS a WHERE plugin_id = $1 \
             AND id = (SELECT max(id) FROM tenant_plugins WHERE tenant_id = a.tenant_id) LIMIT 1",
            &[&id],
        )
        .await?;
    if let Some(row) = current {
        return Ok(PluginDeletion::InUse(tenant_from_key(row.try_get(0)?)));
    }
    tx.execute("DELETE FROM tenant_plugins WHERE plugin_id = $1", &[&id])
        .await?;
    let deleted = tx
        .execute("DELETE FROM plugins WHERE id = $1", &[&id])
        .await?
        > 0;
    Ok(if deleted {
        PluginDeletion::Deleted
    } else {
        PluginDeletion::NotFound
    })
}

pub(super) async fn list_plugins(
    conn: &mut Conn,
    tenant: Option<TenantId>,
) -> Result<Vec<StoredPlugin>, StoreError> {
    let sql = format!(
        "SELECT {PLUGIN_COLUMNS} FROM plugins \
         WHERE $1::bigint IS NULL OR tenant_id IS NULL OR tenant_id = $1 ORDER BY id"
    );
    let rows = conn.query(&sql, &[&tenant.map(tenant_key)]).await?;
    rows.iter().map(plugin_row).collect()
}

pub(super) async fn plugin(
    conn: &mut Conn,
    id: PluginId,
) -> Result<Option<StoredPlugin>, StoreError> {
    let sql = format!("SELECT {PLUGIN_COLUMNS} FROM plugins WHERE id = $1");
    conn.query_opt(&sql, &[&id])
        .await?
        .map(|row| plugin_row(&row))
        .transpose()
}

fn assignment_row(row: &Row) -> Result<Assignment, StoreError> {
    let settings = serde_json::from_str(row.try_get(3)?).map_err(|err| StoreError::Corrupt {
        table: "tenant_plugins",
        column: "settings",
        reason: err.to_string(),
    })?;
    Ok(Assignment {
        id: row.try_get(0)?,
        tenant: tenant_from_key(row.try_get(1)?),
        plugin: row.try_get(2)?,
        settings,
        assigned_by: row.try_get(4)?,
        assigned_at: row.try_get(5)?,
        reason: row.try_get(6)?,
    })
}

pub(super) async fn assign(
    conn: &mut Conn,
    tenant: TenantId,
    plugin: PluginId,
    settings: &BTreeMap<String, String>,
    by: Option<AccountId>,
    reason: &str,
    now: Timestamp,
) -> Result<Assignment, StoreError> {
    let settings = serde_json::to_string(settings).unwrap_or_else(|_| "{}".into());
    let sql = format!(
        "INSERT INTO tenant_plugins (tenant_id, plugin_id, settings, assigned_by, assigned_at, reason) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {ASSIGNMENT_COLUMNS}"
    );
    let rows = conn
        .query(
            &sql,
            &[&tenant_key(tenant), &plugin, &settings, &by, &now, &reason],
        )
        .await?;
    let row = rows.first().ok_or(StoreError::Corrupt {
        table: "tenant_plugins",
        column: "id",
        reason: "the inserted assignment returned no row".into(),
    })?;
    assignment_row(row)
}

pub(super) async fn assignments(
    conn: &mut Conn,
    tenant: TenantId,
) -> Result<Vec<Assignment>, StoreError> {
    let sql = format!(
        "SELECT {ASSIGNMENT_COLUMNS} FROM tenant_plugins WHERE tenant_id = $1 ORDER BY id DESC"
    );
    let rows = conn.query(&sql, &[&tenant_key(tenant)]).await?;
    rows.iter().map(assignment_row).collect()
}

pub(super) async fn api_tenants(conn: &mut Conn) -> Result<Vec<StoredTenant>, StoreError> {
    let rows = conn
        .query(
            "SELECT id, config, created_at, updated_at FROM tenants ORDER BY id",
            &[],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(StoredTenant {
                id: tenant_from_key(row.try_get(0)?),
                config: row.try_get(1)?,
                created_at: row.try_get(2)?,
                updated_at: row.try_get(3)?,
            })
        })
        .collect()
}

/// Deletes an API tenant and everything that belonged to it, in the caller's
/// transaction: a tenant created again with the same id starts afresh.
pub(super) async fn delete_tenant(tx: &mut Tx<'_>, id: TenantId) -> Result<bool, StoreError> {
    let key = tenant_key(id);
    let existed = tx
        .execute("DELETE FROM tenants WHERE id = $1", &[&key])
        .await?
        > 0;
    if existed {
        // Children before parents: sessions, codes and verifications reference
        // accounts; assignments reference plugins.
        for statement in [
            "DELETE FROM schedules WHERE tenant_id = $1",
            "DELETE FROM tenant_plugins WHERE tenant_id = $1",
            "DELETE FROM plugins WHERE tenant_id = $1",
            "DELETE FROM users WHERE tenant_id = $1",
            "DELETE FROM tenant_usage WHERE tenant_id = $1",
            "DELETE FROM audit_events WHERE tenant_id = $1",
            "DELETE FROM sync_runs WHERE tenant_id = $1",
            "DELETE FROM sync_state WHERE tenant_id = $1",
            "DELETE FROM tasks WHERE tenant_id = $1",
            "DELETE FROM tenant_runs WHERE tenant_id = $1",
            "DELETE FROM schedule_fires WHERE tenant_id = $1",
            "DELETE FROM plugin_health WHERE tenant_id = $1",
            "DELETE FROM watchers WHERE tenant_id = $1",
            "DELETE FROM sessions WHERE account_id IN (SELECT id FROM accounts WHERE tenant_id = $1)",
            "DELETE FROM email_codes WHERE account_id IN (SELECT id FROM accounts WHERE tenant_id = $1)",
            "DELETE FROM email_verifications WHERE account_id IN (SELECT id FROM accounts WHERE tenant_id = $1)",
            "DELETE FROM accounts WHERE tenant_id = $1",
        ] {
            tx.execute(statement, &[&key]).await?;
        }
    }
    Ok(existed)
}

pub(super) async fn schedules(
    conn: &mut Conn,
) -> Result<BTreeMap<TenantId, Option<u64>>, StoreError> {
    let rows = conn
        .query("SELECT tenant_id, interval_secs FROM schedules", &[])
        .await?;
    rows.iter()
        .map(|row| {
            let secs: Option<i64> = row.try_get(1)?;
            Ok((tenant_from_key(row.try_get(0)?), secs.map(unsigned)))
        })
        .collect()
}

pub(super) async fn record_plugin_result(
    conn: &mut Conn,
    tenant: TenantId,
    failure: Option<&str>,
    suspend_after: u32,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let key = tenant_key(tenant);
    let Some(message) = failure else {
        conn.execute("DELETE FROM plugin_health WHERE tenant_id = $1", &[&key])
            .await?;
        return Ok(false);
    };
    let bound = i32::try_from(suspend_after.max(1)).unwrap_or(i32::MAX);
    // One statement: the count moves on atomically (a row lock orders replicas), and
    // the failure that reaches the bound is the only one that sees it reached.
    let row = conn
        .query_opt(
            "INSERT INTO plugin_health (tenant_id, failures, last_error, suspended, updated_at) \
             VALUES ($1, 1, $2, $3::integer <= 1, $4) ON CONFLICT (tenant_id) DO UPDATE SET \
             failures = plugin_health.failures + 1, last_error = excluded.last_error, \
             suspended = plugin_health.suspended OR plugin_health.failures + 1 >= $3::integer, \
             updated_at = excluded.updated_at RETURNING failures, suspended",
            &[&key, &message, &bound, &now],
        )
        .await?;
    let Some(row) = row else { return Ok(false) };
    let failures: i32 = row.try_get(0)?;
    let suspended: bool = row.try_get(1)?;
    Ok(suspended && failures == bound)
}

pub(super) async fn plugin_health(
    conn: &mut Conn,
    tenant: TenantId,
) -> Result<crate::store::PluginHealthRecord, StoreError> {
    let row = conn
        .query_opt(
            "SELECT failures, last_error, suspended FROM plugin_health WHERE tenant_id = $1",
            &[&tenant_key(tenant)],
        )
        .await?;
    let Some(row) = row else {
        return Ok(crate::store::PluginHealthRecord::default());
    };
    let failures: i32 = row.try_get(0)?;
    Ok(crate::store::PluginHealthRecord {
        failures: u32::try_from(failures).unwrap_or(0),
        last_error: row.try_get(1)?,
        suspended: row.try_get(2)?,
    })
}
