//! The store traits on [`SqliteStore`]: each method reads through the reader pool or
//! writes through the one writer, and delegates to the module of its tables.

use super::*;
use crate::store::ResultPage;

impl UserStore for SqliteStore {
    fn avatar(&self, tenant: TenantId, id: UserId) -> Result<Option<Avatar>, StoreError> {
        self.read(|conn| users::avatar(conn, tenant, id))
    }

    fn users_by_ldap_ids(
        &self,
        tenant: TenantId,
        ldap_ids: &[String],
    ) -> Result<Vec<StoredUser>, StoreError> {
        if ldap_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.read(|conn| users::by_ldap_ids(conn, tenant, ldap_ids))
    }

    fn known_by_ldap_ids(
        &self,
        tenant: TenantId,
        ldap_ids: &[String],
    ) -> Result<Vec<LdapUserRef>, StoreError> {
        if ldap_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.read(|conn| users::known_by_ldap_ids(conn, tenant, ldap_ids))
    }

    fn users_by_usernames(
        &self,
        tenant: TenantId,
        usernames: &[String],
    ) -> Result<Vec<StoredUser>, StoreError> {
        if usernames.is_empty() {
            return Ok(Vec::new());
        }
        self.read(|conn| users::by_usernames(conn, tenant, usernames))
    }

    fn find_users(
        &self,
        tenant: TenantId,
        identifiers: &UserIdentifiers,
    ) -> Result<Vec<StoredUser>, StoreError> {
        self.read(|conn| users::find(conn, tenant, identifiers))
    }

    fn ldap_user_page(
        &self,
        tenant: TenantId,
        after: UserId,
        limit: u32,
    ) -> Result<Vec<LdapUserRef>, StoreError> {
        self.read(|conn| users::ldap_page(conn, tenant, after, limit))
    }

    fn user(&self, tenant: TenantId, id: UserId) -> Result<Option<StoredUser>, StoreError> {
        self.read(|conn| users::one(conn, tenant, id))
    }

    fn list_users(
        &self,
        tenant: TenantId,
        query: &UserQuery,
    ) -> Result<Vec<StoredUser>, StoreError> {
        self.read(|conn| users::list(conn, tenant, query))
    }

    fn count_users(&self, tenant: TenantId) -> Result<u64, StoreError> {
        self.read(|conn| users::count(conn, tenant))
    }

    fn count_ldap_users(&self, tenant: TenantId) -> Result<u64, StoreError> {
        self.read(|conn| users::count_ldap(conn, tenant))
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
        apply::apply(&mut self.writer(), tenant, changes, cause)
    }

    fn audit_events(
        &self,
        tenant: TenantId,
        query: &AuditQuery,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        self.read(|conn| audit::events(conn, tenant, query))
    }

    fn sync_state(&self, tenant: TenantId) -> Result<SyncState, StoreError> {
        self.read(|conn| sync_state::get(conn, tenant))
    }

    fn set_sync_state(&self, tenant: TenantId, state: &SyncState) -> Result<(), StoreError> {
        sync_state::set(&self.writer(), tenant, state)
    }

    fn record_sync_run(&self, tenant: TenantId, run: &SyncRunRecord) -> Result<i64, StoreError> {
        sync_state::record_run(&self.writer(), tenant, run)
    }

    fn sync_runs(&self, tenant: TenantId, limit: u32) -> Result<Vec<SyncRunRecord>, StoreError> {
        self.read(|conn| sync_state::runs(conn, tenant, limit))
    }

    fn attribute_bytes(&self, tenant: TenantId) -> Result<u64, StoreError> {
        self.read(|conn| retention::attribute_bytes(conn, tenant))
    }

    fn prune_history(&self, tenant: TenantId, limits: &HistoryLimits) -> Result<u64, StoreError> {
        retention::prune(&self.inner.writer, tenant, limits)
    }
}

