//! A tenant's directory: servers, TLS, bind, base and filters, paging and timeouts,
//! identifiers, change tracking and groups (`[tenant.ldap]`).

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

use super::{ConfigError, DEFAULT_UNIQUE_IDENTIFIERS, yes};
use crate::plugin::model::TenantId;

/// How the connection is secured. There is never a silent fallback to plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// No TLS (only for loopback and tests).
    Plain,
    /// StartTLS on an `ldap://` connection; refused if the server cannot.
    #[default]
    #[serde(rename = "starttls")]
    StartTls,
    /// TLS from the first byte, `ldaps://`.
    Ldaps,
}

impl TlsMode {
    /// Name as in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Plain => "plain",
            TlsMode::StartTls => "starttls",
            TlsMode::Ldaps => "ldaps",
        }
    }
}

/// Search scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SearchScope {
    /// The base entry only.
    Base,
    /// The base's children.
    One,
    /// The base and everything below.
    #[default]
    Sub,
}

/// Where group memberships come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum GroupMode {
    /// From each user's `memberOf` (OpenLDAP's memberof overlay, Active Directory).
    #[default]
    MemberOf,
    /// Groups are read once per sync and nesting is resolved in memory.
    Search,
    /// Entries carry no groups.
    None,
}

/// Group membership settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// Where groups come from.
    #[serde(default)]
    pub mode: GroupMode,
    /// Where to search for groups (mode `search`).
    #[serde(default)]
    pub base_dn: Option<String>,
    /// Which entries are groups.
    #[serde(default = "default_group_filter")]
    pub filter: String,
    /// The attribute listing a group's members (DNs).
    #[serde(default = "default_member_attribute")]
    pub member_attribute: String,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            mode: GroupMode::default(),
            base_dn: None,
            filter: default_group_filter(),
            member_attribute: default_member_attribute(),
        }
    }
}

fn default_group_filter() -> String {
    "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=group))".into()
}

fn default_member_attribute() -> String {
    "member".into()
}

/// A tenant's directory.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    /// Server URIs, tried in order.
    pub servers: Vec<String>,
    /// How the connection is secured (default StartTLS).
    #[serde(default)]
    pub tls: TlsMode,
    /// PEM file of the CA certificates to trust (default: the system's).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Bind DN; anonymous when absent.
    #[serde(default)]
    pub bind_dn: Option<String>,
    /// Bind password, inline.
    #[serde(default)]
    pub bind_password: Option<String>,
    /// Bind password, from a file (trailing newline ignored).
    #[serde(default)]
    pub bind_password_file: Option<PathBuf>,
    /// Bind password, from an environment variable.
    #[serde(default)]
    pub bind_password_env: Option<String>,
    /// Where users are searched.
    pub base_dn: String,
    /// Which entries are users.
    #[serde(default = "default_user_filter")]
    pub user_filter: String,
    /// Search scope.
    #[serde(default)]
    pub scope: SearchScope,
    /// Entries per page (RFC 2696).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Seconds to wait for a connection.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// Seconds to wait for each answer (bind, each page).
    #[serde(default = "default_operation_timeout")]
    pub operation_timeout_secs: u64,
    /// Attributes whose value identifies an entry for life, in order of preference.
    #[serde(default = "default_unique_identifiers")]
    pub unique_identifiers: Vec<String>,
    /// Attributes always read as bytes, beyond the built-in list (objectGUID, jpegPhoto…).
    #[serde(default)]
    pub binary_attributes: Vec<String>,
    /// The attribute incremental syncs compare (`modifyTimestamp`; `uSNChanged` on AD).
    #[serde(default = "default_change_attribute")]
    pub change_attribute: String,
    /// Whether continuation references (parts of the base held by other servers,
    /// never followed) may be ignored. By default a full sync that gets any removes
    /// nobody: users held elsewhere would look removed. Set it when the referred
    /// parts hold no users (e.g. Active Directory's DNS partitions under a domain root).
    #[serde(default)]
    pub ignore_referrals: bool,
    /// Whether incremental syncs use RFC 4533 content synchronization (syncrepl,
    /// refreshOnly) where the server offers it (OpenLDAP's `syncprov` overlay): they
    /// then see deletions, which a read by change attribute cannot. Matching a deleted
    /// entry to its user needs the plugin's `ldap_id` to be the entry's `entryUUID`.
    #[serde(default = "yes")]
    pub content_sync: bool,
    /// Whether `abacsync serve` keeps a persistent search (RFC 4533 refreshAndPersist)
    /// open on the directory and syncs each change as it arrives, within a second. Needs
    /// content synchronization; one replica watches a tenant at a time.
    #[serde(default)]
    pub watch: bool,
    /// Attributes a search of the directory (grommunio's `ldap/search`) matches its
    /// query against, as a substring.
    #[serde(default = "default_search_attributes")]
    pub search_attributes: Vec<String>,
    /// Group memberships.
    #[serde(default)]
    pub groups: GroupConfig,
}

fn default_user_filter() -> String {
    "(|(objectClass=inetOrgPerson)(&(objectCategory=person)(objectClass=user)))".into()
}
fn default_page_size() -> u32 {
    500
}
fn default_connect_timeout() -> u64 {
    10
}
fn default_operation_timeout() -> u64 {
    120
}
fn default_unique_identifiers() -> Vec<String> {
    DEFAULT_UNIQUE_IDENTIFIERS
        .iter()
        .map(|name| (*name).to_owned())
        .collect()
}
fn default_change_attribute() -> String {
    "modifyTimestamp".into()
}
fn default_search_attributes() -> Vec<String> {
    [
        "uid",
        "cn",
        "displayName",
        "mail",
        "sAMAccountName",
        "userPrincipalName",
    ]
    .iter()
    .map(|name| (*name).to_owned())
    .collect()
}

impl LdapConfig {
    /// Connection timeout.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }

    /// Timeout of each operation.
    pub fn operation_timeout(&self) -> Duration {
        Duration::from_secs(self.operation_timeout_secs)
    }

    /// The bind password from wherever it is configured; `None` for anonymous binds.
    pub fn bind_password(&self, tenant: TenantId) -> Result<Option<String>, ConfigError> {
        if let Some(password) = &self.bind_password {
            return Ok(Some(password.clone()));
        }
        if let Some(file) = &self.bind_password_file {
            let text = std::fs::read_to_string(file).map_err(|err| ConfigError::Secret {
                tenant,
                from: format!("file {}", file.display()),
                reason: err.to_string(),
            })?;
            return Ok(Some(text.trim_end_matches(['\r', '\n']).to_owned()));
        }
        if let Some(name) = &self.bind_password_env {
            let value = std::env::var(name).map_err(|err| ConfigError::Secret {
                tenant,
                from: format!("environment variable {name}"),
                reason: err.to_string(),
            })?;
            return Ok(Some(value));
        }
        Ok(None)
    }
}
