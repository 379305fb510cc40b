//! Tenants and their settings, read from a TOML file.
//!
//! ```toml
//! [[tenant]]
//! id = 1
//! name = "example"
//! plugin = { path = "target/wasm-plugins/openldap_mapping.wasm", settings = { "abac.prefix" = "" } }
//!
//! [tenant.ldap]
//! servers = ["ldap://127.0.0.1:389"]
//! bind_dn = "cn=admin,dc=example,dc=org"
//! bind_password_env = "LDAP_PASSWORD"
//! base_dn = "ou=people,dc=example,dc=org"
//! ```
//!
//! Every field but `id`, `plugin` and the connection basics has a default that errs on
//! the safe side: TLS certificates are verified, removals deactivate rather than
//! delete and stop at a threshold, and unknown keys are errors (a typo never silently
//! turns a setting off).

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::plugin::model::TenantId;

mod ldap;
mod store;
pub use ldap::{GroupConfig, GroupMode, LdapConfig, SearchScope, TlsMode};
pub use store::StoreConfig;

/// Rocket.Chat's default unique-identifier attributes, plus OpenLDAP's `entryUUID`.
pub const DEFAULT_UNIQUE_IDENTIFIERS: &[&str] = &[
    "objectGUID",
    "ibm-entryUUID",
    "GUID",
    "dominoUNID",
    "nsuniqueId",
    "uidNumber",
    "entryUUID",
];

/// A configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {cause}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// The file is not valid TOML or does not match the expected shape.
    #[error("{path}: {cause}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column.
        cause: Box<toml::de::Error>,
    },
    /// A value is out of range or inconsistent.
    #[error("{path}: tenant {tenant}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The tenant concerned.
        tenant: TenantId,
        /// What is wrong.
        reason: String,
    },
    /// A setting outside the tenants is out of range.
    #[error("{path}: {reason}")]
    Settings {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Two tenants share an id.
    #[error("{path}: tenant id {tenant} is used twice")]
    DuplicateTenant {
        /// The file.
        path: PathBuf,
        /// The id.
        tenant: TenantId,
    },
    /// A secret could not be read from its file or environment variable.
    #[error("tenant {tenant}: cannot read the bind password from {from}: {reason}")]
    Secret {
        /// The tenant.
        tenant: TenantId,
        /// `file …` or `environment variable …`.
        from: String,
        /// Why.
        reason: String,
    },
}

/// The longest background-sync interval: a year.
pub const MAX_SYNC_INTERVAL_SECS: u64 = 366 * 24 * 3600;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the store and the plugin cache live (default `./data`).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Where a sync keeps the changes and results it has planned but not written yet,
    /// past a few MiB, in unnamed files that go with the sync (default: `data_dir`; not
    /// the temporary folder, which may be memory).
    #[serde(default)]
    pub spill_dir: Option<PathBuf>,
    /// The tenants.
    #[serde(default, rename = "tenant")]
    pub tenants: Vec<TenantConfig>,
    /// `abacsync serve`'s settings.
    #[serde(default)]
    pub server: ServerConfig,
    /// What one tenant may store (`[quotas]`), the same for every tenant.
    #[serde(default)]
    pub quotas: Quotas,
    /// Where the store is (`[store]`).
    #[serde(default)]
    pub store: StoreConfig,
}

/// What one tenant may store and read at once (`[quotas]`): each bound is the same for
/// every tenant, so that no tenant's plugin or admin can fill the shared store.
///
/// "Attribute bytes" count each ABAC pair as its key's bytes plus its value's, the
/// same measure everywhere (per user, per tenant, in the metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Quotas {
    /// ABAC values per user, all keys together (default 1,000). A user over it is not
    /// written: its entry fails with code 413.
    pub user_attribute_values: u64,
    /// Attribute bytes per user (default 64 KiB); likewise 413.
    pub user_attribute_bytes: u64,
    /// Attribute bytes a tenant's users hold together (default 1 GiB). A sync that
    /// would pass it writes nothing and fails, naming the quota.
    pub tenant_attribute_bytes: u64,
    /// Days audit events are kept (default 400; 0 keeps them for ever). Older ones are
    /// removed after each sync.
    pub audit_retention_days: u64,
    /// Audit events kept per tenant, the newest (default 5,000,000).
    pub audit_max_events: u64,
    /// Sync run records kept per tenant, the newest (default 1,000).
    pub sync_runs_kept: u64,
    /// Plugins a tenant's admins may upload (default 20). Unassigned ones can be
    /// deleted to make room.
    pub tenant_plugins: u64,
    /// Bytes of a tenant's uploaded plugins together (default 256 MiB).
    pub tenant_plugin_bytes: u64,
    /// The largest plugin a tenant admin may upload (default 16 MiB; system admins
    /// are bound by the sandbox's 64 MiB).
    pub tenant_plugin_max_bytes: u64,
    /// The largest list answer of the admin API in bytes (default 8 MiB): a page
    /// stops before the item that would pass it and says where to go on.
    pub page_bytes: u64,
}

