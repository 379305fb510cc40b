//! Accounts and sessions.

use std::collections::BTreeSet;

use rusqlite::{Connection, OptionalExtension, Row};

use super::{tenant_from_key, tenant_key};
use crate::auth::Permission;
use crate::plugin::model::TenantId;
use crate::store::{
    Account, AccountId, Dialect, NewAccount, NewPersonalToken, PersonalToken, SessionFacts,
    StoreError, Timestamp,
};

const COLUMNS: &str = "a.id, a.public_id, a.username, a.password_hash, a.tenant_id, a.permissions, \
                       a.totp_secret, a.totp_enabled, a.totp_last_step, a.created_at, a.email, a.email_2fa";

fn from_row(row: &Row<'_>) -> rusqlite::Result<(Account, String)> {
    let tenant: Option<i64> = row.get(4)?;
    Ok((
        Account {
            id: row.get(0)?,
            public_id: row.get(1)?,
            username: row.get(2)?,
            password_hash: row.get(3)?,
            tenant: tenant.map(tenant_from_key),
            permissions: BTreeSet::new(),
            totp_secret: row.get(6)?,
            totp_enabled: row.get(7)?,
            totp_last_step: row.get(8)?,
            created_at: row.get(9)?,
            email: row.get(10)?,
            email_2fa: row.get(11)?,
        },
        row.get(5)?,
    ))
}

fn finish((mut account, permissions): (Account, String)) -> Result<Account, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        table: "accounts",
        column: "permissions",
        reason,
    };
    let names: Vec<String> =
        serde_json::from_str(&permissions).map_err(|err| corrupt(err.to_string()))?;
    account.permissions = names
        .iter()
        .map(|name| name.parse::<Permission>())
        .collect::<Result<_, _>>()
        .map_err(|err| corrupt(err.to_string()))?;
    Ok(account)
}

fn query_one(
    conn: &Connection,
    sql: &str,
    param: impl rusqlite::ToSql,
) -> Result<Option<Account>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    stmt.query_row([param], from_row)
        .optional()?
        .map(finish)
        .transpose()
}

pub(super) fn create(
    conn: &Connection,
    new: &NewAccount,
    now: Timestamp,
) -> Result<Account, StoreError> {
    let permissions: Vec<&str> = new.permissions.iter().map(|p| p.as_str()).collect();
    let mut stmt = conn.prepare_cached(
        "INSERT INTO accounts (public_id, username, password_hash, tenant_id, permissions, created_at, email) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
    )?;
    let id: AccountId = super::insert_returning(
        &mut stmt,
        (
            &new.public_id,
            &new.username,
            &new.password_hash,
            new.tenant.map(tenant_key),
            serde_json::to_string(&permissions).unwrap_or_else(|_| "[]".into()),
            now,
            &new.email,
        ),
        |row| row.get(0),
    )
    .map_err(|err| match err {
        rusqlite::Error::SqliteFailure(code, _)
            if code.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::AccountExists(new.username.clone())
        }
        other => other.into(),
    })?;
    by_id(conn, id)?.ok_or(StoreError::Corrupt {
        table: "accounts",
        column: "id",
        reason: "the inserted account is gone".into(),
    })
}

pub(super) fn by_id(conn: &Connection, id: AccountId) -> Result<Option<Account>, StoreError> {
    query_one(
        conn,
        &format!("SELECT {COLUMNS} FROM accounts a WHERE a.id = ?1"),
        id,
    )
}

pub(super) fn by_username(
    conn: &Connection,
    username: &str,
) -> Result<Option<Account>, StoreError> {
    query_one(
        conn,
        &format!("SELECT {COLUMNS} FROM accounts a WHERE a.username = ?1"),
        username,
    )
}

/// The one account whose (proven) email address is `email`, compared without case;
/// `None` when none or several have it.
pub(super) fn by_email(conn: &Connection, email: &str) -> Result<Option<Account>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM accounts a WHERE lower(a.email) = lower(?1) LIMIT 2"
    ))?;
    let rows: Vec<Account> = stmt
        .query_map([email], from_row)?
        .map(|row| finish(row?))
        .collect::<Result<_, _>>()?;
    Ok(match <[Account; 1]>::try_from(rows) {
        Ok([account]) => Some(account),
        Err(_) => None,
    })
}

pub(super) fn list(
    conn: &Connection,
    tenant: Option<TenantId>,
) -> Result<Vec<Account>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM accounts a WHERE ?1 IS NULL OR a.tenant_id = ?1 ORDER BY a.id"
    ))?;
    let rows = stmt.query_map([tenant.map(tenant_key)], from_row)?;
    rows.map(|row| finish(row?)).collect()
}

