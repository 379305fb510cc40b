//! [`TaskStore`] on [`PostgresStore`].

use super::*;
use crate::store::ResultPage;

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

    fn add_task_results(
        &self,
        id: TaskId,
        owner: &str,
        first: u64,
        count: u32,
        items: &str,
    ) -> Result<bool, StoreError> {
        let first = i64::try_from(first).unwrap_or(i64::MAX);
        let count = i32::try_from(count).unwrap_or(i32::MAX);
        self.with(async |conn| {
            let added = conn
                .execute(
                    "INSERT INTO task_results (task_id, first, count, items) \
                     SELECT $1, $2, $3, $4 WHERE EXISTS \
                     (SELECT 1 FROM tasks WHERE id = $1 AND state = 'running' AND owner = $5) \
                     ON CONFLICT (task_id, first) DO UPDATE SET count = $3, items = $4",
                    &[&id, &first, &count, &items, &owner],
                )
                .await?;
            Ok(added > 0)
        })
    }

    fn task_results(&self, id: TaskId, from: u64, to: u64) -> Result<Vec<ResultPage>, StoreError> {
        let number = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        let (from, to) = (number(from), number(to));
        self.with(async |conn| {
            let rows = conn
                .query(
                    "SELECT first, count, items FROM task_results \
                     WHERE task_id = $1 AND first < $3 AND first + count > $2 ORDER BY first",
                    &[&id, &from, &to],
                )
                .await?;
            rows.iter()
                .map(|row| {
                    Ok(ResultPage {
                        first: u64::try_from(row.try_get::<_, i64>(0)?).unwrap_or(0),
                        count: u32::try_from(row.try_get::<_, i32>(1)?).unwrap_or(0),
                        items: row.try_get(2)?,
                    })
                })
                .collect()
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