impl Default for Quotas {
    fn default() -> Self {
        const MIB: u64 = 1 << 20;
        Self {
            user_attribute_values: 1_000,
            user_attribute_bytes: 64 * 1024,
            tenant_attribute_bytes: 1024 * MIB,
            audit_retention_days: 400,
            audit_max_events: 5_000_000,
            sync_runs_kept: 1_000,
            tenant_plugins: 20,
            tenant_plugin_bytes: 256 * MIB,
            tenant_plugin_max_bytes: 16 * MIB,
            page_bytes: 8 * MIB,
        }
    }
}

impl Quotas {
    fn validate(&self) -> Result<(), String> {
        for (name, value) in [
            ("user_attribute_values", self.user_attribute_values),
            ("user_attribute_bytes", self.user_attribute_bytes),
            ("tenant_attribute_bytes", self.tenant_attribute_bytes),
            ("audit_max_events", self.audit_max_events),
            ("sync_runs_kept", self.sync_runs_kept),
            ("tenant_plugin_bytes", self.tenant_plugin_bytes),
            ("tenant_plugin_max_bytes", self.tenant_plugin_max_bytes),
        ] {
            if value == 0 {
                return Err(format!("quotas.{name} must be at least 1"));
            }
        }
        if self.page_bytes < 64 * 1024 {
            return Err("quotas.page_bytes must be at least 65536 (64 KiB)".into());
        }
        Ok(())
    }
}

/// `abacsync serve`'s settings (`[server]`); flags and environment override them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: String,
    /// Hours a login session lasts.
    pub session_hours: u64,
    /// Seconds after a successful two-factor check during which the same session
    /// needs no new code (Rocket.Chat's "remember for"); 0 asks every time.
    pub two_factor_remember_secs: u64,
    /// Failed logins or two-factor codes per account and per client address within
    /// `rate_limit_window_secs` before further attempts are refused.
    pub rate_limit_attempts: usize,
    /// The rate limit's window.
    pub rate_limit_window_secs: u64,
    /// Proxies (addresses or CIDR ranges) whose `X-Forwarded-For` names the client:
    /// the client is the last address in it that is not such a proxy. Empty (the
    /// default): the header is ignored and the peer's address is the client's.
    #[serde(deserialize_with = "proxies")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Seconds running syncs get to finish at shutdown before they are cancelled.
    pub shutdown_grace_secs: u64,
    /// Seconds a task's lease lasts: the replica that queued or runs a task renews
    /// it every quarter of this; a task whose lease ran out (its replica was killed)
    /// is marked interrupted by any replica.
    pub task_lease_secs: u64,
    /// Syncs this replica runs at once (at least 1). Tasks beyond wait queued in the
    /// store, for this replica or another with room: with several replicas, a busy
    /// one's requests are run by the others.
    pub max_concurrent_syncs: usize,
    /// Whether the session cookie is marked `Secure` (set behind HTTPS).
    pub secure_cookies: bool,
    /// The mail server for two-factor codes by email; without it the `email` method is
    /// not offered.
    pub smtp: Option<SmtpConfig>,
}

/// `trusted_proxies`: addresses (`10.0.0.7`) or ranges (`10.0.0.0/8`).
fn proxies<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<ipnet::IpNet>, D::Error> {
    let texts = Vec::<String>::deserialize(deserializer)?;
    texts
        .iter()
        .map(|text| {
            text.parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        "trusted_proxies: {text:?} is neither an address nor a CIDR range"
                    ))
                })
        })
        .collect()
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// STARTTLS, required (the default): no code is ever sent in clear text.
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS: for a relay on loopback only.
    Plain,
}

/// `[server.smtp]`: where two-factor codes are sent from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// The server's host name (checked against its certificate).
    pub host: String,
    /// The port (default 587; 465 for `tls`).
    #[serde(default)]
    pub port: Option<u16>,
    /// How the connection is secured.
    #[serde(default)]
    pub tls: SmtpTls,
    /// User name, when the server wants a login.
    #[serde(default)]
    pub username: Option<String>,
    /// Environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// The sender, e.g. `abacsync <noreply@example.org>`.
    pub from: String,
    /// Seconds an emailed code stays valid (default 600).
    #[serde(default = "default_code_ttl")]
    pub code_ttl_secs: u64,
}