pub(super) fn count(conn: &Connection) -> Result<u64, StoreError> {
    let count: i64 = conn.query_row("SELECT count(*) FROM accounts", [], |row| row.get(0))?;
    Ok(u64::try_from(count).unwrap_or(0))
}

pub(super) fn delete(conn: &Connection, id: AccountId) -> Result<bool, StoreError> {
    Ok(conn.execute("DELETE FROM accounts WHERE id = ?1", [id])? > 0)
}

pub(super) fn set_totp(
    conn: &Connection,
    id: AccountId,
    secret: Option<&[u8]>,
    enabled: bool,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE accounts SET totp_secret = ?2, totp_enabled = ?3, totp_last_step = NULL WHERE id = ?1",
        (id, secret, enabled),
    )?;
    Ok(())
}

pub(super) fn use_totp_step(
    conn: &Connection,
    id: AccountId,
    step: i64,
) -> Result<bool, StoreError> {
    let changed = conn.execute(
        "UPDATE accounts SET totp_last_step = ?2 \
         WHERE id = ?1 AND (totp_last_step IS NULL OR totp_last_step < ?2)",
        (id, step),
    )?;
    Ok(changed == 1)
}

pub(super) fn create_session(
    conn: &Connection,
    token_hash: &[u8],
    account: AccountId,
    dialect: Dialect,
    now: Timestamp,
    expires_at: Timestamp,
) -> Result<(), StoreError> {
    // Expired sessions go as new ones come: the table stays the size of live sessions.
    conn.execute("DELETE FROM sessions WHERE expires_at <= ?1", [now])?;
    conn.execute(
        "INSERT INTO sessions (token_hash, account_id, dialect, created_at, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        (token_hash, account, dialect.as_str(), now, expires_at),
    )?;
    Ok(())
}

pub(super) fn session_account(
    conn: &Connection,
    token_hash: &[u8],
    dialect: Dialect,
    now: Timestamp,
) -> Result<Option<(Account, SessionFacts)>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS}, s.name, s.bypass_two_factor, s.two_factor_at \
         FROM sessions s JOIN accounts a ON a.id = s.account_id \
         WHERE s.token_hash = ?1 AND s.dialect = ?2 AND s.expires_at > ?3"
    ))?;
    let found = stmt
        .query_row((token_hash, dialect.as_str(), now), |row| {
            let facts = SessionFacts {
                personal_token: row.get(12)?,
                bypass_two_factor: row.get(13)?,
                two_factor_at: row.get(14)?,
            };
            Ok((from_row(row)?, facts))
        })
        .optional()?;
    found
        .map(|(account, facts)| Ok((finish(account)?, facts)))
        .transpose()
}

pub(super) fn passed_two_factor(
    conn: &Connection,
    token_hash: &[u8],
    now: Timestamp,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE sessions SET two_factor_at = ?2 WHERE token_hash = ?1",
        (token_hash, now),
    )?;
    Ok(())
}

/// A personal access token never expires (the largest time there is).
const NEVER: Timestamp = i64::MAX;

pub(super) fn create_personal_token(
    conn: &Connection,
    account: AccountId,
    token: &NewPersonalToken<'_>,
    now: Timestamp,
) -> Result<(), StoreError> {
    let inserted = conn.execute(
        "INSERT INTO sessions (token_hash, account_id, dialect, created_at, expires_at, name, bypass_two_factor, last_part) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        (
            token.token_hash,
            account,
            Dialect::RocketChat.as_str(),
            now,
            NEVER,
            token.name,
            token.bypass_two_factor,
            token.last_part,
        ),
    );
    match inserted {
        Ok(_) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(err, _))
            if err.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Err(StoreError::TokenExists(token.name.to_owned()))
        }
        Err(err) => Err(err.into()),
    }
}

pub(super) fn regenerate_personal_token(
    conn: &Connection,
    account: AccountId,
    name: &str,
    token_hash: &[u8],
    last_part: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "UPDATE sessions SET token_hash = ?3, last_part = ?4, created_at = ?5, two_factor_at = NULL \
         WHERE account_id = ?1 AND name = ?2",
        (account, name, token_hash, last_part, now),
    )? == 1)
}

