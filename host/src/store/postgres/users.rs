//! Reading users: lookups by directory id, username or any identifier, and filtered
//! listing. Lists of names are bound as one array (`= ANY($2)`), so a lookup is one
//! query whatever its size.

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{Conn, Statements, big, unsigned};
use crate::plugin::model::TenantId;
use crate::store::rows::like_pattern;
use crate::store::{
    Avatar, LdapUserRef, MappedDigest, StoreError, StoredUser, UserFields, UserId, UserIdentifiers,
    UserQuery, UserSource, parse_attributes, tenant_key,
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
             u.mapped_digest, u.attributes::text FROM ",
            $($rest),+
        )
    };
}

/// `SELECT` of the columns [`decode_ref`] reads from `users AS u`.
const SELECT_REFS: &str = "SELECT u.id, u.ldap_id, u.username, u.active, u.mapped_digest ";

/// Users of `tenant` with one of `ldap_ids`.
pub(super) async fn by_ldap_ids(
    conn: &mut Conn,
    tenant: TenantId,
    ldap_ids: &[String],
) -> Result<Vec<StoredUser>, StoreError> {
    const SQL: &str =
        select_users!("users AS u WHERE u.tenant_id = $1 AND u.ldap_id = ANY($2) ORDER BY u.id");
    query_users(conn, SQL, &[&tenant_key(tenant), &ldap_ids]).await
}

/// Briefly, the users of `tenant` with one of `ldap_ids`.
pub(super) async fn known_by_ldap_ids(
    conn: &mut Conn,
    tenant: TenantId,
    ldap_ids: &[String],
) -> Result<Vec<LdapUserRef>, StoreError> {
    let sql =
        format!("{SELECT_REFS} FROM users AS u WHERE u.tenant_id = $1 AND u.ldap_id = ANY($2)");
    let rows = conn.query(&sql, &[&tenant_key(tenant), &ldap_ids]).await?;
    rows.iter().map(decode_ref).collect()
}

/// Users of `tenant` with one of `usernames`.
pub(super) async fn by_usernames(
    conn: &mut Conn,
    tenant: TenantId,
    usernames: &[String],
) -> Result<Vec<StoredUser>, StoreError> {
    const SQL: &str =
        select_users!("users AS u WHERE u.tenant_id = $1 AND u.username = ANY($2) ORDER BY u.id");
    query_users(conn, SQL, &[&tenant_key(tenant), &usernames]).await
}

/// Users of `tenant` named by any of `identifiers`, each once. Ids that are not
/// numbers name nobody; emails compare without case.
pub(super) async fn find(
    conn: &mut Conn,
    tenant: TenantId,
    identifiers: &UserIdentifiers,
) -> Result<Vec<StoredUser>, StoreError> {
    const SQL: &str = select_users!(
        "users AS u WHERE u.tenant_id = $1 AND (u.username = ANY($2) OR u.id = ANY($3) ",
        "OR lower(u.email) = ANY($4) OR u.ldap_id = ANY($5)) ORDER BY u.id"
    );
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
    let emails: Vec<String> = identifiers
        .emails
        .iter()
        .map(|email| email.to_lowercase())
        .collect();
    query_users(
        conn,
        SQL,
        &[
            &tenant_key(tenant),
            &identifiers.usernames,
            &ids,
            &emails,
            &identifiers.ldap_ids,
        ],
    )
    .await
}

/// One user of `tenant`.
pub(super) async fn one(
    conn: &mut Conn,
    tenant: TenantId,
    id: UserId,
) -> Result<Option<StoredUser>, StoreError> {
    const SQL: &str = select_users!("users AS u WHERE u.tenant_id = $1 AND u.id = $2");
    Ok(query_users(conn, SQL, &[&tenant_key(tenant), &id.0])
        .await?
        .pop())
}

/// Users of `tenant` matching `query`, in id order.
pub(super) async fn list(
    conn: &mut Conn,
    tenant: TenantId,
    query: &UserQuery,
) -> Result<Vec<StoredUser>, StoreError> {
    let tenant_key = tenant_key(tenant);
    let after = query.after.map_or(i64::MIN, |id| id.0);
    let limit = big(query.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT));
    let pattern = query.search.as_deref().map(like_pattern);

    // Fixed fragments only: every value is a bound parameter.
    let mut sql = String::from(select_users!(
        "users AS u WHERE u.tenant_id = $1 AND u.id > $2"
    ));
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&tenant_key, &after];
    // The users' values are JSONB under a GIN index; each test below is one it answers.
    let path;
    match (&query.attribute_key, &query.attribute_value) {
        (Some(key), Some(value)) => {
            params.push(key);
            params.push(value);
            let (k, v) = (params.len() - 1, params.len());
            sql.push_str(&format!(
                " AND u.attributes @> jsonb_build_object(${k}::text, jsonb_build_array(${v}::text))"
            ));
        }
        (Some(key), None) => {
            // A key is stored only with values; `<> '[]'` holds it to that.
            params.push(key);
            let k = params.len();
            sql.push_str(&format!(
                " AND u.attributes ? ${k}::text AND u.attributes -> ${k}::text <> '[]'::jsonb"
            ));
        }
        (None, Some(value)) => {
            // A value without a key: the value under any key.
            path = value_anywhere(value);
            push(
                &mut sql,
                &mut params,
                " AND u.attributes @@ ?::text::jsonpath",
                &path,
            );
        }
        (None, None) => {}
    }
    if let Some(active) = &query.active {
        push(&mut sql, &mut params, " AND u.active = ?", active);
    }
    if let Some(pattern) = &pattern {
        // ILIKE: the search ignores case, as SQLite's LIKE does.
        push(
            &mut sql,
            &mut params,
            " AND (u.username ILIKE ? ESCAPE '\\' OR u.email ILIKE ? ESCAPE '\\' \
             OR u.display_name ILIKE ? ESCAPE '\\')",
            pattern,
        );
    }
    push(&mut sql, &mut params, " ORDER BY u.id LIMIT ?", &limit);
    query_users(conn, &sql, &params).await
}