fn default_code_ttl() -> u64 {
    600
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            session_hours: 24 * 7,
            two_factor_remember_secs: 0,
            rate_limit_attempts: 10,
            rate_limit_window_secs: 300,
            trusted_proxies: Vec::new(),
            shutdown_grace_secs: 30,
            task_lease_secs: 60,
            max_concurrent_syncs: 8,
            secure_cookies: false,
            smtp: None,
        }
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}

impl Config {
    /// Reads and checks `path`; relative paths in it are resolved against its folder.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
            path: path.to_owned(),
            cause,
        })?;
        let mut config = Self::parse(&text, path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        Ok(config)
    }

    /// Parses and checks `text`; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|cause| ConfigError::Parse {
            path: path.to_owned(),
            cause: Box::new(cause),
        })?;
        config
            .quotas
            .validate()
            .and_then(|()| config.store.validate())
            .map_err(|reason| ConfigError::Settings {
                path: path.to_owned(),
                reason,
            })?;
        let mut seen = std::collections::BTreeSet::new();
        for tenant in &config.tenants {
            if !seen.insert(tenant.id) {
                return Err(ConfigError::DuplicateTenant {
                    path: path.to_owned(),
                    tenant: tenant.id,
                });
            }
            tenant.validate().map_err(|reason| ConfigError::Invalid {
                path: path.to_owned(),
                tenant: tenant.id,
                reason,
            })?;
        }
        Ok(config)
    }

    /// Where a sync spills its plan ([`Config::spill_dir`]).
    pub fn spill_folder(&self) -> &Path {
        self.spill_dir.as_deref().unwrap_or(&self.data_dir)
    }

    /// The tenant with this id.
    pub fn tenant(&self, id: TenantId) -> Option<&TenantConfig> {
        self.tenants.iter().find(|tenant| tenant.id == id)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        };
        resolve(&mut self.data_dir);
        if let Some(spill) = self.spill_dir.as_mut() {
            resolve(spill);
        }
        self.store.resolve_paths(base);
        for tenant in &mut self.tenants {
            if let Some(path) = tenant.plugin.path.as_mut() {
                resolve(path);
            }
            if let Some(ca) = tenant.ldap.ca_file.as_mut() {
                resolve(ca);
            }
            if let Some(file) = tenant.ldap.bind_password_file.as_mut() {
                resolve(file);
            }
        }
    }
}

/// One tenant.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// Numeric id (grommunio's domainID).
    pub id: TenantId,
    /// A name for people.
    #[serde(default)]
    pub name: String,
    /// Whether LDAP syncs run for this tenant.
    #[serde(default = "yes")]
    pub ldap_enabled: bool,
    /// Whether ABAC attributes are maintained (targeted ABAC syncs need it).
    #[serde(default = "yes")]
    pub abac_enabled: bool,
    /// Whether directory entries without a user become new users.
    #[serde(default = "yes")]
    pub import_new_users: bool,
    /// Language of new users when the plugin sets none.
    #[serde(default)]
    pub default_language: Option<String>,
    /// Whether jpegPhoto / thumbnailPhoto become avatars.
    #[serde(default)]
    pub sync_avatars: bool,
    /// Seconds between background syncs; none when absent.
    #[serde(default)]
    pub sync_interval_secs: Option<u64>,
    /// The directory.
    pub ldap: LdapConfig,
    /// The mapping plugin (a plugin assigned through the API takes precedence).
    #[serde(default)]
    pub plugin: PluginConfig,
    /// What happens to users no longer in the directory.
    #[serde(default)]
    pub removal: RemovalConfig,
}

fn yes() -> bool {
    true
}

