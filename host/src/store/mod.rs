//! The user store: users with their ABAC attributes, the audit trail of attribute
//! changes, and per-tenant sync state, behind a narrow tenant-scoped trait so the sync
//! engine can be tested without a database and a PostgreSQL backend can follow.
//!
//! [`SqliteStore`] is the embedded default: one file, WAL, migrations in
//! `host/migrations/`. Every method is blocking (the sync engine calls them from
//! `spawn_blocking`); each [`UserStore::apply`] is one transaction.

mod accounts;
mod catalog;
#[cfg(test)]
pub(crate) mod conformance;
mod model;
mod postgres;
pub(crate) mod rows;
mod sqlite;
mod tasks;
#[cfg(test)]
pub(crate) mod testing;

pub use accounts::*;
pub use catalog::*;
pub use model::*;
pub use postgres::{DEFAULT_MAX_CONNECTIONS, PostgresOptions, PostgresStore};
pub use sqlite::SqliteStore;
pub use tasks::*;

use crate::plugin::model::{AbacAttributes, TenantId};

/// The key stored for a tenant: the `u64` reinterpreted as `i64`, so that every tenant
/// id has exactly one key, distinct from every other's (both backends store it so).
pub(crate) fn tenant_key(tenant: TenantId) -> i64 {
    i64::from_ne_bytes(tenant.to_ne_bytes())
}

/// The tenant of a stored key: the inverse of [`tenant_key`].
pub(crate) fn tenant_from_key(key: i64) -> TenantId {
    u64::from_ne_bytes(key.to_ne_bytes())
}

/// A JSON object of `attributes`' keys that have values, each with its values as an
/// array: a user's set as its row (`users.attributes`) and its `created` event keep it.
pub(crate) fn json_attributes(attributes: &AbacAttributes) -> Result<String, StoreError> {
    struct WithValues<'a>(&'a AbacAttributes);
    impl serde::Serialize for WithValues<'_> {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.collect_map(self.0.iter().filter(|(_, values)| !values.is_empty()))
        }
    }
    serde_json::to_string(&WithValues(attributes)).map_err(|err| {
        StoreError::Database(DatabaseError::new(
            DatabaseErrorKind::Encoding,
            format!("cannot encode ABAC attributes: {err}"),
        ))
    })
}

/// ABAC values written by [`json_attributes`], read back from a column of `table`.
pub(crate) fn parse_attributes(
    json: &str,
    table: &'static str,
) -> Result<AbacAttributes, StoreError> {
    serde_json::from_str(json).map_err(|err| StoreError::Corrupt {
        table,
        column: "attributes",
        reason: format!("not a JSON object of string arrays: {err}"),
    })
}

/// Everything a backend implements: the store `abacsync serve` and `abacsync sync`
/// run on, whichever backend it is.
pub trait Store: UserStore + TaskStore + CatalogStore + AccountStore {}
impl<T: UserStore + TaskStore + CatalogStore + AccountStore> Store for T {}

/// Where the store is, and so which backend.
#[derive(Debug, Clone)]
pub enum StoreLocation {
    /// An SQLite file (the embedded default).
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL database, shared by replicas.
    Postgres(PostgresOptions),
}

impl StoreLocation {
    /// Whether `spec` names a PostgreSQL database rather than a file.
    pub fn is_postgres_url(spec: &str) -> bool {
        spec.starts_with("postgres://") || spec.starts_with("postgresql://")
    }
}

impl std::fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreLocation::Sqlite(path) => write!(f, "{}", path.display()),
            StoreLocation::Postgres(options) => f.write_str(&postgres::redact(&options.url)),
        }
    }
}

/// Opens (and migrates) the store at `location`.
///
/// # Errors
/// As [`SqliteStore::open`] and [`PostgresStore::open`].
pub fn open(location: &StoreLocation) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    Ok(match location {
        StoreLocation::Sqlite(path) => std::sync::Arc::new(SqliteStore::open(path)?),
        StoreLocation::Postgres(options) => std::sync::Arc::new(PostgresStore::open(options)?),
    })
}

