//! Reading users: lookups by directory id, username or any identifier, and filtered
//! listing. A user's ABAC values are in its row (`users.attributes`, JSON);
//! `user_attributes` only finds users by key and value.

use rusqlite::types::{ToSql, Type};
use rusqlite::{Connection, OptionalExtension, Params, Row};

use super::{json_ids, json_strings, parse_attributes, tenant_key};
use crate::plugin::model::TenantId;
use crate::store::rows::like_pattern;
use crate::store::{
    Avatar, LdapUserRef, MappedDigest, StoreError, StoredUser, UserFields, UserId, UserIdentifiers,
    UserQuery, UserSource,
};

/// Default and maximum page sizes of [`list`].
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

/// `SELECT` of the columns [`decode_user`] reads from `users AS u`, followed by the
/// rest of the query (from the `FROM` list on).
macro_rules! select_users {
    ($($rest:literal),+) => {
        concat!(
            "SELECT u.id, u.username, u.email, u.display_name, u.language, u.active, \
             u.source, u.ldap_id, u.ldap_dn, u.avatar_sha256, u.created_at, u.updated_at, \
             u.mapped_digest, u.attributes FROM ",
            $($rest),+
        )
    };
}

/// `SELECT` of the columns [`decode_ref`] reads from `users AS u`.
macro_rules! select_refs {
    () => {
        "SELECT u.id, u.ldap_id, u.username, u.active, u.mapped_digest "
    };
}

// The lookups by lists join from `json_each` with CROSS JOIN, which SQLite keeps in
// the written order: one unique-index probe per name. Left to itself, the planner
// (without ANALYZE statistics) prefers walking the tenant's whole (tenant_id, id)
// index in id order and testing each user against the list.

/// Users of tenant ?1 with an LDAP id in the JSON array ?2 (without duplicates).
const BY_LDAP_IDS: &str = select_users!(
    "json_each(?2) AS w CROSS JOIN users AS u ",
    "WHERE u.tenant_id = ?1 AND u.ldap_id = w.value ORDER BY u.id"
);

/// Users of tenant ?1 with a username in the JSON array ?2 (without duplicates).
const BY_USERNAMES: &str = select_users!(
    "json_each(?2) AS w CROSS JOIN users AS u ",
    "WHERE u.tenant_id = ?1 AND u.username = w.value ORDER BY u.id"
);

/// Users of tenant ?1 with a username in ?2, an id in ?3, an email in ?4
/// (case-insensitive) or an LDAP id in ?5 (JSON arrays): a UNION of index probes.
const FIND: &str = select_users!(
    "users AS u WHERE u.tenant_id = ?1 AND u.id IN (",
    "SELECT u.id FROM json_each(?2) AS w CROSS JOIN users AS u ",
    "WHERE u.tenant_id = ?1 AND u.username = w.value ",
    "UNION SELECT u.id FROM json_each(?3) AS w CROSS JOIN users AS u ",
    "WHERE u.tenant_id = ?1 AND u.id = w.value ",
    "UNION SELECT u.id FROM json_each(?4) AS w CROSS JOIN users AS u ",
    "WHERE u.tenant_id = ?1 AND u.email = w.value COLLATE NOCASE ",
    "UNION SELECT u.id FROM json_each(?5) AS w CROSS JOIN users AS u ",
    "WHERE u.tenant_id = ?1 AND u.ldap_id = w.value",
    ") ORDER BY u.id"
);

/// Users of `tenant` with one of `ldap_ids`.
pub(super) fn by_ldap_ids(
    conn: &Connection,
    tenant: TenantId,
    ldap_ids: &[String],
) -> Result<Vec<StoredUser>, StoreError> {
    let params = (tenant_key(tenant), json_strings(distinct(ldap_ids)));
    query_users(conn, BY_LDAP_IDS, params)
}

/// Briefly, the users of `tenant` with one of `ldap_ids`.
pub(super) fn known_by_ldap_ids(
    conn: &Connection,
    tenant: TenantId,
    ldap_ids: &[String],
) -> Result<Vec<LdapUserRef>, StoreError> {
    let mut stmt = conn.prepare_cached(concat!(
        select_refs!(),
        "FROM json_each(?2) AS w CROSS JOIN users AS u \
         WHERE u.tenant_id = ?1 AND u.ldap_id = w.value"
    ))?;
    let params = (tenant_key(tenant), json_strings(distinct(ldap_ids)));
    let refs = stmt
        .query_map(params, decode_ref)?
        .collect::<Result<_, _>>()?;
    Ok(refs)
}

