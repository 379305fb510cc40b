//! Background tasks.

use rusqlite::{Connection, OptionalExtension, Row};

use super::{tenant_from_key, tenant_key};
use crate::plugin::model::TenantId;
use crate::store::{
    AccountId, CancelRequest, Lease, ResultPage, StoreError, TakenTask, Task, TaskId, TaskState,
    Timestamp,
};

/// Most tasks a list returns.
const MAX_LIST: u32 = 1000;

const COLUMNS: &str =
    "id, tenant_id, command, state, message, params, result, account_id, created_at, updated_at";

type RawTask = (Task, String, String, Option<String>);

fn from_row(row: &Row<'_>) -> rusqlite::Result<RawTask> {
    let tenant: i64 = row.get(1)?;
    Ok((
        Task {
            id: row.get(0)?,
            tenant: tenant_from_key(tenant),
            command: row.get(2)?,
            state: TaskState::Queued,
            message: row.get(4)?,
            params: serde_json::Value::Null,
            result: None,
            account: row.get(7)?,
            created_at: row.get(8)?,
            updated_at: row.get(9)?,
        },
        row.get(3)?,
        row.get(5)?,
        row.get(6)?,
    ))
}

fn finish((mut task, state, params, result): RawTask) -> Result<Task, StoreError> {
    let corrupt = |column, err: serde_json::Error| StoreError::Corrupt {
        table: "tasks",
        column,
        reason: err.to_string(),
    };
    task.state = TaskState::from_stored(&state)?;
    task.params = serde_json::from_str(&params).map_err(|err| corrupt("params", err))?;
    task.result = result
        .map(|text| serde_json::from_str(&text))
        .transpose()
        .map_err(|err| corrupt("result", err))?;
    Ok(task)
}

#[allow(clippy::too_many_arguments)]
pub(super) fn create(
    conn: &Connection,
    tenant: TenantId,
    command: &str,
    params: &serde_json::Value,
    request: Option<&serde_json::Value>,
    account: Option<AccountId>,
    lease: Option<&Lease>,
    now: Timestamp,
) -> Result<Task, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "INSERT INTO tasks (tenant_id, command, state, message, params, account_id, created_at, updated_at, owner, lease_until, request) \
         VALUES (?1, ?2, 'queued', '', ?3, ?4, ?5, ?5, ?6, ?7, ?8) RETURNING {COLUMNS}"
    ))?;
    finish(super::insert_returning(
        &mut stmt,
        (
            tenant_key(tenant),
            command,
            params.to_string(),
            account,
            now,
            lease.map(|lease| lease.owner.as_str()),
            lease.map(|lease| lease.until),
            request.map(serde_json::Value::to_string),
        ),
        from_row,
    )?)
}

/// [`crate::store::TaskStore::take_over_expired`]: one `UPDATE … RETURNING`, so that
/// each task is taken by one replica.
pub(super) fn take_over_expired(
    conn: &Connection,
    lease: &Lease,
    now: Timestamp,
    max_attempts: u32,
) -> Result<Vec<TakenTask>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "UPDATE tasks SET state = 'queued', owner = ?1, lease_until = ?2, updated_at = ?3, \
         attempts = attempts + 1, cancel_requested = 0, \
         message = CASE WHEN owner IS NULL THEN 'handed back by a stopping replica' \
         ELSE 'the replica ' || owner || ' running it stopped' END || '; queued again on replica ' || ?1 \
         WHERE state IN ('queued', 'running') AND request IS NOT NULL AND attempts < ?4 \
         AND lease_until < ?3 AND (owner IS NULL OR owner <> ?1) \
         RETURNING {COLUMNS}, request, attempts"
    ))?;
    taken(stmt.query_map((&lease.owner, lease.until, now, max_attempts), taken_row)?)
}

/// A row of an `UPDATE … RETURNING {COLUMNS}, request, attempts`.
fn taken_row(row: &Row<'_>) -> rusqlite::Result<(RawTask, String, u32)> {
    Ok((
        from_row(row)?,
        row.get::<_, String>(10)?,
        row.get::<_, u32>(11)?,
    ))
}

/// The tasks [`taken_row`] read, in id order.
fn taken(
    rows: impl Iterator<Item = rusqlite::Result<(RawTask, String, u32)>>,
) -> Result<Vec<TakenTask>, StoreError> {
    let mut taken = Vec::new();
    for row in rows {
        let (raw, request, attempts) = row?;
        taken.push(TakenTask {
            task: finish(raw)?,
            request: serde_json::from_str(&request).map_err(|err| StoreError::Corrupt {
                table: "tasks",
                column: "request",
                reason: err.to_string(),
            })?,
            attempts,
        });
    }
    taken.sort_by_key(|taken| taken.task.id);
    Ok(taken)
}