/// Errors of the user store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be opened, created or connected to.
    #[error("cannot open the user store at {location}: {cause}")]
    Open {
        /// Where: the database file, or the server (without its password).
        location: String,
        /// Why.
        cause: DatabaseError,
    },
    /// A migration failed; the store is left at the previous version.
    #[error("cannot migrate the user store to version {version}: {cause}")]
    Migration {
        /// The migration that failed.
        version: u32,
        /// Why.
        cause: DatabaseError,
    },
    /// The database was written by a newer abacsync.
    #[error(
        "the user store is at schema version {found}, newer than this abacsync knows ({known}); upgrade abacsync"
    )]
    TooNew {
        /// Version in the file.
        found: u32,
        /// Newest version this build knows.
        known: u32,
    },
    /// A blocking store call panicked (a bug; reported, not propagated).
    #[error("user store: internal error: {0}")]
    Panicked(String),
    /// A tenant's quota would be passed; nothing was written.
    #[error("{message} (quotas.{quota})")]
    OverQuota {
        /// The quota's name in `[quotas]`.
        quota: &'static str,
        /// What would pass it.
        message: String,
    },
    /// The account already has a personal access token of that name.
    #[error("a token named `{0}` already exists")]
    TokenExists(String),
    /// An account name is taken.
    #[error("account `{0}` already exists")]
    AccountExists(String),
    /// A username or LDAP id is already taken by another user of the tenant.
    #[error("tenant {tenant}: {field} `{value}` is already used by user {existing}")]
    Conflict {
        /// The tenant.
        tenant: TenantId,
        /// `username` or `ldap_id`.
        field: &'static str,
        /// The value.
        value: String,
        /// The user holding it.
        existing: UserId,
    },
    /// A change names a user that does not exist in the tenant.
    #[error("tenant {tenant}: no user {id}")]
    NoSuchUser {
        /// The tenant.
        tenant: TenantId,
        /// The user.
        id: UserId,
    },
    /// Any other database error.
    #[error("user store: {0}")]
    Database(DatabaseError),
    /// A stored value cannot be decoded (corrupt or hand-edited database).
    #[error("user store: corrupt value in {table}.{column}: {reason}")]
    Corrupt {
        /// Table.
        table: &'static str,
        /// Column.
        column: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl StoreError {
    /// Why the store cannot write when the cause is its storage (full) rather than the
    /// request: the operator's to fix, and safe to tell a client. (A store that cannot
    /// be written at all is refused when it is opened.)
    pub fn unwritable(&self) -> Option<&'static str> {
        match self {
            StoreError::Database(cause)
            | StoreError::Open { cause, .. }
            | StoreError::Migration { cause, .. }
                if cause.kind == DatabaseErrorKind::Full =>
            {
                Some("the data directory is full")
            }
            _ => None,
        }
    }
}

/// A database failure in the store's own terms: what kind of failure, and the
/// backend's message. No backend's error type crosses the store's seam.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct DatabaseError {
    /// What kind of failure.
    pub kind: DatabaseErrorKind,
    /// The backend's words.
    pub message: String,
}

impl DatabaseError {
    /// A failure of `kind` with `message`.
    pub fn new(kind: DatabaseErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// Kinds of database failure callers may act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseErrorKind {
    /// The storage is full.
    Full,
    /// Another writer holds the database (or a lock) too long.
    Busy,
    /// The database cannot be reached, or the connection was lost.
    Unavailable,
    /// A stored value or the schema is not what this abacsync expects.
    Corrupt,
    /// A value could not be encoded for the database.
    Encoding,
    /// Anything else.
    Other,
}

/// The store as the sync engine and the API see it. Every method is scoped to one
/// tenant: no method reads or writes another tenant's rows.
pub trait UserStore: Send + Sync {
    /// Users of `tenant` whose LDAP id is one of `ldap_ids` (one query per call).
    fn users_by_ldap_ids(
        &self,
        tenant: TenantId,
        ldap_ids: &[String],
    ) -> Result<Vec<StoredUser>, StoreError>;

    /// Briefly, the users of `tenant` whose LDAP id is one of `ldap_ids` (one query per
    /// call, no attributes): how a sync tells unchanged users from the rest.
    fn known_by_ldap_ids(
        &self,
        tenant: TenantId,
        ldap_ids: &[String],
    ) -> Result<Vec<LdapUserRef>, StoreError>;

