//! Background tasks, the per-tenant run, and cancels.

use tokio_postgres::Row;

use super::{Conn, Statements, big, unsigned};
use crate::plugin::model::TenantId;
use crate::store::{
    AccountId, CancelRequest, Lease, StoreError, TakenTask, Task, TaskId, TaskState, Timestamp,
    tenant_from_key, tenant_key,
};

/// Most tasks a list returns.
const MAX_LIST: u32 = 1000;

const COLUMNS: &str =
    "id, tenant_id, command, state, message, params, result, account_id, created_at, updated_at";

fn decode(row: &Row) -> Result<Task, StoreError> {
    let corrupt = |column, err: serde_json::Error| StoreError::Corrupt {
        table: "tasks",
        column,
        reason: err.to_string(),
    };
    let result: Option<&str> = row.try_get(6)?;
    Ok(Task {
        id: row.try_get(0)?,
        tenant: tenant_from_key(row.try_get(1)?),
        command: row.try_get(2)?,
        state: TaskState::from_stored(row.try_get(3)?)?,
        message: row.try_get(4)?,
        params: serde_json::from_str(row.try_get(5)?).map_err(|err| corrupt("params", err))?,
        result: result
            .map(serde_json::from_str)
            .transpose()
            .map_err(|err| corrupt("result", err))?,
        account: row.try_get(7)?,
        created_at: row.try_get(8)?,
        updated_at: row.try_get(9)?,
    })
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn create(
    conn: &mut Conn,
    tenant: TenantId,
    command: &str,
    params: &serde_json::Value,
    request: Option<&serde_json::Value>,
    account: Option<AccountId>,
    lease: Option<&Lease>,
    now: Timestamp,
) -> Result<Task, StoreError> {
    let sql = format!(
        "INSERT INTO tasks (tenant_id, command, state, message, params, account_id, created_at, \
         updated_at, owner, lease_until, request) \
         VALUES ($1, $2, 'queued', '', $3, $4, $5, $5, $6, $7, $8) RETURNING {COLUMNS}"
    );
    let rows = conn
        .query(
            &sql,
            &[
                &tenant_key(tenant),
                &command,
                &params.to_string(),
                &account,
                &now,
                &lease.map(|lease| lease.owner.as_str()),
                &lease.map(|lease| lease.until),
                &request.map(serde_json::Value::to_string),
            ],
        )
        .await?;
    let row = rows.first().ok_or(StoreError::Corrupt {
        table: "tasks",
        column: "id",
        reason: "the inserted task returned no row".into(),
    })?;
    decode(row)
}

/// [`crate::store::TaskStore::take_over_expired`]: one `UPDATE … RETURNING`; a task
/// two replicas reach at once is updated by the first, and no longer matches for the
/// second (which re-reads it once the first commits).
pub(super) async fn take_over_expired(
    conn: &mut Conn,
    lease: &Lease,
    now: Timestamp,
    max_attempts: u32,
) -> Result<Vec<TakenTask>, StoreError> {
    let max_attempts = i32::try_from(max_attempts).unwrap_or(i32::MAX);
    let sql = format!(
        "UPDATE tasks SET state = 'queued', owner = $1, lease_until = $2, updated_at = $3, \
         attempts = attempts + 1, cancel_requested = FALSE, \
         message = CASE WHEN owner IS NULL THEN 'handed back by a stopping replica' \
         ELSE 'the replica ' || owner || ' running it stopped' END || '; queued again on replica ' || $1 \
         WHERE state IN ('queued', 'running') AND request IS NOT NULL AND attempts < $4 \
         AND lease_until < $3 AND (owner IS NULL OR owner <> $1) \
         RETURNING {COLUMNS}, request, attempts"
    );
    let rows = conn
        .query(&sql, &[&lease.owner, &lease.until, &now, &max_attempts])
        .await?;
    taken(&rows)
}

/// [`crate::store::TaskStore::claim_queued`]: the tasks picked `FOR UPDATE SKIP
/// LOCKED`, so that replicas claiming at once take different tasks without waiting on
/// each other, and claimed in the same statement.
pub(super) async fn claim_queued(
    conn: &mut Conn,
    lease: &Lease,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<TakenTask>, StoreError> {
    let sql = format!(
        "UPDATE tasks SET owner = $1, lease_until = $2, updated_at = $3 \
         WHERE id IN (SELECT t.id FROM tasks AS t WHERE t.state = 'queued' \
         AND t.owner IS NULL AND t.lease_until IS NULL AND t.request IS NOT NULL \
         AND NOT EXISTS (SELECT 1 FROM tasks AS o WHERE o.tenant_id = t.tenant_id \
         AND o.state IN ('queued', 'running') AND o.id < t.id) \
         ORDER BY t.id LIMIT $4 FOR UPDATE OF t SKIP LOCKED) \
         RETURNING {COLUMNS}, request, attempts"
    );
    let rows = conn
        .query(&sql, &[&lease.owner, &lease.until, &now, &i64::from(limit)])
        .await?;
    let mut taken = taken(&rows)?;
    taken.sort_by_key(|taken| taken.task.id);
    Ok(taken)
}

/// Tasks as an `UPDATE … RETURNING {COLUMNS}, request, attempts` returned them.
fn taken(rows: &[Row]) -> Result<Vec<TakenTask>, StoreError> {
    rows.iter()
        .map(|row| {
            let request: &str = row.try_get(10)?;
            let attempts: i32 = row.try_get(11)?;
            Ok(TakenTask {
                task: decode(row)?,
                request: serde_json::from_str(request).map_err(|err| StoreError::Corrupt {
                    table: "tasks",
                    column: "request",
                    reason: err.to_string(),
                })?,
                attempts: u32::try_from(attempts).unwrap_or(0),
            })
        })
        .collect()
}

pub(super) async fn one(conn: &mut Conn, id: TaskId) -> Result<Option<Task>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM tasks WHERE id = $1");
    conn.query_opt(&sql, &[&id])
        .await?
        .map(|row| decode(&row))
        .transpose()
}

pub(super) async fn queued(
    conn: &mut Conn,
    tenant: TenantId,
    command: &str,
    params: &serde_json::Value,
) -> Result<Option<Task>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM tasks WHERE tenant_id = $1 AND state = 'queued' \
         AND command = $2 AND params = $3 ORDER BY id LIMIT 1"
    );
    conn.query_opt(&sql, &[&tenant_key(tenant), &command, &params.to_string()])
        .await?
        .map(|row| decode(&row))
        .transpose()
}