/// [`crate::store::TaskStore::claim_queued`]: one `UPDATE … RETURNING` (SQLite has
/// one writer, so no two replicas read the same queue at once).
pub(super) fn claim_queued(
    conn: &Connection,
    lease: &Lease,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<TakenTask>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "UPDATE tasks SET owner = ?1, lease_until = ?2, updated_at = ?3 \
         WHERE id IN (SELECT t.id FROM tasks AS t WHERE t.state = 'queued' \
         AND t.owner IS NULL AND t.lease_until IS NULL AND t.request IS NOT NULL \
         AND NOT EXISTS (SELECT 1 FROM tasks AS o WHERE o.tenant_id = t.tenant_id \
         AND o.state IN ('queued', 'running') AND o.id < t.id) \
         ORDER BY t.id LIMIT ?4) \
         RETURNING {COLUMNS}, request, attempts"
    ))?;
    taken(stmt.query_map((&lease.owner, lease.until, now, limit), taken_row)?)
}

pub(super) fn one(conn: &Connection, id: TaskId) -> Result<Option<Task>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM tasks WHERE id = ?1"))?;
    stmt.query_row([id], from_row)
        .optional()?
        .map(finish)
        .transpose()
}

pub(super) fn list(
    conn: &Connection,
    tenant: Option<TenantId>,
    offset: u32,
    limit: u32,
) -> Result<Vec<Task>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM tasks WHERE ?1 IS NULL OR tenant_id = ?1 ORDER BY id DESC LIMIT ?2 OFFSET ?3"
    ))?;
    let rows = stmt.query_map(
        (tenant.map(tenant_key), limit.min(MAX_LIST), offset),
        from_row,
    )?;
    rows.map(|row| finish(row?)).collect()
}

pub(super) fn count(conn: &Connection, tenant: Option<TenantId>) -> Result<u64, StoreError> {
    let count: i64 = conn
        .prepare_cached("SELECT count(*) FROM tasks WHERE ?1 IS NULL OR tenant_id = ?1")?
        .query_row([tenant.map(tenant_key)], |row| row.get(0))?;
    Ok(u64::try_from(count).unwrap_or(0))
}

pub(super) fn delete(conn: &Connection, id: TaskId) -> Result<bool, StoreError> {
    Ok(conn.execute("DELETE FROM tasks WHERE id = ?1", [id])? > 0)
}

pub(super) fn add_results(
    conn: &Connection,
    id: TaskId,
    owner: &str,
    first: u64,
    count: u32,
    items: &str,
) -> Result<bool, StoreError> {
    let first = i64::try_from(first).unwrap_or(i64::MAX);
    let added = conn
        .prepare_cached(
            "INSERT OR REPLACE INTO task_results (task_id, first, count, items) \
             SELECT ?1, ?2, ?3, ?4 WHERE EXISTS \
             (SELECT 1 FROM tasks WHERE id = ?1 AND state = 'running' AND owner = ?5)",
        )?
        .execute((id, first, count, items, owner))?;
    Ok(added > 0)
}

