//! One sync of one tenant, from reading to the recorded run.

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
/// Changes per store transaction (a 100,000-user import: ten commits).
const APPLY_CHUNK: usize = 10000;

/// Why a sync stopped.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The directory failed; nothing was written.
    #[error("tenant {tenant}: {cause}")]
    Directory {
        /// The tenant.
        tenant: u64,
        /// The directory's error.
        cause: DirectoryError,
    },
    /// The plugin failed a whole call (trap, timeout, limits, refused context).
    #[error("tenant {tenant}: plugin {plugin}{batch}: {cause}")]
    Plugin {
        /// The tenant.
        tenant: u64,
        /// The plugin's label.
        plugin: String,
        /// Which entries the failed call was mapping (` mapping entry `dn``, ` mapping
        /// 500 entries from `dn` to `dn``), or empty for a call about no entries.
        batch: String,
        /// The call's error.
        cause: Box<CallError>,
    },
    /// The store failed.
    #[error("tenant {tenant}: {cause}")]
    Store {
        /// The tenant.
        tenant: u64,
        /// The store's error.
        cause: StoreError,
    },
    /// The store failed while the changes were written: the first `written` of
    /// `planned` changes are in the store, each user's change whole, the rest are not.
    #[error(
        "tenant {tenant}: {cause}, after {written} of {planned} changes were written (each user's change whole); once the cause is fixed, the next sync writes the rest"
    )]
    Applying {
        /// The tenant.
        tenant: u64,
        /// Changes written before the failure.
        written: u64,
        /// Changes the sync had planned.
        planned: u64,
        /// The store's error.
        cause: StoreError,
    },
    /// The changes would take the tenant's users past its quota of attribute bytes;
    /// nothing was written.
    #[error(
        "tenant {tenant}: the sync would store {growth} more bytes of ABAC attributes beside the {used} stored, more than the tenant's quota of {limit} (quotas.tenant_attribute_bytes); nothing was written"
    )]
    OverQuota {
        /// The tenant.
        tenant: u64,
        /// Attribute bytes stored before the sync.
        used: u64,
        /// Bytes the sync would add.
        growth: u64,
        /// The quota.
        limit: u64,
    },
    /// Cancelled before anything was written.
    #[error("tenant {tenant}: the sync was cancelled")]
    Cancelled {
        /// The tenant.
        tenant: u64,
    },
    /// A blocking task panicked (a bug, reported rather than crashing the host).
    #[error("tenant {tenant}: internal error: {reason}")]
    Internal {
        /// The tenant.
        tenant: u64,
        /// What happened.
        reason: String,
    },
}

impl SyncError {
    /// Whether the directory could not be reached at all.
    pub fn is_directory_unreachable(&self) -> bool {
        matches!(self, SyncError::Directory { cause, .. } if cause.is_unreachable())
    }
}

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
}

/// What reading and diffing produced, before anything is written.
#[derive(Default)]
struct Diff {
    changes: super::changes::ChangeLog,
    /// For each change, the index of its result.
    change_results: Vec<usize>,
    results: Vec<UserResult>,
    counts: Counts,
    /// Directory ids seen, with the index of the first entry's result.
    seen_ids: HashMap<String, usize>,
    /// Usernames mapped, with the index of the first entry's result.
    seen_usernames: HashMap<String, usize>,
    failed_entries: u64,
    /// Continuation references the read got.
    references: u64,
    /// How the read tracked changes (`syncrepl`, `timestamps`).
    tracking: Option<&'static str>,
    high_water_mark: Option<String>,
    changed_keys: BTreeSet<String>,
    plugin_ms: u64,
    /// Attribute bytes ([`Footprint`]) the planned creations and updates add, less
    /// what the updates remove (deletions are not counted: the quota check errs on
    /// the side of the quota).
    attribute_growth: i64,
}

impl Diff {
    fn push(&mut self, planned: Planned) {
        self.counts.add(planned.result.action);
        self.changed_keys.extend(planned.changed_keys);
        let mut result = planned.result;
        if let Some(change) = planned.change {
            self.attribute_growth += attribute_growth(&change);
            match self.changes.push(&change) {
                Ok(()) => self.change_results.push(self.results.len()),
                Err(err) => {
                    // Not expected (every field encodes); the user fails alone if it does.
                    self.counts.failed += 1;
                    result.action = Action::Failed;
                    result.code = code::FAILED;
                    result.message = format!("cannot hold the change: {err}");
                }
            }
        }
        self.results.push(result);
    }

    /// What is left of this diff when only removals are planned: which directory ids
    /// were seen, and whether the read was whole.
    fn removals_base(self) -> Diff {
        Diff {
            seen_ids: self.seen_ids,
            failed_entries: self.failed_entries,
            references: self.references,
            counts: Counts {
                read: self.counts.read,
                ..Counts::default()
            },
            plugin_ms: self.plugin_ms,
            ..Diff::default()
        }
    }

    /// The DN of result `index`, for messages.
    fn result_dn(&self, index: usize) -> String {
        self.results
            .get(index)
            .and_then(|result| result.dn.clone())
            .unwrap_or_default()
    }

