//! The store traits on [`PostgresStore`]: each method takes a pooled connection (or
//! a transaction) and runs the statements of its module.

use std::collections::BTreeMap;

use super::{
    ANALYZE_AFTER, PostgresStore, Statements, accounts, apply, catalog, history, tasks, unsigned,
    users,
};
use crate::plugin::model::TenantId;
use crate::store::{
    Account, AccountId, AccountStore, Assignment, AuditEvent, AuditQuery, Avatar, CatalogStore,
    Change, ChangeCause, Dialect, HistoryLimits, LdapUserRef, Lease, NewAccount, NewPersonalToken,
    NewPlugin, PersonalToken, PluginDeletion, PluginId, SessionFacts, StoreError, StoredPlugin,
    StoredTenant, StoredUser, SyncRunRecord, SyncState, Task, TaskId, TaskState, TaskStore,
    Timestamp, UserId, UserIdentifiers, UserQuery, UserStore,
};

impl UserStore for PostgresStore {
    fn users_by_ldap_ids(
        &self,
        tenant: TenantId,
        ldap_ids: &[String],
    ) -> Result<Vec<StoredUser>, StoreError> {
        if ldap_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.with(async |conn| users::by_ldap_ids(conn, tenant, ldap_ids).await)
    }

    fn known_by_ldap_ids(
        &self,
        tenant: TenantId,
        ldap_ids: &[String],
    ) -> Result<Vec<LdapUserRef>, StoreError> {
        if ldap_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.with(async |conn| users::known_by_ldap_ids(conn, tenant, ldap_ids).await)
    }

    fn users_by_usernames(
        &self,
        tenant: TenantId,
        usernames: &[String],
    ) -> Result<Vec<StoredUser>, StoreError> {
        if usernames.is_empty() {
            return Ok(Vec::new());
        }
        self.with(async |conn| users::by_usernames(conn, tenant, usernames).await)
    }

    fn avatar(&self, tenant: TenantId, id: UserId) -> Result<Option<Avatar>, StoreError> {
        self.with(async |conn| users::avatar(conn, tenant, id).await)
    }

    fn find_users(
        &self,
        tenant: TenantId,
        identifiers: &UserIdentifiers,
    ) -> Result<Vec<StoredUser>, StoreError> {
        self.with(async |conn| users::find(conn, tenant, identifiers).await)
    }

    fn ldap_user_index(&self, tenant: TenantId) -> Result<Vec<LdapUserRef>, StoreError> {
        self.with(async |conn| users::ldap_index(conn, tenant).await)
    }

    fn user(&self, tenant: TenantId, id: UserId) -> Result<Option<StoredUser>, StoreError> {
        self.with(async |conn| users::one(conn, tenant, id).await)
    }

    fn list_users(
        &self,
        tenant: TenantId,
        query: &UserQuery,
    ) -> Result<Vec<StoredUser>, StoreError> {
        self.with(async |conn| users::list(conn, tenant, query).await)
    }

    fn count_users(&self, tenant: TenantId) -> Result<u64, StoreError> {
        self.with(async |conn| users::count(conn, tenant).await)
    }

    fn count_ldap_users(&self, tenant: TenantId) -> Result<u64, StoreError> {
        self.with(async |conn| users::count_ldap(conn, tenant).await)
    }

    fn apply(
        &self,
        tenant: TenantId,
        changes: &[Change],
        cause: &ChangeCause,
    ) -> Result<Vec<UserId>, StoreError> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        let ids = self.transaction(async |tx| apply::apply(tx, tenant, changes, cause).await)?;
        let rows = changes
            .iter()
            .filter(|change| matches!(change, Change::Create { .. } | Change::Delete { .. }))
            .count();
        self.inner
            .written
            .fetch_add(rows as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(ids)
    }

    fn concurrent_applies(&self) -> usize {
        // Two: a sync's batches then write with two server processes, which is where
        // a first import spends its time, and leave the pool's other connections to
        // other tenants and the API.
        (self.inner.max / 4).clamp(1, 2)
    }

    fn audit_events(
        &self,
        tenant: TenantId,
        query: &AuditQuery,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        self.with(async |conn| history::events(conn, tenant, query).await)
    }

    fn sync_state(&self, tenant: TenantId) -> Result<SyncState, StoreError> {
        self.with(async |conn| history::sync_state(conn, tenant).await)
    }

    fn set_sync_state(&self, tenant: TenantId, state: &SyncState) -> Result<(), StoreError> {
        self.with(async |conn| history::set_sync_state(conn, tenant, state).await)
    }

