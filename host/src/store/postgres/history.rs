//! The audit trail, per-tenant sync state, the history of runs, and pruning it.

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{Conn, Statements, Tx, big, unsigned};
use crate::plugin::model::TenantId;
use crate::store::rows::{NewEvent, parse_kind, parse_values};
use crate::store::{
    AuditEvent, AuditQuery, ChangeCause, HistoryLimits, StoreError, SyncRunRecord, SyncState,
    UserId, parse_attributes, tenant_key,
};

/// Default and maximum page sizes of [`events`].
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

/// Most runs [`runs`] returns.
const MAX_RUNS: u32 = 1000;

/// Rows a pruning step removes.
const STEP: i64 = 10_000;

/// Records `events` of the tenant stored as `key`, made for `cause`, in their order
/// (their ids increase), in one statement.
pub(super) async fn insert_events(
    tx: &mut Tx<'_>,
    key: i64,
    cause: &ChangeCause,
    events: &[NewEvent<'_>],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let users: Vec<i64> = events.iter().map(|event| event.user_id).collect();
    let usernames: Vec<&str> = events.iter().map(|event| event.username).collect();
    let kinds: Vec<&str> = events.iter().map(|event| event.kind.as_str()).collect();
    let keys: Vec<Option<&str>> = events.iter().map(|event| event.key).collect();
    let added: Vec<&str> = events.iter().map(|event| event.added).collect();
    let removed: Vec<&str> = events.iter().map(|event| event.removed).collect();
    let attributes: Vec<Option<&str>> = events.iter().map(|event| event.attributes).collect();
    tx.execute(
        "INSERT INTO audit_events \
         (tenant_id, user_id, username, kind, key, added, removed, cause, run_id, at, attributes) \
         SELECT $1::bigint, t.u, t.n, t.k, t.key, t.a, t.r, $2::text, $3::text, $4::bigint, t.attrs \
         FROM unnest($5::bigint[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], \
         $11::text[]) WITH ORDINALITY AS t(u, n, k, key, a, r, attrs, o) ORDER BY t.o",
        &[
            &key,
            &cause.cause,
            &cause.run_id,
            &cause.at,
            &users,
            &usernames,
            &kinds,
            &keys,
            &added,
            &removed,
            &attributes,
        ],
    )
    .await
    .map(drop)
}

/// Events of `tenant` matching `query`, newest first.
pub(super) async fn events(
    conn: &mut Conn,
    tenant: TenantId,
    query: &AuditQuery,
) -> Result<Vec<AuditEvent>, StoreError> {
    let key = tenant_key(tenant);
    let limit = big(query.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT));
    let user_id = query.user_id.map(|id| id.0);
    // One statement whatever the filters: an absent filter is a NULL that passes all.
    // `key` of an `updated` event lists field names, not an ABAC key; a `created`
    // event names its keys in `attributes`.
    let params: [&(dyn ToSql + Sync); 5] = [&key, &user_id, &query.key, &query.before, &limit];
    let rows = conn
        .query(
            "SELECT id, user_id, username, kind, key, added, removed, cause, run_id, at, attributes \
             FROM audit_events WHERE tenant_id = $1 \
             AND ($2::bigint IS NULL OR user_id = $2) \
             AND ($3::text IS NULL OR (kind = 'attribute' AND key = $3) \
                  OR (kind = 'created' AND attributes IS NOT NULL AND attributes::jsonb ? $3)) \
             AND ($4::bigint IS NULL OR id < $4) \
             ORDER BY id DESC LIMIT $5",
            &params,
        )
        .await?;
    rows.iter().map(decode_event).collect()
}

fn decode_event(row: &Row) -> Result<AuditEvent, StoreError> {
    let kind: &str = row.try_get(3)?;
    let kind = parse_kind(kind).ok_or_else(|| StoreError::Corrupt {
        table: "audit_events",
        column: "kind",
        reason: format!("unknown kind `{kind}`"),
    })?;
    let attributes: Option<&str> = row.try_get(10)?;
    Ok(AuditEvent {
        id: row.try_get(0)?,
        user_id: UserId(row.try_get(1)?),
        username: row.try_get(2)?,
        kind,
        key: row.try_get(4)?,
        added: parse_values(row.try_get(5)?, "added")?,
        removed: parse_values(row.try_get(6)?, "removed")?,
        attributes: attributes
            .map(|json| parse_attributes(json, "audit_events"))
            .transpose()?,
        cause: ChangeCause {
            cause: row.try_get(7)?,
            run_id: row.try_get(8)?,
            at: row.try_get(9)?,
        },
    })
}

