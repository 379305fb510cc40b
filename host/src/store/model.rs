//! The store's records and the changes the sync engine asks it to apply.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::plugin::model::AbacAttributes;

/// Milliseconds since the Unix epoch (UTC). Passed in by callers, so tests fix time.
pub type Timestamp = i64;

/// A user's id in the store, unique across tenants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UserId(pub i64);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a user came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserSource {
    /// Created and maintained by directory syncs.
    Ldap,
    /// Created by hand (API); syncs never remove it.
    Local,
}

impl UserSource {
    /// Name stored in the database and shown in APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            UserSource::Ldap => "ldap",
            UserSource::Local => "local",
        }
    }
}

/// An avatar picture, with the hash that tells whether it changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Avatar {
    /// The picture as read from the directory (jpegPhoto, thumbnailPhoto).
    pub bytes: Vec<u8>,
    /// Hex SHA-256 of `bytes`.
    pub sha256: String,
}

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUser {
    /// Store id.
    pub id: UserId,
    /// The fields a sync maintains.
    pub fields: UserFields,
    /// Where the user came from.
    pub source: UserSource,
    /// Hex SHA-256 of the avatar, when there is one (the bytes are read separately).
    pub avatar_sha256: Option<String>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// What the last sync wrote it from, when known.
    pub mapped: Option<MappedDigest>,
}

/// The fields of a user that a sync writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserFields {
    /// Login name, unique within the tenant.
    pub username: String,
    /// Email address.
    pub email: Option<String>,
    /// Display name.
    pub display_name: Option<String>,
    /// Language tag.
    pub language: Option<String>,
    /// Whether the user may log in.
    pub active: bool,
    /// Stable directory identifier, unique within the tenant.
    pub ldap_id: Option<String>,
    /// The entry's DN at the last sync.
    pub ldap_dn: Option<String>,
    /// ABAC attributes.
    pub attributes: AbacAttributes,
}

/// The values of one ABAC key that a change adds and removes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeChange {
    /// The ABAC key.
    pub key: String,
    /// Values added.
    pub added: BTreeSet<String>,
    /// Values removed.
    pub removed: BTreeSet<String>,
}

/// What happens to an avatar in an update.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum AvatarChange {
    /// Leave it as it is (avatars not synced, or unchanged).
    #[default]
    Keep,
    /// Replace it.
    Set(Avatar),
    /// Remove it.
    Clear,
}

/// A digest of what a sync wrote a user from: the plugin's decision for the entry,
/// its DN and its avatar (see `sync::diff::mapped_digest`). Stored with the user; a
/// later sync with the same digest knows the user is unchanged without loading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MappedDigest(pub [u8; 16]);

/// One write the sync engine asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// A new directory user.
    Create {
        /// Its fields.
        fields: UserFields,
        /// Its avatar.
        avatar: Option<Avatar>,
        /// What the sync wrote it from.
        mapped: Option<MappedDigest>,
    },
    /// New values for an existing user: `fields` replaces the stored fields, and
    /// `attribute_changes` (computed by the caller against the stored user) are what
    /// the audit trail records and what the attribute rows get.
    Update {
        /// The user.
        id: UserId,
        /// The complete new fields.
        fields: UserFields,
        /// The ABAC difference from the stored user.
        attribute_changes: Vec<AttributeChange>,
        /// The avatar.
        avatar: AvatarChange,
        /// What the sync wrote it from; `None` forgets the stored digest. An update
        /// that changes nothing else only records this.
        mapped: Option<MappedDigest>,
    },
    /// The user may no longer log in (ABAC attributes kept).
    Deactivate {
        /// The user.
        id: UserId,
    },
    /// The user is removed with its attributes (audit events stay).
    Delete {
        /// The user.
        id: UserId,
    },
}

/// Why changes are made; recorded in each audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeCause {
    /// E.g. `sync:full`, `sync:targeted`, `api`.
    pub cause: String,
    /// The sync run or task that made the change, when there is one.
    pub run_id: Option<String>,
    /// When.
    pub at: Timestamp,
}

/// How much history a tenant keeps ([`super::UserStore::prune_history`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Audit events from before this time go; `None` keeps them for ever.
    pub events_before: Option<Timestamp>,
    /// Audit events kept, the newest.
    pub max_events: u64,
    /// Sync run records kept, the newest.
    pub max_runs: u64,
}

/// What an ABAC set takes by the quotas' measure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Values, all keys together.
    pub values: u64,
    /// Each pair's key bytes plus its value's.
    pub bytes: u64,
}

impl Footprint {
    /// The footprint of `attributes`.
    pub fn of(attributes: &AbacAttributes) -> Self {
        let mut footprint = Self::default();
        for (key, values) in attributes {
            footprint.add(key, values);
        }
        footprint
    }