    /// Records directory id `ldap_id` as read at `dn`; when an earlier entry had it,
    /// fails this one (reported with `username`) and returns `false`.
    fn claim_id(&mut self, dn: &str, ldap_id: &str, username: &str) -> bool {
        self.claim(Claim::Id, ldap_id, dn, username)
    }

    /// Records `username` as mapped from `dn`; when an earlier entry mapped to it,
    /// fails this one and returns `false`.
    fn claim_username(&mut self, dn: &str, username: &str) -> bool {
        self.claim(Claim::Username, username, dn, username)
    }

    fn claim(&mut self, claim: Claim, key: &str, dn: &str, username: &str) -> bool {
        let next = self.results.len();
        let seen = match claim {
            Claim::Id => &mut self.seen_ids,
            Claim::Username => &mut self.seen_usernames,
        };
        let Some(first) = first_seen(seen, key, next) else {
            return true;
        };
        let first = self.result_dn(first);
        let message = match claim {
            Claim::Id => format!("directory id {key} also belongs to {first}"),
            Claim::Username => format!("username {key} also mapped from {first}"),
        };
        self.fail(dn, username.to_owned(), code::CONFLICT, message);
        false
    }

    /// A user the mapping stage found unchanged (stored with this decision's digest).
    fn unchanged(
        &mut self,
        dn: &str,
        id: UserId,
        ldap_id: String,
        username: String,
        check_names: bool,
    ) {
        if !self.claim_id(dn, &ldap_id, &username)
            || (check_names && !self.claim_username(dn, &username))
        {
            return;
        }
        self.push(Planned {
            change: None,
            result: UserResult {
                id: Some(id.0),
                username,
                dn: Some(dn.to_owned()),
                code: code::UNCHANGED,
                action: Action::Unchanged,
                message: "unchanged".into(),
            },
            changed_keys: Vec::new(),
        });
    }

    fn fail(&mut self, dn: &str, username: String, code: u16, message: String) {
        self.failed_entries += 1;
        self.counts.add(Action::Failed);
        self.results.push(UserResult {
            id: None,
            username: if username.is_empty() {
                entry_name(dn)
            } else {
                username
            },
            dn: Some(dn.to_owned()),
            code,
            action: Action::Failed,
            message,
        });
    }
}

/// What an entry claims for itself within one sync.
#[derive(Clone, Copy)]
enum Claim {
    Id,
    Username,
}

/// Later of two change marks: numerically when both are numbers (USNs), else as text
/// (generalized times of one server share a format).
fn later_mark(current: Option<String>, candidate: &str) -> Option<String> {
    match current {
        None => Some(candidate.to_owned()),
        Some(current) => {
            let later = match (current.parse::<u64>(), candidate.parse::<u64>()) {
                (Ok(a), Ok(b)) => b > a,
                _ => candidate > current.as_str(),
            };
            Some(if later { candidate.to_owned() } else { current })
        }
    }
}

/// Which users a sync finds gone from the directory.
enum Gone {
    /// Every directory user not read, nor listed here (by directory id) as present: a
    /// full read, or a content synchronization's present phase.
    NotSeen(HashSet<String>),
    /// These directory ids: a content synchronization's delete phase.
    Listed(HashSet<String>),
}

