//! The sync engine: read a tenant's directory, map each entry through the tenant's
//! plugin, diff against the store, apply.
//!
//! Reading, mapping and diffing overlap (entries stream in batches; memory holds the
//! diff, not the directory). Nothing is written until the directory has confirmed the
//! end of the result set and every batch mapped: a directory that dies mid-sync, a
//! plugin that traps, a cancelled sync all leave the store exactly as it was. Users no
//! longer in the directory are removed only by a full sync whose every entry mapped
//! without error, or when content synchronization reports them deleted, and only
//! within the tenant's threshold. [`run_watchers`] syncs each change of a watched
//! directory as it arrives.

mod diff;
mod digest;
mod engine;
mod health;
pub mod lookup;
mod progress;
mod records;
mod report;
pub(crate) mod results;
mod schedule;
mod service;
mod tenants;
mod watch;

pub use diff::{PlanRules, Planned, attribute_changes, plan_deactivate, plan_upsert};
pub use engine::{Clock, SyncEngine, SyncError, SyncRequest, system_clock};
pub use health::{PluginHealth, PluginStatus, SUSPEND_AFTER};
pub use progress::{Phase, Progress, ProgressSnapshot};
pub use records::RecordError;
pub use report::{Action, Counts, RemovalOutcome, SyncReport, Timings, UserResult, code};
pub use results::{UserResults, task_results, task_results_page};
pub use schedule::run_scheduler;
pub use service::{
    PluginLoadError, StartError, StartedTask, SyncMetrics, SyncService, TaskError, TaskOutcome,
    load_tenant_plugin, summary_message,
};
pub use tenants::{TenantEntry, TenantSource, Tenants};
pub use watch::{found_changes, run_watchers, watch_session};
/// The pauses and lease of watches.
pub mod watching {
    pub use super::watch::{FIRST_PAUSE, LEASE, LONGEST_PAUSE};
}
