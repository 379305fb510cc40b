//! The threads plugin calls run on: their own, so that no plugin call ever holds a
//! thread of the pool that serves logins, sessions and store lookups, and shared
//! fairly between tenants.
//!
//! Calls wait in one queue per lane (a tenant, or the loading of components). A lane
//! runs at most `per_lane` calls at once and holds at most `max_queued` waiting;
//! free threads take the next call of the lanes in turn, so a tenant that floods the
//! queue delays its own calls, never another tenant's. Threads are started on demand,
//! up to `max_threads` (the instance pool's size: each running call holds one
//! instance), and stay.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use super::model::TenantId;

/// Whose call it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Lane {
    /// A call of a tenant's mapping (its `tenant-id`).
    Tenant(TenantId),
    /// The first call of a component being loaded (`info`).
    Loading,
}

impl std::fmt::Display for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lane::Tenant(id) => write!(f, "tenant {id}"),
            Lane::Loading => f.write_str("plugin loading"),
        }
    }
}

/// The lane already has `max_queued` calls waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Saturated {
    /// Calls that may wait per lane.
    pub max_queued: usize,
}

type Job = Box<dyn FnOnce() + Send>;

/// The plugin call threads. Cheap to share; threads outlive it only until their call
/// ends.
pub(crate) struct Executor {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    work: Condvar,
    max_threads: usize,
    per_lane: usize,
    max_queued: usize,
    stack_size: usize,
}

#[derive(Default)]
struct State {
    lanes: HashMap<Lane, LaneState>,
    /// Lanes with a call waiting and room to run it, in turn.
    ready: VecDeque<Lane>,
    threads: usize,
    idle: usize,
    stopping: bool,
}

#[derive(Default)]
struct LaneState {
    queue: VecDeque<Job>,
    running: usize,
    /// Whether the lane is in `ready`.
    scheduled: bool,
}

/// What runs and waits, for metrics and readiness.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecutorLoad {
    /// Calls running.
    pub running: usize,
    /// Calls waiting for a thread.
    pub queued: usize,
    /// Threads started.
    pub threads: usize,
}