/// What an operator should be told of a removal phase that did not remove.
fn removal_note(removal: &RemovalOutcome) -> Option<String> {
    match removal {
        RemovalOutcome::SkippedAfterErrors { failed_entries } => Some(format!(
            "removals skipped: {failed_entries} entries failed, and a user whose entry failed must not look removed; users removed from the directory stay until a sync without failures"
        )),
        RemovalOutcome::SkippedAfterReferrals { references } => Some(format!(
            "removals skipped: the directory referred {references} parts of the base to other servers, whose users would look removed; users removed from the directory stay active (set ldap.ignore_referrals when the referred parts hold no users)"
        )),
        RemovalOutcome::Refused {
            missing,
            total,
            limit,
        } => Some(format!(
            "removals refused: {missing} of {total} directory users are gone, {limit}"
        )),
        RemovalOutcome::NotApplicable | RemovalOutcome::Done { .. } => None,
    }
}

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
        }
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
            results: Vec::new(),
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
        let mut diff = Diff::default();
        let mut targeted: Vec<StoredUser> = Vec::new();
        let (mode, selection) = match request.mode {
            SyncMode::Full => (SyncMode::Full, Selection::All),
            SyncMode::Incremental => match (&state.sync_cookie, &state.high_water_mark) {
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
                        origin: state.mark_origin.clone(),
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
                .is_some_and(|id| diff.seen_ids.contains_key(id));
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
            if mode != SyncMode::Targeted {
                match stats.next_mark {
                    Some(NextMark::Cookie { cookie, value }) => {
                        state.sync_cookie = Some(cookie);
                        state.high_water_mark = value;
                        state.mark_origin = None;
                    }
                    Some(NextMark::Value { value, origin }) => {
                        state.high_water_mark = Some(value);
                        state.mark_origin = origin;
                        state.sync_cookie = None;
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
                .iter()
                .find(|result| result.action == Action::Failed)
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
        report.results = diff.results;
        Ok(())
    }

    /// Receives mapped batches and plans the changes.
    async fn process(
        &self,
        context: &Context<'_>,
        mut receiver: mpsc::Receiver<MappedBatch>,
        mut diff: Diff,
    ) -> Result<Diff, SyncError> {
        let tenant_id = context.tenant.id;
        while let Some(batch) = receiver.recv().await {
            if context.progress.is_cancelled() {
                return Ok(diff);
            }
            let MappedBatch {
                dns,
                avatars,
                outcomes,
                known,
                plugin_ms,
                mark,
            } = batch;
            diff.plugin_ms += plugin_ms;
            if let Some(mark) = mark {
                diff.high_water_mark = later_mark(diff.high_water_mark.take(), &mark);
            }

            // Unchanged users were recognised by the mapping stage. In one query each:
            // the other known users, to compare, and the holders of usernames that are
            // new or renamed.
            let check_names = !context.rules.attributes_only;
            let mut compare = Vec::new();
            let mut usernames = Vec::new();
            for outcome in &outcomes {
                match outcome {
                    Outcome::Mapped(Ok(Decision::Upsert(user)), _) => {
                        let found = known.get(&user.ldap_id);
                        if found.is_some() {
                            compare.push(user.ldap_id.clone());
                        }
                        if check_names && found.map(|user| &user.username) != Some(&user.username) {
                            usernames.push(user.username.clone());
                        }
                    }
                    Outcome::Mapped(Ok(Decision::Deactivate { ldap_id, .. }), _)
                        if known.contains_key(ldap_id) =>
                    {
                        compare.push(ldap_id.clone());
                    }
                    _ => {}
                }
            }
            let (by_id, by_name) = if compare.is_empty() && usernames.is_empty() {
                (Vec::new(), Vec::new())
            } else {
                self.blocking(tenant_id, move |store| {
                    let by_id = store.users_by_ldap_ids(tenant_id, &compare)?;
                    let by_name = store.users_by_usernames(tenant_id, &usernames)?;
                    Ok((by_id, by_name))
                })
                .await?
            };
            let by_id: HashMap<String, StoredUser> = by_id
                .into_iter()
                .filter_map(|user| user.fields.ldap_id.clone().map(|id| (id, user)))
                .collect();
            let by_name: HashMap<String, StoredUser> = by_name
                .into_iter()
                .map(|user| (user.fields.username.clone(), user))
                .collect();

            for ((outcome, dn), avatar) in outcomes.into_iter().zip(dns).zip(avatars) {
                let (outcome, digest) = match outcome {
                    Outcome::Unchanged {
                        id,
                        ldap_id,
                        username,
                    } => {
                        diff.unchanged(&dn, id, ldap_id, username, check_names);
                        continue;
                    }
                    Outcome::Mapped(outcome, digest) => (outcome, digest),
                };
                match outcome {
                    Err(error) => diff.fail(
                        &dn,
                        String::new(),
                        code::MAPPING_ERROR,
                        format!("plugin error: {error}"),
                    ),
                    Ok(Decision::Skip { reason }) => diff.push(Planned {
                        change: None,
                        result: UserResult {
                            id: None,
                            username: entry_name(&dn),
                            dn: Some(dn),
                            code: code::SKIPPED,
                            action: Action::Skipped,
                            message: reason,
                        },
                        changed_keys: Vec::new(),
                    }),
                    Ok(Decision::Deactivate { ldap_id, reason }) => {
                        if diff.claim_id(&dn, &ldap_id, "") {
                            diff.push(plan_deactivate(&dn, by_id.get(&ldap_id), &reason));
                        }
                    }
                    Ok(Decision::Upsert(user)) => {
                        if !diff.claim_id(&dn, &user.ldap_id, &user.username) {
                            continue;
                        }
                        let mut existing = by_id.get(&user.ldap_id);
                        if context.adopt && existing.is_none() {
                            existing = by_name.get(&user.username);
                        }
                        if check_names {
                            if !diff.claim_username(&dn, &user.username) {
                                continue;
                            }
                            if let Some(holder) = by_name.get(&user.username)
                                && existing.is_none_or(|mine| mine.id != holder.id)
                            {
                                diff.fail(
                                    &dn,
                                    user.username.clone(),
                                    code::CONFLICT,
                                    format!(
                                        "username {} belongs to user {} ({})",
                                        user.username,
                                        holder.id,
                                        holder.fields.ldap_dn.as_deref().unwrap_or("a local user")
                                    ),
                                );
                                continue;
                            }
                        }
                        diff.push(plan_upsert(
                            user,
                            &dn,
                            existing,
                            avatar,
                            &context.rules,
                            digest,
                        ));
                    }
                }
            }
        }
        Ok(diff)
    }

    /// Plans the removal of the users no longer in the directory, under the tenant's
    /// policy and thresholds. With `report_kept`, the missing users the policy keeps
    /// (or that are inactive already) are reported too, as not found.
    async fn plan_removals(
        &self,
        context: &Context<'_>,
        gone: &Gone,
        force: bool,
        report_kept: bool,
        diff: &mut Diff,
    ) -> Result<RemovalOutcome, SyncError> {
        // A user whose entry failed, or is held by a server the read was referred to,
        // must not look removed; a deletion the directory reports is one whatever else
        // the read met.
        if let Gone::NotSeen(_) = gone {
            if diff.failed_entries > 0 {
                return Ok(RemovalOutcome::SkippedAfterErrors {
                    failed_entries: diff.failed_entries,
                });
            }
            if diff.references > 0 && !context.tenant.ldap.ignore_referrals {
                return Ok(RemovalOutcome::SkippedAfterReferrals {
                    references: diff.references,
                });
            }
        }
        let tenant_id = context.tenant.id;
        let index = self
            .blocking(tenant_id, move |store| store.ldap_user_index(tenant_id))
            .await?;
        let total = index.len() as u64;
        let missing: Vec<_> = index
            .into_iter()
            .filter(|user| {
                !diff.seen_ids.contains_key(&user.ldap_id)
                    && match gone {
                        Gone::NotSeen(present) => !present.contains(&user.ldap_id),
                        Gone::Listed(deleted) => deleted.contains(&user.ldap_id),
                    }
            })
            .collect();
        let policy = context.tenant.removal.policy;
        let removed = |user: &&crate::store::LdapUserRef| match policy {
            RemovalPolicy::Deactivate => user.active,
            RemovalPolicy::Delete => true,
            RemovalPolicy::Keep => false,
        };
        let to_remove: Vec<_> = missing.iter().filter(removed).collect();
        if report_kept {
            for user in missing.iter().filter(|user| !removed(user)) {
                diff.push(Planned {
                    change: None,
                    result: UserResult {
                        id: Some(user.id.0),
                        username: user.username.clone(),
                        dn: None,
                        code: code::NOT_FOUND,
                        action: Action::NotFound,
                        message: "not found in the directory; kept by the removal policy".into(),
                    },
                    changed_keys: Vec::new(),
                });
            }
        }
        let count = to_remove.len() as u64;
        let removal = &context.tenant.removal;
        let over_count = removal
            .max_count
            .filter(|max| count > *max)
            .map(|max| format!("more than {max} users"));
        let over_percent = removal
            .max_percent
            .filter(|max| total > 0 && count as f64 * 100.0 / total as f64 > *max)
            .map(|max| format!("more than {max}% of them"));
        if let Some(limit) = over_count.or(over_percent)
            && !force
        {
            return Ok(RemovalOutcome::Refused {
                missing: count,
                total,
                limit,
            });
        }
        let why = match gone {
            Gone::NotSeen(_) => "no longer in the directory",
            Gone::Listed(_) => "deleted from the directory (content synchronization)",
        };
        for user in to_remove {
            let (change, action, message) = match policy {
                RemovalPolicy::Delete => (
                    Change::Delete { id: user.id },
                    Action::Deleted,
                    format!("deleted: {why}"),
                ),
                _ => (
                    Change::Deactivate { id: user.id },
                    Action::Deactivated,
                    format!("deactivated: {why}"),
                ),
            };
            diff.push(Planned {
                change: Some(change),
                result: UserResult {
                    id: Some(user.id.0),
                    username: user.username.clone(),
                    dn: None,
                    code: code::REMOVED,
                    action,
                    message,
                },
                changed_keys: Vec::new(),
            });
        }
        Ok(RemovalOutcome::Done {
            missing: missing.len() as u64,
            removed: count,
        })
    }

    /// Removes the tenant's audit events and run records past the quotas' retention;
    /// how many events went. A failure is logged, never the sync's.
    async fn prune_history(&self, tenant_id: u64, now: Timestamp) -> u64 {
        const DAY_MS: i64 = 24 * 3600 * 1000;
        let quotas = self.quotas;
        let limits = HistoryLimits {
            events_before: (quotas.audit_retention_days > 0).then(|| {
                now.saturating_sub(
                    i64::try_from(quotas.audit_retention_days)
                        .unwrap_or(i64::MAX)
                        .saturating_mul(DAY_MS),
                )
            }),
            max_events: quotas.audit_max_events,
            max_runs: quotas.sync_runs_kept,
        };
        match self
            .blocking(tenant_id, move |store| {
                store.prune_history(tenant_id, &limits)
            })
            .await
        {
            Ok(pruned) => {
                if pruned > 0 {
                    tracing::info!(
                        tenant = tenant_id,
                        pruned,
                        "audit events past their retention removed"
                    );
                }
                pruned
            }
            Err(err) => {
                tracing::warn!(tenant = tenant_id, error = %err, "cannot remove old audit events");
                0
            }
        }
    }

    /// Writes the diff in chunks of one transaction each. A chunk refused for a
    /// conflict is retried change by change, so one bad user fails alone.
    ///
    /// Where the store writes with several server processes
    /// ([`UserStore::concurrent_applies`]), that many chunks are written at once. A
    /// chunk that fails beside others (two transactions waiting on each other's new
    /// names, a deadlock the database breaks) is written again alone before its
    /// failure counts.
    async fn apply(
        &self,
        tenant_id: u64,
        request: &SyncRequest,
        diff: &mut Diff,
        progress: &Progress,
    ) -> Result<(), SyncError> {
        let cause = ChangeCause {
            cause: match diff.tracking {
                Some(tracking @ "syncrepl") => {
                    format!(
                        "sync:{}/{tracking}:{}",
                        request.mode.as_str(),
                        request.cause
                    )
                }
                _ => format!("sync:{}:{}", request.mode.as_str(), request.cause),
            },
            run_id: Some(request.run_id.clone()),
            at: (self.clock)(),
        };
        let changes = std::mem::take(&mut diff.changes);
        let change_results = std::mem::take(&mut diff.change_results);
        progress.set_to_write(changes.len() as u64);
        let at_once = self.store.concurrent_applies().max(1);
        let mut offset = 0;
        while offset < changes.len() {
            // The next `at_once` chunks, written side by side.
            let mut group = Vec::with_capacity(at_once);
            let mut next = offset;
            while group.len() < at_once && next < changes.len() {
                let (start, end) = (next, (next + APPLY_CHUNK).min(changes.len()));
                let chunk = changes
                    .decode(start..end)
                    .map_err(|err| SyncError::Internal {
                        tenant: tenant_id,
                        reason: format!("cannot decode a planned change: {err}"),
                    })?;
                let chunk_cause = cause.clone();
                let store = self.store.clone();
                // Started now, so that the group's chunks are written side by side.
                let write = tokio::task::spawn_blocking(move || {
                    let applied = store.apply(tenant_id, &chunk, &chunk_cause);
                    (chunk, applied)
                });
                group.push((start, write));
                next = end;
            }
            let alone = group.len() == 1;
            // Every chunk of the group is awaited before any failure is returned, so
            // that the report counts what the others committed.
            let mut written = Vec::with_capacity(group.len());
            for (start, write) in group {
                written.push((start, write.await));
            }
            let mut failure = None;
            for (start, write) in written {
                let (chunk, mut applied) = write.map_err(|err| SyncError::Internal {
                    tenant: tenant_id,
                    reason: err.to_string(),
                })?;
                if failure.is_some() {
                    // Past a failure: only what committed is still counted.
                    if let Ok(ids) = applied {
                        self.record_chunk(
                            tenant_id,
                            &cause,
                            diff,
                            &change_results,
                            start,
                            chunk,
                            Ok(ids),
                            progress,
                        )
                        .await?;
                    }
                    continue;
                }
                if !alone && matches!(applied, Err(StoreError::Database(_))) {
                    let again = chunk.clone();
                    let again_cause = cause.clone();
                    applied = self
                        .blocking(tenant_id, move |store| {
                            Ok(store.apply(tenant_id, &again, &again_cause))
                        })
                        .await?;
                }
                if let Err(err) = self
                    .record_chunk(
                        tenant_id,
                        &cause,
                        diff,
                        &change_results,
                        start,
                        chunk,
                        applied,
                        progress,
                    )
                    .await
                {
                    failure = Some(err);
                }
            }
            if let Some(err) = failure {
                return Err(err);
            }
            offset = next;
        }
        Ok(())
    }

    /// Takes in how one chunk of the diff (from `offset` on) was written: the users'
    /// ids, or on a conflict the chunk again change by change, each committed on its
    /// own.
    #[allow(clippy::too_many_arguments)]
    async fn record_chunk(
        &self,
        tenant_id: u64,
        cause: &ChangeCause,
        diff: &mut Diff,
        change_results: &[usize],
        offset: usize,
        chunk: Vec<Change>,
        applied: Result<Vec<UserId>, StoreError>,
        progress: &Progress,
    ) -> Result<(), SyncError> {
        match applied {
            Ok(ids) => {
                for (index, id) in ids.into_iter().enumerate() {
                    diff.results[change_results[offset + index]].id = Some(id.0);
                }
                progress.add_written(chunk.len() as u64);
                Ok(())
            }
            Err(StoreError::Conflict { .. } | StoreError::NoSuchUser { .. }) => {
                // One change at a time, each committed on its own: counted as it is
                // written, so that a later failure says how far it got.
                for (index, change) in chunk.into_iter().enumerate() {
                    let single = vec![change];
                    let single_cause = cause.clone();
                    let result = self
                        .blocking(tenant_id, move |store| {
                            Ok(store.apply(tenant_id, &single, &single_cause))
                        })
                        .await?;
                    let slot = &mut diff.results[change_results[offset + index]];
                    match result {
                        Ok(ids) => {
                            slot.id = ids.first().map(|id| id.0);
                            progress.add_written(1);
                        }
                        Err(
                            err @ (StoreError::Conflict { .. } | StoreError::NoSuchUser { .. }),
                        ) => {
                            fail_applied(&mut diff.counts, slot, code::CONFLICT, err.to_string());
                        }
                        Err(err) => {
                            return Err(SyncError::Store {
                                tenant: tenant_id,
                                cause: err,
                            });
                        }
                    }
                }
                Ok(())
            }
            Err(err) => Err(SyncError::Store {
                tenant: tenant_id,
                cause: err,
            }),
        }
    }
}

/// An entry's outcome as the mapping stage passes it on.
enum Outcome {
    /// The plugin's decision, with its mapped digest when it is an upsert the sync may
    /// recognise as unchanged.
    Mapped(crate::plugin::model::EntryOutcome, Option<MappedDigest>),
    /// An upsert of a user stored with the same digest: nothing to compare or write.
    Unchanged {
        id: UserId,
        ldap_id: String,
        username: String,
    },
}

/// Whether the last sync wrote `user` from an upsert of `username` with `digest`:
/// then that upsert changes nothing.
fn written_from(user: &LdapUserRef, username: &str, digest: Option<MappedDigest>) -> bool {
    digest.is_some() && user.mapped == digest && user.username == username
}

/// A batch after the plugin: one outcome per entry, with what the diff needs.
struct MappedBatch {
    dns: Vec<String>,
    avatars: Vec<Option<Avatar>>,
    outcomes: Vec<Outcome>,
    /// The stored users of the batch's directory ids that are not unchanged.
    known: HashMap<String, LdapUserRef>,
    plugin_ms: u64,
    /// The latest change mark among the batch's entries.
    mark: Option<String>,
}

/// What the mapping stage needs, owned (it runs on its own task).
struct MapStage {
    tenant: u64,
    plugin: Arc<TenantPlugin>,
    store: Arc<dyn UserStore>,
    rules: PlanRules,
    mode: SyncMode,
    change_attribute: String,
    /// Whether the plugin asked for `change_attribute` (otherwise it is withheld).
    plugin_reads_change_attribute: bool,
    plugin_attributes: HashSet<String>,
    progress: Progress,
}

/// Calls the plugin for each batch of entries, while the next batch is being read and
/// the previous one diffed.
async fn map_stage(
    stage: MapStage,
    mut receiver: mpsc::Receiver<Vec<Entry>>,
    sender: mpsc::Sender<MappedBatch>,
) -> Result<(), SyncError> {
    // Up to this many plugin calls run at once (each in its own fresh instance);
    // results are passed on in the directory's order.
    const IN_FLIGHT: usize = 2;
    let mut pending = std::collections::VecDeque::new();
    loop {
        let next = if pending.len() < IN_FLIGHT {
            receiver.recv().await
        } else {
            None
        };
        let Some(mut batch) = next else {
            let Some(call) = pending.pop_front() else {
                return Ok(());
            };
            if !forward(&stage, call, &sender).await? {
                return Ok(());
            }
            continue;
        };
        if stage.progress.is_cancelled() {
            return Ok(());
        }
        stage.progress.add_read(batch.len() as u64);
        let mut dns = Vec::with_capacity(batch.len());
        let mut avatars = Vec::with_capacity(batch.len());
        let mut mark: Option<String> = None;
        for entry in &mut batch {
            dns.push(entry.dn.clone());
            if let Some(value) = entry.values(&stage.change_attribute).first() {
                mark = later_mark(mark.take(), value);
            }
            avatars.push(if stage.rules.sync_avatars {
                avatar_of(entry)
            } else {
                None
            });
            // The plugin sees what it asked for (and the identifiers), not avatars nor
            // the change attribute: each value it does not need costs a copy into its
            // memory.
            if !stage.plugin_reads_change_attribute {
                entry
                    .attributes
                    .retain(|(name, _)| !name.eq_ignore_ascii_case(&stage.change_attribute));
            }
            entry.binary_attributes.retain(|(name, _)| {
                !AVATAR_ATTRIBUTES
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(name))
                    || stage.plugin_attributes.contains(&name.to_ascii_lowercase())
            });
        }
        let first_dn = dns.first().cloned().unwrap_or_default();
        let last_dn = dns.last().cloned().unwrap_or_default();
        let len = dns.len();
        let plugin = stage.plugin.clone();
        let mapping_context = plugin.context(stage.mode);
        let store = stage.store.clone();
        let rules = stage.rules.clone();
        let tenant = stage.tenant;
        // The call runs on the plugin threads, then the lookup of its users on a
        // blocking thread: the decisions of unchanged users are recognised as the
        // plugin wrote them, and never decoded.
        let call = tokio::spawn(async move {
            let output = plugin
                .plugin
                .map_entries_raw_async(&mapping_context, batch)
                .await
                .map_err(CallFailure::Plugin)?;
            tokio::task::spawn_blocking(move || {
                let duration = output.stats.duration;
                let (outcomes, known) =
                    screen(store.as_ref(), tenant, &rules, &output, &dns, &avatars)
                        .map_err(CallFailure::Store)?;
                Ok(Screened {
                    dns,
                    avatars,
                    outcomes,
                    known,
                    duration,
                })
            })
            .await
            .unwrap_or_else(|err| {
                Err(CallFailure::Store(StoreError::Panicked(format!(
                    "screening the batch: {err}"
                ))))
            })
        });
        pending.push_back(PendingCall {
            call,
            first_dn,
            last_dn,
            len,
            mark,
        });
    }
}

/// A plugin call under way, with what its batch carries past the plugin.
struct PendingCall {
    call: tokio::task::JoinHandle<Result<Screened, CallFailure>>,
    /// The batch's first and last DNs and size, to name it when the call fails.
    first_dn: String,
    last_dn: String,
    len: usize,
    mark: Option<String>,
}

/// A batch mapped and screened for unchanged users.
struct Screened {
    dns: Vec<String>,
    avatars: Vec<Option<Avatar>>,
    outcomes: Vec<Outcome>,
    known: HashMap<String, LdapUserRef>,
    duration: std::time::Duration,
}

/// Why a mapping call failed.
enum CallFailure {
    Plugin(CallError),
    Store(StoreError),
}

/// Recognises the upserts of users stored with the same mapped digest (unchanged:
/// [`Outcome::Unchanged`], their decisions never decoded); returns the outcomes and
/// the batch's other known users. Targeted syncs write attributes only, so their users
/// are always compared.
fn screen(
    store: &dyn UserStore,
    tenant: u64,
    rules: &PlanRules,
    raw: &RawBatch,
    dns: &[String],
    avatars: &[Option<Avatar>],
) -> Result<(Vec<Outcome>, HashMap<String, LdapUserRef>), StoreError> {
    let decisions = raw.decisions();
    let ids: Vec<Option<DecisionIds>> = decisions.iter().map(RawDecision::ids).collect();
    let lookup: Vec<String> = ids
        .iter()
        .flatten()
        .map(|ids| match ids {
            DecisionIds::Upsert { ldap_id, .. } | DecisionIds::Deactivate { ldap_id } => {
                ldap_id.clone()
            }
        })
        .collect();
    let mut known: HashMap<String, LdapUserRef> = store
        .known_by_ldap_ids(tenant, &lookup)?
        .into_iter()
        .map(|user| (user.ldap_id.clone(), user))
        .collect();
    let mut outcomes = Vec::with_capacity(decisions.len());
    for (((decision, ids), dn), avatar) in decisions.into_iter().zip(ids).zip(dns).zip(avatars) {
        let upsert = match (ids, decision_text(&decision)) {
            (Some(DecisionIds::Upsert { ldap_id, username }), Some(text))
                if !rules.attributes_only =>
            {
                Some((ldap_id, username, text))
            }
            _ => None,
        };
        let Some((ldap_id, username, text)) = upsert else {
            outcomes.push(Outcome::Mapped(decision.decode(), None));
            continue;
        };
        let digest = mapped_digest(text, dn, avatar.as_ref(), rules);
        match known.get(&ldap_id) {
            Some(stored) if written_from(stored, &username, Some(digest)) => {
                let id = stored.id;
                // Not needed further (a second entry with this id is a conflict).
                known.remove(&ldap_id);
                outcomes.push(Outcome::Unchanged {
                    id,
                    ldap_id,
                    username,
                });
            }
            _ => outcomes.push(Outcome::Mapped(decision.decode(), Some(digest))),
        }
    }
    Ok((outcomes, known))
}

/// An upsert as its digest reads it.
fn decision_text<'a>(decision: &RawDecision<'a>) -> Option<DecisionText<'a>> {
    match *decision {
        RawDecision::Json(text) => Some(DecisionText::Json(text)),
        RawDecision::Decoded(Ok(Decision::Upsert(user))) => Some(DecisionText::User(user)),
        RawDecision::Decoded(_) => None,
    }
}

