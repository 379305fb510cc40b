//! What a sync did: counts, one result per user in grommunio's style (an HTTP-like
//! code and a message), and the error that stopped it, if any.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The result codes of per-user results, HTTP-like as in grommunio's downsync.
pub mod code {
    /// Updated (or reactivated, or deactivated on the plugin's word).
    pub const UPDATED: u16 = 200;
    /// Created.
    pub const CREATED: u16 = 201;
    /// The plugin skipped the entry: not a user.
    pub const SKIPPED: u16 = 204;
    /// Nothing changed.
    pub const UNCHANGED: u16 = 304;
    /// Not imported: importing new users is off for this sync.
    pub const NOT_IMPORTED: u16 = 403;
    /// A targeted user is not in the store or not in the directory.
    pub const NOT_FOUND: u16 = 404;
    /// Conflicts with another user (username or directory id taken).
    pub const CONFLICT: u16 = 409;
    /// Removed from the directory: deactivated or deleted per the tenant's policy.
    pub const REMOVED: u16 = 410;
    /// The user's ABAC attributes are over the tenant's per-user quota: not written.
    pub const OVER_QUOTA: u16 = 413;
    /// The plugin reported an error for the entry.
    pub const MAPPING_ERROR: u16 = 422;
    /// Writing the user failed.
    pub const FAILED: u16 = 500;
}

/// What happened to one user or entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// A new user.
    Created,
    /// Fields or attributes changed.
    Updated,
    /// Nothing to do.
    Unchanged,
    /// Deactivated (by the plugin or the removal policy).
    Deactivated,
    /// Active again.
    Reactivated,
    /// Deleted by the removal policy.
    Deleted,
    /// Not a user, per the plugin.
    Skipped,
    /// New user not imported.
    #[serde(rename = "not-imported")]
    NotImported,
    /// Targeted user not found.
    #[serde(rename = "not-found")]
    NotFound,
    /// Could not be processed.
    Failed,
}

/// The result for one user or entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserResult {
    /// The store id, when the user exists (or was created; set after writing).
    #[serde(rename = "ID", skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// Username (empty when the entry never became a user).
    pub username: String,
    /// The entry's DN, when it came from the directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dn: Option<String>,
    /// HTTP-like code, see [`code`].
    pub code: u16,
    /// What happened.
    pub action: Action,
    /// For people: what changed or why not.
    pub message: String,
}

/// How many users and entries ended how.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Entries read from the directory.
    pub read: u64,
    /// Created.
    pub created: u64,
    /// Updated.
    pub updated: u64,
    /// Unchanged.
    pub unchanged: u64,
    /// Deactivated.
    pub deactivated: u64,
    /// Reactivated.
    pub reactivated: u64,
    /// Deleted.
    pub deleted: u64,
    /// Skipped by the plugin.
    pub skipped: u64,
    /// New users not imported.
    pub not_imported: u64,
    /// Targeted users not found.
    pub not_found: u64,
    /// Failed.
    pub failed: u64,
}

impl Counts {
    /// Counts `action`.
    pub fn add(&mut self, action: Action) {
        let slot = match action {
            Action::Created => &mut self.created,
            Action::Updated => &mut self.updated,
            Action::Unchanged => &mut self.unchanged,
            Action::Deactivated => &mut self.deactivated,
            Action::Reactivated => &mut self.reactivated,
            Action::Deleted => &mut self.deleted,
            Action::Skipped => &mut self.skipped,
            Action::NotImported => &mut self.not_imported,
            Action::NotFound => &mut self.not_found,
            Action::Failed => &mut self.failed,
        };
        *slot += 1;
    }

    /// Changes that were (or, in a dry run, would be) written.
    pub fn writes(&self) -> u64 {
        self.created + self.updated + self.deactivated + self.reactivated + self.deleted
    }
}

/// The state the removal phase of a full sync ended in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum RemovalOutcome {
    /// Not a full sync: nothing is removed.
    NotApplicable,
    /// Removals checked and applied per the policy.
    Done {
        /// Users no longer in the directory.
        missing: u64,
        /// Of those, removed (deactivated or deleted).
        removed: u64,
    },
    /// Skipped because some entries failed: a user whose entry failed must not look
    /// removed.
    SkippedAfterErrors {
        /// Entries that failed.
        failed_entries: u64,
    },
    /// Skipped because the directory referred parts of the base to other servers:
    /// users held there would look removed (see `ldap.ignore_referrals`).
    SkippedAfterReferrals {
        /// Continuation references received.
        references: u64,
    },
    /// Refused: more removals than the threshold allows, and the sync was not forced.
    Refused {
        /// Users that would have been removed.
        missing: u64,
        /// Directory users of the tenant before the sync.
        total: u64,
        /// The threshold that was exceeded.
        limit: String,
    },
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// The full report of a sync.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncReport {
    /// Run id.
    pub run_id: String,
    /// The tenant.
    pub tenant: u64,
    /// The mode asked for.
    pub requested_mode: String,
    /// The mode that ran (an incremental sync without a mark runs full).
    pub mode: String,
    /// Nothing was written.
    pub dry_run: bool,
    /// `succeeded`, `failed`, `refused` or `cancelled`.
    pub outcome: String,
    /// Why it failed or was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Counts.
    pub counts: Counts,
    /// What happened to users no longer in the directory.
    pub removal: RemovalOutcome,
    /// How an incremental sync found the changes: `syncrepl` (RFC 4533, deletions
    /// included) or `timestamps` (the change attribute; deletions wait for a full
    /// sync).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking: Option<String>,
    /// What an operator should know of this sync (a fallback to a full sync, deletions
    /// not seen, removals skipped), also logged as warnings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The plugin that mapped the entries (name and version).
    pub plugin: String,
    /// The directory server that answered and the filter used.
    pub server: String,
    /// The filter sent.
    pub filter: String,
    /// Searches sent to the directory.
    pub searches: u64,
    /// Continuation references received (parts of the base on other servers, not
    /// followed).
    pub references: u64,
    /// References to Active Directory's partitions beside the domain (Configuration,
    /// DomainDnsZones, ForestDnsZones), which hold no users: not counted above, and
    /// they do not stop removals.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub partition_references: u64,
    /// Text attributes holding values that were not UTF-8, passed to the plugin as
    /// bytes.
    pub invalid_utf8_values: u64,
    /// ABAC keys whose values changed.
    pub changed_keys: BTreeSet<String>,
    /// Milliseconds: reading and mapping, applying, in all.
    pub timings: Timings,
    /// Audit events removed after the sync, past their retention.
    pub audit_pruned: u64,
    /// One result per entry and per removed user (a task's stored report keeps them
    /// in pages beside it).
    #[serde(default)]
    pub results: super::UserResults,
}

/// Where the time went, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timings {
    /// Reading, mapping and diffing (they overlap).
    pub read_map_ms: u64,
    /// Writing.
    pub apply_ms: u64,
    /// The whole sync.
    pub total_ms: u64,
    /// Of which inside the plugin.
    pub plugin_ms: u64,
}

impl SyncReport {
    /// Whether the sync did what was asked.
    pub fn succeeded(&self) -> bool {
        self.outcome == "succeeded"
    }
}