impl AccountStore for SqliteStore {
    fn count_attempt(
        &self,
        scope: &str,
        key: &str,
        max: u32,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<Result<crate::store::AttemptId, i64>, StoreError> {
        accounts::count_attempt(&mut self.writer(), scope, key, max, expires_at, now)
    }

    fn forgive_attempt(&self, id: crate::store::AttemptId) -> Result<(), StoreError> {
        self.writer()
            .execute("DELETE FROM rate_limit_attempts WHERE id = ?1", [id])?;
        Ok(())
    }

    fn clear_attempts(&self, scope: &str, key: &str) -> Result<(), StoreError> {
        self.writer().execute(
            "DELETE FROM rate_limit_attempts WHERE scope = ?1 AND key = ?2",
            (scope, key),
        )?;
        Ok(())
    }

    fn shared_secret(
        &self,
        name: &str,
        candidate: &[u8],
        now: Timestamp,
    ) -> Result<Vec<u8>, StoreError> {
        let conn = self.writer();
        conn.execute(
            "INSERT INTO shared_secrets (name, value, created_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO NOTHING",
            (name, candidate, now),
        )?;
        Ok(conn.query_row(
            "SELECT value FROM shared_secrets WHERE name = ?1",
            [name],
            |row| row.get(0),
        )?)
    }

    fn create_account(&self, account: &NewAccount, now: Timestamp) -> Result<Account, StoreError> {
        accounts::create(&self.writer(), account, now)
    }

    fn account(&self, id: AccountId) -> Result<Option<Account>, StoreError> {
        self.read(|conn| accounts::by_id(conn, id))
    }

    fn account_by_username(&self, username: &str) -> Result<Option<Account>, StoreError> {
        self.read(|conn| accounts::by_username(conn, username))
    }

    fn account_by_email(&self, email: &str) -> Result<Option<Account>, StoreError> {
        self.read(|conn| accounts::by_email(conn, email))
    }

    fn list_accounts(&self, tenant: Option<TenantId>) -> Result<Vec<Account>, StoreError> {
        self.read(|conn| accounts::list(conn, tenant))
    }

    fn count_accounts(&self) -> Result<u64, StoreError> {
        self.read(accounts::count)
    }

    fn delete_account(&self, id: AccountId) -> Result<bool, StoreError> {
        accounts::delete(&self.writer(), id)
    }

    fn set_totp(
        &self,
        id: AccountId,
        secret: Option<&[u8]>,
        enabled: bool,
    ) -> Result<(), StoreError> {
        accounts::set_totp(&self.writer(), id, secret, enabled)
    }

    fn use_totp_step(&self, id: AccountId, step: i64) -> Result<bool, StoreError> {
        accounts::use_totp_step(&self.writer(), id, step)
    }

    fn set_email(
        &self,
        id: AccountId,
        email: Option<&str>,
        email_2fa: bool,
    ) -> Result<(), StoreError> {
        accounts::set_email(&self.writer(), id, email, email_2fa)
    }

    fn put_email_code(
        &self,
        id: AccountId,
        code_hash: &[u8],
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        accounts::put_email_code(&self.writer(), id, code_hash, expires_at)
    }

    fn take_email_code(
        &self,
        id: AccountId,
        code_hash: &[u8],
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        accounts::take_email_code(&self.writer(), id, code_hash, now)
    }

    fn begin_email_verification(
        &self,
        id: AccountId,
        address: &str,
        code_hash: &[u8],
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        accounts::begin_email_verification(&self.writer(), id, address, code_hash, expires_at)
    }

    fn confirm_email(
        &self,
        id: AccountId,
        code_hash: &[u8],
        now: Timestamp,
    ) -> Result<Option<String>, StoreError> {
        accounts::confirm_email(&mut self.writer(), id, code_hash, now)
    }

    fn create_session(
        &self,
        token_hash: &[u8],
        account: AccountId,
        dialect: Dialect,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        accounts::create_session(
            &self.writer(),
            token_hash,
            account,
            dialect,
            now,
            expires_at,
        )
    }

    fn session_account(
        &self,
        token_hash: &[u8],
        dialect: Dialect,
        now: Timestamp,
    ) -> Result<Option<(Account, SessionFacts)>, StoreError> {
        self.read(|conn| accounts::session_account(conn, token_hash, dialect, now))
    }

    fn passed_two_factor(&self, token_hash: &[u8], now: Timestamp) -> Result<(), StoreError> {
        accounts::passed_two_factor(&self.writer(), token_hash, now)
    }

    fn create_personal_token(
        &self,
        account: AccountId,
        token: &NewPersonalToken<'_>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        accounts::create_personal_token(&self.writer(), account, token, now)
    }

    fn regenerate_personal_token(
        &self,
        account: AccountId,
        name: &str,
        token_hash: &[u8],
        last_part: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        accounts::regenerate_personal_token(
            &self.writer(),
            account,
            name,
            token_hash,
            last_part,
            now,
        )
    }

    fn personal_tokens(&self, account: AccountId) -> Result<Vec<PersonalToken>, StoreError> {
        self.read(|conn| accounts::personal_tokens(conn, account))
    }

    fn delete_personal_token(&self, account: AccountId, name: &str) -> Result<bool, StoreError> {
        accounts::delete_personal_token(&self.writer(), account, name)
    }

    fn delete_session(&self, token_hash: &[u8]) -> Result<bool, StoreError> {
        accounts::delete_session(&self.writer(), token_hash)
    }
}

impl TaskStore for SqliteStore {
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
        tasks::create(
            &self.writer(),
            tenant,
            command,
            params,
            request,
            account,
            lease,
            now,
        )
    }

