//! [`AccountStore`] on [`PostgresStore`].

use super::*;

impl AccountStore for PostgresStore {
    fn create_account(&self, account: &NewAccount, now: Timestamp) -> Result<Account, StoreError> {
        self.with(async |conn| accounts::create(conn, account, now).await)
    }

    fn account(&self, id: AccountId) -> Result<Option<Account>, StoreError> {
        self.with(async |conn| accounts::by_id(conn, id).await)
    }

    fn account_by_username(&self, username: &str) -> Result<Option<Account>, StoreError> {
        self.with(async |conn| accounts::by_username(conn, username).await)
    }

    fn account_by_email(&self, email: &str) -> Result<Option<Account>, StoreError> {
        self.with(async |conn| accounts::by_email(conn, email).await)
    }

    fn list_accounts(&self, tenant: Option<TenantId>) -> Result<Vec<Account>, StoreError> {
        self.with(async |conn| accounts::list(conn, tenant).await)
    }

    fn count_accounts(&self) -> Result<u64, StoreError> {
        self.with(async |conn| {
            let row = conn.query_opt("SELECT count(*) FROM accounts", &[]).await?;
            Ok(unsigned(row.map_or(Ok(0), |row| row.try_get(0))?))
        })
    }

    fn delete_account(&self, id: AccountId) -> Result<bool, StoreError> {
        self.with(async |conn| {
            Ok(conn
                .execute("DELETE FROM accounts WHERE id = $1", &[&id])
                .await?
                > 0)
        })
    }

    fn set_totp(
        &self,
        id: AccountId,
        secret: Option<&[u8]>,
        enabled: bool,
    ) -> Result<(), StoreError> {
        self.with(async |conn| {
            conn.execute(
                "UPDATE accounts SET totp_secret = $2, totp_enabled = $3, totp_last_step = NULL WHERE id = $1",
                &[&id, &secret, &enabled],
            )
            .await
            .map(drop)
        })
    }

    fn use_totp_step(&self, id: AccountId, step: i64) -> Result<bool, StoreError> {
        self.with(async |conn| {
            Ok(conn
                .execute(
                    "UPDATE accounts SET totp_last_step = $2 \
                     WHERE id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)",
                    &[&id, &step],
                )
                .await?
                == 1)
        })
    }

    fn set_email(
        &self,
        id: AccountId,
        email: Option<&str>,
        email_2fa: bool,
    ) -> Result<(), StoreError> {
        self.with(async |conn| {
            conn.execute(
                "UPDATE accounts SET email = $2, email_2fa = $3 WHERE id = $1",
                &[&id, &email, &email_2fa],
            )
            .await
            .map(drop)
        })
    }

    fn put_email_code(
        &self,
        id: AccountId,
        code_hash: &[u8],
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.with(async |conn| {
            conn.execute(
                "INSERT INTO email_codes (account_id, code_hash, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (account_id) DO UPDATE SET code_hash = excluded.code_hash, \
                 expires_at = excluded.expires_at",
                &[&id, &code_hash, &expires_at],
            )
            .await
            .map(drop)
        })
    }

    fn take_email_code(
        &self,
        id: AccountId,
        code_hash: &[u8],
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.with(async |conn| {
            Ok(conn
                .execute(
                    "DELETE FROM email_codes WHERE account_id = $1 AND code_hash = $2 AND expires_at > $3",
                    &[&id, &code_hash, &now],
                )
                .await?
                == 1)
        })
    }

    fn begin_email_verification(
        &self,
        id: AccountId,
        address: &str,
        code_hash: &[u8],
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.with(async |conn| {
            conn.execute(
                "INSERT INTO email_verifications (account_id, address, code_hash, expires_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (account_id) DO UPDATE SET \
                 address = excluded.address, code_hash = excluded.code_hash, expires_at = excluded.expires_at",
                &[&id, &address, &code_hash, &expires_at],
            )
            .await
            .map(drop)
        })
    }

    fn confirm_email(
        &self,
        id: AccountId,
        code_hash: &[u8],
        now: Timestamp,
    ) -> Result<Option<String>, StoreError> {
        self.transaction(async |tx| accounts::confirm_email(tx, id, code_hash, now).await)
    }

