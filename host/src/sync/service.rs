//! Syncs as background tasks: what the API and the scheduler start.
//!
//! Each sync is a [`Task`] in the store, so that a client can follow it after its
//! request returned and so that a restart finds what it cut short. A tenant never
//! runs two syncs at once: a task waits (queued) for the tenant's running sync to end,
//! and a request for a sync identical to one still queued joins that one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;

mod cluster;
mod plugins;
mod queue;
mod run;

pub use plugins::{PluginLoadError, load_tenant_plugin};

use super::engine::{Clock, SyncEngine, SyncError, SyncRequest};
use super::progress::{Phase, Progress};
use super::report::SyncReport;
use super::tenants::{TenantEntry, Tenants};
use crate::config::TenantConfig;
use crate::ldap::LdapDirectory;
use crate::plugin::model::TenantId;
use crate::plugin::{PluginRegistry, RegistryError, TenantPlugin};
use crate::store::{
    AccountId, Assignment, CancelRequest, CatalogStore, Lease, PluginId, StoreError, Task, TaskId,
    TaskState, TaskStore, UserStore,
};

/// How often a running task's progress message is written to the store.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// How often a wait for another replica's task, or for a tenant another replica
/// syncs, looks at the store.
const WAIT_POLL: Duration = Duration::from_millis(250);

/// Why a sync could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// No such tenant.
    #[error("no tenant {0}")]
    UnknownTenant(TenantId),
    /// The server is shutting down: no new tasks.
    #[error("abacsync is shutting down")]
    ShuttingDown,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How a task ended.
#[derive(Debug)]
pub struct TaskOutcome {
    /// The task's final state.
    pub state: TaskState,
    /// The final message.
    pub message: String,
    /// The sync's report, when the sync ran.
    pub report: Option<SyncReport>,
    /// Why it failed, when it did.
    pub error: Option<TaskError>,
}

/// Why a task failed.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The sync stopped.
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// The plugin could not be loaded.
    #[error(transparent)]
    Plugin(#[from] PluginLoadError),
    /// The directory's settings are unusable (e.g. a missing secret).
    #[error("tenant {tenant}: {reason}")]
    Settings {
        /// The tenant.
        tenant: TenantId,
        /// What is wrong.
        reason: String,
    },
}

impl TaskError {
    /// Whether the directory could not be reached at all (grommunio answers 503).
    pub fn is_directory_unreachable(&self) -> bool {
        matches!(self, TaskError::Sync(err) if err.is_directory_unreachable())
    }
}

/// A started task: its record and the handle that yields its outcome. Dropping the
/// handle does not stop the task.
pub struct StartedTask {
    /// The task as created (or joined).
    pub task: Task,
    /// Completes when the task ends; `None` when an identical queued task was joined
    /// instead of creating one.
    pub handle: Option<JoinHandle<TaskOutcome>>,
}

/// Counters the metrics endpoint reads.
#[derive(Debug, Default)]
pub struct SyncMetrics {
    /// Syncs by outcome.
    pub outcomes: Mutex<HashMap<String, u64>>,
    /// Sum of sync durations in milliseconds, and their count.
    pub duration_ms_sum: std::sync::atomic::AtomicU64,
    /// Entries read.
    pub entries_read: std::sync::atomic::AtomicU64,
    /// Plugin failures (whole calls and entries the plugin reported errors for).
    pub plugin_errors: std::sync::atomic::AtomicU64,
    /// Tasks waiting.
    pub queued: std::sync::atomic::AtomicI64,
    /// Tasks running.
    pub running: std::sync::atomic::AtomicI64,
    /// Refusals by quota (`quotas.*` names): users not written, syncs refused,
    /// uploads refused, pages cut short.
    pub quota_refusals: Mutex<std::collections::BTreeMap<&'static str, u64>>,
    /// Audit events removed past their retention.
    pub audit_pruned: std::sync::atomic::AtomicU64,
    /// Tasks taken over from replicas that died, to run again.
    pub taken_over: std::sync::atomic::AtomicU64,
}

