//! The values that cross the plugin boundary, as the host sees them: independent of
//! any one WIT version, validated and normalised (ABAC values are sets).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The numeric id of a tenant.
pub type TenantId = u64;

/// A directory entry as read from LDAP or a fixture file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    /// The distinguished name.
    pub dn: String,
    /// Text attributes, name → values, in the order the directory returned them.
    pub attributes: Vec<(String, Vec<String>)>,
    /// Binary attributes, name → raw values.
    pub binary_attributes: Vec<(String, Vec<Vec<u8>>)>,
    /// Group DNs when known (nested groups resolved); `None` when unknown.
    pub groups: Option<Vec<String>>,
}

impl Entry {
    /// An entry with this DN and nothing else.
    pub fn new(dn: impl Into<String>) -> Self {
        Self {
            dn: dn.into(),
            ..Self::default()
        }
    }

    /// The values of text attribute `name` (case-insensitive), empty when absent.
    pub fn values(&self, name: &str) -> &[String] {
        self.attributes
            .iter()
            .find(|(attr, _)| attr.eq_ignore_ascii_case(name))
            .map_or(&[], |(_, values)| values.as_slice())
    }

    /// The values of binary attribute `name` (case-insensitive), empty when absent.
    pub fn binary_values(&self, name: &str) -> &[Vec<u8>] {
        self.binary_attributes
            .iter()
            .find(|(attr, _)| attr.eq_ignore_ascii_case(name))
            .map_or(&[], |(_, values)| values.as_slice())
    }

    /// Rough size in bytes of the entry's data, for limits and statistics.
    pub fn data_size(&self) -> usize {
        let text: usize = self
            .attributes
            .iter()
            .map(|(name, values)| name.len() + values.iter().map(String::len).sum::<usize>())
            .sum();
        let binary: usize = self
            .binary_attributes
            .iter()
            .map(|(name, values)| name.len() + values.iter().map(Vec::len).sum::<usize>())
            .sum();
        let groups: usize = self.groups.iter().flatten().map(String::len).sum();
        self.dn.len() + text + binary + groups
    }
}

/// Why a sync is running; plugins may behave differently per mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// Every entry is read.
    Full,
    /// Only entries changed since the last successful sync are read.
    Incremental,
    /// Only entries of chosen users are read.
    Targeted,
}

impl SyncMode {
    /// The mode's name as used on the command line and in APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::Full => "full",
            SyncMode::Incremental => "incremental",
            SyncMode::Targeted => "targeted",
        }
    }
}

impl std::str::FromStr for SyncMode {
    type Err = UnknownSyncMode;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "full" => Ok(SyncMode::Full),
            "incremental" => Ok(SyncMode::Incremental),
            "targeted" => Ok(SyncMode::Targeted),
            other => Err(UnknownSyncMode(other.to_owned())),
        }
    }
}

/// A sync mode name that is not `full`, `incremental` or `targeted`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown sync mode `{0}` (expected full, incremental or targeted)")]
pub struct UnknownSyncMode(pub String);

/// What one call is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingContext {
    /// The tenant whose entries are mapped.
    pub tenant_id: TenantId,
    /// The kind of sync.
    pub mode: SyncMode,
    /// The tenant's plugin settings, in order.
    pub settings: Vec<(String, String)>,
}

/// A plugin's name and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// Short name, e.g. `openldap-inetorgperson`.
    pub name: String,
    /// The plugin's own version.
    pub version: String,
}

/// ABAC attributes: key → set of values.
pub type AbacAttributes = BTreeMap<String, BTreeSet<String>>;

/// The user an entry maps to, validated: non-empty username, id and keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedUser {
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
    /// Stable directory identifier.
    pub ldap_id: String,
    /// ABAC attributes.
    pub attributes: AbacAttributes,
}

/// What one entry becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Not a user; the reason.
    Skip {
        /// Why the entry was skipped.
        reason: String,
    },
    /// Create or update this user.
    Upsert(MappedUser),
    /// Deactivate the user with this id.
    Deactivate {
        /// The user's stable directory identifier.
        ldap_id: String,
        /// Why.
        reason: String,
    },
}

/// The kinds of [`MappingError`], as in the WIT `mapping-error` variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MappingErrorKind {
    /// A needed attribute is absent.
    MissingAttribute,
    /// An attribute value cannot be used.
    InvalidAttribute,
    /// The tenant's settings do not suit the plugin.
    InvalidSettings,
    /// The plugin's output broke the contract (empty username, too large, …).
    InvalidOutput,
    /// Anything else the plugin reported.
    Other,
}

impl MappingErrorKind {
    /// The kind's name in JSON and logs (`missing-attribute`).
    pub fn as_str(self) -> &'static str {
        match self {
            MappingErrorKind::MissingAttribute => "missing-attribute",
            MappingErrorKind::InvalidAttribute => "invalid-attribute",
            MappingErrorKind::InvalidSettings => "invalid-settings",
            MappingErrorKind::InvalidOutput => "invalid-output",
            MappingErrorKind::Other => "other",
        }
    }
}

/// An error a plugin reported for an entry or a batch (not a trap: the plugin ran fine).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", kind.as_str())]
pub struct MappingError {
    /// What kind of error.
    pub kind: MappingErrorKind,
    /// The attribute concerned, for the attribute kinds.
    pub attribute: Option<String>,
    /// A sentence for an administrator.
    pub message: String,
}

impl MappingError {
    /// A plugin output that breaks the contract.
    pub fn invalid_output(message: impl Into<String>) -> Self {
        Self {
            kind: MappingErrorKind::InvalidOutput,
            attribute: None,
            message: message.into(),
        }
    }

    /// The entry lacks attribute `name`.
    pub fn missing_attribute(name: String) -> Self {
        Self {
            kind: MappingErrorKind::MissingAttribute,
            message: format!("missing attribute `{name}`"),
            attribute: Some(name),
        }
    }

    /// Attribute `name`'s value cannot be used, for `reason`.
    pub fn invalid_attribute(name: String, reason: &str) -> Self {
        Self {
            kind: MappingErrorKind::InvalidAttribute,
            message: format!("invalid attribute `{name}`: {reason}"),
            attribute: Some(name),
        }
    }

    /// An error of `kind` (settings or other) with the plugin's own message.
    pub fn reported(kind: MappingErrorKind, message: String) -> Self {
        Self {
            kind,
            attribute: None,
            message,
        }
    }
}

/// The result for one entry of a batch.
pub type EntryOutcome = Result<Decision, MappingError>;

/// The ids a decision names, read before (or without) decoding all of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecisionIds {
    /// An upsert of this user.
    Upsert {
        /// Its directory id.
        ldap_id: String,
        /// Its username.
        username: String,
    },
    /// A deactivation.
    Deactivate {
        /// The directory id.
        ldap_id: String,
    },
}

impl fmt::Display for SyncMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Severity of a message a plugin logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Very detailed.
    Trace,
    /// For plugin authors.
    Debug,
    /// Normal operation.
    Info,
    /// Something an administrator should look at.
    Warn,
    /// Something failed.
    Error,
}

impl LogLevel {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// One message a plugin logged during a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestLog {
    /// Severity.
    pub level: LogLevel,
    /// The message, as the plugin wrote it.
    pub message: String,
}