/// The state of `tenant`; the default when it never synced.
pub(super) async fn sync_state(conn: &mut Conn, tenant: TenantId) -> Result<SyncState, StoreError> {
    let row = conn
        .query_opt(
            "SELECT high_water_mark, last_full_sync_at, last_success_at, mark_origin, sync_cookie \
             FROM sync_state WHERE tenant_id = $1",
            &[&tenant_key(tenant)],
        )
        .await?;
    let Some(row) = row else {
        return Ok(SyncState::default());
    };
    Ok(SyncState {
        high_water_mark: row.try_get(0)?,
        last_full_sync_at: row.try_get(1)?,
        last_success_at: row.try_get(2)?,
        mark_origin: row.try_get(3)?,
        sync_cookie: row.try_get(4)?,
    })
}

/// Replaces the state of `tenant`.
pub(super) async fn set_sync_state(
    conn: &mut Conn,
    tenant: TenantId,
    state: &SyncState,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO sync_state (tenant_id, high_water_mark, last_full_sync_at, last_success_at, \
         mark_origin, sync_cookie) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id) DO UPDATE SET \
         high_water_mark = excluded.high_water_mark, \
         last_full_sync_at = excluded.last_full_sync_at, \
         last_success_at = excluded.last_success_at, \
         mark_origin = excluded.mark_origin, sync_cookie = excluded.sync_cookie",
        &[
            &tenant_key(tenant),
            &state.high_water_mark,
            &state.last_full_sync_at,
            &state.last_success_at,
            &state.mark_origin,
            &state.sync_cookie,
        ],
    )
    .await
    .map(drop)
}

/// Records a run of `tenant`; returns its id.
pub(super) async fn record_run(
    conn: &mut Conn,
    tenant: TenantId,
    run: &SyncRunRecord,
) -> Result<i64, StoreError> {
    let rows = conn
        .query(
            "INSERT INTO sync_runs \
             (tenant_id, run_id, mode, dry_run, started_at, finished_at, outcome, summary) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            &[
                &tenant_key(tenant),
                &run.run_id,
                &run.mode,
                &run.dry_run,
                &run.started_at,
                &run.finished_at,
                &run.outcome,
                &run.summary,
            ],
        )
        .await?;
    let row = rows.first().ok_or(StoreError::Corrupt {
        table: "sync_runs",
        column: "id",
        reason: "the inserted run returned no id".into(),
    })?;
    Ok(row.try_get(0)?)
}

/// The `limit` (at most 1000) newest runs of `tenant`.
pub(super) async fn runs(
    conn: &mut Conn,
    tenant: TenantId,
    limit: u32,
) -> Result<Vec<SyncRunRecord>, StoreError> {
    let rows = conn
        .query(
            "SELECT run_id, mode, dry_run, started_at, finished_at, outcome, summary \
             FROM sync_runs WHERE tenant_id = $1 ORDER BY id DESC LIMIT $2",
            &[&tenant_key(tenant), &big(limit.min(MAX_RUNS))],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(SyncRunRecord {
                run_id: row.try_get(0)?,
                mode: row.try_get(1)?,
                dry_run: row.try_get(2)?,
                started_at: row.try_get(3)?,
                finished_at: row.try_get(4)?,
                outcome: row.try_get(5)?,
                summary: row.try_get(6)?,
            })
        })
        .collect()
}

/// Attribute bytes the tenant's users hold.
pub(super) async fn attribute_bytes(conn: &mut Conn, tenant: TenantId) -> Result<u64, StoreError> {
    let row = conn
        .query_opt(
            "SELECT attribute_bytes FROM tenant_usage WHERE tenant_id = $1",
            &[&tenant_key(tenant)],
        )
        .await?;
    Ok(match row {
        Some(row) => unsigned(row.try_get(0)?),
        None => 0,
    })
}