    /// Adds the pairs of `key` with each of `values`.
    pub fn add<'a>(&mut self, key: &str, values: impl IntoIterator<Item = &'a String>) {
        for value in values {
            self.values += 1;
            self.bytes += (key.len() + value.len()) as u64;
        }
    }
}

/// A directory user's short form ([`super::UserStore::ldap_user_index`],
/// [`super::UserStore::known_by_ldap_ids`]): enough to find users no longer in the
/// directory, and to tell an unchanged user from one to load and compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdapUserRef {
    /// Store id.
    pub id: UserId,
    /// Directory id.
    pub ldap_id: String,
    /// Login name.
    pub username: String,
    /// Active flag.
    pub active: bool,
    /// What the last sync wrote it from; `None` when unknown.
    pub mapped: Option<MappedDigest>,
}

/// Ways to name users in a targeted sync (`abac/users/sync`): a user matches if any
/// list names it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UserIdentifiers {
    /// Usernames.
    pub usernames: Vec<String>,
    /// Store ids (as strings, as the API receives them).
    pub ids: Vec<String>,
    /// Email addresses (case-insensitive).
    pub emails: Vec<String>,
    /// Directory ids.
    pub ldap_ids: Vec<String>,
}

/// A filter for [`super::UserStore::list_users`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserQuery {
    /// Users having this ABAC key…
    pub attribute_key: Option<String>,
    /// …with this value (needs `attribute_key`).
    pub attribute_value: Option<String>,
    /// Active or inactive users only.
    pub active: Option<bool>,
    /// Username, email or display name contains this (case-insensitive).
    pub search: Option<String>,
    /// Ids greater than this (keyset pagination).
    pub after: Option<UserId>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<u32>,
}

/// What an audit event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditKind {
    /// User created.
    Created,
    /// Profile fields (username, email, display name, language, DN) changed.
    Updated,
    /// ABAC values of one key added or removed.
    Attribute,
    /// Deactivated.
    Deactivated,
    /// Reactivated.
    Reactivated,
    /// Deleted.
    Deleted,
}

impl AuditKind {
    /// Name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Created => "created",
            AuditKind::Updated => "updated",
            AuditKind::Attribute => "attribute",
            AuditKind::Deactivated => "deactivated",
            AuditKind::Reactivated => "reactivated",
            AuditKind::Deleted => "deleted",
        }
    }
}

/// One audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// Event id (increasing).
    pub id: i64,
    /// The user (may no longer exist).
    pub user_id: UserId,
    /// The username at the time.
    pub username: String,
    /// What happened.
    pub kind: AuditKind,
    /// The ABAC key, for [`AuditKind::Attribute`].
    pub key: Option<String>,
    /// Values added.
    pub added: Vec<String>,
    /// Values removed.
    pub removed: Vec<String>,
    /// A created user's ABAC values (for [`AuditKind::Created`]; `None` on other kinds
    /// and on creations recorded before the values moved into this event, whose
    /// values are in the `Attribute` events after it).
    pub attributes: Option<AbacAttributes>,
    /// Why.
    pub cause: ChangeCause,
}

/// A filter for [`super::UserStore::audit_events`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// One user's events only.
    pub user_id: Option<UserId>,
    /// Events of one ABAC key only.
    pub key: Option<String>,
    /// Ids lower than this (keyset pagination, newest first).
    pub before: Option<i64>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<u32>,
}

/// Per-tenant sync state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncState {
    /// Incremental syncs read entries changed at or after this mark (the directory's
    /// own value: a generalized time or a USN).
    pub high_water_mark: Option<String>,
    /// The server the mark was taken on, when marks are a server's own (Active
    /// Directory's USNs, per `invocationId`).
    pub mark_origin: Option<String>,
    /// The RFC 4533 cookie incremental syncs continue from (instead of the mark).
    pub sync_cookie: Option<Vec<u8>>,
    /// End of the last successful full sync.
    pub last_full_sync_at: Option<Timestamp>,
    /// End of the last successful sync of any mode.
    pub last_success_at: Option<Timestamp>,
}

/// A sync run, as recorded in the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRunRecord {
    /// Run id (assigned by the engine, e.g. a task id).
    pub run_id: String,
    /// `full`, `incremental` or `targeted`.
    pub mode: String,
    /// Whether it was a dry run.
    pub dry_run: bool,
    /// Start.
    pub started_at: Timestamp,
    /// End.
    pub finished_at: Timestamp,
    /// `succeeded`, `failed`, `refused` or `cancelled`.
    pub outcome: String,
    /// The run's summary as JSON (counts, error).
    pub summary: String,
}
