//! [`UserStore::prune_history`](crate::store::UserStore::prune_history): a tenant's
//! audit events and run records beyond the quotas go, oldest first, in steps of one
//! short transaction each, so that pruning millions of events never holds the writer
//! for long.

use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension};

use super::tenant_key;
use crate::plugin::model::TenantId;
use crate::store::{HistoryLimits, StoreError};

/// Rows per step.
const STEP: i64 = 10_000;

/// Prunes `tenant`'s history; the number of audit events removed.
pub(super) fn prune(
    writer: &Mutex<Connection>,
    tenant: TenantId,
    limits: &HistoryLimits,
) -> Result<u64, StoreError> {
    let key = tenant_key(tenant);
    let lock = || {
        writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    let mut removed = 0;
    // Beyond the count: every event up to the newest one not kept.
    let last_dropped = newest_beyond(&lock(), "audit_events", key, limits.max_events)?;
    if let Some(last) = last_dropped {
        loop {
            let step = lock().execute(
                "DELETE FROM audit_events WHERE id IN \
                 (SELECT id FROM audit_events WHERE tenant_id = ?1 AND id <= ?2 ORDER BY id LIMIT ?3)",
                (key, last, STEP),
            )?;
            removed += step as u64;
            if (step as i64) < STEP {
                break;
            }
        }
    }
    // Beyond the age: ids grow with time, so the oldest events come first; a step
    // that finds a kept event among its oldest is the last.
    if let Some(before) = limits.events_before {
        loop {
            let step = lock().execute(
                "DELETE FROM audit_events WHERE id IN \
                 (SELECT id FROM audit_events WHERE tenant_id = ?1 ORDER BY id LIMIT ?3) \
                 AND at < ?2",
                (key, before, STEP),
            )?;
            removed += step as u64;
            if (step as i64) < STEP {
                break;
            }
        }
    }
    // Bound first: a guard in an `if let` scrutinee lives through its block, and the
    // block locks again (it deadlocked once a tenant had more runs than kept).
    let runs_dropped = newest_beyond(&lock(), "sync_runs", key, limits.max_runs)?;
    if let Some(last) = runs_dropped {
        lock().execute(
            "DELETE FROM sync_runs WHERE tenant_id = ?1 AND id <= ?2",
            (key, last),
        )?;
    }
    Ok(removed)
}

/// The id of the newest row of `table` (audit events or runs) of the tenant that is
/// not among its `keep` newest; `None` when it has no more than `keep`.
fn newest_beyond(
    conn: &Connection,
    table: &str,
    key: i64,
    keep: u64,
) -> Result<Option<i64>, StoreError> {
    let keep = i64::try_from(keep).unwrap_or(i64::MAX);
    let sql =
        format!("SELECT id FROM {table} WHERE tenant_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row((key, keep), |row| row.get(0))
        .optional()?)
}

/// Attribute bytes the tenant's users hold.
pub(super) fn attribute_bytes(conn: &Connection, tenant: TenantId) -> Result<u64, StoreError> {
    let bytes: Option<i64> = conn
        .prepare_cached("SELECT attribute_bytes FROM tenant_usage WHERE tenant_id = ?1")?
        .query_row([tenant_key(tenant)], |row| row.get(0))
        .optional()?;
    Ok(bytes.map_or(0, |bytes| u64::try_from(bytes).unwrap_or(0)))
}