impl SyncMetrics {
    /// Counts `count` refusals by `quota`.
    pub fn quota_refused(&self, quota: &'static str, count: u64) {
        if count == 0 {
            return;
        }
        *self
            .quota_refusals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(quota)
            .or_default() += count;
    }
}

#[derive(Default)]
struct TenantSlot {
    /// Held by the tenant's running sync.
    lock: Arc<tokio::sync::Mutex<()>>,
    /// Queued tasks by (command, params), for joining.
    queued: HashMap<String, Task>,
}

/// Runs syncs as tasks. Cheap to share (`Arc`).
pub struct SyncService {
    engine: SyncEngine,
    tasks: Arc<dyn TaskStore>,
    catalog: Arc<dyn CatalogStore>,
    registry: PluginRegistry,
    tenants: Tenants,
    slots: Mutex<HashMap<TenantId, TenantSlot>>,
    running: Mutex<HashMap<TaskId, Progress>>,
    /// Tells waiters (joined requests) when a task this process runs has ended.
    done: Mutex<HashMap<TaskId, tokio::sync::watch::Sender<Option<TaskState>>>>,
    clock: Clock,
    metrics: SyncMetrics,
    stopping: std::sync::atomic::AtomicBool,
    /// Set when the running tasks are cancelled because the process stops: they are
    /// handed back for another replica to run, not ended as cancelled.
    handing_back: std::sync::atomic::AtomicBool,
    health: super::health::PluginHealth,
    /// This replica's name: the owner of the leases of the tasks it queues and runs.
    replica: String,
    /// How long a task's lease lasts unless renewed.
    lease: Duration,
    /// One per sync this replica may run at once; the queue's other tasks wait in the
    /// store for a replica with room.
    permits: Arc<tokio::sync::Semaphore>,
    /// Wakes the queue's claimer: a task was queued here, or a sync here ended.
    claimable: tokio::sync::Notify,
    /// The outcome of each task a request of this replica queued, for the request
    /// waiting for it, when this replica runs the task (see `queue`).
    waiters: Mutex<HashMap<TaskId, tokio::sync::oneshot::Sender<TaskOutcome>>>,
}

/// How often a replica looks whether the catalog changed.
const CATALOG_EVERY: Duration = Duration::from_secs(2);

/// Records task `id`'s end, trying again while the store cannot be written (see
/// [`persistently`]): an end not recorded would leave the task reading as running, its
/// lease renewed by this replica, forever.
async fn record_end(
    tasks: Arc<dyn TaskStore>,
    clock: Clock,
    id: TaskId,
    state: TaskState,
    message: String,
    result: Option<serde_json::Value>,
) {
    persistently(id, "the task's end", move || {
        tasks.update_task(id, state, &message, result.as_ref(), clock())
    })
    .await;
}

/// Runs `write` (blocking) until the store takes it (it restarts, the network is cut),
/// for as long as this process lives: every second at first, then every 5 s. `None`
/// when it panicked.
async fn persistently<T: Send + 'static>(
    id: TaskId,
    what: &'static str,
    write: impl Fn() -> Result<T, StoreError> + Send + Sync + 'static,
) -> Option<T> {
    let write = Arc::new(write);
    let mut attempt = 0u32;
    loop {
        let once = write.clone();
        match tokio::task::spawn_blocking(move || once()).await {
            Ok(Ok(value)) => {
                if attempt > 0 {
                    tracing::info!(task = id, attempt, "{what} recorded");
                }
                return Some(value);
            }
            Ok(Err(err)) if attempt.is_multiple_of(12) => {
                tracing::error!(task = id, %err, attempt, "cannot record {what}; trying again");
            }
            Ok(Err(_)) => {}
            Err(err) => {
                tracing::error!(task = id, %err, "recording {what} panicked");
                return None;
            }
        }
        attempt += 1;
        let pause = if attempt < 10 { 1 } else { 5 };
        tokio::time::sleep(Duration::from_secs(pause)).await;
    }
}

/// How many times a task is taken over from a replica that died before it is given
/// up (marked interrupted): a sync that kills its replica is not run forever.
pub const MAX_TAKEOVERS: u32 = 2;