    fn take_over_expired(
        &self,
        lease: &Lease,
        now: Timestamp,
        max_attempts: u32,
    ) -> Result<Vec<crate::store::TakenTask>, StoreError> {
        tasks::take_over_expired(&self.writer(), lease, now, max_attempts)
    }

    fn claim_queued(
        &self,
        lease: &Lease,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<crate::store::TakenTask>, StoreError> {
        tasks::claim_queued(&self.writer(), lease, now, limit)
    }

    fn task(&self, id: TaskId) -> Result<Option<Task>, StoreError> {
        self.read(|conn| tasks::one(conn, id))
    }

    fn queued_task(
        &self,
        tenant: TenantId,
        command: &str,
        params: &serde_json::Value,
    ) -> Result<Option<Task>, StoreError> {
        self.read(|conn| tasks::queued(conn, tenant, command, params))
    }

    fn list_tasks_from(
        &self,
        tenant: Option<TenantId>,
        offset: u32,
        limit: u32,
    ) -> Result<Vec<Task>, StoreError> {
        self.read(|conn| tasks::list(conn, tenant, offset, limit))
    }

    fn count_tasks(&self, tenant: Option<TenantId>) -> Result<u64, StoreError> {
        self.read(|conn| tasks::count(conn, tenant))
    }

    fn delete_task(&self, id: TaskId) -> Result<bool, StoreError> {
        tasks::delete(&self.writer(), id)
    }

    fn add_task_results(
        &self,
        id: TaskId,
        owner: &str,
        first: u64,
        count: u32,
        items: &str,
    ) -> Result<bool, StoreError> {
        tasks::add_results(&self.writer(), id, owner, first, count, items)
    }

    fn task_results(&self, id: TaskId, from: u64, to: u64) -> Result<Vec<ResultPage>, StoreError> {
        self.read(|conn| tasks::results(conn, id, from, to))
    }

    fn update_task(
        &self,
        id: TaskId,
        state: TaskState,
        message: &str,
        result: Option<&serde_json::Value>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        tasks::update(&self.writer(), id, state, message, result, now)
    }

    fn renew_leases(&self, owner: &str, until: Timestamp) -> Result<u64, StoreError> {
        let mut conn = self.writer();
        let tx = conn.transaction()?;
        let renewed = tasks::renew_leases(&tx, owner, until)?;
        tx.commit()?;
        Ok(renewed)
    }

    fn request_cancel(
        &self,
        id: TaskId,
        now: Timestamp,
    ) -> Result<crate::store::CancelRequest, StoreError> {
        tasks::request_cancel(&self.writer(), id, now)
    }

    fn cancel_requested(&self, id: TaskId) -> Result<bool, StoreError> {
        self.read(|conn| tasks::cancel_requested(conn, id))
    }

    fn claim_tenant(
        &self,
        tenant: TenantId,
        owner: &str,
        task: Option<TaskId>,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<Option<String>, StoreError> {
        tasks::claim_tenant(&self.writer(), tenant, owner, task, until, now)
    }

    fn claim_schedule(
        &self,
        tenant: TenantId,
        period_start: Timestamp,
    ) -> Result<bool, StoreError> {
        tasks::claim_schedule(&self.writer(), tenant, period_start)
    }

    fn release_tenant(&self, tenant: TenantId, owner: &str) -> Result<(), StoreError> {
        tasks::release_tenant(&self.writer(), tenant, owner)
    }

    fn claim_watch(
        &self,
        tenant: TenantId,
        owner: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let changed = self.writer().execute(
            "INSERT INTO watchers (tenant_id, owner, lease_until) VALUES (?1, ?2, ?3) \
             ON CONFLICT (tenant_id) DO UPDATE SET owner = excluded.owner, \
             lease_until = excluded.lease_until \
             WHERE watchers.owner = excluded.owner OR watchers.lease_until < ?4",
            (tenant_key(tenant), owner, until, now),
        )?;
        Ok(changed == 1)
    }

    fn release_watch(&self, tenant: TenantId, owner: &str) -> Result<(), StoreError> {
        self.writer().execute(
            "DELETE FROM watchers WHERE tenant_id = ?1 AND owner = ?2",
            (tenant_key(tenant), owner),
        )?;
        Ok(())
    }

    fn interrupt_expired(&self, now: Timestamp, except: Option<&str>) -> Result<u64, StoreError> {
        tasks::interrupt_expired(&self.writer(), now, except)
    }

    fn interrupt_owned(&self, owner: &str, now: Timestamp) -> Result<u64, StoreError> {
        tasks::interrupt_owned(&self.writer(), owner, now)
    }

    fn hand_back(&self, id: TaskId, owner: &str, now: Timestamp) -> Result<bool, StoreError> {
        tasks::hand_back(&self.writer(), id, owner, now)
    }

    fn hand_back_owned(&self, owner: &str, now: Timestamp) -> Result<u64, StoreError> {
        tasks::hand_back_owned(&self.writer(), owner, now)
    }
}

impl CatalogStore for SqliteStore {
    fn record_plugin_result(
        &self,
        tenant: TenantId,
        failure: Option<&str>,
        suspend_after: u32,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        catalog::record_plugin_result(&self.writer(), tenant, failure, suspend_after, now)
    }

    fn plugin_health(
        &self,
        tenant: TenantId,
    ) -> Result<crate::store::PluginHealthRecord, StoreError> {
        self.read(|conn| catalog::plugin_health(conn, tenant))
    }

    fn resume_plugin(&self, tenant: TenantId) -> Result<(), StoreError> {
        self.writer().execute(
            "DELETE FROM plugin_health WHERE tenant_id = ?1",
            [tenant_key(tenant)],
        )?;
        Ok(())
    }

    fn catalog_generation(&self) -> Result<i64, StoreError> {
        self.read(|conn| {
            Ok(conn.query_row(
                "SELECT value FROM store_generations WHERE name = 'catalog'",
                [],
                |row| row.get(0),
            )?)
        })
    }

    fn add_plugin(
        &self,
        plugin: &NewPlugin<'_>,
        now: Timestamp,
    ) -> Result<StoredPlugin, StoreError> {
        catalog::add_plugin(&mut self.writer(), plugin, now)
    }

    fn delete_plugin(&self, id: PluginId) -> Result<PluginDeletion, StoreError> {
        catalog::delete_plugin(&mut self.writer(), id)
    }

    fn list_plugins(&self, tenant: Option<TenantId>) -> Result<Vec<StoredPlugin>, StoreError> {
        self.read(|conn| catalog::list_plugins(conn, tenant))
    }

    fn plugin(&self, id: PluginId) -> Result<Option<StoredPlugin>, StoreError> {
        self.read(|conn| catalog::plugin(conn, id))
    }

    fn plugin_component(&self, id: PluginId) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|conn| catalog::plugin_component(conn, id))
    }

