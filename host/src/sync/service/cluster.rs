//! What makes replicas one service: following the catalog in the store, keeping task
//! leases alive and taking over the tasks of replicas that died, and taking a tenant's
//! run in the store so that one sync of a tenant runs at a time over every replica.

use std::sync::Arc;

use super::{CATALOG_EVERY, MAX_TAKEOVERS, SyncService, TaskOutcome, WAIT_POLL};
use crate::plugin::model::TenantId;
use crate::store::{StoreError, TakenTask, TaskId, TaskState};
use crate::sync::engine::SyncRequest;
use crate::sync::tenants::Tenants;

impl SyncService {
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

    /// Keeps this replica's task leases alive, every quarter of a lease, until the
    /// process ends; and takes over the tasks of replicas whose leases ran out (they
    /// died): each is queued again here and run from the directory, at most
    /// [`MAX_TAKEOVERS`] times; one that cannot be run again is marked interrupted. A
    /// failure is logged and tried again at the next turn.
    pub async fn keep_leases(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.lease / 4);
        loop {
            tick.tick().await;
            let tasks = self.tasks.clone();
            let (lease, now) = (self.lease(), self.now());
            let stopping = self.stopping.load(std::sync::atomic::Ordering::Relaxed);
            let turn = tokio::task::spawn_blocking(move || {
                tasks.renew_leases(&lease.owner, lease.until)?;
                // A replica that is stopping takes nothing over (it would hand it back),
                // and marks nothing either: what it leaves is for a replica that stays
                // to take over first.
                if stopping {
                    return Ok::<_, StoreError>((Vec::new(), 0));
                }
                let taken = tasks.take_over_expired(&lease, now, MAX_TAKEOVERS)?;
                let interrupted = tasks.interrupt_expired(now, Some(&lease.owner))?;
                Ok((taken, interrupted))
            })
            .await;
            match turn {
                Ok(Ok((mut taken, interrupted))) => {
                    // In the order they were asked for.
                    taken.sort_by_key(|taken| taken.task.id);
                    if interrupted > 0 {
                        tracing::warn!(
                            interrupted,
                            "tasks of a replica that stopped renewing their leases are marked interrupted"
                        );
                    }
                    // One tenant's tasks one after the other, in the order they were
                    // asked for (each queued once the one before it has run).
                    let mut by_tenant: std::collections::BTreeMap<TenantId, Vec<TakenTask>> =
                        std::collections::BTreeMap::new();
                    for taken in taken {
                        by_tenant.entry(taken.task.tenant).or_default().push(taken);
                    }
                    for (_, tasks) in by_tenant {
                        let service = self.clone();
                        tokio::spawn(async move {
                            for taken in tasks {
                                if let Some(handle) = service.run_taken_over(taken) {
                                    let _ = handle.await;
                                }
                            }
                        });
                    }
                }
                Ok(Err(err)) => tracing::warn!(error = %err, "cannot renew the task leases"),
                Err(err) => tracing::warn!(error = %err, "renewing the task leases panicked"),
            }
        }
    }

    /// Runs a task taken over from a replica that died, from the directory, as the
    /// request it recorded asked; the handle of its run.
    pub(super) fn run_taken_over(
        self: &Arc<Self>,
        taken: TakenTask,
    ) -> Option<tokio::task::JoinHandle<TaskOutcome>> {
        let TakenTask {
            task,
            request,
            attempts,
        } = taken;
        let request = match serde_json::from_value::<SyncRequest>(request) {
            Ok(request) => request,
            Err(err) => {
                let _ = self.end_unrun(
                    task.id,
                    TaskState::Interrupted,
                    &format!("interrupted: its replica stopped, and its request cannot be read to run it again ({err})"),
                );
                return None;
            }
        };
        tracing::warn!(
            task = task.id,
            tenant = task.tenant,
            attempts,
            "running a task again whose replica stopped"
        );
        self.metrics
            .taken_over
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(self.launch(task, request, None))
    }

    /// Takes tenant `tenant`'s run for task `id` in the store, waiting while another
    /// replica's sync of the tenant runs (one sync per tenant across every replica).
    /// The task's end, when it ended while waiting (cancelled, the server stopping).
    pub(super) async fn claim_tenant_run(
        &self,
        id: TaskId,
        tenant: TenantId,
    ) -> Result<(), TaskOutcome> {
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
                return Err(self.hand_back_or_interrupt(
                    id,
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
    pub(super) async fn release_tenant_run(&self, tenant: TenantId) {
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
}