pub(super) async fn list(
    conn: &mut Conn,
    tenant: Option<TenantId>,
    offset: u32,
    limit: u32,
) -> Result<Vec<Task>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM tasks WHERE $1::bigint IS NULL OR tenant_id = $1 \
         ORDER BY id DESC LIMIT $2 OFFSET $3"
    );
    let rows = conn
        .query(
            &sql,
            &[
                &tenant.map(tenant_key),
                &big(limit.min(MAX_LIST)),
                &big(offset),
            ],
        )
        .await?;
    rows.iter().map(decode).collect()
}

pub(super) async fn count(conn: &mut Conn, tenant: Option<TenantId>) -> Result<u64, StoreError> {
    let rows = conn
        .query(
            "SELECT count(*) FROM tasks WHERE $1::bigint IS NULL OR tenant_id = $1",
            &[&tenant.map(tenant_key)],
        )
        .await?;
    Ok(unsigned(rows.first().map_or(Ok(0), |row| row.try_get(0))?))
}

pub(super) async fn update(
    conn: &mut Conn,
    id: TaskId,
    state: TaskState,
    message: &str,
    result: Option<&serde_json::Value>,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let changed = conn
        .execute(
            "UPDATE tasks SET state = $2, message = $3, result = coalesce($4, result), updated_at = $5 \
             WHERE id = $1 AND state IN ('queued', 'running')",
            &[
                &id,
                &state.as_str(),
                &message,
                &result.map(serde_json::Value::to_string),
                &now,
            ],
        )
        .await?;
    Ok(changed == 1)
}

/// Hands task `id` (every task, when `None`) of `owner` back: queued again with no
/// owner and an expired lease, for another replica to take over at once.
pub(super) async fn hand_back(
    conn: &mut Conn,
    id: Option<TaskId>,
    owner: &str,
    now: Timestamp,
) -> Result<u64, StoreError> {
    conn.execute(
        "UPDATE tasks SET state = 'queued', owner = NULL, lease_until = 0, updated_at = $3, \
         cancel_requested = FALSE, message = 'handed back by replica ' || $2 || ', which stopped' \
         WHERE ($1::bigint IS NULL OR id = $1) AND owner = $2 AND state IN ('queued', 'running') \
         AND request IS NOT NULL",
        &[&id, &owner, &now],
    )
    .await
}

pub(super) async fn request_cancel(
    conn: &mut Conn,
    id: TaskId,
    now: Timestamp,
) -> Result<CancelRequest, StoreError> {
    let queued = conn
        .execute(
            "UPDATE tasks SET state = 'cancelled', message = 'cancelled before it started', \
             updated_at = $2 WHERE id = $1 AND state = 'queued'",
            &[&id, &now],
        )
        .await?;
    if queued == 1 {
        return Ok(CancelRequest::Cancelled);
    }
    let running = conn
        .execute(
            "UPDATE tasks SET cancel_requested = TRUE, updated_at = $2 \
             WHERE id = $1 AND state = 'running'",
            &[&id, &now],
        )
        .await?;
    Ok(if running == 1 {
        CancelRequest::Requested
    } else {
        CancelRequest::Ended
    })
}

pub(super) async fn claim_tenant(
    conn: &mut Conn,
    tenant: TenantId,
    owner: &str,
    task: Option<TaskId>,
    until: Timestamp,
    now: Timestamp,
) -> Result<Option<String>, StoreError> {
    let key = tenant_key(tenant);
    let taken = conn
        .execute(
            "INSERT INTO tenant_runs (tenant_id, owner, task_id, lease_until) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant_id) DO UPDATE SET owner = excluded.owner, task_id = excluded.task_id, \
             lease_until = excluded.lease_until \
             WHERE tenant_runs.owner = excluded.owner OR tenant_runs.lease_until < $5",
            &[&key, &owner, &task, &until, &now],
        )
        .await?;
    if taken == 1 {
        return Ok(None);
    }
    let row = conn
        .query_opt(
            "SELECT owner FROM tenant_runs WHERE tenant_id = $1",
            &[&key],
        )
        .await?;
    Ok(row.map(|row| row.try_get(0)).transpose()?)
}