/// Prunes `tenant`'s history beyond `limits`, oldest first, in steps of one short
/// statement each; the number of audit events removed.
///
/// Runs after every sync, so a sync that has nothing to prune must pay next to
/// nothing: each limit is first checked with index probes (the oldest event's age;
/// the span of the tenant's event ids, which bounds their number from above), and
/// only a limit that may be passed reads further.
pub(super) async fn prune(
    conn: &mut Conn,
    tenant: TenantId,
    limits: &HistoryLimits,
) -> Result<u64, StoreError> {
    let key = tenant_key(tenant);
    let mut removed = 0;
    // Beyond the count: every event up to the newest one not kept.
    if let Some(last) = newest_beyond(conn, "audit_events", key, limits.max_events).await? {
        loop {
            let step = conn
                .execute(
                    "DELETE FROM audit_events WHERE tenant_id = $1 AND id IN (SELECT id FROM audit_events \
                     WHERE tenant_id = $1 AND id <= $2 ORDER BY id LIMIT $3)",
                    &[&key, &last, &STEP],
                )
                .await?;
            removed += step;
            if step < STEP.unsigned_abs() {
                break;
            }
        }
    }
    // Beyond the age: ids grow with time, so the oldest events come first; a step
    // that finds a kept event among its oldest is the last.
    if let Some(before) = limits.events_before {
        while oldest_event_at(conn, key)
            .await?
            .is_some_and(|at| at < before)
        {
            let step = conn
                .execute(
                    "DELETE FROM audit_events WHERE tenant_id = $1 AND id IN (SELECT id FROM audit_events \
                     WHERE tenant_id = $1 ORDER BY id LIMIT $3) AND at < $2",
                    &[&key, &before, &STEP],
                )
                .await?;
            removed += step;
            if step < STEP.unsigned_abs() {
                break;
            }
        }
    }
    if let Some(last) = newest_beyond(conn, "sync_runs", key, limits.max_runs).await? {
        conn.execute(
            "DELETE FROM sync_runs WHERE tenant_id = $1 AND id <= $2",
            &[&key, &last],
        )
        .await?;
    }
    Ok(removed)
}

/// When the tenant's oldest audit event was recorded; `None` when it has none.
async fn oldest_event_at(conn: &mut Conn, key: i64) -> Result<Option<i64>, StoreError> {
    let row = conn
        .query_opt(
            "SELECT at FROM audit_events WHERE tenant_id = $1 ORDER BY tenant_id, id LIMIT 1",
            &[&key],
        )
        .await?;
    Ok(row.map(|row| row.try_get(0)).transpose()?)
}

/// The id of the newest row of `table` (audit events or runs) of the tenant that is
/// not among its `keep` newest; `None` when it has no more than `keep`.
///
/// The tenant's rows lie between its lowest and highest id (two probes of the
/// `(tenant_id, id)` index), so a span of `keep` ids or fewer holds no more than
/// `keep` rows and nothing is counted.
async fn newest_beyond(
    conn: &mut Conn,
    table: &str,
    key: i64,
    keep: u64,
) -> Result<Option<i64>, StoreError> {
    let keep = i64::try_from(keep).unwrap_or(i64::MAX);
    let span = format!(
        "SELECT (SELECT id FROM {table} WHERE tenant_id = $1 ORDER BY tenant_id DESC, id DESC LIMIT 1) \
         - (SELECT id FROM {table} WHERE tenant_id = $1 ORDER BY tenant_id, id LIMIT 1) + 1"
    );
    let span: Option<i64> = conn.query_one(&span, &[&key]).await?.try_get(0)?;
    if span.is_none_or(|span| span <= keep) {
        return Ok(None);
    }
    let sql = format!(
        "SELECT id FROM {table} WHERE tenant_id = $1 ORDER BY tenant_id DESC, id DESC LIMIT 1 OFFSET $2"
    );
    let row = conn.query_opt(&sql, &[&key, &keep]).await?;
    Ok(row.map(|row| row.try_get(0)).transpose()?)
}
