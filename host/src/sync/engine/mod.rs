//! One sync of one tenant, from reading to the recorded run: a pipeline of stages,
//! each on its own task and overlapping, fed by one of three sources (a full read, an
//! incremental read by mark or cookie, a change stream's incremental read):
//!
//! - source: [`crate::ldap::DirectorySource`], streaming entries in batches;
//! - [`map`]: the plugin called per batch, unchanged users recognised by digest;
//! - [`plan`]: each batch diffed against the store;
//! - [`removals`]: the users gone, under the tenant's policy and thresholds;
//! - [`apply`]: the changes written in transactions, then the run recorded.

// foldhash: these maps are keyed by directory ids, usernames and DNs, hashed once per
// entry; SipHash showed in profiles of a 100,000-user sync.
use foldhash::{HashMap, HashSet};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::diff::{DecisionText, PlanRules, Planned, mapped_digest, plan_deactivate, plan_upsert};
use super::progress::{Phase, Progress};
use super::report::{Action, Counts, RemovalOutcome, SyncReport, Timings, UserResult, code};
use crate::config::Quotas;
use crate::config::{RemovalPolicy, TenantConfig};
use crate::ldap::{Deletions, DirectoryError, DirectorySource, NextMark, ReadRequest, Selection};
use crate::plugin::model::{Decision, DecisionIds, Entry, SyncMode};
use crate::plugin::{CallError, RawBatch, RawDecision, TenantPlugin};
use crate::store::{
    Avatar, Change, ChangeCause, Footprint, HistoryLimits, LdapUserRef, MappedDigest, StoreError,
    StoredUser, SyncRunRecord, Timestamp, UserId, UserIdentifiers, UserStore,
};

/// Attributes read as avatars, in order of preference.
const AVATAR_ATTRIBUTES: &[&str] = &["thumbnailPhoto", "jpegPhoto"];
/// Entries per plugin call.
const BATCH_SIZE: usize = 1000;
/// Changes per store transaction (a 100,000-user import: twenty commits). A chunk is
/// decoded whole before it is written (some 20 MB for 5,000 new users, with the
/// store's own work), so this bounds the memory of writing; fewer commits write less
/// (10,000 cost 22 MB more at 1,000,000 users, 2,500 a third more CPU).
const APPLY_CHUNK: usize = 5000;

/// What to sync. Kept with its task (as JSON), so that another replica can run it
/// again when the one running it dies.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SyncRequest {
    /// Full, incremental or targeted.
    pub mode: SyncMode,
    /// Compute the diff, write nothing.
    pub dry_run: bool,
    /// Remove users even beyond the tenant's threshold.
    pub force: bool,
    /// The users of a targeted sync.
    pub targets: UserIdentifiers,
    /// Overrides the tenant's `import_new_users` (grommunio's `import`).
    pub import_new_users: Option<bool>,
    /// Overrides the tenant's default language (grommunio's `lang`).
    pub default_language: Option<String>,
    /// A targeted sync refreshes every field of its users, not only their ABAC
    /// attributes (grommunio's downsync of one user).
    pub all_fields: bool,
    /// Directory objects a targeted sync reads whether or not a stored user has them:
    /// with importing on, those not yet users are created (grommunio's `importUser`).
    pub directory_ids: Vec<String>,
    /// A directory user whose username belongs to a user not linked to its directory
    /// id takes that user over (linking it) instead of conflicting with it
    /// (grommunio's `importUser` with `force=true`).
    pub adopt_by_username: bool,
    /// A full sync plans only the removals of users no longer in the directory, and
    /// reports every such user, also those the removal policy keeps (grommunio's
    /// `ldap/check`).
    pub removals_only: bool,
    /// Run id, recorded with the changes.
    pub run_id: String,
    /// Who asked (`cli`, `api:ldap.syncNow`, `schedule`, …), recorded as the cause.
    pub cause: String,
}