/// Waits for `pending` and sends its batch on; `false` when the diff stage is gone.
async fn forward(
    stage: &MapStage,
    pending: PendingCall,
    sender: &mpsc::Sender<MappedBatch>,
) -> Result<bool, SyncError> {
    let screened = pending
        .call
        .await
        .map_err(|err| SyncError::Internal {
            tenant: stage.tenant,
            reason: err.to_string(),
        })?
        .map_err(|failure| match failure {
            CallFailure::Plugin(cause) => SyncError::Plugin {
                tenant: stage.tenant,
                plugin: stage.plugin.plugin.label().to_owned(),
                batch: describe_batch(&pending.first_dn, &pending.last_dn, pending.len),
                cause: Box::new(cause),
            },
            CallFailure::Store(cause) => SyncError::Store {
                tenant: stage.tenant,
                cause,
            },
        })?;
    stage.progress.add_mapped(screened.dns.len() as u64);
    let batch = MappedBatch {
        dns: screened.dns,
        avatars: screened.avatars,
        outcomes: screened.outcomes,
        known: screened.known,
        plugin_ms: u64::try_from(screened.duration.as_millis()).unwrap_or(u64::MAX),
        mark: pending.mark,
    };
    // A closed channel means the diff stage stopped; its error is the one to report.
    Ok(sender.send(batch).await.is_ok())
}