/// Users of `tenant` with one of `usernames`.
pub(super) fn by_usernames(
    conn: &Connection,
    tenant: TenantId,
    usernames: &[String],
) -> Result<Vec<StoredUser>, StoreError> {
    let params = (tenant_key(tenant), json_strings(distinct(usernames)));
    query_users(conn, BY_USERNAMES, params)
}

/// Users of `tenant` named by any of `identifiers`, each once. Ids that are not
/// numbers name nobody.
pub(super) fn find(
    conn: &Connection,
    tenant: TenantId,
    identifiers: &UserIdentifiers,
) -> Result<Vec<StoredUser>, StoreError> {
    let ids: Vec<i64> = identifiers
        .ids
        .iter()
        .filter_map(|id| id.trim().parse().ok())
        .collect();
    if identifiers.usernames.is_empty()
        && ids.is_empty()
        && identifiers.emails.is_empty()
        && identifiers.ldap_ids.is_empty()
    {
        return Ok(Vec::new());
    }
    let params = (
        tenant_key(tenant),
        json_strings(&identifiers.usernames),
        json_ids(ids),
        json_strings(&identifiers.emails),
        json_strings(&identifiers.ldap_ids),
    );
    query_users(conn, FIND, params)
}

/// One user of `tenant`.
pub(super) fn one(
    conn: &Connection,
    tenant: TenantId,
    id: UserId,
) -> Result<Option<StoredUser>, StoreError> {
    let sql = select_users!("users AS u WHERE u.tenant_id = ?1 AND u.id = ?2");
    Ok(query_users(conn, sql, (tenant_key(tenant), id.0))?.pop())
}

/// Users of `tenant` matching `query`, in id order.
pub(super) fn list(
    conn: &Connection,
    tenant: TenantId,
    query: &UserQuery,
) -> Result<Vec<StoredUser>, StoreError> {
    let tenant_key = tenant_key(tenant);
    let after = query.after.map_or(i64::MIN, |id| id.0);
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    let active = query.active;
    let pattern = query.search.as_deref().map(like_pattern);

    // Fixed fragments only: every value is a bound parameter. At most 24 shapes, each
    // prepared once per connection.
    let mut sql = String::from(select_users!(
        "users AS u WHERE u.tenant_id = :tenant AND u.id > :after"
    ));
    let mut params: Vec<(&str, &dyn ToSql)> = vec![(":tenant", &tenant_key), (":after", &after)];
    match (&query.attribute_key, &query.attribute_value) {
        (Some(key), value) => {
            sql.push_str(
                " AND u.id IN (SELECT user_id FROM user_attributes \
                 WHERE tenant_id = :tenant AND key = :key",
            );
            params.push((":key", key));
            if let Some(value) = value {
                sql.push_str(" AND value = :value");
                params.push((":value", value));
            }
            sql.push(')');
        }
        (None, Some(value)) => {
            // A value without a key: the value under any key.
            sql.push_str(
                " AND u.id IN (SELECT user_id FROM user_attributes \
                 WHERE tenant_id = :tenant AND value = :value)",
            );
            params.push((":value", value));
        }
        (None, None) => {}
    }
    if let Some(active) = &active {
        sql.push_str(" AND u.active = :active");
        params.push((":active", active));
    }
    if let Some(pattern) = &pattern {
        sql.push_str(
            " AND (u.username LIKE :search ESCAPE '\\' OR u.email LIKE :search ESCAPE '\\' \
             OR u.display_name LIKE :search ESCAPE '\\')",
        );
        params.push((":search", pattern));
    }
    sql.push_str(" ORDER BY u.id LIMIT :limit");
    params.push((":limit", &limit));
    query_users(conn, &sql, params.as_slice())
}

/// Number of users of `tenant`.
pub(super) fn count(conn: &Connection, tenant: TenantId) -> Result<u64, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT count(*) FROM users WHERE tenant_id = ?1")?;
    let count: i64 = stmt.query_row([tenant_key(tenant)], |row| row.get(0))?;
    // count(*) is never negative.
    Ok(count.unsigned_abs())
}

