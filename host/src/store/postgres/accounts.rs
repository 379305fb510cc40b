//! Accounts, sessions, personal access tokens and rate-limit attempts.

use std::collections::BTreeSet;

use tokio_postgres::Row;

use super::{Conn, Statements, Tx, is_unique_violation};
use crate::auth::Permission;
use crate::plugin::model::TenantId;
use crate::store::{
    Account, AccountId, AttemptId, Dialect, MAX_ATTEMPTS, NewAccount, NewPersonalToken,
    PersonalToken, SessionFacts, StoreError, Timestamp, tenant_from_key, tenant_key,
};

const COLUMNS: &str = "a.id, a.public_id, a.username, a.password_hash, a.tenant_id, a.permissions, \
                       a.totp_secret, a.totp_enabled, a.totp_last_step, a.created_at, a.email, a.email_2fa";

/// A personal access token never expires (the largest time there is).
const NEVER: Timestamp = i64::MAX;

fn decode(row: &Row) -> Result<Account, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        table: "accounts",
        column: "permissions",
        reason,
    };
    let tenant: Option<i64> = row.try_get(4)?;
    let names: Vec<String> =
        serde_json::from_str(row.try_get(5)?).map_err(|err| corrupt(err.to_string()))?;
    let permissions: BTreeSet<Permission> = names
        .iter()
        .map(|name| name.parse::<Permission>())
        .collect::<Result<_, _>>()
        .map_err(|err| corrupt(err.to_string()))?;
    Ok(Account {
        id: row.try_get(0)?,
        public_id: row.try_get(1)?,
        username: row.try_get(2)?,
        password_hash: row.try_get(3)?,
        tenant: tenant.map(tenant_from_key),
        permissions,
        totp_secret: row.try_get(6)?,
        totp_enabled: row.try_get(7)?,
        totp_last_step: row.try_get(8)?,
        created_at: row.try_get(9)?,
        email: row.try_get(10)?,
        email_2fa: row.try_get(11)?,
    })
}

pub(super) async fn create(
    conn: &mut Conn,
    new: &NewAccount,
    now: Timestamp,
) -> Result<Account, StoreError> {
    let permissions: Vec<&str> = new.permissions.iter().map(|p| p.as_str()).collect();
    let permissions = serde_json::to_string(&permissions).unwrap_or_else(|_| "[]".into());
    let statement = conn
        .prepare(&format!(
            "INSERT INTO accounts AS a (public_id, username, password_hash, tenant_id, permissions, created_at, email) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
        ))
        .await?;
    let inserted = conn
        .client
        .query_one(
            &statement,
            &[
                &new.public_id,
                &new.username,
                &new.password_hash,
                &new.tenant.map(tenant_key),
                &permissions,
                &now,
                &new.email,
            ],
        )
        .await;
    match inserted {
        Ok(row) => decode(&row),
        Err(err) if is_unique_violation(&err) => {
            Err(StoreError::AccountExists(new.username.clone()))
        }
        Err(err) => Err(err.into()),
    }
}

async fn one(
    conn: &mut Conn,
    condition: &str,
    param: &(dyn tokio_postgres::types::ToSql + Sync),
) -> Result<Option<Account>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM accounts a WHERE {condition}");
    conn.query_opt(&sql, &[param])
        .await?
        .map(|row| decode(&row))
        .transpose()
}

pub(super) async fn by_id(conn: &mut Conn, id: AccountId) -> Result<Option<Account>, StoreError> {
    one(conn, "a.id = $1", &id).await
}

pub(super) async fn by_username(
    conn: &mut Conn,
    username: &str,
) -> Result<Option<Account>, StoreError> {
    one(conn, "a.username = $1", &username).await
}

/// The one account whose (proven) email address is `email`, compared without case;
/// `None` when none or several have it.
pub(super) async fn by_email(conn: &mut Conn, email: &str) -> Result<Option<Account>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM accounts a WHERE lower(a.email) = lower($1) LIMIT 2");
    let rows = conn.query(&sql, &[&email]).await?;
    match rows.as_slice() {
        [row] => decode(row).map(Some),
        _ => Ok(None),
    }
}

pub(super) async fn list(
    conn: &mut Conn,
    tenant: Option<TenantId>,
) -> Result<Vec<Account>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM accounts a WHERE $1::bigint IS NULL OR a.tenant_id = $1 ORDER BY a.id"
    );
    let rows = conn.query(&sql, &[&tenant.map(tenant_key)]).await?;
    rows.iter().map(decode).collect()
}

