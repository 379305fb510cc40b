//! `[store]`: where the store is. An SQLite file by default (`data_dir/abacsync.db`);
//! a `postgres://` URL for several replicas sharing one database.
//!
//! ```toml
//! [store]
//! url = "postgres://abacsync@db.example.org:5432/abacsync"
//! password_file = "/run/secrets/abacsync-db"   # or password_env = "ABACSYNC_DB_PASSWORD"
//! max_connections = 16                          # per replica
//! ca_file = "/etc/ssl/db-ca.pem"                # with ?sslmode=verify-full: the CA to trust
//! ```
//!
//! `--store` (or `ABACSYNC_STORE_URL`) overrides `url`. The password may also be in
//! the URL, though a file or the environment keeps it out of process listings and
//! of the file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::store::{DEFAULT_MAX_CONNECTIONS, PostgresOptions, StoreLocation};

/// The `[store]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// A `postgres://…` URL, or the path of an SQLite file; default: `abacsync.db` in
    /// `data_dir`.
    pub url: Option<String>,
    /// A file holding the PostgreSQL password (its first line).
    pub password_file: Option<PathBuf>,
    /// An environment variable holding the PostgreSQL password.
    pub password_env: Option<String>,
    /// Connections each replica opens at most (PostgreSQL).
    pub max_connections: usize,
    /// The CA (PEM) the server's certificate must chain to when the URL asks for TLS
    /// (`sslmode=verify-full`); the system's roots without one. `sslrootcert` in the
    /// URL wins.
    pub ca_file: Option<PathBuf>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: None,
            password_file: None,
            password_env: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            ca_file: None,
        }
    }
}

impl StoreConfig {
    /// Checks what can be checked without reading secrets.
    pub(super) fn validate(&self) -> Result<(), String> {
        if self.password_file.is_some() && self.password_env.is_some() {
            return Err("[store]: set only one of password_file and password_env".into());
        }
        if self.max_connections == 0 {
            return Err("[store]: max_connections must be at least 1".into());
        }
        Ok(())
    }

    /// Makes a relative SQLite path and the password file relative to `base`.
    pub(super) fn resolve_paths(&mut self, base: &Path) {
        if let Some(url) = &mut self.url
            && !StoreLocation::is_postgres_url(url)
            && Path::new(url.as_str()).is_relative()
        {
            *url = base.join(url.as_str()).display().to_string();
        }
        for file in [&mut self.password_file, &mut self.ca_file]
            .into_iter()
            .flatten()
        {
            if file.is_relative() {
                *file = base.join(&*file);
            }
        }
    }

    /// Where the store is: `given` (the command line's `--store`) over `url`, over the
    /// default file in `data_dir`.
    ///
    /// # Errors
    /// When the PostgreSQL password's file or variable cannot be read.
    pub fn location(&self, given: Option<&str>, data_dir: &Path) -> Result<StoreLocation, String> {
        let spec = given.or(self.url.as_deref());
        let Some(spec) = spec.filter(|spec| !spec.is_empty()) else {
            return Ok(StoreLocation::Sqlite(data_dir.join("abacsync.db")));
        };
        if !StoreLocation::is_postgres_url(spec) {
            return Ok(StoreLocation::Sqlite(PathBuf::from(spec)));
        }
        Ok(StoreLocation::Postgres(PostgresOptions {
            url: spec.to_owned(),
            password: self.password()?,
            max_connections: self.max_connections,
            ca_file: self.ca_file.clone(),
        }))
    }

    fn password(&self) -> Result<Option<String>, String> {
        if let Some(file) = &self.password_file {
            let text = std::fs::read_to_string(file).map_err(|err| {
                format!(
                    "cannot read the store's password from file {}: {err}",
                    file.display()
                )
            })?;
            return Ok(Some(text.lines().next().unwrap_or_default().to_owned()));
        }
        if let Some(name) = &self.password_env {
            let value = std::env::var(name).map_err(|err| {
                format!("cannot read the store's password from environment variable {name}: {err}")
            })?;
            return Ok(Some(value));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_the_file_in_the_data_dir() {
        let config = StoreConfig::default();
        let location = config
            .location(None, Path::new("/var/lib/abacsync"))
            .unwrap();
        assert!(
            matches!(&location, StoreLocation::Sqlite(path) if path == Path::new("/var/lib/abacsync/abacsync.db"))
        );
    }

    #[test]
    fn the_command_line_wins_and_a_url_names_postgres() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("password");
        std::fs::write(&secret, "s3cret\n").unwrap();
        let config = StoreConfig {
            url: Some("/srv/other.db".into()),
            password_file: Some(secret),
            ..StoreConfig::default()
        };
        let location = config
            .location(Some("postgres://abacsync@db:5432/abacsync"), dir.path())
            .unwrap();
        let StoreLocation::Postgres(options) = location else {
            panic!("not PostgreSQL: {location}");
        };
        assert_eq!(options.password.as_deref(), Some("s3cret"));
        assert_eq!(options.max_connections, DEFAULT_MAX_CONNECTIONS);
        let file = config.location(None, dir.path()).unwrap();
        assert!(matches!(file, StoreLocation::Sqlite(path) if path == Path::new("/srv/other.db")));
    }

    #[test]
    fn an_unreadable_password_is_named() {
        let config = StoreConfig {
            password_env: Some("ABACSYNC_TEST_NO_SUCH_VARIABLE".into()),
            ..StoreConfig::default()
        };
        let err = config
            .location(Some("postgresql://db/abacsync"), Path::new("."))
            .unwrap_err();
        assert!(err.contains("ABACSYNC_TEST_NO_SUCH_VARIABLE"), "{err}");
    }

    #[test]
    fn shown_without_the_password() {
        let location = StoreLocation::Postgres(PostgresOptions {
            url: "postgres://abacsync:hunter2@db:5432/abacsync?sslmode=disable".into(),
            password: None,
            max_connections: 1,
            ca_file: None,
        });
        assert_eq!(location.to_string(), "postgres://abacsync@db:5432/abacsync");
    }
}
