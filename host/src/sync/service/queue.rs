//! The queue in the store: a request queues its task with no owner, and every
//! replica's claimer takes from the queue what it has room for (at most its
//! `max_concurrent_syncs` syncs at once), oldest first and one task of a tenant at a
//! time. The replica that queued a task usually claims it at once (its claimer is
//! woken); a busy one leaves it to another. The request waits for the outcome either
//! way: handed over in this process when this replica ran it, else read from the
//! store, where the task's result holds its report (and its pages, the per-user
//! results).

use std::sync::Arc;
use std::time::Duration;

use super::{HANDED_BACK, StartedTask, SyncService, TaskOutcome, WAIT_POLL};
use crate::store::{Task, TaskId, TaskState};
use crate::sync::engine::SyncRequest;
use crate::sync::{SyncReport, UserResults, task_results};

/// How often an idle claimer looks at the queue (a task queued on this replica wakes
/// it at once).
const CLAIM_EVERY: Duration = Duration::from_millis(500);

/// How long a request whose task this replica ran waits for its outcome after the
/// store says it ended (the end is recorded just before the outcome is handed over).
const HANDOVER: Duration = Duration::from_secs(1);

impl SyncService {
    /// `task`, just queued in the store: wakes the claimer, and returns the handle
    /// that yields its outcome, whichever replica runs it.
    pub(super) fn enqueued(self: &Arc<Self>, task: Task) -> StartedTask {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        self.waiters().insert(task.id, sender);
        self.claimable.notify_one();
        let handle = tokio::spawn(self.clone().outcome(task.id, receiver));
        StartedTask {
            task,
            handle: Some(handle),
        }
    }

    /// Claims tasks from the queue while this replica has room for them, until the
    /// process ends: woken when a task is queued here or a sync here ends, and every
    /// [`CLAIM_EVERY`] for what other replicas queued. A replica that stops claims
    /// nothing more. A failure is logged and tried again at the next turn.
    pub async fn serve_queue(self: Arc<Self>) {
        loop {
            tokio::select! {
                () = self.claimable.notified() => {}
                () = tokio::time::sleep(CLAIM_EVERY) => {}
            }
            if self.stopping.load(std::sync::atomic::Ordering::Relaxed) {
                continue;
            }
            // The slots are taken before claiming, so that no more is claimed than
            // there is room for.
            let mut room: Vec<_> =
                std::iter::from_fn(|| self.permits.clone().try_acquire_owned().ok()).collect();
            if room.is_empty() {
                continue;
            }
            let tasks = self.tasks.clone();
            let (lease, now) = (self.lease(), self.now());
            let limit = u32::try_from(room.len()).unwrap_or(u32::MAX);
            let claimed =
                tokio::task::spawn_blocking(move || tasks.claim_queued(&lease, now, limit)).await;
            match claimed {
                Ok(Ok(claimed)) => {
                    for taken in claimed {
                        let id = taken.task.id;
                        match serde_json::from_value::<SyncRequest>(taken.request) {
                            Ok(request) => {
                                tracing::debug!(task = id, "claimed from the queue");
                                drop(self.launch(taken.task, request, room.pop()));
                            }
                            Err(err) => {
                                let outcome = self.end_unrun(
                                    id,
                                    TaskState::Error,
                                    &format!("its request cannot be read to run it ({err})"),
                                );
                                self.deliver(id, outcome);
                            }
                        }
                    }
                }
                Ok(Err(err)) => tracing::warn!(error = %err, "cannot claim from the task queue"),
                Err(err) => tracing::warn!(error = %err, "claiming from the task queue panicked"),
            }
        }
    }

    /// Hands task `id`'s outcome to the request of this replica that waits for it;
    /// what is left of it for the caller. A task handed back to the queue (this
    /// replica stops) is not over: its request goes on waiting, through the store.
    pub(super) fn deliver(&self, id: TaskId, outcome: TaskOutcome) -> TaskOutcome {
        let Some(waiter) = self.waiters().remove(&id) else {
            return outcome;
        };
        if outcome.state == TaskState::Interrupted && outcome.message == HANDED_BACK {
            // Dropped: the request reads the outcome from the store.
            return outcome;
        }
        let summary = TaskOutcome {
            state: outcome.state,
            message: outcome.message.clone(),
            report: None,
            error: None,
        };
        match waiter.send(outcome) {
            Ok(()) => summary,
            Err(outcome) => outcome,
        }
    }

    /// Waits until task `id` has ended: its outcome as the run here handed it over,
    /// or, when another replica ran it, as the store recorded it (the state, message
    /// and report).
    async fn outcome(
        self: Arc<Self>,
        id: TaskId,
        mut here: tokio::sync::oneshot::Receiver<TaskOutcome>,
    ) -> TaskOutcome {
        let mut may_run_here = true;
        loop {
            if may_run_here {
                tokio::select! {
                    handed = &mut here => match handed {
                        Ok(outcome) => return outcome,
                        Err(_) => may_run_here = false,
                    },
                    () = tokio::time::sleep(WAIT_POLL) => {}
                }
            } else {
                tokio::time::sleep(WAIT_POLL).await;
            }
            let tasks = self.tasks.clone();
            let task = match tokio::task::spawn_blocking(move || tasks.task(id)).await {
                Ok(Ok(Some(task))) => task,
                Ok(Ok(None)) => {
                    self.waiters().remove(&id);
                    return TaskOutcome {
                        state: TaskState::Error,
                        message: format!("task {id} was deleted before it ended"),
                        report: None,
                        error: None,
                    };
                }
                Ok(Err(err)) => {
                    tracing::debug!(task = id, %err, "cannot read the task; trying again");
                    continue;
                }
                Err(err) => {
                    tracing::warn!(task = id, %err, "reading the task panicked");
                    continue;
                }
            };
            if !task.state.is_final() {
                continue;
            }
            if may_run_here && let Ok(Ok(outcome)) = tokio::time::timeout(HANDOVER, &mut here).await
            {
                return outcome;
            }
            self.waiters().remove(&id);
            // Its results, stored beside it; a task whose results cannot be read is
            // answered without them rather than waited for.
            let (tasks, ended) = (self.tasks.clone(), task.clone());
            let results =
                match tokio::task::spawn_blocking(move || task_results(tasks.as_ref(), &ended))
                    .await
                {
                    Ok(Ok(results)) => results.unwrap_or_default(),
                    Ok(Err(err)) => {
                        tracing::error!(task = id, %err, "cannot read the task's results");
                        UserResults::default()
                    }
                    Err(err) => {
                        tracing::error!(task = id, %err, "reading the task's results panicked");
                        UserResults::default()
                    }
                };
            return TaskOutcome::recorded(&task, results);
        }
    }
}

impl TaskOutcome {
    /// A task's outcome as the store recorded it: its report is its result, with
    /// `results` (stored beside it).
    fn recorded(task: &Task, results: UserResults) -> Self {
        let report = task
            .result
            .clone()
            .and_then(|result| serde_json::from_value::<SyncReport>(result).ok())
            .map(|report| SyncReport { results, ..report });
        Self {
            state: task.state,
            message: task.message.clone(),
            report,
            error: None,
        }
    }
}