    /// Users of `tenant` whose username is one of `usernames` (case-sensitive).
    fn users_by_usernames(
        &self,
        tenant: TenantId,
        usernames: &[String],
    ) -> Result<Vec<StoredUser>, StoreError>;

    /// The avatar of a user of `tenant`, when it has one.
    fn avatar(&self, tenant: TenantId, id: UserId) -> Result<Option<Avatar>, StoreError>;

    /// Users of `tenant` matching any of the identifiers (targeted syncs).
    fn find_users(
        &self,
        tenant: TenantId,
        identifiers: &UserIdentifiers,
    ) -> Result<Vec<StoredUser>, StoreError>;

    /// Up to `limit` directory-sourced users of `tenant` with ids above `after`, in
    /// the order of their ids, briefly: what a full sync reads, page by page, to find
    /// users no longer in the directory.
    fn ldap_user_page(
        &self,
        tenant: TenantId,
        after: UserId,
        limit: u32,
    ) -> Result<Vec<LdapUserRef>, StoreError>;

    /// Every directory-sourced user of `tenant`, briefly (all the pages of
    /// [`UserStore::ldap_user_page`]).
    fn ldap_user_index(&self, tenant: TenantId) -> Result<Vec<LdapUserRef>, StoreError> {
        let mut index = Vec::new();
        let mut after = UserId(i64::MIN);
        loop {
            let page = self.ldap_user_page(tenant, after, 10_000)?;
            match page.last() {
                Some(last) => after = last.id,
                None => return Ok(index),
            }
            index.extend(page);
        }
    }

    /// One user.
    fn user(&self, tenant: TenantId, id: UserId) -> Result<Option<StoredUser>, StoreError>;

    /// Users matching `query`, ordered by id.
    fn list_users(
        &self,
        tenant: TenantId,
        query: &UserQuery,
    ) -> Result<Vec<StoredUser>, StoreError>;

    /// Number of users of the tenant (all sources, active or not).
    fn count_users(&self, tenant: TenantId) -> Result<u64, StoreError>;

    /// Number of the tenant's directory-sourced users, active or not: the users of
    /// [`UserStore::ldap_user_index`], counted without reading them (the removal
    /// threshold of a sync that is told its deletions).
    fn count_ldap_users(&self, tenant: TenantId) -> Result<u64, StoreError>;

    /// Applies `changes` in one transaction, with an audit event for each ABAC value
    /// change and each lifecycle change; either all apply or none.
    fn apply(
        &self,
        tenant: TenantId,
        changes: &[Change],
        cause: &ChangeCause,
    ) -> Result<Vec<UserId>, StoreError>;

    /// How many [`apply`](Self::apply) calls a sync may usefully run at once, each on
    /// its own batch: 1 where writers take turns (SQLite has one writer), more where
    /// each transaction has its own server process to write with.
    fn concurrent_applies(&self) -> usize {
        1
    }

    /// Audit events of the tenant, newest first.
    fn audit_events(
        &self,
        tenant: TenantId,
        query: &AuditQuery,
    ) -> Result<Vec<AuditEvent>, StoreError>;

    /// The tenant's sync state (high-water mark of incremental syncs, last runs).
    fn sync_state(&self, tenant: TenantId) -> Result<SyncState, StoreError>;

    /// Replaces the tenant's sync state.
    fn set_sync_state(&self, tenant: TenantId, state: &SyncState) -> Result<(), StoreError>;

    /// Records a finished (or failed) sync run; returns its id.
    fn record_sync_run(&self, tenant: TenantId, run: &SyncRunRecord) -> Result<i64, StoreError>;

    /// The tenant's most recent sync runs, newest first.
    fn sync_runs(&self, tenant: TenantId, limit: u32) -> Result<Vec<SyncRunRecord>, StoreError>;

    /// Attribute bytes ([`Footprint`]) the tenant's users hold together, kept by every
    /// [`UserStore::apply`] (one read, no scan).
    fn attribute_bytes(&self, tenant: TenantId) -> Result<u64, StoreError>;

    /// Removes the tenant's audit events and run records beyond `limits`, oldest
    /// first, in bounded steps; the number of audit events removed.
    fn prune_history(&self, tenant: TenantId, limits: &HistoryLimits) -> Result<u64, StoreError>;
}
