//! Live progress of a sync, shared with whoever watches it (CLI progress bar, task
//! status), and the flag that cancels it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

/// The phase a sync is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Connecting, asking the plugin what it needs.
    Starting,
    /// Reading entries, mapping them and computing the diff.
    Reading,
    /// Writing the diff.
    Applying,
    /// Finished.
    Done,
}

impl Phase {
    /// Name for people.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Reading => "reading",
            Phase::Applying => "applying",
            Phase::Done => "done",
        }
    }
}

/// Counters updated by the sync as it goes; cheap to clone and read from any thread.
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    read: AtomicU64,
    mapped: AtomicU64,
    to_write: AtomicU64,
    written: AtomicU64,
    phase: AtomicU8,
    cancelled: AtomicBool,
}

/// A snapshot of [`Progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgressSnapshot {
    /// Phase.
    pub phase: Phase,
    /// Entries read.
    pub read: u64,
    /// Entries mapped by the plugin.
    pub mapped: u64,
    /// Changes to write.
    pub to_write: u64,
    /// Changes written.
    pub written: u64,
}

impl Progress {
    /// Fresh counters.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn add_read(&self, n: u64) {
        self.0.read.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn add_mapped(&self, n: u64) {
        self.0.mapped.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn set_to_write(&self, n: u64) {
        self.0.to_write.store(n, Ordering::Relaxed);
    }

    pub(crate) fn add_written(&self, n: u64) {
        self.0.written.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        self.0.phase.store(phase as u8, Ordering::Relaxed);
    }

    /// Asks the sync to stop at the next batch; nothing more is written after that.
    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::Relaxed);
    }

    /// Whether [`Progress::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::Relaxed)
    }

    /// The current values.
    pub fn snapshot(&self) -> ProgressSnapshot {
        let phase = match self.0.phase.load(Ordering::Relaxed) {
            0 => Phase::Starting,
            1 => Phase::Reading,
            2 => Phase::Applying,
            _ => Phase::Done,
        };
        ProgressSnapshot {
            phase,
            read: self.0.read.load(Ordering::Relaxed),
            mapped: self.0.mapped.load(Ordering::Relaxed),
            to_write: self.0.to_write.load(Ordering::Relaxed),
            written: self.0.written.load(Ordering::Relaxed),
        }
    }
}