/// Names the entries of a failed call for its error: a whole-call failure (a trap, an
/// exception outside a plugin SDK's per-entry guard) cannot say which entry caused it.
fn describe_batch(first: &str, last: &str, len: usize) -> String {
    match len {
        0 => String::new(),
        1 => format!(" mapping entry `{first}`"),
        len => format!(" mapping {len} entries from `{first}` to `{last}`"),
    }
}

/// Records `key` as first seen at `index`; returns the first index when it was seen
/// before.
fn first_seen(seen: &mut HashMap<String, usize>, key: &str, index: usize) -> Option<usize> {
    match seen.get(key) {
        Some(first) => Some(*first),
        None => {
            seen.insert(key.to_owned(), index);
            None
        }
    }
}

/// The attribute bytes `change` adds (negative: frees).
fn attribute_growth(change: &Change) -> i64 {
    let signed = |bytes: u64| i64::try_from(bytes).unwrap_or(i64::MAX);
    match change {
        Change::Create { fields, .. } => signed(Footprint::of(&fields.attributes).bytes),
        Change::Update {
            attribute_changes, ..
        } => attribute_changes
            .iter()
            .map(|change| {
                let mut added = Footprint::default();
                added.add(&change.key, &change.added);
                let mut removed = Footprint::default();
                removed.add(&change.key, &change.removed);
                signed(added.bytes) - signed(removed.bytes)
            })
            .sum(),
        Change::Deactivate { .. } | Change::Delete { .. } => 0,
    }
}

