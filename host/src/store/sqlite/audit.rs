//! The audit trail: writing events inside an apply transaction, and reading them back
//! newest first.

use rusqlite::types::ToSql;
use rusqlite::{Connection, Row};

use super::{parse_attributes, tenant_key};
use crate::plugin::model::TenantId;
use crate::store::rows::{parse_kind, parse_values};
use crate::store::{AuditEvent, AuditQuery, ChangeCause, StoreError, UserId};

/// Default and maximum page sizes of [`events`].
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

pub(super) use crate::store::rows::NewEvent;

/// Records `events` of `tenant`, made for `cause`, in their order (their ids
/// increase). One prepared single-row `INSERT` each: SQLite runs a multi-row `VALUES`
/// as a co-routine, which measured slower than repeating the statement.
pub(super) fn insert_all(
    conn: &Connection,
    tenant: TenantId,
    cause: &ChangeCause,
    events: &[NewEvent<'_>],
) -> Result<(), StoreError> {
    // OR FAIL: SQLite keeps no statement journal for it (a tenth of an import's write
    // time). Nothing partial is ever committed: any error rolls the caller's whole
    // transaction back.
    let mut stmt = conn.prepare_cached(
        "INSERT OR FAIL INTO audit_events \
         (tenant_id, user_id, username, kind, key, added, removed, cause, run_id, at, attributes) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    let tenant = tenant_key(tenant);
    for event in events {
        stmt.execute((
            tenant,
            event.user_id,
            event.username,
            event.kind.as_str(),
            event.key,
            event.added,
            event.removed,
            &cause.cause,
            &cause.run_id,
            cause.at,
            event.attributes,
        ))?;
    }
    Ok(())
}

/// Records `event` of `tenant`, made for `cause`.
pub(super) fn insert(
    conn: &Connection,
    tenant: TenantId,
    cause: &ChangeCause,
    event: &NewEvent<'_>,
) -> Result<(), StoreError> {
    insert_all(conn, tenant, cause, std::slice::from_ref(event))
}

/// Events of `tenant` matching `query`, newest first.
pub(super) fn events(
    conn: &Connection,
    tenant: TenantId,
    query: &AuditQuery,
) -> Result<Vec<AuditEvent>, StoreError> {
    let tenant_key = tenant_key(tenant);
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    let user_id = query.user_id.map(|id| id.0);

    let mut sql = String::from(
        "SELECT id, user_id, username, kind, key, added, removed, cause, run_id, at, attributes \
         FROM audit_events WHERE tenant_id = :tenant",
    );
    let mut params: Vec<(&str, &dyn ToSql)> = vec![(":tenant", &tenant_key)];
    if let Some(user_id) = &user_id {
        sql.push_str(" AND user_id = :user");
        params.push((":user", user_id));
    }
    if let Some(key) = &query.key {
        // `key` of an `updated` event lists field names, not an ABAC key. A `created`
        // event names its keys in `attributes`.
        sql.push_str(
            " AND ((kind = 'attribute' AND key = :key) \
             OR (kind = 'created' AND attributes IS NOT NULL \
                 AND EXISTS (SELECT 1 FROM json_each(attributes) WHERE json_each.key = :key)))",
        );
        params.push((":key", key));
    }
    if let Some(before) = &query.before {
        sql.push_str(" AND id < :before");
        params.push((":before", before));
    }
    sql.push_str(" ORDER BY id DESC LIMIT :limit");
    params.push((":limit", &limit));

    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params.as_slice())?;
    let mut events = Vec::new();
    while let Some(row) = rows.next()? {
        events.push(decode_event(row)?);
    }
    Ok(events)
}

fn decode_event(row: &Row<'_>) -> Result<AuditEvent, StoreError> {
    let kind: String = row.get(3)?;
    let kind = parse_kind(&kind).ok_or_else(|| StoreError::Corrupt {
        table: "audit_events",
        column: "kind",
        reason: format!("unknown kind `{kind}`"),
    })?;
    let added: String = row.get(5)?;
    let removed: String = row.get(6)?;
    let attributes: Option<String> = row.get(10)?;
    Ok(AuditEvent {
        id: row.get(0)?,
        user_id: UserId(row.get(1)?),
        username: row.get(2)?,
        kind,
        key: row.get(4)?,
        added: parse_values(&added, "added")?,
        removed: parse_values(&removed, "removed")?,
        attributes: attributes
            .map(|json| parse_attributes(&json, "audit_events"))
            .transpose()?,
        cause: ChangeCause {
            cause: row.get(7)?,
            run_id: row.get(8)?,
            at: row.get(9)?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::store::testing::*;
    use crate::store::{AuditKind, UserStore};

    #[test]
    fn every_kind_round_trips() {
        for kind in [
            AuditKind::Created,
            AuditKind::Updated,
            AuditKind::Attribute,
            AuditKind::Deactivated,
            AuditKind::Reactivated,
            AuditKind::Deleted,
        ] {
            assert_eq!(parse_kind(kind.as_str()), Some(kind));
        }
        assert_eq!(parse_kind("exploded"), None);
    }

    #[test]
    fn a_corrupt_value_list_is_reported() {
        let store = SqliteStore::open_in_memory().unwrap();
        create(&store, T1, fields("alice"));
        store
            .writer()
            .execute("UPDATE audit_events SET added = 'nope'", [])
            .unwrap();
        let err = store.audit_events(T1, &AuditQuery::default()).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Corrupt {
                    column: "added",
                    ..
                }
            ),
            "{err}"
        );
    }
}
