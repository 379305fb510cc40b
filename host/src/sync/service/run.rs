//! Running a task: taking the tenant's plugin, the sync itself, its progress written to
//! the store as it goes, and the metrics of its outcome.

use std::sync::{Arc, PoisonError};

use tokio::task::JoinHandle;

use super::*;
use crate::sync::results::RESULTS_STORED;

impl SyncService {
    pub(super) async fn run_task(
        self: &Arc<Self>,
        id: TaskId,
        tenant: TenantId,
        request: SyncRequest,
    ) -> TaskOutcome {
        use std::sync::atomic::Ordering::Relaxed;
        if self.stopping.load(Relaxed) {
            return self.hand_back_or_interrupt(
                id,
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
                // What the metrics and the message count of the results: read back in
                // one pass off the async threads (a large sync's are in a file).
                let counted = report.clone();
                let (message, tally) = tokio::task::spawn_blocking(move || {
                    (summary_message(&counted), ResultTally::of(&counted))
                })
                .await
                .unwrap_or_else(|err| (err.to_string(), ResultTally::default()));
                self.record_metrics(&report, error.as_ref(), tally);
                let state = match report.outcome.as_str() {
                    "succeeded" => TaskState::Completed,
                    "cancelled" => TaskState::Cancelled,
                    _ => TaskState::Error,
                };
                TaskOutcome {
                    state,
                    message,
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
        let outcome = if outcome.state == TaskState::Cancelled && self.handing_back.load(Relaxed) {
            // Cut short by this process stopping, before it wrote anything more: run
            // again elsewhere.
            self.hand_back_or_interrupt(
                id,
                "interrupted: abacsync stopped before the task ended; run it again",
            )
        } else {
            let result = match &outcome.report {
                Some(report) => self.store_report(id, report).await,
                None => None,
            };
            self.record_end(id, outcome.state, outcome.message.clone(), result)
                .await;
            outcome
        };
        self.running_tasks().remove(&id);
        self.metrics.running.fetch_sub(1, Relaxed);
        outcome
    }

    pub(super) async fn sync(
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
    /// them with its plugin, writing nothing ([`crate::sync::lookup::lookup`]): a directory
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
        extra: crate::sync::lookup::Attributes,
    ) -> Result<Vec<crate::sync::lookup::Found>, TaskError> {
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
        Ok(
            crate::sync::lookup::lookup(&config, &plugin, &directory, selection, limit, extra)
                .await?,
        )
    }

    pub(super) fn spawn_progress_writer(&self, id: TaskId, progress: Progress) -> JoinHandle<()> {
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

    /// Stores the per-user results of task `id` in pages, before its end is
    /// recorded (whoever waits for it finds them); returns its report as the task's
    /// result, which says how many there are instead of holding them.
    async fn store_report(&self, id: TaskId, report: &SyncReport) -> Option<serde_json::Value> {
        let (tasks, results, owner) = (
            self.tasks.clone(),
            report.results.clone(),
            self.replica.clone(),
        );
        // `None`: the task is no longer this replica's to end (deleted, taken over).
        let stored = super::persistently(id, "the task's results", move || {
            crate::sync::results::store_task_results(tasks.as_ref(), id, &owner, &results)
        })
        .await
        .flatten()
        .unwrap_or(0);
        let bare = SyncReport {
            results: Default::default(),
            ..report.clone()
        };
        let mut value = serde_json::to_value(bare).ok()?;
        if let Some(fields) = value.as_object_mut() {
            fields.remove("results");
            fields.insert(RESULTS_STORED.into(), stored.into());
        }
        Some(value)
    }

    pub(super) fn record_metrics(
        &self,
        report: &SyncReport,
        error: Option<&SyncError>,
        tally: ResultTally,
    ) {
        use std::sync::atomic::Ordering::Relaxed;
        self.bump_outcome(&report.outcome);
        self.metrics
            .duration_ms_sum
            .fetch_add(report.timings.total_ms, Relaxed);
        self.metrics
            .entries_read
            .fetch_add(report.counts.read, Relaxed);
        let entry_errors = tally.mapping_errors;
        let call_errors = u64::from(matches!(error, Some(SyncError::Plugin { .. })));
        self.metrics
            .plugin_errors
            .fetch_add(entry_errors + call_errors, Relaxed);
        self.metrics
            .quota_refused("user_attributes", tally.over_quota);
        if matches!(error, Some(SyncError::OverQuota { .. })) {
            self.metrics.quota_refused("tenant_attribute_bytes", 1);
        }
        self.metrics
            .audit_pruned
            .fetch_add(report.audit_pruned, Relaxed);
    }

    pub(super) fn bump_outcome(&self, outcome: &str) {
        *self
            .metrics
            .outcomes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(outcome.to_owned())
            .or_default() += 1;
    }
}

/// What the metrics count of a sync's results.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct ResultTally {
    /// Entries the plugin reported an error for.
    mapping_errors: u64,
    /// Users over the per-user quota.
    over_quota: u64,
}

impl ResultTally {
    fn of(report: &SyncReport) -> Self {
        let mut tally = ResultTally::default();
        for result in report.results.iter() {
            match result.code {
                crate::sync::code::MAPPING_ERROR => tally.mapping_errors += 1,
                crate::sync::code::OVER_QUOTA => tally.over_quota += 1,
                _ => {}
            }
        }
        tally
    }
}