pub(super) async fn session_account(
    conn: &mut Conn,
    token_hash: &[u8],
    dialect: Dialect,
    now: Timestamp,
) -> Result<Option<(Account, SessionFacts)>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS}, s.name, s.bypass_two_factor, s.two_factor_at \
         FROM sessions s JOIN accounts a ON a.id = s.account_id \
         WHERE s.token_hash = $1 AND s.dialect = $2 AND s.expires_at > $3"
    );
    let row = conn
        .query_opt(&sql, &[&token_hash, &dialect.as_str(), &now])
        .await?;
    let Some(row) = row else { return Ok(None) };
    let facts = SessionFacts {
        personal_token: row.try_get(12)?,
        bypass_two_factor: row.try_get(13)?,
        two_factor_at: row.try_get(14)?,
    };
    Ok(Some((decode(&row)?, facts)))
}

pub(super) async fn create_personal_token(
    conn: &mut Conn,
    account: AccountId,
    token: &NewPersonalToken<'_>,
    now: Timestamp,
) -> Result<(), StoreError> {
    let statement = conn
        .prepare(
            "INSERT INTO sessions (token_hash, account_id, dialect, created_at, expires_at, name, \
             bypass_two_factor, last_part) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .await?;
    let inserted = conn
        .client
        .execute(
            &statement,
            &[
                &token.token_hash,
                &account,
                &Dialect::RocketChat.as_str(),
                &now,
                &NEVER,
                &token.name,
                &token.bypass_two_factor,
                &token.last_part,
            ],
        )
        .await;
    match inserted {
        Ok(_) => Ok(()),
        Err(err) if is_unique_violation(&err) => {
            Err(StoreError::TokenExists(token.name.to_owned()))
        }
        Err(err) => Err(err.into()),
    }
}

pub(super) async fn personal_tokens(
    conn: &mut Conn,
    account: AccountId,
) -> Result<Vec<PersonalToken>, StoreError> {
    let rows = conn
        .query(
            "SELECT name, created_at, coalesce(last_part, ''), bypass_two_factor FROM sessions \
             WHERE account_id = $1 AND name IS NOT NULL ORDER BY created_at, name",
            &[&account],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(PersonalToken {
                name: row.try_get(0)?,
                created_at: row.try_get(1)?,
                last_part: row.try_get(2)?,
                bypass_two_factor: row.try_get(3)?,
            })
        })
        .collect()
}

pub(super) async fn confirm_email(
    tx: &mut Tx<'_>,
    id: AccountId,
    code_hash: &[u8],
    now: Timestamp,
) -> Result<Option<String>, StoreError> {
    let row = tx
        .query_opt(
            "DELETE FROM email_verifications WHERE account_id = $1 AND code_hash = $2 \
             AND expires_at > $3 RETURNING address",
            &[&id, &code_hash, &now],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let address: String = row.try_get(0)?;
    tx.execute(
        "UPDATE accounts SET email = $2, email_2fa = TRUE WHERE id = $1",
        &[&id, &address],
    )
    .await?;
    // A code sent to the old address must not outlive the change.
    tx.execute("DELETE FROM email_codes WHERE account_id = $1", &[&id])
        .await?;
    Ok(Some(address))
}

/// The advisory lock of one scope and key: the first 8 bytes of their SHA-256.
fn attempt_lock(scope: &str, key: &[u8]) -> i64 {
    use sha2::Digest;
    let digest = sha2::Sha256::new()
        .chain_update(scope.as_bytes())
        .chain_update([0])
        .chain_update(key)
        .finalize();
    let mut first = [0; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// [`crate::store::AccountStore::count_attempt`]: the check and the count are one step
/// for every replica, under an advisory lock of the scope and key.
pub(super) async fn count_attempt(
    tx: &mut Tx<'_>,
    scope: &str,
    key: &str,
    max: u32,
    expires_at: Timestamp,
    now: Timestamp,
) -> Result<Result<AttemptId, i64>, StoreError> {
    let key = key.as_bytes();
    tx.lock(attempt_lock(scope, key)).await?;
    tx.execute(
        "DELETE FROM rate_limit_attempts WHERE expires_at <= $1",
        &[&now],
    )
    .await?;
    let row = tx
        .query_one(
            "SELECT count(*), min(expires_at) FROM rate_limit_attempts \
             WHERE scope = $1 AND key = $2 AND expires_at > $3",
            &[&scope, &key, &now],
        )
        .await?;
    let count: i64 = row.try_get(0)?;
    let oldest: Option<i64> = row.try_get(1)?;
    if count >= i64::from(max) {
        return Ok(Err(oldest.unwrap_or(expires_at).saturating_sub(now).max(0)));
    }
    let id: i64 = tx
        .query_one(
            "INSERT INTO rate_limit_attempts (scope, key, expires_at) VALUES ($1, $2, $3) RETURNING id",
            &[&scope, &key, &expires_at],
        )
        .await?
        .try_get(0)?;
    // Now and then, the bound: the oldest beyond it go.
    if id % 1024 == 0 {
        let bound = i64::try_from(MAX_ATTEMPTS).unwrap_or(i64::MAX);
        tx.execute(
            "DELETE FROM rate_limit_attempts WHERE id <= $1 - $2",
            &[&id, &bound],
        )
        .await?;
    }
    Ok(Ok(id))
}