/// Appends `fragment` to `sql` with its `?` (each one) bound to `value`.
fn push<'a>(
    sql: &mut String,
    params: &mut Vec<&'a (dyn ToSql + Sync)>,
    fragment: &str,
    value: &'a (dyn ToSql + Sync),
) {
    params.push(value);
    sql.push_str(&fragment.replace('?', &format!("${}", params.len())));
}

/// The JSON path predicate "`value` is among the values of some key".
fn value_anywhere(value: &str) -> String {
    // A JSON string literal is a jsonpath string literal (the same escapes).
    let literal = serde_json::Value::from(value).to_string();
    format!("$.*[*] == {literal}")
}

/// Number of users of `tenant`.
pub(super) async fn count(conn: &mut Conn, tenant: TenantId) -> Result<u64, StoreError> {
    let rows = conn
        .query(
            "SELECT count(*) FROM users WHERE tenant_id = $1",
            &[&tenant_key(tenant)],
        )
        .await?;
    let count: i64 = rows.first().map_or(Ok(0), |row| row.try_get(0))?;
    Ok(unsigned(count))
}

/// Number of directory-sourced users of `tenant` (those of [`ldap_index`]).
pub(super) async fn count_ldap(conn: &mut Conn, tenant: TenantId) -> Result<u64, StoreError> {
    let rows = conn
        .query(
            "SELECT count(*) FROM users WHERE tenant_id = $1 AND source = 'ldap' \
             AND ldap_id IS NOT NULL",
            &[&tenant_key(tenant)],
        )
        .await?;
    let count: i64 = rows.first().map_or(Ok(0), |row| row.try_get(0))?;
    Ok(unsigned(count))
}

/// Every directory-sourced user of `tenant`, briefly.
pub(super) async fn ldap_page(
    conn: &mut Conn,
    tenant: TenantId,
    after: UserId,
    limit: u32,
) -> Result<Vec<LdapUserRef>, StoreError> {
    let sql = format!(
        "{SELECT_REFS} FROM users AS u WHERE u.tenant_id = $1 AND u.source = 'ldap' \
         AND u.ldap_id IS NOT NULL AND u.id > $2 ORDER BY u.id LIMIT $3"
    );
    let rows = conn
        .query(&sql, &[&tenant_key(tenant), &after.0, &i64::from(limit)])
        .await?;
    rows.iter().map(decode_ref).collect()
}

/// An [`LdapUserRef`] from the columns of [`SELECT_REFS`].
fn decode_ref(row: &Row) -> Result<LdapUserRef, StoreError> {
    Ok(LdapUserRef {
        id: UserId(row.try_get(0)?),
        ldap_id: row.try_get(1)?,
        username: row.try_get(2)?,
        active: row.try_get(3)?,
        mapped: digest(row.try_get(4)?),
    })
}

/// The avatar of a user of `tenant`.
pub(super) async fn avatar(
    conn: &mut Conn,
    tenant: TenantId,
    id: UserId,
) -> Result<Option<Avatar>, StoreError> {
    let row = conn
        .query_opt(
            "SELECT avatar, avatar_sha256 FROM users WHERE tenant_id = $1 AND id = $2",
            &[&tenant_key(tenant), &id.0],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let bytes: Option<Vec<u8>> = row.try_get(0)?;
    let sha256: Option<String> = row.try_get(1)?;
    Ok(match (bytes, sha256) {
        (Some(bytes), Some(sha256)) => Some(Avatar { bytes, sha256 }),
        _ => None,
    })
}

/// Runs a [`select_users!`] query.
async fn query_users(
    conn: &mut Conn,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<StoredUser>, StoreError> {
    conn.query(sql, params)
        .await?
        .iter()
        .map(decode_user)
        .collect()
}

/// A stored mapped digest; anything but 16 bytes is not one this version wrote, so
/// it counts as unknown.
fn digest(bytes: Option<Vec<u8>>) -> Option<MappedDigest> {
    bytes
        .and_then(|bytes| <[u8; 16]>::try_from(bytes.as_slice()).ok())
        .map(MappedDigest)
}

/// A user from a [`select_users!`] row.
fn decode_user(row: &Row) -> Result<StoredUser, StoreError> {
    let source: &str = row.try_get(6)?;
    let source = match source {
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
        id: UserId(row.try_get(0)?),
        fields: UserFields {
            username: row.try_get(1)?,
            email: row.try_get(2)?,
            display_name: row.try_get(3)?,
            language: row.try_get(4)?,
            active: row.try_get(5)?,
            ldap_id: row.try_get(7)?,
            ldap_dn: row.try_get(8)?,
            attributes: parse_attributes(row.try_get(13)?, "users")?,
        },
        source,
        avatar_sha256: row.try_get(9)?,
        created_at: row.try_get(10)?,
        updated_at: row.try_get(11)?,
        mapped: digest(row.try_get(12)?),
    })
}