pub(super) fn results(
    conn: &Connection,
    id: TaskId,
    from: u64,
    to: u64,
) -> Result<Vec<ResultPage>, StoreError> {
    let number = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(
        "SELECT first, count, items FROM task_results \
         WHERE task_id = ?1 AND first < ?3 AND first + count > ?2 ORDER BY first",
    )?;
    let pages = stmt
        .query_map((id, number(from), number(to)), |row| {
            Ok(ResultPage {
                first: u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
                count: row.get(1)?,
                items: row.get(2)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(pages)
}

pub(super) fn update(
    conn: &Connection,
    id: TaskId,
    state: TaskState,
    message: &str,
    result: Option<&serde_json::Value>,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let mut stmt = conn.prepare_cached(
        "UPDATE tasks SET state = ?2, message = ?3, result = coalesce(?4, result), updated_at = ?5 \
         WHERE id = ?1 AND state IN ('queued', 'running')",
    )?;
    let changed = stmt.execute((
        id,
        state.as_str(),
        message,
        result.map(serde_json::Value::to_string),
        now,
    ))?;
    Ok(changed == 1)
}

pub(super) fn renew_leases(
    conn: &Connection,
    owner: &str,
    until: Timestamp,
) -> Result<u64, StoreError> {
    let changed = conn.execute(
        "UPDATE tasks SET lease_until = ?2 WHERE owner = ?1 AND state IN ('queued', 'running')",
        (owner, until),
    )?;
    conn.execute(
        "UPDATE tenant_runs SET lease_until = ?2 WHERE owner = ?1",
        (owner, until),
    )?;
    Ok(changed as u64)
}

pub(super) fn interrupt_expired(
    conn: &Connection,
    now: Timestamp,
    except: Option<&str>,
) -> Result<u64, StoreError> {
    let changed = conn.execute(
        "UPDATE tasks SET state = 'interrupted', \
         message = 'interrupted: the abacsync process running it stopped before the task ended; run it again', \
         updated_at = ?1 WHERE state IN ('queued', 'running') \
         AND lease_until < ?1 AND (?2 IS NULL OR owner IS NULL OR owner <> ?2)",
        (now, except),
    )?;
    Ok(changed as u64)
}

pub(super) fn interrupt_owned(
    conn: &Connection,
    owner: &str,
    now: Timestamp,
) -> Result<u64, StoreError> {
    let changed = conn.execute(
        "UPDATE tasks SET state = 'interrupted', \
         message = 'interrupted: abacsync stopped before the task ended; run it again', \
         updated_at = ?1 WHERE state IN ('queued', 'running') AND owner = ?2",
        (now, owner),
    )?;
    conn.execute("DELETE FROM tenant_runs WHERE owner = ?1", [owner])?;
    Ok(changed as u64)
}

/// The `UPDATE` that hands tasks of `owner` (?2) back, at ?3; `filter` picks which.
fn hand_back_where(filter: &str) -> String {
    format!(
        "UPDATE tasks SET state = 'queued', owner = NULL, lease_until = 0, updated_at = ?3, \
         cancel_requested = 0, message = 'handed back by replica ' || ?2 || ', which stopped' \
         WHERE {filter} AND owner = ?2 AND state IN ('queued', 'running') AND request IS NOT NULL"
    )
}

pub(super) fn hand_back(
    conn: &Connection,
    id: TaskId,
    owner: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let changed = conn.execute(&hand_back_where("id = ?1"), (id, owner, now))?;
    Ok(changed == 1)
}

pub(super) fn hand_back_owned(
    conn: &Connection,
    owner: &str,
    now: Timestamp,
) -> Result<u64, StoreError> {
    let changed = conn.execute(&hand_back_where("?1 IS NULL"), (None::<i64>, owner, now))?;
    Ok(changed as u64)
}

pub(super) fn request_cancel(
    conn: &Connection,
    id: TaskId,
    now: Timestamp,
) -> Result<CancelRequest, StoreError> {
    let queued = conn.execute(
        "UPDATE tasks SET state = 'cancelled', message = 'cancelled before it started', \
         updated_at = ?2 WHERE id = ?1 AND state = 'queued'",
        (id, now),
    )?;
    if queued == 1 {
        return Ok(CancelRequest::Cancelled);
    }
    let running = conn.execute(
        "UPDATE tasks SET cancel_requested = 1, updated_at = ?2 WHERE id = ?1 AND state = 'running'",
        (id, now),
    )?;
    Ok(if running == 1 {
        CancelRequest::Requested
    } else {
        CancelRequest::Ended
    })
}

pub(super) fn cancel_requested(conn: &Connection, id: TaskId) -> Result<bool, StoreError> {
    Ok(conn
        .query_row(
            "SELECT cancel_requested FROM tasks WHERE id = ?1",
            [id],
            |row| row.get::<_, i64>(0),
        )
        .optional()?
        .is_some_and(|flag| flag != 0))
}

pub(super) fn claim_tenant(
    conn: &Connection,
    tenant: TenantId,
    owner: &str,
    task: Option<TaskId>,
    until: Timestamp,
    now: Timestamp,
) -> Result<Option<String>, StoreError> {
    let taken = conn.execute(
        "INSERT INTO tenant_runs (tenant_id, owner, task_id, lease_until) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (tenant_id) DO UPDATE SET owner = excluded.owner, task_id = excluded.task_id, \
         lease_until = excluded.lease_until \
         WHERE tenant_runs.owner = excluded.owner OR tenant_runs.lease_until < ?5",
        (tenant_key(tenant), owner, task, until, now),
    )?;
    if taken == 1 {
        return Ok(None);
    }
    Ok(conn
        .query_row(
            "SELECT owner FROM tenant_runs WHERE tenant_id = ?1",
            [tenant_key(tenant)],
            |row| row.get(0),
        )
        .optional()?)
}

pub(super) fn release_tenant(
    conn: &Connection,
    tenant: TenantId,
    owner: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM tenant_runs WHERE tenant_id = ?1 AND owner = ?2",
        (tenant_key(tenant), owner),
    )?;
    Ok(())
}

pub(super) fn claim_schedule(
    conn: &Connection,
    tenant: TenantId,
    period_start: Timestamp,
) -> Result<bool, StoreError> {
    let changed = conn.execute(
        "INSERT INTO schedule_fires (tenant_id, period_start) VALUES (?1, ?2) \
         ON CONFLICT (tenant_id) DO UPDATE SET period_start = excluded.period_start \
         WHERE excluded.period_start > schedule_fires.period_start",
        (tenant_key(tenant), period_start),
    )?;
    Ok(changed == 1)
}

pub(super) fn queued(
    conn: &Connection,
    tenant: TenantId,
    command: &str,
    params: &serde_json::Value,
) -> Result<Option<Task>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM tasks WHERE tenant_id = ?1 AND state = 'queued' \
         AND command = ?2 AND params = ?3 ORDER BY id LIMIT 1"
    ))?;
    stmt.query_row((tenant_key(tenant), command, params.to_string()), from_row)
        .optional()?
        .map(finish)
        .transpose()
}