fn fail_applied(counts: &mut Counts, slot: &mut UserResult, code: u16, message: String) {
    let counter = match slot.action {
        Action::Created => &mut counts.created,
        Action::Updated => &mut counts.updated,
        Action::Deactivated => &mut counts.deactivated,
        Action::Reactivated => &mut counts.reactivated,
        Action::Deleted => &mut counts.deleted,
        _ => &mut counts.failed,
    };
    *counter = counter.saturating_sub(1);
    counts.failed += 1;
    slot.action = Action::Failed;
    slot.code = code;
    slot.message = message;
}

/// A name for an entry that never became a user (skipped, or failed before its
/// username was known): the value of its DN's first RDN (`uid=jdoe,ou=people,…` →
/// `jdoe`), the escapes of RFC 4514 removed.
fn entry_name(dn: &str) -> String {
    let mut value = String::new();
    let mut started = false;
    let mut chars = dn.chars();
    while let Some(c) = chars.next() {
        match c {
            '=' if !started => started = true,
            ',' | '+' if started => break,
            '\\' if started => {
                let rest = chars.as_str();
                match rest
                    .get(..2)
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                {
                    // A hex pair: one byte of UTF-8 (multi-byte characters come as
                    // several pairs; kept as text when the whole run decodes).
                    Some(_) => {
                        let mut bytes = Vec::new();
                        let mut tail = rest;
                        while let Some(byte) = tail
                            .get(..2)
                            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                        {
                            bytes.push(byte);
                            tail = &tail[2..];
                            match tail.strip_prefix('\\') {
                                Some(next)
                                    if next
                                        .get(..2)
                                        .is_some_and(|hex| u8::from_str_radix(hex, 16).is_ok()) =>
                                {
                                    tail = next
                                }
                                _ => break,
                            }
                        }
                        value.push_str(&String::from_utf8_lossy(&bytes));
                        chars = tail.chars();
                    }
                    None => {
                        if let Some(escaped) = chars.next() {
                            value.push(escaped);
                        }
                    }
                }
            }
            _ if started => value.push(c),
            _ => {}
        }
    }
    let value = value.trim().to_owned();
    if value.is_empty() {
        dn.to_owned()
    } else {
        value
    }
}

fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn avatar_of(entry: &Entry) -> Option<Avatar> {
    AVATAR_ATTRIBUTES.iter().find_map(|name| {
        entry.binary_values(name).first().map(|bytes| Avatar {
            sha256: crate::plugin::hex(&Sha256::digest(bytes)),
            bytes: bytes.clone(),
        })
    })
}

/// Targeted identifiers that match no stored user get a 404 result.
fn record_unknown_targets(targets: &UserIdentifiers, users: &[StoredUser], diff: &mut Diff) {
    let mut unknown = Vec::new();
    for name in &targets.usernames {
        if !users.iter().any(|u| &u.fields.username == name) {
            unknown.push(("username", name));
        }
    }
    for id in &targets.ids {
        if !users.iter().any(|u| &u.id.0.to_string() == id) {
            unknown.push(("id", id));
        }
    }
    for email in &targets.emails {
        if !users.iter().any(|u| {
            u.fields
                .email
                .as_deref()
                .is_some_and(|e| e.eq_ignore_ascii_case(email))
        }) {
            unknown.push(("email", email));
        }
    }
    for ldap_id in &targets.ldap_ids {
        if !users
            .iter()
            .any(|u| u.fields.ldap_id.as_deref() == Some(ldap_id.as_str()))
        {
            unknown.push(("ldapId", ldap_id));
        }
    }
    for (kind, value) in unknown {
        diff.push(Planned {
            change: None,
            result: UserResult {
                id: None,
                username: if kind == "username" {
                    value.clone()
                } else {
                    String::new()
                },
                dn: None,
                code: code::NOT_FOUND,
                action: Action::NotFound,
                message: if kind == "id" && value.parse::<i64>().is_err() {
                    // A Rocket.Chat client passes its own `_id`s, which name no user here.
                    format!(
                        "no user with id {value}: ids are abacsync's user ids (the admin API's \"id\"), not Rocket.Chat's _id; name the user by username, email or ldapId"
                    )
                } else {
                    format!("no user with {kind} {value}")
                },
            },
            changed_keys: Vec::new(),
        });
    }
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