/// How long a task's lease lasts by default.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// The message of a task this replica handed back: another runs it to its end.
const HANDED_BACK: &str = "handed back for another replica to run (this one is stopping)";

/// How many syncs a replica runs at once by default.
pub const DEFAULT_MAX_SYNCS: usize = 8;

impl SyncService {
    /// A service over `tenants`, writing users through `engine`, tasks to `tasks`,
    /// reading assigned plugins from `catalog`.
    pub fn new(
        engine: SyncEngine,
        tasks: Arc<dyn TaskStore>,
        catalog: Arc<dyn CatalogStore>,
        registry: PluginRegistry,
        tenants: Tenants,
        clock: Clock,
        replica: String,
    ) -> Self {
        let health = super::health::PluginHealth::new(catalog.clone(), clock.clone());
        Self {
            engine,
            tasks,
            catalog,
            registry,
            tenants,
            slots: Mutex::new(HashMap::new()),
            running: Mutex::new(HashMap::new()),
            done: Mutex::new(HashMap::new()),
            clock,
            metrics: SyncMetrics::default(),
            stopping: std::sync::atomic::AtomicBool::new(false),
            handing_back: std::sync::atomic::AtomicBool::new(false),
            health,
            replica,
            lease: DEFAULT_LEASE,
            permits: Arc::new(tokio::sync::Semaphore::new(DEFAULT_MAX_SYNCS)),
            claimable: tokio::sync::Notify::new(),
            waiters: Mutex::new(HashMap::new()),
        }
    }

    /// Running at most `syncs` syncs at once (at least one); the rest of the queue
    /// waits in the store for this or another replica.
    #[must_use]
    pub fn with_max_concurrent_syncs(mut self, syncs: usize) -> Self {
        self.permits = Arc::new(tokio::sync::Semaphore::new(syncs.max(1)));
        self
    }