impl SyncRequest {
    /// A request for `mode` with everything else at its default.
    pub fn new(mode: SyncMode, run_id: impl Into<String>, cause: impl Into<String>) -> Self {
        Self {
            mode,
            dry_run: false,
            force: false,
            targets: UserIdentifiers::default(),
            import_new_users: None,
            default_language: None,
            all_fields: false,
            directory_ids: Vec::new(),
            adopt_by_username: false,
            removals_only: false,
            run_id: run_id.into(),
            cause: cause.into(),
        }
    }
}

/// The attributes a read of `tenant`'s directory asks for: those the plugin `asked`
/// for, the tenant's identifiers and change attribute, and the avatars when synced.
pub(super) fn read_attributes(tenant: &TenantConfig, asked: Vec<String>) -> Vec<String> {
    let mut attributes = asked;
    let mut want = |name: &str| {
        if !attributes.iter().any(|a| a.eq_ignore_ascii_case(name)) {
            attributes.push(name.to_owned());
        }
    };
    for identifier in &tenant.ldap.unique_identifiers {
        want(identifier);
    }
    want(&tenant.ldap.change_attribute);
    if tenant.sync_avatars {
        AVATAR_ATTRIBUTES.iter().for_each(|name| want(name));
    }
    attributes
}

/// The time source: milliseconds since the epoch.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| {
                i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
            })
    })
}

/// Runs syncs against one store.
#[derive(Clone)]
pub struct SyncEngine {
    store: Arc<dyn UserStore>,
    clock: Clock,
    quotas: Quotas,
    /// Where a sync spills its plan (`None`: the temporary folder).
    spill: Option<Arc<std::path::Path>>,
}

mod apply;
mod error;
mod map;
mod plan;
mod removals;
mod seen;

pub use error::SyncError;
use map::*;
use plan::*;
use removals::*;
use seen::SeenKeys;

struct Context<'a> {
    tenant: &'a TenantConfig,
    rules: PlanRules,
    plugin_attributes: HashSet<String>,
    progress: Progress,
    /// [`SyncRequest::adopt_by_username`].
    adopt: bool,
}

impl SyncEngine {
    /// An engine writing to `store`, reading time from `clock`.
    pub fn new(store: Arc<dyn UserStore>, clock: Clock) -> Self {
        Self {
            store,
            clock,
            quotas: Quotas::default(),
            spill: None,
        }
    }

    /// The same engine, spilling each sync's plan past a few MiB into `folder` (by
    /// default the temporary folder).
    pub fn with_spill_folder(mut self, folder: &std::path::Path) -> Self {
        self.spill = Some(folder.into());
        self
    }

    /// The same engine, holding each tenant to `quotas`.
    pub fn with_quotas(mut self, quotas: Quotas) -> Self {
        self.quotas = quotas;
        self
    }

    /// What each tenant may store.
    pub fn quotas(&self) -> &Quotas {
        &self.quotas
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn UserStore> {
        &self.store
    }

    async fn blocking<T: Send + 'static>(
        &self,
        tenant: u64,
        work: impl FnOnce(&dyn UserStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, SyncError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || work(store.as_ref()))
            .await
            .map_err(|err| SyncError::Internal {
                tenant,
                reason: err.to_string(),
            })?
            .map_err(|cause| SyncError::Store { tenant, cause })
    }