    fn record_sync_run(&self, tenant: TenantId, run: &SyncRunRecord) -> Result<i64, StoreError> {
        let id = self.with(async |conn| history::record_run(conn, tenant, run).await)?;
        let written = &self.inner.written;
        if written.load(std::sync::atomic::Ordering::Relaxed) >= ANALYZE_AFTER {
            written.store(0, std::sync::atomic::Ordering::Relaxed);
            let analyzed = self.with(async |conn| {
                conn.client
                    // The columns the sync's lookups and pruning filter on: the
                    // whole table's (the JSONB values') would cost a second per
                    // 100,000 users, on the sync's time.
                    .batch_execute(
                        "ANALYZE users (tenant_id, ldap_id, username, source), \
                         audit_events (tenant_id)",
                    )
                    .await
                    .map_err(StoreError::from)
            });
            if let Err(err) = analyzed {
                tracing::warn!(%err, "cannot refresh the store's statistics; autovacuum will");
            }
        }
        Ok(id)
    }

    fn sync_runs(&self, tenant: TenantId, limit: u32) -> Result<Vec<SyncRunRecord>, StoreError> {
        self.with(async |conn| history::runs(conn, tenant, limit).await)
    }

    fn attribute_bytes(&self, tenant: TenantId) -> Result<u64, StoreError> {
        self.with(async |conn| history::attribute_bytes(conn, tenant).await)
    }

    fn prune_history(&self, tenant: TenantId, limits: &HistoryLimits) -> Result<u64, StoreError> {
        self.with(async |conn| history::prune(conn, tenant, limits).await)
    }
}

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

impl TaskStore for PostgresStore {
    fn create_task(
        &self,
        tenant: TenantId,
        command: &str,
        params: &serde_json::Value,
        request: Option<&serde_json::Value>,
        account: Option<AccountId>,
        lease: Option<&Lease>,
        now: Timestamp,
    ) -> Result<Task, StoreError> {
        self.with(async |conn| {
            tasks::create(conn, tenant, command, params, request, account, lease, now).await
        })
    }

    fn take_over_expired(
        &self,
        lease: &Lease,
        now: Timestamp,
        max_attempts: u32,
    ) -> Result<Vec<crate::store::TakenTask>, StoreError> {
        self.with(async |conn| tasks::take_over_expired(conn, lease, now, max_attempts).await)
    }