/// Number of directory-sourced users of `tenant` (those of [`ldap_index`]).
pub(super) fn count_ldap(conn: &Connection, tenant: TenantId) -> Result<u64, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT count(*) FROM users WHERE tenant_id = ?1 AND source = 'ldap' \
         AND ldap_id IS NOT NULL",
    )?;
    let count: i64 = stmt.query_row([tenant_key(tenant)], |row| row.get(0))?;
    Ok(count.unsigned_abs())
}

/// Every directory-sourced user of `tenant`, briefly.
pub(super) fn ldap_page(
    conn: &Connection,
    tenant: TenantId,
    after: UserId,
    limit: u32,
) -> Result<Vec<LdapUserRef>, StoreError> {
    let mut stmt = conn.prepare_cached(concat!(
        select_refs!(),
        "FROM users AS u WHERE u.tenant_id = ?1 AND u.source = 'ldap' \
         AND u.ldap_id IS NOT NULL AND u.id > ?2 ORDER BY u.id LIMIT ?3"
    ))?;
    let refs = stmt
        .query_map(
            rusqlite::params![tenant_key(tenant), after.0, limit],
            decode_ref,
        )?
        .collect::<Result<_, _>>()?;
    Ok(refs)
}

/// An [`LdapUserRef`] from the columns of `select_refs!`.
fn decode_ref(row: &Row<'_>) -> rusqlite::Result<LdapUserRef> {
    Ok(LdapUserRef {
        id: UserId(row.get(0)?),
        ldap_id: row.get(1)?,
        username: row.get(2)?,
        active: row.get(3)?,
        mapped: digest(row.get(4)?),
    })
}

/// The avatar of a user of `tenant`.
pub(super) fn avatar(
    conn: &Connection,
    tenant: TenantId,
    id: UserId,
) -> Result<Option<Avatar>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT avatar, avatar_sha256 FROM users WHERE tenant_id = ?1 AND id = ?2",
    )?;
    let row: Option<(Option<Vec<u8>>, Option<String>)> = stmt
        .query_row((tenant_key(tenant), id.0), |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    Ok(match row {
        Some((Some(bytes), Some(sha256))) => Some(Avatar { bytes, sha256 }),
        _ => None,
    })
}

/// Runs a [`select_users!`] query.
fn query_users(
    conn: &Connection,
    sql: &str,
    params: impl Params,
) -> Result<Vec<StoredUser>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut users = Vec::new();
    while let Some(row) = rows.next()? {
        users.push(decode_user(row)?);
    }
    Ok(users)
}

/// A stored mapped digest; anything but 16 bytes is not one this version wrote, so
/// it counts as unknown.
fn digest(bytes: Option<Vec<u8>>) -> Option<MappedDigest> {
    bytes
        .and_then(|bytes| <[u8; 16]>::try_from(bytes.as_slice()).ok())
        .map(MappedDigest)
}

/// A user from a [`select_users!`] row.
fn decode_user(row: &Row<'_>) -> Result<StoredUser, StoreError> {
    let source: String = row.get(6)?;
    let source = match source.as_str() {
        "ldap" => UserSource::Ldap,
        "local" => UserSource::Local,
        other => {
            return Err(StoreError::Corrupt {
                table: "users",
                column: "source",
                reason: format!("unknown source `{other}`"),
            });
        }
    };
    Ok(StoredUser {
        id: UserId(row.get(0)?),
        fields: UserFields {
            username: row.get(1)?,
            email: row.get(2)?,
            display_name: row.get(3)?,
            language: row.get(4)?,
            active: row.get(5)?,
            ldap_id: row.get(7)?,
            ldap_dn: row.get(8)?,
            attributes: parse_attributes(
                row.get_ref(13)?.as_str().map_err(|err| {
                    rusqlite::Error::FromSqlConversionFailure(13, Type::Text, Box::new(err))
                })?,
                "users",
            )?,
        },
        source,
        avatar_sha256: row.get(9)?,
        created_at: row.get(10)?,
        updated_at: row.get(11)?,
        mapped: digest(row.get(12)?),
    })
}

/// `values` without duplicates (each would return its user again).
fn distinct(values: &[String]) -> Vec<&String> {
    let set: std::collections::BTreeSet<&String> = values.iter().collect();
    set.into_iter().collect()
}

#[cfg(test)]
mod tests;