impl TenantConfig {
    /// Checks the settings for consistency; says what is wrong.
    ///
    /// # Errors
    /// A message naming the setting at fault.
    pub fn validate(&self) -> Result<(), String> {
        let ldap = &self.ldap;
        if ldap.servers.is_empty() {
            return Err("ldap.servers is empty".into());
        }
        for server in &ldap.servers {
            let scheme = server.split("://").next().unwrap_or_default();
            match (scheme, ldap.tls) {
                ("ldap", TlsMode::Plain | TlsMode::StartTls) | ("ldaps", TlsMode::Ldaps) => {}
                ("ldaps", _) => {
                    return Err(format!(
                        "server {server} is ldaps:// but ldap.tls is {}; set tls = \"ldaps\"",
                        ldap.tls.as_str()
                    ));
                }
                ("ldap", TlsMode::Ldaps) => {
                    return Err(format!(
                        "ldap.tls is ldaps but server {server} is ldap://; use ldaps://"
                    ));
                }
                _ => return Err(format!("server {server}: expected ldap:// or ldaps://")),
            }
        }
        if ldap.page_size == 0 || ldap.page_size > 100_000 {
            return Err(format!(
                "ldap.page_size {} is not in 1..=100000",
                ldap.page_size
            ));
        }
        if ldap.bind_password.is_some() as u8
            + ldap.bind_password_file.is_some() as u8
            + ldap.bind_password_env.is_some() as u8
            > 1
        {
            return Err(
                "set only one of ldap.bind_password, bind_password_file, bind_password_env".into(),
            );
        }
        if ldap.unique_identifiers.is_empty() {
            return Err("ldap.unique_identifiers is empty".into());
        }
        if self
            .sync_interval_secs
            .is_some_and(|secs| secs > MAX_SYNC_INTERVAL_SECS)
        {
            return Err(format!(
                "sync_interval_secs is more than {MAX_SYNC_INTERVAL_SECS} (a year)"
            ));
        }
        if let Some(percent) = self.removal.max_percent
            && !(0.0..=100.0).contains(&percent)
        {
            return Err(format!("removal.max_percent {percent} is not in 0..=100"));
        }
        if let GroupMode::Search = ldap.groups.mode
            && ldap.groups.base_dn.is_none()
        {
            return Err("ldap.groups.mode = \"search\" needs ldap.groups.base_dn".into());
        }
        Ok(())
    }
}

/// The tenant's plugin.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// The component file (none when the plugin is assigned through the API).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Its settings for this tenant.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

/// What happens to users no longer in the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RemovalPolicy {
    /// They can no longer log in; their data stays.
    #[default]
    Deactivate,
    /// They are deleted.
    Delete,
    /// Nothing happens.
    Keep,
}

impl RemovalPolicy {
    /// Name as in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            RemovalPolicy::Deactivate => "deactivate",
            RemovalPolicy::Delete => "delete",
            RemovalPolicy::Keep => "keep",
        }
    }
}

/// Removal policy and its safety threshold.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemovalConfig {
    /// What happens.
    #[serde(default)]
    pub policy: RemovalPolicy,
    /// Refuse to remove more users than this in one sync (unless forced).
    #[serde(default)]
    pub max_count: Option<u64>,
    /// Refuse to remove more than this percentage of the tenant's directory users.
    #[serde(default = "default_max_percent")]
    pub max_percent: Option<f64>,
}

impl Default for RemovalConfig {
    fn default() -> Self {
        Self {
            policy: RemovalPolicy::default(),
            max_count: None,
            max_percent: default_max_percent(),
        }
    }
}

fn default_max_percent() -> Option<f64> {
    Some(10.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [[tenant]]
        id = 7
        plugin = { path = "p.wasm" }
        [tenant.ldap]
        servers = ["ldap://127.0.0.1:389"]
        base_dn = "dc=example,dc=org"
    "#;

    #[test]
    fn minimal_tenant_gets_safe_defaults() {
        let config = Config::parse(MINIMAL, Path::new("t.toml")).unwrap();
        let tenant = config.tenant(7).unwrap();
        assert_eq!(tenant.ldap.tls, TlsMode::StartTls);
        assert_eq!(tenant.removal.policy, RemovalPolicy::Deactivate);
        assert_eq!(tenant.removal.max_percent, Some(10.0));
        assert!(
            tenant
                .ldap
                .unique_identifiers
                .contains(&"entryUUID".to_owned())
        );
        assert_eq!(tenant.ldap.page_size, 500);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let text = MINIMAL.replace("base_dn", "basedn");
        let err = Config::parse(&text, Path::new("t.toml")).unwrap_err();
        assert!(err.to_string().contains("basedn"), "{err}");
    }

    #[test]
    fn ldaps_url_needs_ldaps_mode() {
        let text = MINIMAL.replace("ldap://", "ldaps://");
        let err = Config::parse(&text, Path::new("t.toml")).unwrap_err();
        assert!(err.to_string().contains("tls = \"ldaps\""), "{err}");
    }

    #[test]
    fn duplicate_ids_are_refused() {
        let text = format!("{MINIMAL}\n{MINIMAL}");
        let err = Config::parse(&text, Path::new("t.toml")).unwrap_err();
        assert!(
            matches!(err, ConfigError::DuplicateTenant { tenant: 7, .. }),
            "{err}"
        );
    }

    #[test]
    fn relative_paths_resolve_against_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenants.toml");
        std::fs::write(&path, MINIMAL).unwrap();
        let config = Config::load(&path).unwrap();
        assert_eq!(
            config.tenants[0].plugin.path,
            Some(dir.path().join("p.wasm"))
        );
        assert_eq!(config.data_dir, dir.path().join("data"));
    }
}
