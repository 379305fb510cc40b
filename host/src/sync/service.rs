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

/// Why a tenant's plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PluginLoadError {
    /// The component file cannot be read.
    #[error("tenant {tenant}: cannot read plugin {path}: {cause}")]
    Read {
        /// The tenant.
        tenant: TenantId,
        /// The file.
        path: String,
        /// Why.
        cause: std::io::Error,
    },
    /// The component or its settings were refused.
    #[error(transparent)]
    Refused(#[from] RegistryError),
    /// The tenant has no plugin: none configured, none assigned.
    #[error("tenant {0} has no plugin: set plugin.path or assign one through the API")]
    Missing(TenantId),
    /// An assigned plugin is not in the store.
    #[error("tenant {tenant}: assigned plugin {plugin} is not in the store")]
    NotStored {
        /// The tenant.
        tenant: TenantId,
        /// The plugin.
        plugin: PluginId,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Loads `tenant`'s plugin from its configured file and assigns it (compiled once per
/// distinct component).
///
/// # Errors
/// [`PluginLoadError`] when the file cannot be read or the plugin is refused.
pub fn load_tenant_plugin(
    registry: &PluginRegistry,
    tenant: &TenantConfig,
) -> Result<Arc<TenantPlugin>, PluginLoadError> {
    let Some(path) = &tenant.plugin.path else {
        return Err(PluginLoadError::Missing(tenant.id));
    };
    let bytes = std::fs::read(path).map_err(|cause| PluginLoadError::Read {
        tenant: tenant.id,
        path: path.display().to_string(),
        cause,
    })?;
    let label = path.file_name().map_or_else(
        || path.display().to_string(),
        |name| name.to_string_lossy().into_owned(),
    );
    let settings = tenant
        .plugin
        .settings
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(registry.assign(tenant.id, &label, &bytes, settings)?)
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
    health: super::health::PluginHealth,
    /// This replica's name: the owner of the leases of the tasks it queues and runs.
    replica: String,
    /// How long a task's lease lasts unless renewed.
    lease: Duration,
}

/// How often a replica looks whether the catalog changed.
const CATALOG_EVERY: Duration = Duration::from_secs(2);

/// How long a task's lease lasts by default.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

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
            health: super::health::PluginHealth::default(),
            replica,
            lease: DEFAULT_LEASE,
        }
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

    /// Follows the catalog in the store: every [`CATALOG_EVERY`], when its generation
    /// moved (a tenant, schedule or plugin assignment changed, through any replica),
    /// takes the tenants and schedules `load` reads and forgets the loaded plugins, so
    /// that the next sync of each tenant loads its current assignment. Runs until the
    /// process ends.
    pub async fn follow_catalog<F>(self: Arc<Self>, load: F)
    where
        F: Fn() -> Result<Tenants, String> + Send + Sync + 'static,
    {
        let load = Arc::new(load);
        let mut seen = None;
        let mut tick = tokio::time::interval(CATALOG_EVERY);
        loop {
            tick.tick().await;
            let (catalog, loading) = (self.catalog.clone(), load.clone());
            let turn = tokio::task::spawn_blocking(move || {
                let generation = catalog
                    .catalog_generation()
                    .map_err(|err| err.to_string())?;
                Ok::<_, String>(generation)
            })
            .await;
            let generation = match turn {
                Ok(Ok(generation)) => generation,
                Ok(Err(err)) => {
                    tracing::warn!(error = %err, "cannot read the catalog's generation");
                    continue;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "reading the catalog's generation panicked");
                    continue;
                }
            };
            // The first look only sets the mark: the tenants were loaded at start.
            if seen
                .replace(generation)
                .is_none_or(|last| last == generation)
            {
                continue;
            }
            match tokio::task::spawn_blocking(move || loading()).await {
                Ok(Ok(fresh)) => {
                    self.tenants.replace_with(fresh);
                    for tenant in self.tenants() {
                        self.registry.remove(tenant.id);
                    }
                    tracing::debug!(generation, "reloaded the tenants from the store");
                }
                Ok(Err(err)) => tracing::warn!(error = %err, "cannot reload the tenants"),
                Err(err) => tracing::warn!(error = %err, "reloading the tenants panicked"),
            }
        }
    }

    /// Keeps this replica's task leases alive and marks interrupted the tasks of
    /// replicas whose leases ran out (they died), every quarter of a lease, until the
    /// process ends. A failure is logged and tried again at the next turn.
    pub async fn keep_leases(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.lease / 4);
        loop {
            tick.tick().await;
            let tasks = self.tasks.clone();
            let (replica, lease, now) = (self.replica.clone(), self.lease(), self.now());
            let turn = tokio::task::spawn_blocking(move || {
                tasks.renew_leases(&replica, lease.until)?;
                tasks.interrupt_expired(now, Some(&replica))
            })
            .await;
            match turn {
                Ok(Ok(0)) => {}
                Ok(Ok(interrupted)) => tracing::warn!(
                    interrupted,
                    "tasks of a replica that stopped renewing their leases are marked interrupted"
                ),
                Ok(Err(err)) => tracing::warn!(error = %err, "cannot renew the task leases"),
                Err(err) => tracing::warn!(error = %err, "renewing the task leases panicked"),
            }
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

    /// The tenant's plugin, loaded on first use: its newest assignment through the
    /// API, else the configured file. Blocking (it may compile the component).
    ///
    /// # Errors
    /// [`PluginLoadError`] when it cannot be loaded.
    pub fn plugin(&self, tenant: &TenantConfig) -> Result<Arc<TenantPlugin>, PluginLoadError> {
        if let Some(plugin) = self.registry.get(tenant.id) {
            return Ok(plugin);
        }
        match self.catalog.assignments(tenant.id)?.into_iter().next() {
            Some(assignment) => self.load_assignment(&assignment),
            None => load_tenant_plugin(&self.registry, tenant),
        }
    }

    fn load_assignment(
        &self,
        assignment: &Assignment,
    ) -> Result<Arc<TenantPlugin>, PluginLoadError> {
        let missing = || PluginLoadError::NotStored {
            tenant: assignment.tenant,
            plugin: assignment.plugin,
        };
        let stored = self
            .catalog
            .plugin(assignment.plugin)?
            .ok_or_else(missing)?;
        let bytes = self
            .catalog
            .plugin_component(assignment.plugin)?
            .ok_or_else(missing)?;
        let settings = assignment
            .settings
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(self
            .registry
            .assign(assignment.tenant, &stored.label, &bytes, settings)?)
    }

    /// Gives `tenant` the stored plugin `plugin` with `settings`, after the plugin
    /// accepted them; the assignment becomes the newest version in the tenant's
    /// history. Blocking (it may compile the component).
    ///
    /// # Errors
    /// [`PluginLoadError`] when the plugin is not stored or refuses the settings.
    pub fn assign_plugin(
        &self,
        tenant: TenantId,
        plugin: PluginId,
        settings: &std::collections::BTreeMap<String, String>,
        by: Option<AccountId>,
        reason: &str,
    ) -> Result<Assignment, PluginLoadError> {
        let probe = Assignment {
            id: 0,
            tenant,
            plugin,
            settings: settings.clone(),
            assigned_by: by,
            assigned_at: self.now(),
            reason: reason.to_owned(),
        };
        // Compiles and checks the settings; on success the registry holds it already.
        self.load_assignment(&probe)?;
        self.health.resume(tenant);
        Ok(self
            .catalog
            .assign_plugin(tenant, plugin, settings, by, reason, self.now())?)
    }

    /// The health of `tenant`'s plugin.
    pub fn plugin_status(&self, tenant: TenantId) -> super::health::PluginStatus {
        self.health.status(tenant)
    }

    /// Lifts a suspension of `tenant`'s plugin.
    pub fn resume_plugin(&self, tenant: TenantId) {
        self.health.resume(tenant);
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
        let (name, now, lease) = (command.to_owned(), self.now(), self.lease());
        let (task, joined) = tokio::task::spawn_blocking(move || {
            if let Some(queued) = tasks.queued_task(tenant, &name, &params)? {
                return Ok::<_, StoreError>((queued, true));
            }
            Ok((
                tasks.create_task(tenant, &name, &params, account, &lease, now)?,
                false,
            ))
        })
        .await
        .map_err(|err| StoreError::Panicked(err.to_string()))??;
        if joined {
            return Ok(StartedTask { task, handle: None });
        }
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
        let handle = tokio::spawn(async move {
            let guard = lock.lock().await;
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
            if let Some(done) = service.done().remove(&id) {
                done.send_replace(Some(outcome.state));
            }
            outcome
        });
        Ok(StartedTask {
            task,
            handle: Some(handle),
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

    /// Takes tenant `tenant`'s run for task `id` in the store, waiting while another
    /// replica's sync of the tenant runs (one sync per tenant across every replica).
    /// The task's end, when it ended while waiting (cancelled, the server stopping).
    async fn claim_tenant_run(&self, id: TaskId, tenant: TenantId) -> Result<(), TaskOutcome> {
        let mut told = false;
        loop {
            let tasks = self.tasks.clone();
            let (replica, lease, now) = (self.replica.clone(), self.lease(), self.now());
            let claimed = tokio::task::spawn_blocking(move || {
                let holder = tasks.claim_tenant(tenant, &replica, Some(id), lease.until, now)?;
                let task = tasks.task(id)?;
                Ok::<_, StoreError>((holder, task.map(|task| task.state)))
            })
            .await;
            let (holder, state) = match claimed {
                Ok(Ok(found)) => found,
                Ok(Err(err)) => {
                    return Err(self.end_unrun(
                        id,
                        TaskState::Error,
                        &format!("cannot take the tenant's sync: {err}"),
                    ));
                }
                Err(err) => {
                    return Err(self.end_unrun(
                        id,
                        TaskState::Error,
                        &format!("taking the tenant's sync panicked: {err}"),
                    ));
                }
            };
            if let Some(state) = state.filter(|state| state.is_final()) {
                if holder.is_none() {
                    self.release_tenant_run(tenant).await;
                }
                return Err(TaskOutcome {
                    state,
                    message: "ended before it started".into(),
                    report: None,
                    error: None,
                });
            }
            let Some(holder) = holder else {
                return Ok(());
            };
            if self.stopping.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(self.end_unrun(
                    id,
                    TaskState::Interrupted,
                    "interrupted: abacsync stopped before the task started; run it again",
                ));
            }
            if !told {
                told = true;
                let message = format!("waiting for the tenant's sync on replica {holder}");
                let tasks = self.tasks.clone();
                let now = self.now();
                let _ = tokio::task::spawn_blocking(move || {
                    tasks.update_task(id, TaskState::Queued, &message, None, now)
                })
                .await;
            }
            tokio::time::sleep(WAIT_POLL).await;
        }
    }

    /// Gives tenant `tenant`'s run back in the store.
    async fn release_tenant_run(&self, tenant: TenantId) {
        let (tasks, replica) = (self.tasks.clone(), self.replica.clone());
        let released =
            tokio::task::spawn_blocking(move || tasks.release_tenant(tenant, &replica)).await;
        if !matches!(released, Ok(Ok(()))) {
            tracing::warn!(
                tenant,
                "cannot give the tenant's sync back; it is free again once its lease runs out"
            );
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

    /// Cancels every running task (at shutdown).
    pub fn cancel_all(&self) {
        for progress in self.running_tasks().values() {
            progress.cancel();
        }
    }

    /// Number of tasks running now.
    pub fn running_count(&self) -> usize {
        self.running_tasks().len()
    }

    /// Ends a task that will not run, with `state` and `message`.
    fn end_unrun(&self, id: TaskId, state: TaskState, message: &str) -> TaskOutcome {
        if let Err(err) = self.tasks.update_task(id, state, message, None, self.now()) {
            tracing::error!(task = id, %err, "cannot record the task's end");
        }
        TaskOutcome {
            state,
            message: message.into(),
            report: None,
            error: None,
        }
    }

    async fn run_task(
        self: &Arc<Self>,
        id: TaskId,
        tenant: TenantId,
        request: SyncRequest,
    ) -> TaskOutcome {
        use std::sync::atomic::Ordering::Relaxed;
        if self.stopping.load(Relaxed) {
            return self.end_unrun(
                id,
                TaskState::Interrupted,
                "interrupted: abacsync stopped before the task started; run it again",
            );
        }
        // The settings as they are now, not as they were when the task was queued.
        let Some(config) = self.tenant(tenant) else {
            return self.end_unrun(
                id,
                TaskState::Error,
                &format!("tenant {tenant} no longer exists"),
            );
        };
        if let Some(reason) = self.health.suspended(tenant) {
            return self.end_unrun(id, TaskState::Error, &format!("tenant {tenant}: {reason}"));
        }
        if !config.ldap_enabled {
            return self.end_unrun(
                id,
                TaskState::Error,
                &format!("tenant {tenant}: LDAP is disabled"),
            );
        }
        let progress = Progress::new();
        {
            // Registered and marked running under one lock: `cancel` sees either a
            // queued task it can mark cancelled, or a running one it can stop.
            let mut running = self.running_tasks();
            match self
                .tasks
                .update_task(id, TaskState::Running, "starting", None, self.now())
            {
                Ok(true) => {}
                Ok(false) => {
                    return TaskOutcome {
                        state: TaskState::Cancelled,
                        message: "cancelled before it started".into(),
                        report: None,
                        error: None,
                    };
                }
                Err(err) => tracing::error!(task = id, %err, "cannot mark the task running"),
            }
            running.insert(id, progress.clone());
        }
        self.metrics.running.fetch_add(1, Relaxed);
        let reporter = self.spawn_progress_writer(id, progress.clone());
        let result = self.sync(&config, request, progress.clone()).await;
        reporter.abort();
        let outcome = match result {
            Ok((report, error)) => {
                self.record_metrics(&report, error.as_ref());
                let state = match report.outcome.as_str() {
                    "succeeded" => TaskState::Completed,
                    "cancelled" => TaskState::Cancelled,
                    _ => TaskState::Error,
                };
                TaskOutcome {
                    state,
                    message: summary_message(&report),
                    report: Some(report),
                    error: error.map(TaskError::from),
                }
            }
            Err(err) => {
                self.bump_outcome("failed");
                TaskOutcome {
                    state: TaskState::Error,
                    message: err.to_string(),
                    report: None,
                    error: Some(err),
                }
            }
        };
        let plugin_failure = match &outcome.error {
            Some(TaskError::Plugin(err)) => Some(err.to_string()),
            Some(TaskError::Sync(err @ SyncError::Plugin { .. })) => Some(err.to_string()),
            _ => None,
        };
        // Only a sync that got as far as the plugin says anything of its health.
        let reached_plugin = plugin_failure.is_some() || outcome.state == TaskState::Completed;
        if reached_plugin && self.health.record(tenant, plugin_failure.as_deref()) {
            tracing::warn!(
                tenant,
                "the tenant's plugin is suspended after repeated failures"
            );
        }
        let result = outcome
            .report
            .as_ref()
            .and_then(|report| serde_json::to_value(report).ok());
        if let Err(err) = self.tasks.update_task(
            id,
            outcome.state,
            &outcome.message,
            result.as_ref(),
            self.now(),
        ) {
            tracing::error!(task = id, %err, "cannot record the task's end");
        }
        self.running_tasks().remove(&id);
        self.metrics.running.fetch_sub(1, Relaxed);
        outcome
    }

    async fn sync(
        self: &Arc<Self>,
        tenant: &TenantConfig,
        request: SyncRequest,
        progress: Progress,
    ) -> Result<(SyncReport, Option<SyncError>), TaskError> {
        let service = self.clone();
        let config = tenant.clone();
        let plugin = tokio::task::spawn_blocking(move || service.plugin(&config))
            .await
            .map_err(|err| TaskError::Settings {
                tenant: tenant.id,
                reason: format!("loading the plugin panicked: {err}"),
            })??;
        let password = tenant
            .ldap
            .bind_password(tenant.id)
            .map_err(|err| TaskError::Settings {
                tenant: tenant.id,
                reason: err.to_string(),
            })?;
        let directory =
            LdapDirectory::new(&tenant.ldap, password).map_err(|err| TaskError::Settings {
                tenant: tenant.id,
                reason: err.to_string(),
            })?;
        Ok(self
            .engine
            .run(tenant, plugin, &directory, request, progress)
            .await)
    }

    /// Reads at most `limit` entries of `selection` from `tenant`'s directory and maps
    /// them with its plugin, writing nothing ([`super::lookup::lookup`]): a directory
    /// search, a dump, the first step of an import.
    ///
    /// # Errors
    /// [`TaskError`] when the tenant is unknown, its plugin or directory settings are
    /// unusable, or the read or the plugin call fails.
    pub async fn lookup(
        self: &Arc<Self>,
        tenant: TenantId,
        selection: crate::ldap::Selection,
        limit: usize,
        extra: super::lookup::Attributes,
    ) -> Result<Vec<super::lookup::Found>, TaskError> {
        let config = self.tenant(tenant).ok_or_else(|| TaskError::Settings {
            tenant,
            reason: "no such tenant".into(),
        })?;
        let service = self.clone();
        let loading = config.clone();
        let plugin = tokio::task::spawn_blocking(move || service.plugin(&loading))
            .await
            .map_err(|err| TaskError::Settings {
                tenant,
                reason: format!("loading the plugin panicked: {err}"),
            })??;
        let password = config
            .ldap
            .bind_password(tenant)
            .map_err(|err| TaskError::Settings {
                tenant,
                reason: err.to_string(),
            })?;
        let directory =
            LdapDirectory::new(&config.ldap, password).map_err(|err| TaskError::Settings {
                tenant,
                reason: err.to_string(),
            })?;
        Ok(super::lookup::lookup(&config, &plugin, &directory, selection, limit, extra).await?)
    }

    fn spawn_progress_writer(&self, id: TaskId, progress: Progress) -> JoinHandle<()> {
        let tasks = self.tasks.clone();
        let clock = self.clock.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PROGRESS_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                let now = progress.snapshot();
                let message = match now.phase {
                    Phase::Starting => "connecting".to_owned(),
                    Phase::Reading => format!("{} read, {} mapped", now.read, now.mapped),
                    Phase::Applying => format!("{}/{} changes written", now.written, now.to_write),
                    Phase::Done => return,
                };
                let tasks = tasks.clone();
                let at = clock();
                let written = tokio::task::spawn_blocking(move || {
                    let written = tasks.update_task(id, TaskState::Running, &message, None, at)?;
                    Ok::<_, StoreError>((written, tasks.cancel_requested(id)?))
                })
                .await;
                match written {
                    Ok(Ok((true, cancel))) => {
                        // Asked through another replica.
                        if cancel {
                            progress.cancel();
                        }
                    }
                    _ => return,
                }
            }
        })
    }

    fn record_metrics(&self, report: &SyncReport, error: Option<&SyncError>) {
        use std::sync::atomic::Ordering::Relaxed;
        self.bump_outcome(&report.outcome);
        self.metrics
            .duration_ms_sum
            .fetch_add(report.timings.total_ms, Relaxed);
        self.metrics
            .entries_read
            .fetch_add(report.counts.read, Relaxed);
        let entry_errors = report
            .results
            .iter()
            .filter(|result| result.code == super::report::code::MAPPING_ERROR)
            .count() as u64;
        let call_errors = u64::from(matches!(error, Some(SyncError::Plugin { .. })));
        self.metrics
            .plugin_errors
            .fetch_add(entry_errors + call_errors, Relaxed);
        let over_quota = report
            .results
            .iter()
            .filter(|result| result.code == super::report::code::OVER_QUOTA)
            .count() as u64;
        self.metrics.quota_refused("user_attributes", over_quota);
        if matches!(error, Some(SyncError::OverQuota { .. })) {
            self.metrics.quota_refused("tenant_attribute_bytes", 1);
        }
        self.metrics
            .audit_pruned
            .fetch_add(report.audit_pruned, Relaxed);
    }

    fn bump_outcome(&self, outcome: &str) {
        *self
            .metrics
            .outcomes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(outcome.to_owned())
            .or_default() += 1;
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
        let unmatched: Vec<&str> = report
            .results
            .iter()
            .filter(|result| result.action == super::Action::NotFound)
            .map(|result| result.message.as_str())
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
