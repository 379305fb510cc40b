//! Per-tenant sync state and the history of sync runs.

use rusqlite::{Connection, OptionalExtension};

use super::tenant_key;
use crate::plugin::model::TenantId;
use crate::store::{StoreError, SyncRunRecord, SyncState};

/// Most runs [`runs`] returns.
const MAX_RUNS: u32 = 1000;

/// The state of `tenant`; the default when it never synced.
pub(super) fn get(conn: &Connection, tenant: TenantId) -> Result<SyncState, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT high_water_mark, last_full_sync_at, last_success_at, mark_origin, sync_cookie \
         FROM sync_state WHERE tenant_id = ?1",
    )?;
    let state = stmt
        .query_row([tenant_key(tenant)], |row| {
            Ok(SyncState {
                high_water_mark: row.get(0)?,
                last_full_sync_at: row.get(1)?,
                last_success_at: row.get(2)?,
                mark_origin: row.get(3)?,
                sync_cookie: row.get(4)?,
            })
        })
        .optional()?;
    Ok(state.unwrap_or_default())
}

/// Replaces the state of `tenant`.
pub(super) fn set(
    conn: &Connection,
    tenant: TenantId,
    state: &SyncState,
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO sync_state (tenant_id, high_water_mark, last_full_sync_at, last_success_at, \
         mark_origin, sync_cookie) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT (tenant_id) DO UPDATE SET \
         high_water_mark = excluded.high_water_mark, \
         last_full_sync_at = excluded.last_full_sync_at, \
         last_success_at = excluded.last_success_at, \
         mark_origin = excluded.mark_origin, sync_cookie = excluded.sync_cookie",
    )?;
    stmt.execute((
        tenant_key(tenant),
        &state.high_water_mark,
        state.last_full_sync_at,
        state.last_success_at,
        &state.mark_origin,
        &state.sync_cookie,
    ))?;
    Ok(())
}

/// Records a run of `tenant`; returns its id.
pub(super) fn record_run(
    conn: &Connection,
    tenant: TenantId,
    run: &SyncRunRecord,
) -> Result<i64, StoreError> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO sync_runs \
         (tenant_id, run_id, mode, dry_run, started_at, finished_at, outcome, summary) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING id",
    )?;
    let id = super::insert_returning(
        &mut stmt,
        (
            tenant_key(tenant),
            &run.run_id,
            &run.mode,
            run.dry_run,
            run.started_at,
            run.finished_at,
            &run.outcome,
            &run.summary,
        ),
        |row| row.get(0),
    )?;
    Ok(id)
}

/// The `limit` (at most 1000) newest runs of `tenant`.
pub(super) fn runs(
    conn: &Connection,
    tenant: TenantId,
    limit: u32,
) -> Result<Vec<SyncRunRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT run_id, mode, dry_run, started_at, finished_at, outcome, summary \
         FROM sync_runs WHERE tenant_id = ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let runs = stmt
        .query_map((tenant_key(tenant), limit.min(MAX_RUNS)), |row| {
            Ok(SyncRunRecord {
                run_id: row.get(0)?,
                mode: row.get(1)?,
                dry_run: row.get(2)?,
                started_at: row.get(3)?,
                finished_at: row.get(4)?,
                outcome: row.get(5)?,
                summary: row.get(6)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(runs)
}