    fn create_session(
        &self,
        token_hash: &[u8],
        account: AccountId,
        dialect: Dialect,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.with(async |conn| {
            // Expired sessions go as new ones come: the table stays the size of live ones.
            conn.execute("DELETE FROM sessions WHERE expires_at <= $1", &[&now])
                .await?;
            conn.execute(
                "INSERT INTO sessions (token_hash, account_id, dialect, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[&token_hash, &account, &dialect.as_str(), &now, &expires_at],
            )
            .await
            .map(drop)
        })
    }

    fn session_account(
        &self,
        token_hash: &[u8],
        dialect: Dialect,
        now: Timestamp,
    ) -> Result<Option<(Account, SessionFacts)>, StoreError> {
        self.with(async |conn| accounts::session_account(conn, token_hash, dialect, now).await)
    }

    fn passed_two_factor(&self, token_hash: &[u8], now: Timestamp) -> Result<(), StoreError> {
        self.with(async |conn| {
            conn.execute(
                "UPDATE sessions SET two_factor_at = $2 WHERE token_hash = $1",
                &[&token_hash, &now],
            )
            .await
            .map(drop)
        })
    }

    fn create_personal_token(
        &self,
        account: AccountId,
        token: &NewPersonalToken<'_>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.with(async |conn| accounts::create_personal_token(conn, account, token, now).await)
    }

    fn regenerate_personal_token(
        &self,
        account: AccountId,
        name: &str,
        token_hash: &[u8],
        last_part: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.with(async |conn| {
            Ok(conn
                .execute(
                    "UPDATE sessions SET token_hash = $3, last_part = $4, created_at = $5, \
                     two_factor_at = NULL WHERE account_id = $1 AND name = $2",
                    &[&account, &name, &token_hash, &last_part, &now],
                )
                .await?
                == 1)
        })
    }

    fn personal_tokens(&self, account: AccountId) -> Result<Vec<PersonalToken>, StoreError> {
        self.with(async |conn| accounts::personal_tokens(conn, account).await)
    }

    fn delete_personal_token(&self, account: AccountId, name: &str) -> Result<bool, StoreError> {
        self.with(async |conn| {
            Ok(conn
                .execute(
                    "DELETE FROM sessions WHERE account_id = $1 AND name = $2",
                    &[&account, &name],
                )
                .await?
                == 1)
        })
    }

    fn delete_session(&self, token_hash: &[u8]) -> Result<bool, StoreError> {
        self.with(async |conn| {
            Ok(conn
                .execute("DELETE FROM sessions WHERE token_hash = $1", &[&token_hash])
                .await?
                > 0)
        })
    }

    fn count_attempt(
        &self,
        scope: &str,
        key: &str,
        max: u32,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<Result<crate::store::AttemptId, i64>, StoreError> {
        self.transaction(async |tx| {
            accounts::count_attempt(tx, scope, key, max, expires_at, now).await
        })
    }

    fn forgive_attempt(&self, id: crate::store::AttemptId) -> Result<(), StoreError> {
        self.with(async |conn| {
            conn.execute("DELETE FROM rate_limit_attempts WHERE id = $1", &[&id])
                .await
                .map(drop)
        })
    }

    fn clear_attempts(&self, scope: &str, key: &str) -> Result<(), StoreError> {
        self.with(async |conn| {
            conn.execute(
                "DELETE FROM rate_limit_attempts WHERE scope = $1 AND key = $2",
                &[&scope, &key.as_bytes()],
            )
            .await
            .map(drop)
        })
    }

    fn shared_secret(
        &self,
        name: &str,
        candidate: &[u8],
        now: Timestamp,
    ) -> Result<Vec<u8>, StoreError> {
        self.with(async |conn| {
            conn.execute(
                "INSERT INTO shared_secrets (name, value, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO NOTHING",
                &[&name, &candidate, &now],
            )
            .await?;
            let row = conn
                .query_opt("SELECT value FROM shared_secrets WHERE name = $1", &[&name])
                .await?
                .ok_or_else(|| StoreError::Corrupt {
                    table: "shared_secrets",
                    column: "value",
                    reason: format!("the secret `{name}` vanished as it was stored"),
                })?;
            Ok(row.try_get(0)?)
        })
    }
}