    fn assign_plugin(
        &self,
        tenant: TenantId,
        plugin: PluginId,
        settings: &std::collections::BTreeMap<String, String>,
        by: Option<AccountId>,
        reason: &str,
        now: Timestamp,
    ) -> Result<Assignment, StoreError> {
        catalog::assign(&self.writer(), tenant, plugin, settings, by, reason, now)
    }

    fn assignments(&self, tenant: TenantId) -> Result<Vec<Assignment>, StoreError> {
        self.read(|conn| catalog::assignments(conn, tenant))
    }

    fn api_tenants(&self) -> Result<Vec<StoredTenant>, StoreError> {
        self.read(catalog::api_tenants)
    }

    fn put_tenant(&self, id: TenantId, config: &str, now: Timestamp) -> Result<(), StoreError> {
        catalog::put_tenant(&self.writer(), id, config, now)
    }

    fn delete_tenant(&self, id: TenantId) -> Result<bool, StoreError> {
        catalog::delete_tenant(&mut self.writer(), id)
    }

    fn schedules(&self) -> Result<std::collections::BTreeMap<TenantId, Option<u64>>, StoreError> {
        self.read(catalog::schedules)
    }

    fn set_schedule(
        &self,
        tenant: TenantId,
        interval_secs: Option<u64>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        catalog::set_schedule(&self.writer(), tenant, interval_secs, now)
    }
}