    /// Runs one sync and records it. The report says how it ended; the error, when
    /// there is one, says why it stopped (the report's `error` carries its text).
    pub async fn run<D: DirectorySource + Clone + 'static>(
        &self,
        tenant: &TenantConfig,
        plugin: Arc<TenantPlugin>,
        directory: &D,
        request: SyncRequest,
        progress: Progress,
    ) -> (SyncReport, Option<SyncError>) {
        let started = Instant::now();
        let started_at = (self.clock)();
        let mut report = SyncReport {
            run_id: request.run_id.clone(),
            tenant: tenant.id,
            requested_mode: request.mode.as_str().to_owned(),
            mode: request.mode.as_str().to_owned(),
            dry_run: request.dry_run,
            outcome: "failed".into(),
            error: None,
            counts: Counts::default(),
            removal: RemovalOutcome::NotApplicable,
            tracking: None,
            notes: Vec::new(),
            plugin: format!(
                "{} {}",
                plugin.plugin.info().name,
                plugin.plugin.info().version
            ),
            server: String::new(),
            filter: String::new(),
            searches: 0,
            references: 0,
            partition_references: 0,
            invalid_utf8_values: 0,
            changed_keys: BTreeSet::new(),
            timings: Timings::default(),
            audit_pruned: 0,
            results: Default::default(),
        };
        let mut error = self
            .run_inner(
                tenant,
                plugin.clone(),
                directory,
                &request,
                &progress,
                &mut report,
            )
            .await
            .err();
        // A mark the directory cannot continue from: read everything instead, which
        // also takes a new mark.
        if let Some(SyncError::Directory {
            cause: DirectoryError::StaleMark { reason },
            ..
        }) = &error
        {
            let note = format!("ran as a full sync: the incremental mark cannot be used: {reason}");
            let full = SyncRequest {
                mode: SyncMode::Full,
                ..request.clone()
            };
            error = self
                .run_inner(tenant, plugin, directory, &full, &progress, &mut report)
                .await
                .err();
            report.notes.insert(0, note);
        }
        for note in &report.notes {
            tracing::warn!(tenant = tenant.id, run = %report.run_id, "{note}");
        }
        if let Some(error) = &error {
            report.outcome = match error {
                SyncError::Cancelled { .. } => "cancelled".into(),
                _ => "failed".into(),
            };
            report.error = Some(error.to_string());
            // The counts are filled once the read is complete; a sync stopped before
            // then has read what its progress says.
            report.counts.read = report.counts.read.max(progress.snapshot().read);
        }
        progress.set_phase(Phase::Done);
        report.timings.total_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let record = SyncRunRecord {
            run_id: report.run_id.clone(),
            mode: report.mode.clone(),
            dry_run: report.dry_run,
            started_at,
            finished_at: (self.clock)(),
            outcome: report.outcome.clone(),
            summary: serde_json::json!({
                "counts": report.counts,
                "removal": report.removal,
                "error": report.error,
                "cause": request.cause,
                "server": report.server,
                "invalid_utf8_values": report.invalid_utf8_values,
                "timings": report.timings,
            })
            .to_string(),
        };
        let tenant_id = tenant.id;
        if let Err(err) = self
            .blocking(tenant_id, move |store| {
                store.record_sync_run(tenant_id, &record)
            })
            .await
        {
            tracing::error!(tenant = tenant_id, error = %err, "cannot record the sync run");
        }
        (report, error)
    }

    async fn run_inner<D: DirectorySource + Clone + 'static>(
        &self,
        tenant: &TenantConfig,
        plugin: Arc<TenantPlugin>,
        directory: &D,
        request: &SyncRequest,
        progress: &Progress,
        report: &mut SyncReport,
    ) -> Result<(), SyncError> {
        let tenant_id = tenant.id;
        progress.set_phase(Phase::Starting);
        let state = self
            .blocking(tenant_id, move |store| store.sync_state(tenant_id))
            .await?;

        // Which entries to read, and in which mode the plugin sees them.
        let mut diff = Diff::spilling_to(self.spill.clone());
        let mut targeted: Vec<StoredUser> = Vec::new();
        let (mode, selection) = match request.mode {
            SyncMode::Full => (SyncMode::Full, Selection::All),
            SyncMode::Incremental => match (&state.sync_cookie, &state.high_water_mark) {
                // A cookie beside a mark from a named server is that server's DirSync
                // cookie of the groups (Active Directory); without one, an RFC 4533
                // cookie.
                (cookie, Some(mark)) if state.mark_origin.is_some() => (
                    SyncMode::Incremental,
                    Selection::ChangedSince {
                        mark: mark.clone(),
                        origin: state.mark_origin.clone(),
                        groups_cookie: cookie.clone(),
                    },
                ),
                (Some(cookie), groups_since) => (
                    SyncMode::Incremental,
                    Selection::Changes {
                        cookie: cookie.clone(),
                        groups_since: groups_since.clone(),
                    },
                ),
                (None, Some(mark)) => (
                    SyncMode::Incremental,
                    Selection::ChangedSince {
                        mark: mark.clone(),
                        origin: None,
                        groups_cookie: None,
                    },
                ),
                (None, None) => (SyncMode::Full, Selection::All),
            },
            SyncMode::Targeted => {
                let targets = request.targets.clone();
                let users = self
                    .blocking(tenant_id, move |store| {
                        store.find_users(tenant_id, &targets)
                    })
                    .await?;
                record_unknown_targets(&request.targets, &users, &mut diff);
                let mut ids: Vec<String> = users
                    .iter()
                    .filter_map(|user| user.fields.ldap_id.clone())
                    .collect();
                for id in &request.directory_ids {
                    if !ids.contains(id) {
                        ids.push(id.clone());
                    }
                }
                targeted = users;
                (SyncMode::Targeted, Selection::Identifiers(ids))
            }
        };
        report.mode = mode.as_str().to_owned();

        let context = plugin.context(mode);
        let asked = plugin
            .plugin
            .required_attributes_async(&context)
            .await
            .map_err(|cause| SyncError::Plugin {
                tenant: tenant_id,
                plugin: plugin.plugin.label().to_owned(),
                batch: String::new(),
                cause: Box::new(cause),
            })?;
        let plugin_attributes: HashSet<String> =
            asked.iter().map(|a| a.to_ascii_lowercase()).collect();
        let attributes = read_attributes(tenant, asked);

        let context = Context {
            tenant,
            rules: PlanRules {
                import_new_users: request.import_new_users.unwrap_or(tenant.import_new_users),
                default_language: request
                    .default_language
                    .clone()
                    .filter(|lang| !lang.is_empty())
                    .or_else(|| tenant.default_language.clone()),
                attributes_only: mode == SyncMode::Targeted && !request.all_fields,
                sync_avatars: tenant.sync_avatars,
                max_user_values: self.quotas.user_attribute_values,
                max_user_bytes: self.quotas.user_attribute_bytes,
            },
            plugin_attributes,
            progress: progress.clone(),
            adopt: request.adopt_by_username,
        };

        // Read, map and diff, overlapping.
        progress.set_phase(Phase::Reading);
        let reading = Instant::now();
        let (sender, receiver) = mpsc::channel::<Vec<Entry>>(2);
        let read_request = ReadRequest {
            selection,
            attributes,
            batch_size: BATCH_SIZE,
        };
        // Three stages on their own tasks: the directory read, the plugin calls, and
        // the diff against the store (this task).
        let reader = directory.clone();
        let read = tokio::spawn(async move { reader.read(read_request, sender).await });
        let (mapped_sender, mapped_receiver) = mpsc::channel::<MappedBatch>(2);
        let mapper = tokio::spawn(map_stage(
            MapStage {
                tenant: tenant_id,
                plugin: plugin.clone(),
                store: self.store.clone(),
                rules: context.rules.clone(),
                mode,
                change_attribute: tenant.ldap.change_attribute.clone(),
                plugin_reads_change_attribute: context
                    .plugin_attributes
                    .contains(&tenant.ldap.change_attribute.to_ascii_lowercase()),
                plugin_attributes: context.plugin_attributes.clone(),
                progress: progress.clone(),
            },
            receiver,
            mapped_sender,
        ));
        let processed = self.process(&context, mapped_receiver, diff).await;
        let mapped = mapper.await.map_err(|err| SyncError::Internal {
            tenant: tenant_id,
            reason: err.to_string(),
        })?;
        let read = read.await.map_err(|err| SyncError::Internal {
            tenant: tenant_id,
            reason: err.to_string(),
        })?;
        let mut diff = processed?;
        mapped?;
        let stats = read.map_err(|cause| match cause {
            DirectoryError::Cancelled if progress.is_cancelled() => {
                SyncError::Cancelled { tenant: tenant_id }
            }
            cause => SyncError::Directory {
                tenant: tenant_id,
                cause,
            },
        })?;
        report.server = stats.server;
        report.filter = stats.filter;
        report.searches = stats.searches;
        report.invalid_utf8_values = stats.invalid_utf8_values;
        report.references = stats.references;
        report.partition_references = stats.partition_references;
        report.tracking = stats.tracking.map(str::to_owned);
        report.notes.extend(stats.notes);
        diff.references = stats.references;
        diff.tracking = stats.tracking;
        diff.counts.read = stats.entries;
        report.timings.read_map_ms = millis(reading);
        report.timings.plugin_ms = diff.plugin_ms;
        if progress.is_cancelled() {
            return Err(SyncError::Cancelled { tenant: tenant_id });
        }

        // Targeted users the directory no longer has: reported, never removed here.
        for user in targeted {
            let found = user
                .fields
                .ldap_id
                .as_ref()
                .is_some_and(|id| diff.seen_ids.contains(id));
            if !found {
                diff.push(Planned {
                    change: None,
                    result: UserResult {
                        id: Some(user.id.0),
                        username: user.fields.username.clone(),
                        dn: user.fields.ldap_dn.clone(),
                        code: code::NOT_FOUND,
                        action: Action::NotFound,
                        message: "not found in the directory".into(),
                    },
                    changed_keys: Vec::new(),
                });
            }
        }

        // Users no longer in the directory: all those not read (a full read), or
        // those a content synchronization says are gone.
        let gone = match (mode, stats.deletions) {
            (SyncMode::Full, _) => Some(Gone::NotSeen(HashSet::default())),
            (SyncMode::Incremental, Deletions::AllBut(present)) => {
                Some(Gone::NotSeen(present.into_iter().collect()))
            }
            (SyncMode::Incremental, Deletions::Listed(deleted)) => {
                Some(Gone::Listed(deleted.into_iter().collect()))
            }
            _ => None,
        };
        if let Some(gone) = gone {
            if request.removals_only {
                diff = diff.removals_base();
            }
            report.removal = self
                .plan_removals(
                    &context,
                    &gone,
                    request.force,
                    request.removals_only,
                    &mut diff,
                )
                .await?;
            if let Some(note) = removal_note(&report.removal) {
                report.notes.push(note);
            }
        }

        // Every planned change and result is kept, or nothing is written.
        diff.check().map_err(|cause| SyncError::Records {
            tenant: tenant_id,
            cause,
            written: None,
        })?;

        // The tenant's storage quota: a sync that would pass it writes nothing (a dry
        // run says so too).
        if diff.attribute_growth > 0 {
            let used = self
                .blocking(tenant_id, move |store| store.attribute_bytes(tenant_id))
                .await?;
            let growth = diff.attribute_growth.unsigned_abs();
            let limit = self.quotas.tenant_attribute_bytes;
            if used.saturating_add(growth) > limit {
                return Err(SyncError::OverQuota {
                    tenant: tenant_id,
                    used,
                    growth,
                    limit,
                });
            }
        }

        // Apply.
        report.counts = diff.counts;
        report.changed_keys = std::mem::take(&mut diff.changed_keys);
        if !request.dry_run {
            progress.set_phase(Phase::Applying);
            let applying = Instant::now();
            self.apply(tenant_id, request, &mut diff, progress)
                .await
                .map_err(|err| match err {
                    SyncError::Store { tenant, cause } => {
                        let now = progress.snapshot();
                        SyncError::Applying {
                            tenant,
                            written: now.written,
                            planned: now.to_write,
                            cause,
                        }
                    }
                    other => other,
                })?;
            report.timings.apply_ms = millis(applying);
            report.counts = diff.counts;
            let mut state = state;
            // The marks move on, except after a targeted sync or one that applied
            // removals only (neither read the changes), and after an incremental sync
            // whose deletions were held over the threshold (the next one must see them
            // again).
            let held = mode == SyncMode::Incremental
                && matches!(report.removal, RemovalOutcome::Refused { .. });
            if mode != SyncMode::Targeted && !request.removals_only && !held {
                match stats.next_mark {
                    Some(NextMark::Cookie { cookie, value }) => {
                        state.sync_cookie = Some(cookie);
                        state.high_water_mark = value;
                        state.mark_origin = None;
                    }
                    Some(NextMark::Value {
                        value,
                        origin,
                        groups_cookie,
                    }) => {
                        state.high_water_mark = Some(value);
                        // Kept only with a server's name (see the selection above).
                        state.sync_cookie = groups_cookie.filter(|_| origin.is_some());
                        state.mark_origin = origin;
                    }
                    None => {
                        if let Some(mark) = diff.high_water_mark.take() {
                            state.high_water_mark = later_mark(state.high_water_mark.take(), &mark);
                        }
                        state.sync_cookie = None;
                    }
                }
            }
            let now = (self.clock)();
            state.last_success_at = Some(now);
            if mode == SyncMode::Full && !request.removals_only {
                state.last_full_sync_at = Some(now);
            }
            self.blocking(tenant_id, move |store| {
                store.set_sync_state(tenant_id, &state)
            })
            .await?;
            report.audit_pruned = self.prune_history(tenant_id, now).await;
        }
        report.outcome = match report.removal {
            RemovalOutcome::Refused { .. } => "refused".into(),
            _ => "succeeded".into(),
        };
        if let RemovalOutcome::Refused {
            missing,
            total,
            limit,
        } = &report.removal
        {
            let others = if request.removals_only {
                ""
            } else {
                "; other changes were applied"
            };
            report.error = Some(format!(
                "refused to remove {missing} of {total} directory users ({limit}){others}; run with --force to remove them"
            ));
        }
        // Entries that were users, and every one failed: not a success, whatever was
        // written (nothing, or removals).
        let c = &report.counts;
        let worked = c.created
            + c.updated
            + c.unchanged
            + c.reactivated
            + c.deactivated
            + c.deleted
            + c.not_imported;
        if c.failed > 0 && worked == 0 && report.outcome == "succeeded" {
            let first = diff
                .results
                .find(Action::Failed)
                .unwrap_or_else(|err| {
                    tracing::warn!(tenant = tenant_id, error = %err, "cannot read the results back");
                    None
                })
                .map(|result| {
                    format!(
                        "{}: {}",
                        result.dn.as_deref().unwrap_or(&result.username),
                        result.message
                    )
                })
                .unwrap_or_default();
            report.outcome = "failed".into();
            report.error = Some(format!(
                "every user failed ({} of {} entries read; the first: {first})",
                c.failed, c.read
            ));
        }
        report.results = diff.results.finish();
        Ok(())
    }
}

fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_that_never_became_users_are_named_by_their_first_rdn() {
        assert_eq!(entry_name("uid=jdoe,ou=people,dc=example,dc=org"), "jdoe");
        assert_eq!(entry_name("CN=Doe\\, Jane,OU=Staff,DC=corp"), "Doe, Jane");
        assert_eq!(entry_name("cn=J\\C3\\BCrgen+uid=j,dc=x"), "Jürgen");
        assert_eq!(entry_name("cn=a\\2Bb,dc=x"), "a+b");
        assert_eq!(entry_name(""), "");
        assert_eq!(entry_name("weird"), "weird");
    }

    #[test]
    fn marks_compare_as_numbers_or_text() {
        assert_eq!(later_mark(Some("99".into()), "100").as_deref(), Some("100"));
        assert_eq!(
            later_mark(Some("20260101000000Z".into()), "20251231000000Z").as_deref(),
            Some("20260101000000Z")
        );
        assert_eq!(later_mark(None, "5").as_deref(), Some("5"));
    }
}
