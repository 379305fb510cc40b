//! Background tasks in grommunio's TasQ style: a sync that outlives its request,
//! with its state, progress message, parameters and result.

use serde::Serialize;

use super::{AccountId, StoreError, Timestamp};
use crate::plugin::model::TenantId;

/// A task's id.
pub type TaskId = i64;

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Waiting (for the tenant's running sync to end).
    Queued,
    /// Running.
    Running,
    /// Done.
    Completed,
    /// Failed.
    Error,
    /// Cancelled on request.
    Cancelled,
    /// Cut short by a shutdown or crash; marked on the next start.
    Interrupted,
}

impl TaskState {
    /// Name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Completed => "completed",
            TaskState::Error => "error",
            TaskState::Cancelled => "cancelled",
            TaskState::Interrupted => "interrupted",
        }
    }

    /// grommunio TasQ's numeric state (0 queued, 1 loaded, 2 running, 3 completed,
    /// 4 error, 5 cancelled); an interrupted task shows as an error there.
    pub fn tasq_code(self) -> u8 {
        match self {
            TaskState::Queued => 0,
            TaskState::Running => 2,
            TaskState::Completed => 3,
            TaskState::Error | TaskState::Interrupted => 4,
            TaskState::Cancelled => 5,
        }
    }

    /// Whether the task has ended.
    pub fn is_final(self) -> bool {
        !matches!(self, TaskState::Queued | TaskState::Running)
    }

    fn parse(name: &str) -> Option<Self> {
        [
            TaskState::Queued,
            TaskState::Running,
            TaskState::Completed,
            TaskState::Error,
            TaskState::Cancelled,
            TaskState::Interrupted,
        ]
        .into_iter()
        .find(|state| state.as_str() == name)
    }

    /// The state named `name` as stored.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for an unknown name.
    pub fn from_stored(name: &str) -> Result<Self, StoreError> {
        Self::parse(name).ok_or_else(|| StoreError::Corrupt {
            table: "tasks",
            column: "state",
            reason: format!("unknown state `{name}`"),
        })
    }
}

/// A task as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// Id.
    pub id: TaskId,
    /// The tenant it works on.
    pub tenant: TenantId,
    /// What runs (`ldap.downsync`, `ldap.syncNow`, `abac.usersSync`, `schedule`).
    pub command: String,
    /// State.
    pub state: TaskState,
    /// Progress or final message.
    pub message: String,
    /// The parameters asked for.
    pub params: serde_json::Value,
    /// The result once finished.
    pub result: Option<serde_json::Value>,
    /// Who asked (`None`: the scheduler).
    pub account: Option<AccountId>,
    /// Created.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// A page of a task's per-user results ([`TaskStore::add_task_results`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultPage {
    /// The number of its first result, from 0.
    pub first: u64,
    /// How many results it holds.
    pub count: u32,
    /// The results, a JSON array.
    pub items: String,
}

/// Who holds a queued or running task, and until when: the replica renews it while the
/// task is alive; once it runs out, the task's owner is taken to have died.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The replica (one `abacsync serve` process).
    pub owner: String,
    /// When the lease runs out unless renewed.
    pub until: Timestamp,
}

/// A task another replica left behind, taken over to run again
/// ([`TaskStore::take_over_expired`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TakenTask {
    /// The task, queued again under the new owner.
    pub task: Task,
    /// What it was asked to do, as recorded when it was created.
    pub request: serde_json::Value,
    /// How many times it has been taken over, this one included.
    pub attempts: u32,
}

/// What a cancel did ([`TaskStore::request_cancel`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelRequest {
    /// The task was queued: it is cancelled and will not run.
    Cancelled,
    /// The task runs: the replica running it stops it at its next progress report.
    Requested,
    /// The task had ended already.
    Ended,
}

/// Tasks. Lists are scoped to a tenant, or to all for system-wide callers.
pub trait TaskStore: Send + Sync {
    /// Creates a queued task; `request` is what a replica needs to run it (and to run
    /// it again should its replica die; `None`: it cannot be). With a `lease`, the
    /// task is its owner's to run; without, it waits in the queue for the first
    /// replica with room to claim it ([`TaskStore::claim_queued`]).
    #[allow(clippy::too_many_arguments)]
    fn create_task(
        &self,
        tenant: TenantId,
        command: &str,
        params: &serde_json::Value,
        request: Option<&serde_json::Value>,
        account: Option<AccountId>,
        lease: Option<&Lease>,
        now: Timestamp,
    ) -> Result<Task, StoreError>;