pub(super) fn personal_tokens(
    conn: &Connection,
    account: AccountId,
) -> Result<Vec<PersonalToken>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT name, created_at, coalesce(last_part, ''), bypass_two_factor FROM sessions \
         WHERE account_id = ?1 AND name IS NOT NULL ORDER BY created_at, name",
    )?;
    let rows = stmt.query_map([account], |row| {
        Ok(PersonalToken {
            name: row.get(0)?,
            created_at: row.get(1)?,
            last_part: row.get(2)?,
            bypass_two_factor: row.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn delete_personal_token(
    conn: &Connection,
    account: AccountId,
    name: &str,
) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "DELETE FROM sessions WHERE account_id = ?1 AND name = ?2",
        (account, name),
    )? == 1)
}

pub(super) fn delete_session(conn: &Connection, token_hash: &[u8]) -> Result<bool, StoreError> {
    Ok(conn.execute("DELETE FROM sessions WHERE token_hash = ?1", [token_hash])? > 0)
}

pub(super) fn set_email(
    conn: &Connection,
    id: AccountId,
    email: Option<&str>,
    email_2fa: bool,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE accounts SET email = ?2, email_2fa = ?3 WHERE id = ?1",
        (id, email, email_2fa),
    )?;
    Ok(())
}

pub(super) fn put_email_code(
    conn: &Connection,
    id: AccountId,
    code_hash: &[u8],
    expires_at: Timestamp,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO email_codes (account_id, code_hash, expires_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (account_id) DO UPDATE SET code_hash = excluded.code_hash, expires_at = excluded.expires_at",
        (id, code_hash, expires_at),
    )?;
    Ok(())
}

pub(super) fn begin_email_verification(
    conn: &Connection,
    id: AccountId,
    address: &str,
    code_hash: &[u8],
    expires_at: Timestamp,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO email_verifications (account_id, address, code_hash, expires_at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (account_id) DO UPDATE SET address = excluded.address, code_hash = excluded.code_hash, \
         expires_at = excluded.expires_at",
        (id, address, code_hash, expires_at),
    )?;
    Ok(())
}

pub(super) fn confirm_email(
    conn: &mut Connection,
    id: AccountId,
    code_hash: &[u8],
    now: Timestamp,
) -> Result<Option<String>, StoreError> {
    let tx = conn.transaction()?;
    let address: Option<String> = tx
        .query_row(
            "DELETE FROM email_verifications WHERE account_id = ?1 AND code_hash = ?2 AND expires_at > ?3 \
             RETURNING address",
            (id, code_hash, now),
            |row| row.get(0),
        )
        .optional()?;
    if let Some(address) = &address {
        tx.execute(
            "UPDATE accounts SET email = ?2, email_2fa = 1 WHERE id = ?1",
            (id, address),
        )?;
        // A code sent to the old address must not outlive the change.
        tx.execute("DELETE FROM email_codes WHERE account_id = ?1", [id])?;
    }
    tx.commit()?;
    Ok(address)
}

pub(super) fn take_email_code(
    conn: &Connection,
    id: AccountId,
    code_hash: &[u8],
    now: Timestamp,
) -> Result<bool, StoreError> {
    let taken = conn.execute(
        "DELETE FROM email_codes WHERE account_id = ?1 AND code_hash = ?2 AND expires_at > ?3",
        (id, code_hash, now),
    )?;
    Ok(taken == 1)
}

/// [`crate::store::AccountStore::count_attempt`]: one `IMMEDIATE` transaction, so that
/// the check and the count are one step for every process on the file.
pub(super) fn count_attempt(
    conn: &mut Connection,
    scope: &str,
    key: &str,
    max: u32,
    expires_at: Timestamp,
    now: Timestamp,
) -> Result<Result<crate::store::AttemptId, i64>, StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute(
        "DELETE FROM rate_limit_attempts WHERE expires_at <= ?1",
        [now],
    )?;
    let (count, oldest): (u32, Option<i64>) = tx.query_row(
        "SELECT count(*), min(expires_at) FROM rate_limit_attempts \
         WHERE scope = ?1 AND key = ?2 AND expires_at > ?3",
        (scope, key, now),
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    if count >= max {
        tx.commit()?;
        return Ok(Err(oldest.unwrap_or(expires_at).saturating_sub(now).max(0)));
    }
    tx.execute(
        "INSERT INTO rate_limit_attempts (scope, key, expires_at) VALUES (?1, ?2, ?3)",
        (scope, key, expires_at),
    )?;
    let id = tx.last_insert_rowid();
    // Now and then, the bound: the oldest beyond it go.
    if id % 1024 == 0 {
        tx.execute(
            "DELETE FROM rate_limit_attempts WHERE id <= ?1 - ?2",
            (
                id,
                i64::try_from(crate::store::MAX_ATTEMPTS).unwrap_or(i64::MAX),
            ),
        )?;
    }
    tx.commit()?;
    Ok(Ok(id))
}