    fn claim_queued(
        &self,
        lease: &Lease,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<crate::store::TakenTask>, StoreError> {
        self.with(async |conn| tasks::claim_queued(conn, lease, now, limit).await)
    }

    fn task(&self, id: TaskId) -> Result<Option<Task>, StoreError> {
        self.with(async |conn| tasks::one(conn, id).await)
    }

    fn queued_task(
        &self,
        tenant: TenantId,
        command: &str,
        params: &serde_json::Value,
    ) -> Result<Option<Task>, StoreError> {
        self.with(async |conn| tasks::queued(conn, tenant, command, params).await)
    }

    fn list_tasks_from(
        &self,
        tenant: Option<TenantId>,
        offset: u32,
        limit: u32,
    ) -> Result<Vec<Task>, StoreError> {
        self.with(async |conn| tasks::list(conn, tenant, offset, limit).await)
    }

    fn count_tasks(&self, tenant: Option<TenantId>) -> Result<u64, StoreError> {
        self.with(async |conn| tasks::count(conn, tenant).await)
    }

    fn delete_task(&self, id: TaskId) -> Result<bool, StoreError> {
        self.with(async |conn| {
            Ok(conn
                .execute("DELETE FROM tasks WHERE id = $1", &[&id])
                .await?
                > 0)
        })
    }

    fn update_task(
        &self,
        id: TaskId,
        state: TaskState,
        message: &str,
        result: Option<&serde_json::Value>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.with(async |conn| tasks::update(conn, id, state, message, result, now).await)
    }

    fn request_cancel(
        &self,
        id: TaskId,
        now: Timestamp,
    ) -> Result<crate::store::CancelRequest, StoreError> {
        self.with(async |conn| tasks::request_cancel(conn, id, now).await)
    }

    fn cancel_requested(&self, id: TaskId) -> Result<bool, StoreError> {
        self.with(async |conn| {
            let row = conn
                .query_opt("SELECT cancel_requested FROM tasks WHERE id = $1", &[&id])
                .await?;
            Ok(match row {
                Some(row) => row.try_get(0)?,
                None => false,
            })
        })
    }

    fn claim_tenant(
        &self,
        tenant: TenantId,
        owner: &str,
        task: Option<TaskId>,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<Option<String>, StoreError> {
        self.with(async |conn| tasks::claim_tenant(conn, tenant, owner, task, until, now).await)
    }

    fn release_tenant(&self, tenant: TenantId, owner: &str) -> Result<(), StoreError> {
        self.with(async |conn| {
            conn.execute(
                "DELETE FROM tenant_runs WHERE tenant_id = $1 AND owner = $2",
                &[&crate::store::tenant_key(tenant), &owner],
            )
            .await
            .map(drop)
        })
    }

    fn claim_schedule(
        &self,
        tenant: TenantId,
        period_start: Timestamp,
    ) -> Result<bool, StoreError> {
        self.with(async |conn| {
            Ok(conn
                .execute(
                    "INSERT INTO schedule_fires (tenant_id, period_start) VALUES ($1, $2) \
                     ON CONFLICT (tenant_id) DO UPDATE SET period_start = excluded.period_start \
                     WHERE excluded.period_start > schedule_fires.period_start",
                    &[&crate::store::tenant_key(tenant), &period_start],
                )
                .await?
                == 1)
        })
    }

    fn claim_watch(
        &self,
        tenant: TenantId,
        owner: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.with(async |conn| {
            Ok(conn
                .execute(
                    "INSERT INTO watchers (tenant_id, owner, lease_until) VALUES ($1, $2, $3) \
                     ON CONFLICT (tenant_id) DO UPDATE SET owner = excluded.owner, \
                     lease_until = excluded.lease_until \
                     WHERE watchers.owner = excluded.owner OR watchers.lease_until < $4",
                    &[&crate::store::tenant_key(tenant), &owner, &until, &now],
                )
                .await?
                == 1)
        })
    }

    fn release_watch(&self, tenant: TenantId, owner: &str) -> Result<(), StoreError> {
        self.with(async |conn| {
            conn.execute(
                "DELETE FROM watchers WHERE tenant_id = $1 AND owner = $2",
                &[&crate::store::tenant_key(tenant), &owner],
            )
            .await
            .map(drop)
        })
    }

    fn renew_leases(&self, owner: &str, until: Timestamp) -> Result<u64, StoreError> {
        self.transaction(async |tx| {
            let renewed = tx
                .execute(
                    "UPDATE tasks SET lease_until = $2 \
                     WHERE owner = $1 AND state IN ('queued', 'running')",
                    &[&owner, &until],
                )
                .await?;
            tx.execute(
                "UPDATE tenant_runs SET lease_until = $2 WHERE owner = $1",
                &[&owner, &until],
            )
            .await?;
            Ok(renewed)
        })
    }

    fn interrupt_expired(&self, now: Timestamp, except: Option<&str>) -> Result<u64, StoreError> {
        self.with(async |conn| {
            conn.execute(
                "UPDATE tasks SET state = 'interrupted', \
                 message = 'interrupted: the abacsync process running it stopped before the task ended; run it again', \
                 updated_at = $1 WHERE state IN ('queued', 'running') \
                 AND lease_until < $1 \
                 AND ($2::text IS NULL OR owner IS NULL OR owner <> $2::text)",
                &[&now, &except],
            )
            .await
        })
    }

    fn hand_back(&self, id: TaskId, owner: &str, now: Timestamp) -> Result<bool, StoreError> {
        self.with(async |conn| Ok(tasks::hand_back(conn, Some(id), owner, now).await? == 1))
    }

    fn hand_back_owned(&self, owner: &str, now: Timestamp) -> Result<u64, StoreError> {
        self.with(async |conn| tasks::hand_back(conn, None, owner, now).await)
    }

    fn interrupt_owned(&self, owner: &str, now: Timestamp) -> Result<u64, StoreError> {
        self.transaction(async |tx| {
            let changed = tx
                .execute(
                    "UPDATE tasks SET state = 'interrupted', \
                     message = 'interrupted: abacsync stopped before the task ended; run it again', \
                     updated_at = $1 WHERE state IN ('queued', 'running') AND owner = $2",
                    &[&now, &owner],
                )
                .await?;
            tx.execute("DELETE FROM tenant_runs WHERE owner = $1", &[&owner])
                .await?;
            Ok(changed)
        })
    }
}

impl CatalogStore for PostgresStore {
    fn record_plugin_result(
        &self,
        tenant: TenantId,
        failure: Option<&str>,
        suspend_after: u32,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.with(async |conn| {
            catalog::record_plugin_result(conn, tenant, failure, suspend_after, now).await
        })
    }

    fn plugin_health(
        &self,
        tenant: TenantId,
    ) -> Result<crate::store::PluginHealthRecord, StoreError> {
        self.with(async |conn| catalog::plugin_health(conn, tenant).await)
    }

    fn resume_plugin(&self, tenant: TenantId) -> Result<(), StoreError> {
        self.with(async |conn| {
            conn.execute(
                "DELETE FROM plugin_health WHERE tenant_id = $1",
                &[&crate::store::tenant_key(tenant)],
            )
            .await
            .map(drop)
        })
    }

    fn catalog_generation(&self) -> Result<i64, StoreError> {
        self.with(async |conn| {
            let row = conn
                .query_opt(
                    "SELECT value FROM store_generations WHERE name = 'catalog'",
                    &[],
                )
                .await?
                .ok_or(StoreError::Corrupt {
                    table: "store_generations",
                    column: "value",
                    reason: "the catalog's generation is missing".into(),
                })?;
            Ok(row.try_get(0)?)
        })
    }

    fn add_plugin(
        &self,
        plugin: &NewPlugin<'_>,
        now: Timestamp,
    ) -> Result<StoredPlugin, StoreError> {
        self.transaction(async |tx| catalog::add_plugin(tx, plugin, now).await)
    }

    fn delete_plugin(&self, id: PluginId) -> Result<PluginDeletion, StoreError> {
        self.transaction(async |tx| catalog::delete_plugin(tx, id).await)
    }

    fn list_plugins(&self, tenant: Option<TenantId>) -> Result<Vec<StoredPlugin>, StoreError> {
        self.with(async |conn| catalog::list_plugins(conn, tenant).await)
    }

    fn plugin(&self, id: PluginId) -> Result<Option<StoredPlugin>, StoreError> {
        self.with(async |conn| catalog::plugin(conn, id).await)
    }

    fn plugin_component(&self, id: PluginId) -> Result<Option<Vec<u8>>, StoreError> {
        self.with(async |conn| {
            let row = conn
                .query_opt("SELECT component FROM plugins WHERE id = $1", &[&id])
                .await?;
            Ok(row.map(|row| row.try_get(0)).transpose()?)
        })
    }

    fn assign_plugin(
        &self,
        tenant: TenantId,
        plugin: PluginId,
        settings: &BTreeMap<String, String>,
        by: Option<AccountId>,
        reason: &str,
        now: Timestamp,
    ) -> Result<Assignment, StoreError> {
        self.with(async |conn| {
            catalog::assign(conn, tenant, plugin, settings, by, reason, now).await
        })
    }

    fn assignments(&self, tenant: TenantId) -> Result<Vec<Assignment>, StoreError> {
        self.with(async |conn| catalog::assignments(conn, tenant).await)
    }

    fn api_tenants(&self) -> Result<Vec<StoredTenant>, StoreError> {
        self.with(async |conn| catalog::api_tenants(conn).await)
    }

    fn put_tenant(&self, id: TenantId, config: &str, now: Timestamp) -> Result<(), StoreError> {
        self.with(async |conn| {
            conn.execute(
                "INSERT INTO tenants (id, config, created_at, updated_at) VALUES ($1, $2, $3, $3) \
                 ON CONFLICT (id) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at",
                &[&crate::store::tenant_key(id), &config, &now],
            )
            .await
            .map(drop)
        })
    }

    fn delete_tenant(&self, id: TenantId) -> Result<bool, StoreError> {
        self.transaction(async |tx| catalog::delete_tenant(tx, id).await)
    }

    fn schedules(&self) -> Result<BTreeMap<TenantId, Option<u64>>, StoreError> {
        self.with(async |conn| catalog::schedules(conn).await)
    }

    fn set_schedule(
        &self,
        tenant: TenantId,
        interval_secs: Option<u64>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let interval = interval_secs.map(|secs| i64::try_from(secs).unwrap_or(i64::MAX));
        self.with(async |conn| {
            conn.execute(
                "INSERT INTO schedules (tenant_id, interval_secs, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant_id) DO UPDATE SET interval_secs = excluded.interval_secs, \
                 updated_at = excluded.updated_at",
                &[&crate::store::tenant_key(tenant), &interval, &now],
            )
            .await
            .map(drop)
        })
    }
}