    /// Claims for `lease`'s owner at most `limit` tasks of the queue (queued with no
    /// owner), oldest first, each the oldest unfinished task of its tenant (a tenant
    /// whose earlier task is queued or runs waits for it): each is returned to one
    /// caller only, however many replicas ask at once.
    fn claim_queued(
        &self,
        lease: &Lease,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<TakenTask>, StoreError>;

    /// Takes over, for `lease`'s owner, the queued or running tasks whose lease ran out
    /// before `now` (their replica died, or handed them back) and that have a request and were taken over
    /// fewer than `max_attempts` times: each is queued again under the new owner, its
    /// message saying whose it was, and returned once, to one caller, however many
    /// replicas ask at once. Cancel requests of the dead run are dropped with it.
    fn take_over_expired(
        &self,
        lease: &Lease,
        now: Timestamp,
        max_attempts: u32,
    ) -> Result<Vec<TakenTask>, StoreError>;

    /// One task.
    fn task(&self, id: TaskId) -> Result<Option<Task>, StoreError>;

    /// The oldest queued task of `tenant` running `command` with exactly `params`,
    /// whichever replica queued it: a request identical to it joins it.
    fn queued_task(
        &self,
        tenant: TenantId,
        command: &str,
        params: &serde_json::Value,
    ) -> Result<Option<Task>, StoreError>;

    /// The newest tasks (of one tenant, or all), at most `limit`.
    fn list_tasks(&self, tenant: Option<TenantId>, limit: u32) -> Result<Vec<Task>, StoreError> {
        self.list_tasks_from(tenant, 0, limit)
    }

    /// The newest tasks after skipping the `offset` newest, at most `limit`.
    fn list_tasks_from(
        &self,
        tenant: Option<TenantId>,
        offset: u32,
        limit: u32,
    ) -> Result<Vec<Task>, StoreError>;

    /// How many tasks (of one tenant, or all) are stored.
    fn count_tasks(&self, tenant: Option<TenantId>) -> Result<u64, StoreError>;

    /// Deletes a task's record, and its results; whether it existed.
    fn delete_task(&self, id: TaskId) -> Result<bool, StoreError>;

    /// Stores a page of task `id`'s per-user results, if the task runs under
    /// `owner`: `count` results from number `first` on, as `items` (a JSON array,
    /// opaque here). A page stored again replaces the first; the pages go with their
    /// task. False, and nothing stored, when the task is gone, has ended or is another
    /// replica's now.
    fn add_task_results(
        &self,
        id: TaskId,
        owner: &str,
        first: u64,
        count: u32,
        items: &str,
    ) -> Result<bool, StoreError>;

    /// The pages of task `id`'s results that hold any of the results `from..to`, in
    /// order.
    fn task_results(&self, id: TaskId, from: u64, to: u64) -> Result<Vec<ResultPage>, StoreError>;

    /// Sets a task's state and message, and its result when given. A task that has
    /// ended does not change again: returns false then.
    fn update_task(
        &self,
        id: TaskId,
        state: TaskState,
        message: &str,
        result: Option<&serde_json::Value>,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Cancels task `id` if it is queued, or asks the replica running it to stop it.
    fn request_cancel(&self, id: TaskId, now: Timestamp) -> Result<CancelRequest, StoreError>;

    /// Whether a cancel of running task `id` was asked for.
    fn cancel_requested(&self, id: TaskId) -> Result<bool, StoreError>;

    /// Takes the tenant's run for `owner` (running `task`, if a task) until `until`:
    /// `None` when taken (or already `owner`'s), else the replica that holds it. A run
    /// whose lease ran out before `now` is taken over.
    fn claim_tenant(
        &self,
        tenant: TenantId,
        owner: &str,
        task: Option<TaskId>,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<Option<String>, StoreError>;

    /// Gives the tenant's run back, if `owner` holds it.
    fn release_tenant(&self, tenant: TenantId, owner: &str) -> Result<(), StoreError>;

    /// Claims the background sync of `tenant` for the schedule period starting at
    /// `period_start` (ms): true for the first caller of each period (later periods
    /// only), so that a period fires once over every replica.
    fn claim_schedule(&self, tenant: TenantId, period_start: Timestamp)
    -> Result<bool, StoreError>;

    /// Takes, or keeps, the watch of `tenant`'s directory for `owner` until `until`:
    /// true when `owner` holds it now. A watch whose lease ran out before `now` (its
    /// replica died) is taken over; one another replica holds is not.
    fn claim_watch(
        &self,
        tenant: TenantId,
        owner: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Gives the watch of `tenant` back, if `owner` holds it.
    fn release_watch(&self, tenant: TenantId, owner: &str) -> Result<(), StoreError>;

    /// Renews the lease of every queued or running task `owner` holds, and of the
    /// tenant runs it holds, until `until`; returns how many tasks.
    fn renew_leases(&self, owner: &str, until: Timestamp) -> Result<u64, StoreError>;

    /// Marks interrupted the queued or running tasks whose lease ran out before `now`
    /// (their replica died, or stopped without handing them back), except those of
    /// `except` (the caller, which knows its own are alive); returns how many.
    fn interrupt_expired(&self, now: Timestamp, except: Option<&str>) -> Result<u64, StoreError>;

    /// Marks interrupted every queued or running task `owner` holds (a replica that
    /// stops hands its tasks back); returns how many.
    fn interrupt_owned(&self, owner: &str, now: Timestamp) -> Result<u64, StoreError>;

    /// Hands task `id`, queued or running under `owner`, back for another replica to
    /// take over at once (a replica that stops): it is queued again with no owner and
    /// an expired lease. False when it is not `owner`'s, has ended, or has no request
    /// to run again.
    fn hand_back(&self, id: TaskId, owner: &str, now: Timestamp) -> Result<bool, StoreError>;

    /// Hands back every queued or running task `owner` holds that can be run again
    /// (a replica that stops, or that starts again after a crash); returns how many.
    /// [`TaskStore::interrupt_owned`] then marks the rest.
    fn hand_back_owned(&self, owner: &str, now: Timestamp) -> Result<u64, StoreError>;
}