    /// With task leases of `lease` (at least a second), renewed every quarter of it.
    #[must_use]
    pub fn with_task_lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_secs(1));
        self
    }

    /// This replica's name.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// A lease for a task this replica queues or runs, from now.
    fn lease(&self) -> Lease {
        Lease {
            owner: self.replica.clone(),
            until: self
                .now()
                .saturating_add(i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX)),
        }
    }

    /// The tenant with this id.
    pub fn tenant(&self, id: TenantId) -> Option<Arc<TenantConfig>> {
        self.tenants.get(id).map(|entry| entry.config)
    }

    /// The tenant with this id and where its settings live.
    pub fn tenant_entry(&self, id: TenantId) -> Option<TenantEntry> {
        self.tenants.get(id)
    }

    /// Every tenant, ordered by id.
    pub fn tenants(&self) -> Vec<Arc<TenantConfig>> {
        self.tenants
            .all()
            .into_iter()
            .map(|entry| entry.config)
            .collect()
    }

    /// Adds or replaces an API tenant (its plugin is loaded anew at its next sync).
    pub fn put_tenant(&self, tenant: TenantConfig) {
        self.registry.remove(tenant.id);
        self.health.resume(tenant.id);
        self.tenants.put(tenant);
    }

    /// Forgets a tenant.
    pub fn remove_tenant(&self, id: TenantId) -> Option<TenantEntry> {
        self.registry.remove(id);
        self.tenants.remove(id)
    }

    /// Deletes an API tenant and everything that belonged to it
    /// ([`CatalogStore::delete_tenant`]). The tenant is forgotten first, so no new
    /// sync starts; the purge then waits for the tenant's running sync (its lock),
    /// so nothing is written after it. Whether it existed in the store.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails; the tenant is then put back.
    pub async fn delete_tenant(&self, id: TenantId) -> Result<bool, StoreError> {
        let previous = self.remove_tenant(id);
        let lock = self.slots().entry(id).or_default().lock.clone();
        let _guard = lock.lock().await;
        let catalog = self.catalog.clone();
        let deleted = tokio::task::spawn_blocking(move || catalog.delete_tenant(id))
            .await
            .map_err(|err| StoreError::Panicked(err.to_string()))?;
        if deleted.is_err()
            && let Some(entry) = previous
        {
            self.tenants.restore(entry);
        }
        deleted
    }

    /// Seconds between the tenant's background syncs, and what set them.
    pub fn interval(&self, id: TenantId) -> (Option<u64>, &'static str) {
        self.tenants.interval(id)
    }

    /// Overrides the tenant's background-sync interval (`None`: none).
    pub fn set_interval(&self, id: TenantId, interval: Option<u64>) {
        self.tenants.set_interval(id, interval);
    }

    /// Plugins, assignments, API tenants, schedules.
    pub fn catalog(&self) -> &Arc<dyn CatalogStore> {
        &self.catalog
    }

    /// The user store.
    pub fn store(&self) -> &Arc<dyn UserStore> {
        self.engine.store()
    }

    /// The task store.
    pub fn task_store(&self) -> &Arc<dyn TaskStore> {
        &self.tasks
    }

    /// The plugin registry.
    pub fn registry(&self) -> &PluginRegistry {
        &self.registry
    }

    /// The counters.
    pub fn metrics(&self) -> &SyncMetrics {
        &self.metrics
    }

    /// What each tenant may store.
    pub fn quotas(&self) -> &crate::config::Quotas {
        self.engine.quotas()
    }

    /// The current time.
    pub fn now(&self) -> i64 {
        (self.clock)()
    }

    /// Starts a sync of `tenant` as a task (`command` and `params` are recorded; an
    /// identical queued task is joined instead). The tenant's settings are read again
    /// when the task's turn comes: a queued task never runs on stale ones.
    ///
    /// # Errors
    /// [`StartError`] when the tenant is unknown, the server is stopping, or the task
    /// cannot be recorded.
    pub async fn start(
        self: &Arc<Self>,
        tenant: TenantId,
        command: &str,
        params: serde_json::Value,
        account: Option<AccountId>,
        request: SyncRequest,
    ) -> Result<StartedTask, StartError> {
        if self.stopping.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(StartError::ShuttingDown);
        }
        if self.tenant(tenant).is_none() {
            return Err(StartError::UnknownTenant(tenant));
        }
        let key = format!("{command}\u{0}{params}");
        if let Some(task) = self
            .slots()
            .get(&tenant)
            .and_then(|slot| slot.queued.get(&key).cloned())
        {
            return Ok(StartedTask { task, handle: None });
        }
        // The write may wait for a long sync's transaction: off the async workers,
        // and without holding the slots. An identical task another replica queued is
        // joined as one queued here would be.
        let tasks = self.tasks.clone();
        let (name, now) = (command.to_owned(), self.now());
        // What a replica needs to run it (whichever claims it, and again should that
        // one die).
        let recorded = serde_json::to_value(&request).ok();
        // With room for it here, this replica claims it as it queues it (it would be
        // the first to claim it anyway); else it waits for the first replica with room.
        // The slot is taken now, so that requests arriving together claim no more
        // than there is room for.
        let permit = self.permits.clone().try_acquire_owned().ok();
        let lease = permit.as_ref().map(|_| self.lease());
        let (task, joined) = tokio::task::spawn_blocking(move || {
            if let Some(queued) = tasks.queued_task(tenant, &name, &params)? {
                return Ok::<_, StoreError>((queued, true));
            }
            Ok((
                tasks.create_task(
                    tenant,
                    &name,
                    &params,
                    recorded.as_ref(),
                    account,
                    lease.as_ref(),
                    now,
                )?,
                false,
            ))
        })
        .await
        .map_err(|err| StoreError::Panicked(err.to_string()))??;
        if joined {
            return Ok(StartedTask { task, handle: None });
        }
        if permit.is_some() {
            return Ok(StartedTask {
                task: task.clone(),
                handle: Some(self.launch(task, request, permit)),
            });
        }
        Ok(self.enqueued(task))
    }

    /// Runs `task`, claimed by this replica (from the queue, or taken over from a
    /// replica that died), once the tenant's turn and a free sync slot come; the
    /// handle of its run. The outcome goes to the request of this replica that queued
    /// it, if one waits for it.
    fn launch(
        self: &Arc<Self>,
        task: Task,
        request: SyncRequest,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> JoinHandle<TaskOutcome> {
        let tenant = task.tenant;
        let key = format!("{}\u{0}{}", task.command, task.params);
        let (done, _) = tokio::sync::watch::channel(None);
        self.done().insert(task.id, done);
        let lock = {
            let mut slots = self.slots();
            let slot = slots.entry(tenant).or_default();
            slot.queued.insert(key.clone(), task.clone());
            slot.lock.clone()
        };
        self.metrics
            .queued
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let service = self.clone();
        let id = task.id;
        let mut request = request;
        request.run_id = format!("task-{id}");
        tokio::spawn(async move {
            let guard = lock.lock().await;
            // One of this replica's sync slots: taken when the task was claimed as it
            // was queued, else now (the semaphore is never closed: one comes).
            let permit = match permit {
                Some(permit) => Some(permit),
                None => service.permits.clone().acquire_owned().await.ok(),
            };
            service
                .metrics
                .queued
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            if let Some(slot) = service.slots().get_mut(&tenant) {
                slot.queued.remove(&key);
            }
            let outcome = match service.claim_tenant_run(id, tenant).await {
                Ok(()) => {
                    let outcome = service.run_task(id, tenant, request).await;
                    service.release_tenant_run(tenant).await;
                    outcome
                }
                Err(outcome) => outcome,
            };
            drop(guard);
            drop(permit);
            service.claimable.notify_one();
            if let Some(done) = service.done().remove(&id) {
                done.send_replace(Some(outcome.state));
            }
            service.deliver(id, outcome)
        })
    }

    /// Waits until task `id` has ended; its final state (read from the store for a
    /// task this process does not run).
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    pub async fn wait(&self, id: TaskId) -> Result<Option<TaskState>, StoreError> {
        let receiver = self
            .done()
            .get(&id)
            .map(tokio::sync::watch::Sender::subscribe);
        if let Some(mut receiver) = receiver
            && let Ok(state) = receiver.wait_for(Option::is_some).await
        {
            return Ok(*state);
        }
        // Another replica's task (or one that ended before the call): read from the
        // store until it has ended.
        loop {
            let tasks = self.tasks.clone();
            let state = tokio::task::spawn_blocking(move || tasks.task(id))
                .await
                .map_err(|err| StoreError::Panicked(err.to_string()))??
                .map(|task| task.state);
            match state {
                Some(state) if !state.is_final() => {
                    tokio::time::sleep(WAIT_POLL).await;
                }
                other => return Ok(other),
            }
        }
    }

    /// Asks a task to stop: a queued one never runs, a running one stops before it
    /// writes anything more. Whether the task was still going.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    pub fn cancel(&self, id: TaskId) -> Result<bool, StoreError> {
        // Held while deciding, so the task cannot move from queued to running between
        // the two checks (run_task registers itself under this lock).
        let running = self.running_tasks();
        if let Some(progress) = running.get(&id) {
            progress.cancel();
            return Ok(true);
        }
        // Queued (here or on another replica): cancelled in the store. Running on
        // another replica: asked of it, through the store.
        let cancelled = match self.tasks.request_cancel(id, self.now())? {
            CancelRequest::Cancelled => true,
            CancelRequest::Requested => return Ok(true),
            CancelRequest::Ended => false,
        };
        drop(running);
        if cancelled {
            let mut slots = self.slots();
            for slot in slots.values_mut() {
                slot.queued.retain(|_, task| task.id != id);
            }
        }
        Ok(cancelled)
    }

    /// Starts shutting down: no new tasks; queued ones end as interrupted when their
    /// turn comes instead of running; running ones go on (see [`Self::cancel_all`]).
    pub fn begin_shutdown(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the service is shutting down.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Cancels every running task (at shutdown): each stops before it writes anything
    /// more and is handed back for another replica to run again.
    pub fn cancel_all(&self) {
        self.handing_back
            .store(true, std::sync::atomic::Ordering::Relaxed);
        for progress in self.running_tasks().values() {
            progress.cancel();
        }
    }

    /// Number of tasks running now.
    pub fn running_count(&self) -> usize {
        self.running_tasks().len()
    }

    /// Hands task `id` back for another replica to run (this one is stopping); when it
    /// cannot be run again, ends it interrupted with `message`.
    fn hand_back_or_interrupt(&self, id: TaskId, message: &str) -> TaskOutcome {
        match self.tasks.hand_back(id, &self.replica, self.now()) {
            Ok(true) => {
                tracing::info!(task = id, "handed back for another replica to run");
                TaskOutcome {
                    state: TaskState::Interrupted,
                    message: HANDED_BACK.into(),
                    report: None,
                    error: None,
                }
            }
            Ok(false) => self.end_unrun(id, TaskState::Interrupted, message),
            Err(err) => {
                tracing::warn!(task = id, %err, "cannot hand the task back");
                self.end_unrun(id, TaskState::Interrupted, message)
            }
        }
    }

    /// Records task `id`'s end (see [`record_end`]).
    async fn record_end(
        &self,
        id: TaskId,
        state: TaskState,
        message: String,
        result: Option<serde_json::Value>,
    ) {
        record_end(
            self.tasks.clone(),
            self.clock.clone(),
            id,
            state,
            message,
            result,
        )
        .await;
    }

    /// Ends a task that will not run, with `state` and `message` (recorded in the
    /// background when the store cannot be written now, see [`Self::record_end`]).
    fn end_unrun(&self, id: TaskId, state: TaskState, message: &str) -> TaskOutcome {
        if let Err(err) = self.tasks.update_task(id, state, message, None, self.now()) {
            tracing::error!(task = id, %err, "cannot record the task's end; trying again");
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let (tasks, clock, message) =
                    (self.tasks.clone(), self.clock.clone(), message.to_owned());
                runtime.spawn(record_end(tasks, clock, id, state, message, None));
            }
        }
        TaskOutcome {
            state,
            message: message.into(),
            report: None,
            error: None,
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<TenantId, TenantSlot>> {
        // Maps updated in single statements: a panic cannot leave them torn.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn done(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<TaskId, tokio::sync::watch::Sender<Option<TaskState>>>>
    {
        self.done.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn running_tasks(&self) -> std::sync::MutexGuard<'_, HashMap<TaskId, Progress>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn waiters(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<TaskId, tokio::sync::oneshot::Sender<TaskOutcome>>> {
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// grommunio's task message: `X/Y synced[, N created][, N error(s)] (T.Ts)`.
pub fn summary_message(report: &SyncReport) -> String {
    let c = &report.counts;
    let seconds = report.timings.total_ms as f64 / 1000.0;
    if matches!(report.outcome.as_str(), "failed" | "cancelled") {
        // The counts are what was planned, not what was done: the error says that.
        let what = report.error.as_deref().unwrap_or(report.outcome.as_str());
        return format!("{what} ({} entries read, {seconds:.1}s)", c.read);
    }
    // Entries read that synced: users removed because the directory no longer has
    // them are no entries of this read (they have no DN here).
    let synced = report
        .results
        .iter()
        .filter(|result| {
            result.dn.is_some()
                && matches!(
                    result.action,
                    super::Action::Created
                        | super::Action::Updated
                        | super::Action::Unchanged
                        | super::Action::Reactivated
                        | super::Action::Deactivated
                )
        })
        .count();
    let mut message = format!("{synced}/{} synced", c.read);
    if c.created > 0 {
        message.push_str(&format!(", {} created", c.created));
    }
    if c.failed > 0 {
        let plural = if c.failed == 1 { "" } else { "s" };
        message.push_str(&format!(", {} error{plural}", c.failed));
    }
    if c.not_found > 0 {
        // A targeted sync's identifiers that named nobody, each in the results.
        let unmatched: Vec<String> = report
            .results
            .iter()
            .filter(|result| result.action == super::Action::NotFound)
            .map(|result| result.message)
            .take(3)
            .collect();
        message.push_str(&format!(
            ", {} matched nobody ({}{})",
            c.not_found,
            unmatched.join("; "),
            if c.not_found > 3 { "; …" } else { "" }
        ));
    }
    message.push_str(&format!(" ({seconds:.1}s)"));
    if let Some(error) = &report.error {
        message.push_str(&format!(": {error}"));
    }
    message
}