impl Executor {
    pub(crate) fn new(
        max_threads: usize,
        per_lane: usize,
        max_queued: usize,
        stack_size: usize,
    ) -> Self {
        let max_threads = max_threads.max(1);
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                work: Condvar::new(),
                max_threads,
                per_lane: per_lane.clamp(1, max_threads),
                max_queued: max_queued.max(1),
                stack_size,
            }),
        }
    }

    /// Queues `job` on `lane`; it runs on one of the executor's threads.
    pub(crate) fn submit(&self, lane: Lane, job: Job) -> Result<(), Saturated> {
        let shared = &self.shared;
        let mut state = shared.lock();
        let per_lane = shared.per_lane;
        let entry = state.lanes.entry(lane).or_default();
        // Calls that can start at once (the lane has room) are not waiting.
        let startable = per_lane.saturating_sub(entry.running);
        if entry.queue.len() >= shared.max_queued + startable {
            return Err(Saturated {
                max_queued: shared.max_queued,
            });
        }
        entry.queue.push_back(job);
        let schedule = !entry.scheduled && entry.running < per_lane;
        if schedule {
            entry.scheduled = true;
            state.ready.push_back(lane);
        }
        Shared::start_thread_if_needed(shared, &mut state);
        drop(state);
        shared.work.notify_one();
        Ok(())
    }

    /// Calls running and waiting now.
    pub(crate) fn load(&self) -> ExecutorLoad {
        let state = self.shared.lock();
        ExecutorLoad {
            running: state.lanes.values().map(|lane| lane.running).sum(),
            queued: state.lanes.values().map(|lane| lane.queue.len()).sum(),
            threads: state.threads,
        }
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.work.notify_all();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a thread when work that can run now finds no idle one (up to
    /// `max_threads`).
    fn start_thread_if_needed(shared: &Arc<Shared>, state: &mut State) {
        if state.ready.len() <= state.idle || state.threads >= shared.max_threads {
            return;
        }
        let started = std::thread::Builder::new()
            .name("abacsync-plugin".into())
            .stack_size(shared.stack_size)
            .spawn({
                let shared = shared.clone();
                move || shared.work_loop()
            });
        match started {
            // Idle from the start: until it takes the work, no other thread is
            // started for the same work.
            Ok(_) => {
                state.threads += 1;
                state.idle += 1;
            }
            Err(err) if state.threads == 0 => {
                // Nothing could ever run the job: say so rather than hang.
                tracing::error!(error = %err, "cannot start a plugin call thread");
            }
            Err(err) => {
                tracing::warn!(error = %err, threads = state.threads, "cannot start another plugin call thread");
            }
        }
    }

    fn work_loop(self: Arc<Self>) {
        let mut state = self.lock();
        // Counted idle when it was started.
        state.idle -= 1;
        loop {
            let Some(lane) = state.ready.pop_front() else {
                if state.stopping {
                    state.threads -= 1;
                    return;
                }
                state.idle += 1;
                state = self
                    .work
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                state.idle -= 1;
                continue;
            };
            let per_lane = self.per_lane;
            let Some(entry) = state.lanes.get_mut(&lane) else {
                continue;
            };
            entry.scheduled = false;
            let Some(job) = entry.queue.pop_front() else {
                continue;
            };
            entry.running += 1;
            if !entry.queue.is_empty() && entry.running < per_lane {
                entry.scheduled = true;
                state.ready.push_back(lane);
                // The lane's next call can run beside this one.
                Shared::start_thread_if_needed(&self, &mut state);
                self.work.notify_one();
            }
            drop(state);
            // A job reports its own outcome; a panic in it must not take the thread.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            state = self.lock();
            let mut more = false;
            if let Some(entry) = state.lanes.get_mut(&lane) {
                entry.running -= 1;
                if entry.queue.is_empty() && entry.running == 0 {
                    state.lanes.remove(&lane);
                } else if !entry.queue.is_empty() && !entry.scheduled && entry.running < per_lane {
                    entry.scheduled = true;
                    more = true;
                }
            }
            if more {
                state.ready.push_back(lane);
                // This thread takes it next unless another is idle too.
                self.work.notify_one();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    #[test]
    fn a_flooding_lane_never_delays_another() {
        let executor = Executor::new(4, 2, 100, 1 << 20);
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (done, finished) = mpsc::channel();
        for _ in 0..40 {
            let (running, most, done) = (running.clone(), most.clone(), done.clone());
            executor
                .submit(
                    Lane::Tenant(1),
                    Box::new(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(50));
                        running.fetch_sub(1, Ordering::SeqCst);
                        let _ = done.send(1);
                    }),
                )
                .unwrap();
        }
        // Tenant 2's call starts while tenant 1 still has dozens waiting.
        let started = Instant::now();
        let (tx, rx) = mpsc::channel();
        executor
            .submit(
                Lane::Tenant(2),
                Box::new(move || {
                    let _ = tx.send(started.elapsed());
                }),
            )
            .unwrap();
        let waited = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(waited < Duration::from_millis(40), "waited {waited:?}");
        for _ in 0..40 {
            finished.recv_timeout(Duration::from_secs(10)).unwrap();
        }
        assert_eq!(
            most.load(Ordering::SeqCst),
            2,
            "tenant 1 never ran more than its share"
        );
        assert!(executor.load().threads <= 4);
    }

    #[test]
    fn a_full_lane_refuses_at_once() {
        let executor = Executor::new(1, 1, 2, 1 << 20);
        let (release, wait) = mpsc::channel::<()>();
        let wait = Arc::new(Mutex::new(wait));
        let blocker = wait.clone();
        executor
            .submit(
                Lane::Tenant(1),
                Box::new(move || {
                    let _ = blocker.lock().unwrap().recv();
                }),
            )
            .unwrap();
        // The first is running (or about to); two may wait, the next is refused.
        std::thread::sleep(Duration::from_millis(50));
        executor.submit(Lane::Tenant(1), Box::new(|| {})).unwrap();
        executor.submit(Lane::Tenant(1), Box::new(|| {})).unwrap();
        assert_eq!(
            executor.submit(Lane::Tenant(1), Box::new(|| {})),
            Err(Saturated { max_queued: 2 })
        );
        // Another lane still has room.
        executor.submit(Lane::Tenant(2), Box::new(|| {})).unwrap();
        release.send(()).unwrap();
    }

    #[test]
    fn a_panicking_job_keeps_its_thread() {
        let executor = Executor::new(1, 1, 10, 1 << 20);
        executor
            .submit(Lane::Loading, Box::new(|| panic!("a job's own panic")))
            .unwrap();
        let (tx, rx) = mpsc::channel();
        executor
            .submit(Lane::Loading, Box::new(move || tx.send(()).unwrap()))
            .unwrap();
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(executor.load().threads, 1);
    }
}
