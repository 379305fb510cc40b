//! [`PostgresStore`]: the store on a PostgreSQL server, for several `abacsync serve`
//! replicas sharing one database.
//!
//! The driver is `tokio-postgres` (native protocol, no libpq, SCRAM): its connections
//! are driven by a small runtime the store owns, and each store call waits for its
//! statements with a plain executor, so the store's traits stay blocking like the
//! SQLite store's and may be called from any thread, inside an async runtime or not.
//! Statements are prepared once per connection; the independent statements of an
//! apply are pipelined on its connection rather than waited for one by one.
//!
//! Connections are pooled (at most `max_connections`); one found closed (the server
//! restarted, or a network cut) is dropped and replaced on the next call. Every write
//! that must be one step is one transaction; those that check before they write (a
//! rate limit, a plugin quota, the migrations) take a transaction-scoped advisory lock
//! first, so that replicas queue for them instead of both passing the check.

mod accounts;
mod apply;
mod catalog;
mod history;
mod tasks;
mod users;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, GenericClient, NoTls, Statement};

use super::{
    Account, AccountId, AccountStore, Assignment, AuditEvent, AuditQuery, Avatar, CatalogStore,
    Change, ChangeCause, DatabaseError, DatabaseErrorKind, Dialect, HistoryLimits, LdapUserRef,
    Lease, NewAccount, NewPersonalToken, NewPlugin, PersonalToken, PluginDeletion, PluginId,
    SessionFacts, StoreError, StoredPlugin, StoredTenant, StoredUser, SyncRunRecord, SyncState,
    Task, TaskId, TaskState, TaskStore, Timestamp, UserId, UserIdentifiers, UserQuery, UserStore,
};
use crate::plugin::model::TenantId;

/// Connections a store opens at most, unless configured otherwise.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16;

/// How long a call waits for a free connection before it fails as busy.
const POOL_WAIT: Duration = Duration::from_secs(30);

/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The advisory lock the migrations run under: whichever replica starts first
/// migrates, the others wait and find the schema current.
const MIGRATION_LOCK: i64 = 0x6162_6163_7379_6e63; // "abacsync"

/// Schema migrations of `host/migrations/postgres/`, in order; append only.
const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    include_str!("../../../migrations/postgres/0001_schema.sql"),
)];

/// How to reach the server.
#[derive(Clone)]
pub struct PostgresOptions {
    /// A `postgres://user@host:port/database` URL (key=value strings work too).
    pub url: String,
    /// The password, when the URL has none (read from a file or the environment).
    pub password: Option<String>,
    /// Connections opened at most.
    pub max_connections: usize,
}

impl std::fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresOptions")
            .field("url", &redact(&self.url))
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

/// The store on a PostgreSQL server. Cheap to clone; safe to use from many threads.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// Drives the connections; taken out and shut down in the background on drop, so
    /// that dropping the store inside another runtime does not block it.
    runtime: Option<tokio::runtime::Runtime>,
    config: tokio_postgres::Config,
    /// Where, for messages: host, port and database, never the password.
    location: String,
    max: usize,
    pool: Mutex<Pool>,
    freed: Condvar,
    /// Users created or deleted through this store since its last `ANALYZE`.
    written: std::sync::atomic::AtomicU64,
}

/// Users a sync must have created or deleted for its end to refresh the planner's
/// statistics: right after a first import, PostgreSQL would still plan the next
/// sync's lookups for an empty table (a full scan per batch) until autovacuum's next
/// round.
const ANALYZE_AFTER: u64 = 1_000;

#[derive(Default)]
struct Pool {
    idle: Vec<Conn>,
    /// Connections open, idle or in use.
    open: usize,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// One connection, with the statements prepared on it.
pub(crate) struct Conn {
    client: Client,
    statements: HashMap<String, Statement>,
}

impl Conn {
    /// Begins a transaction; its statements are prepared through `statements`.
    async fn transaction(&mut self) -> Result<Tx<'_>, StoreError> {
        let tx = self.client.transaction().await?;
        Ok(Tx {
            tx,
            statements: &mut self.statements,
        })
    }
}

/// A transaction on a [`Conn`]. Dropped without [`Tx::commit`], it rolls back.
pub(crate) struct Tx<'a> {
    tx: tokio_postgres::Transaction<'a>,
    statements: &'a mut HashMap<String, Statement>,
}

impl Tx<'_> {
    /// Waits for an advisory lock held until the transaction ends.
    async fn lock(&mut self, key: i64) -> Result<(), StoreError> {
        self.execute("SELECT pg_advisory_xact_lock($1)", &[&key])
            .await
            .map(drop)
    }

    async fn commit(self) -> Result<(), StoreError> {
        Ok(self.tx.commit().await?)
    }
}

/// Running statements, each prepared once per connection: on a [`Conn`] or in a
/// [`Tx`] alike.
trait Statements {
    /// The connection or transaction the statements run on.
    type Client: GenericClient + Sync;

    /// It, and the statements prepared on its connection.
    fn parts(&mut self) -> (&Self::Client, &mut HashMap<String, Statement>);

    /// The statement for `sql`, prepared on this connection once.
    async fn prepare(&mut self, sql: &str) -> Result<Statement, StoreError> {
        let (client, statements) = self.parts();
        if let Some(statement) = statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = client.prepare(sql).await?;
        statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    /// Runs one statement; the rows it returned.
    async fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let statement = self.prepare(sql).await?;
        Ok(self.parts().0.query(&statement, params).await?)
    }

    /// Runs one statement that returns at most one row.
    async fn query_opt(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<tokio_postgres::Row>, StoreError> {
        let statement = self.prepare(sql).await?;
        Ok(self.parts().0.query_opt(&statement, params).await?)
    }

    /// Runs one statement that returns exactly one row.
    async fn query_one(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<tokio_postgres::Row, StoreError> {
        let statement = self.prepare(sql).await?;
        Ok(self.parts().0.query_one(&statement, params).await?)
    }

    /// Runs one statement; the number of rows it changed.
    async fn execute(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let statement = self.prepare(sql).await?;
        Ok(self.parts().0.execute(&statement, params).await?)
    }
}

impl Statements for Conn {
    type Client = Client;

    fn parts(&mut self) -> (&Client, &mut HashMap<String, Statement>) {
        (&self.client, &mut self.statements)
    }
}

impl<'a> Statements for Tx<'a> {
    type Client = tokio_postgres::Transaction<'a>;

    fn parts(&mut self) -> (&Self::Client, &mut HashMap<String, Statement>) {
        (&self.tx, &mut *self.statements)
    }
}

/// A connection lent to one call; handed back to the pool when dropped (or closed for
/// good when it broke).
struct Lent<'a> {
    store: &'a Inner,
    conn: Option<Conn>,
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        let mut pool = self.store.pool();
        match self.conn.take() {
            Some(conn) if !conn.client.is_closed() => pool.idle.push(conn),
            _ => pool.open -= 1,
        }
        drop(pool);
        self.store.freed.notify_one();
    }
}

impl Inner {
    fn pool(&self) -> MutexGuard<'_, Pool> {
        // Only pushed to, popped from and counted: a panic cannot leave it torn.
        self.pool.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        // Present until the store is dropped.
        self.runtime
            .as_ref()
            .unwrap_or_else(|| unreachable!("the store's runtime lives as long as the store"))
    }

    /// A connection: an idle one, a new one while fewer than `max` are open, or the
    /// next one handed back.
    fn take(&self) -> Result<Lent<'_>, StoreError> {
        let deadline = Instant::now() + POOL_WAIT;
        let mut pool = self.pool();
        loop {
            while let Some(conn) = pool.idle.pop() {
                if conn.client.is_closed() {
                    pool.open -= 1;
                    continue;
                }
                return Ok(Lent {
                    store: self,
                    conn: Some(conn),
                });
            }
            if pool.open < self.max {
                pool.open += 1;
                drop(pool);
                // Counted before it exists: a failed connect gives its place back.
                let mut lent = Lent {
                    store: self,
                    conn: None,
                };
                lent.conn = Some(self.connect()?);
                return Ok(lent);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(StoreError::Database(DatabaseError::new(
                    DatabaseErrorKind::Busy,
                    format!(
                        "all {} connections to {} stayed in use for {POOL_WAIT:?}",
                        self.max, self.location
                    ),
                )));
            }
            pool = self
                .freed
                .wait_timeout(pool, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn connect(&self) -> Result<Conn, StoreError> {
        let config = self.config.clone();
        let location = self.location.clone();
        let connecting = self.runtime().spawn(async move {
            let (client, connection) = config.connect(NoTls).await?;
            tokio::spawn(async move {
                if let Err(err) = connection.await {
                    tracing::warn!(store = %location, error = %err, "a connection to the store ended");
                }
            });
            Ok::<_, tokio_postgres::Error>(client)
        });
        let client = futures_executor::block_on(connecting)
            .map_err(|err| StoreError::Panicked(err.to_string()))?
            .map_err(|err| StoreError::Open {
                location: self.location.clone(),
                cause: database_error(&err),
            })?;
        Ok(Conn {
            client,
            statements: HashMap::new(),
        })
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("location", &self.inner.location)
            .finish()
    }
}

impl PostgresStore {
    /// Connects to the server, and migrates the schema unless another replica is doing
    /// so (then waits for it): the first replica to start creates the tables.
    ///
    /// # Errors
    /// [`StoreError::Open`] when the URL is not one or the server cannot be reached or
    /// refuses the login, [`StoreError::TooNew`] when a newer abacsync migrated the
    /// database, [`StoreError::Migration`] when a migration fails.
    pub fn open(options: &PostgresOptions) -> Result<Self, StoreError> {
        let location = redact(&options.url);
        let open_error = |message: String| StoreError::Open {
            location: location.clone(),
            cause: DatabaseError::new(DatabaseErrorKind::Unavailable, message),
        };
        let mut config: tokio_postgres::Config = options
            .url
            .parse()
            .map_err(|err| open_error(format!("not a PostgreSQL URL: {err}")))?;
        if config.get_password().is_none()
            && let Some(password) = &options.password
        {
            config.password(password);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.application_name("abacsync");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("abacsync-postgres")
            .enable_all()
            .build()
            .map_err(|err| open_error(format!("cannot start the store's runtime: {err}")))?;
        let store = Self {
            inner: Arc::new(Inner {
                runtime: Some(runtime),
                config,
                location,
                max: options.max_connections.max(1),
                pool: Mutex::new(Pool::default()),
                freed: Condvar::new(),
                written: std::sync::atomic::AtomicU64::new(0),
            }),
        };
        store.migrate()?;
        Ok(store)
    }

    /// Where the store is, without its password.
    pub fn location(&self) -> &str {
        &self.inner.location
    }

    /// Runs `work` on a pooled connection and waits for it.
    fn with<T>(
        &self,
        work: impl AsyncFnOnce(&mut Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut lent = self.inner.take()?;
        let conn = lent
            .conn
            .as_mut()
            .unwrap_or_else(|| unreachable!("a lent connection is present until dropped"));
        block_on(work(conn))
    }

    /// Runs `work` in one transaction on a pooled connection: committed when it
    /// returns `Ok`, rolled back otherwise.
    fn transaction<T>(
        &self,
        work: impl AsyncFnOnce(&mut Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.with(async |conn| {
            let mut tx = conn.transaction().await?;
            let value = work(&mut tx).await?;
            tx.commit().await?;
            Ok(value)
        })
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let known = MIGRATIONS.last().map_or(0, |(version, _)| *version);
        let version = |cause: StoreError, version: i32| match cause {
            StoreError::Database(cause) => StoreError::Migration {
                version: u32::try_from(version).unwrap_or(0),
                cause,
            },
            other => other,
        };
        self.with(async |conn| {
            let mut tx = conn.transaction().await.map_err(|err| version(err, 0))?;
            tx.lock(MIGRATION_LOCK).await.map_err(|err| version(err, 0))?;
            tx.execute(
                "CREATE TABLE IF NOT EXISTS abacsync_schema (version INTEGER NOT NULL, applied_at BIGINT NOT NULL)",
                &[],
            )
            .await
            .map_err(|err| version(err, 0))?;
            let found: i32 = tx
                .query_one("SELECT coalesce(max(version), 0) FROM abacsync_schema", &[])
                .await
                .map_err(|err| version(err, 0))?
                .try_get(0)?;
            if found > known {
                return Err(StoreError::TooNew {
                    found: u32::try_from(found).unwrap_or(u32::MAX),
                    known: u32::try_from(known).unwrap_or(0),
                });
            }
            for (number, sql) in MIGRATIONS.iter().filter(|(number, _)| *number > found) {
                tx.tx
                    .batch_execute(sql)
                    .await
                    .map_err(|err| version(err.into(), *number))?;
                tx.execute(
                    "INSERT INTO abacsync_schema (version, applied_at) VALUES ($1, $2)",
                    &[number, &now_ms()],
                )
                .await
                .map_err(|err| version(err, *number))?;
                tracing::info!(version = number, "store schema migrated");
            }
            tx.commit().await.map_err(|err| version(err, known))
        })
    }

    /// Whether the server answers: what `/ready` asks.
    ///
    /// # Errors
    /// [`StoreError::Database`] when it does not.
    pub fn ping(&self) -> Result<(), StoreError> {
        self.with(async |conn| conn.execute("SELECT 1", &[]).await.map(drop))
    }
}

/// Waits for `future` on this thread (no runtime needed: the connections are driven by
/// the store's own).
fn block_on<F: Future>(future: F) -> F::Output {
    futures_executor::block_on(future)
}

/// The time now, in milliseconds since the epoch.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

/// `url` without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // key=value form: drop any password=… pair.
        return url
            .split_whitespace()
            .filter(|pair| !pair.starts_with("password="))
            .collect::<Vec<_>>()
            .join(" ");
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split_once(':').map_or(user, |(name, _)| name);
            format!("{user}@{host}")
        }
        None => authority.to_owned(),
    };
    let path = path.split_once('?').map_or(path, |(path, _)| path);
    format!("{scheme}://{authority}{path}")
}

/// A driver error in the store's terms.
fn database_error(err: &tokio_postgres::Error) -> DatabaseError {
    use DatabaseErrorKind as Kind;
    if let Some(db) = err.as_db_error() {
        let code = db.code();
        let kind = if *code == SqlState::DISK_FULL
            || *code == SqlState::OUT_OF_MEMORY
            || *code == SqlState::INSUFFICIENT_RESOURCES
        {
            Kind::Full
        } else if *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
            || *code == SqlState::LOCK_NOT_AVAILABLE
            || *code == SqlState::QUERY_CANCELED
            || *code == SqlState::TOO_MANY_CONNECTIONS
        {
            Kind::Busy
        } else if code.code().starts_with("08")
            || code.code().starts_with("57P")
            || *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
            || *code == SqlState::INVALID_CATALOG_NAME
        {
            Kind::Unavailable
        } else if *code == SqlState::DATA_CORRUPTED || *code == SqlState::INDEX_CORRUPTED {
            Kind::Corrupt
        } else if code.code().starts_with("22") {
            // Data exceptions: a value PostgreSQL cannot hold (a NUL in text).
            Kind::Encoding
        } else {
            Kind::Other
        };
        let detail = db
            .detail()
            .map(|detail| format!(" ({detail})"))
            .unwrap_or_default();
        return DatabaseError::new(kind, format!("{}{detail} [{}]", db.message(), code.code()));
    }
    let mut io = false;
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        io |= cause.is::<std::io::Error>();
        source = cause.source();
    }
    let text = err.to_string();
    let kind = if err.is_closed() || io || text.starts_with("timeout") {
        // The connection is gone, or it could not be made.
        Kind::Unavailable
    } else if text.starts_with("error serializing") {
        Kind::Encoding
    } else {
        Kind::Other
    };
    let mut message = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    DatabaseError::new(kind, message)
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(err: tokio_postgres::Error) -> Self {
        StoreError::Database(database_error(&err))
    }
}

/// Whether `err` is a violation of a UNIQUE constraint.
fn is_unique_violation(err: &tokio_postgres::Error) -> bool {
    err.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// A `u32` limit or offset as the `BIGINT` PostgreSQL compares it with.
fn big(value: u32) -> i64 {
    i64::from(value)
}

/// A count or size read back as `u64` (never negative).
fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

impl UserStore for PostgresStore {
    fn users_by_ldap_ids(
        &self,
        tenant: TenantId,
        ldap_ids: &[String],
    ) -> Result<Vec<StoredUser>, StoreError> {
        if ldap_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.with(async |conn| users::by_ldap_ids(conn, tenant, ldap_ids).await)
    }

    fn known_by_ldap_ids(
        &self,
        tenant: TenantId,
        ldap_ids: &[String],
    ) -> Result<Vec<LdapUserRef>, StoreError> {
        if ldap_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.with(async |conn| users::known_by_ldap_ids(conn, tenant, ldap_ids).await)
    }

    fn users_by_usernames(
        &self,
        tenant: TenantId,
        usernames: &[String],
    ) -> Result<Vec<StoredUser>, StoreError> {
        if usernames.is_empty() {
            return Ok(Vec::new());
        }
        self.with(async |conn| users::by_usernames(conn, tenant, usernames).await)
    }

    fn avatar(&self, tenant: TenantId, id: UserId) -> Result<Option<Avatar>, StoreError> {
        self.with(async |conn| users::avatar(conn, tenant, id).await)
    }

    fn find_users(
        &self,
        tenant: TenantId,
        identifiers: &UserIdentifiers,
    ) -> Result<Vec<StoredUser>, StoreError> {
        self.with(async |conn| users::find(conn, tenant, identifiers).await)
    }

    fn ldap_user_index(&self, tenant: TenantId) -> Result<Vec<LdapUserRef>, StoreError> {
        self.with(async |conn| users::ldap_index(conn, tenant).await)
    }

    fn user(&self, tenant: TenantId, id: UserId) -> Result<Option<StoredUser>, StoreError> {
        self.with(async |conn| users::one(conn, tenant, id).await)
    }

    fn list_users(
        &self,
        tenant: TenantId,
        query: &UserQuery,
    ) -> Result<Vec<StoredUser>, StoreError> {
        self.with(async |conn| users::list(conn, tenant, query).await)
    }

    fn count_users(&self, tenant: TenantId) -> Result<u64, StoreError> {
        self.with(async |conn| users::count(conn, tenant).await)
    }

    fn apply(
        &self,
        tenant: TenantId,
        changes: &[Change],
        cause: &ChangeCause,
    ) -> Result<Vec<UserId>, StoreError> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        let ids = self.transaction(async |tx| apply::apply(tx, tenant, changes, cause).await)?;
        let rows = changes
            .iter()
            .filter(|change| matches!(change, Change::Create { .. } | Change::Delete { .. }))
            .count();
        self.inner
            .written
            .fetch_add(rows as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(ids)
    }

    fn audit_events(
        &self,
        tenant: TenantId,
        query: &AuditQuery,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        self.with(async |conn| history::events(conn, tenant, query).await)
    }

    fn sync_state(&self, tenant: TenantId) -> Result<SyncState, StoreError> {
        self.with(async |conn| history::sync_state(conn, tenant).await)
    }

    fn set_sync_state(&self, tenant: TenantId, state: &SyncState) -> Result<(), StoreError> {
        self.with(async |conn| history::set_sync_state(conn, tenant, state).await)
    }

    fn record_sync_run(&self, tenant: TenantId, run: &SyncRunRecord) -> Result<i64, StoreError> {
        let id = self.with(async |conn| history::record_run(conn, tenant, run).await)?;
        let written = &self.inner.written;
        if written.load(std::sync::atomic::Ordering::Relaxed) >= ANALYZE_AFTER {
            written.store(0, std::sync::atomic::Ordering::Relaxed);
            let analyzed = self.with(async |conn| {
                conn.client
                    .batch_execute("ANALYZE users, user_attributes")
                    .await
                    .map_err(StoreError::from)
            });
            if let Err(err) = analyzed {
                tracing::warn!(%err, "cannot refresh the store's statistics; autovacuum will");
            }
        }
        Ok(id)
    }

    fn sync_runs(&self, tenant: TenantId, limit: u32) -> Result<Vec<SyncRunRecord>, StoreError> {
        self.with(async |conn| history::runs(conn, tenant, limit).await)
    }

    fn attribute_bytes(&self, tenant: TenantId) -> Result<u64, StoreError> {
        self.with(async |conn| history::attribute_bytes(conn, tenant).await)
    }

    fn prune_history(&self, tenant: TenantId, limits: &HistoryLimits) -> Result<u64, StoreError> {
        self.with(async |conn| history::prune(conn, tenant, limits).await)
    }
}

impl AccountStore for PostgresStore {
    fn create_account(&self, account: &NewAccount, now: Timestamp) -> Result<Account, StoreError> {
        self.with(async |conn| accounts::create(conn, account, now).await)
    }

    fn account(&self, id: AccountId) -> Result<Option<Account>, StoreError> {
        self.with(async |conn| accounts::by_id(conn, id).await)
    }

    fn account_by_username(&self, username: &str) -> Result<Option<Account>, StoreError> {
        self.with(async |conn| accounts::by_username(conn, username).await)
    }

    fn account_by_email(&self, email: &str) -> Result<Option<Account>, StoreError> {
        self.with(async |conn| accounts::by_email(conn, email).await)
    }

    fn list_accounts(&self, tenant: Option<TenantId>) -> Result<Vec<Account>, StoreError> {
        self.with(async |conn| accounts::list(conn, tenant).await)
    }

    fn count_accounts(&self) -> Result<u64, StoreError> {
        self.with(async |conn| {
            let row = conn.query_opt("SELECT count(*) FROM accounts", &[]).await?;
            Ok(unsigned(row.map_or(Ok(0), |row| row.try_get(0))?))
        })
    }

    fn delete_account(&self, id: AccountId) -> Result<bool, StoreError> {
        self.with(async |conn| {
            Ok(conn
                .execute("DELETE FROM accounts WHERE id = $1", &[&id])
                .await?
                > 0)
        })
    }

    fn set_totp(
        &self,
        id: AccountId,
        secret: Option<&[u8]>,
        enabled: bool,
    ) -> Result<(), StoreError> {
        self.with(async |conn| {
            conn.execute(
                "UPDATE accounts SET totp_secret = $2, totp_enabled = $3, totp_last_step = NULL WHERE id = $1",
                &[&id, &secret, &enabled],
            )
            .await
            .map(drop)
        })
    }

    fn use_totp_step(&self, id: AccountId, step: i64) -> Result<bool, StoreError> {
        self.with(async |conn| {
            Ok(conn
                .execute(
                    "UPDATE accounts SET totp_last_step = $2 \
                     WHERE id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)",
                    &[&id, &step],
                )
                .await?
                == 1)
        })
    }

    fn set_email(
        &self,
        id: AccountId,
        email: Option<&str>,
        email_2fa: bool,
    ) -> Result<(), StoreError> {
        self.with(async |conn| {
            conn.execute(
                "UPDATE accounts SET email = $2, email_2fa = $3 WHERE id = $1",
                &[&id, &email, &email_2fa],
            )
            .await
            .map(drop)
        })
    }

    fn put_email_code(
        &self,
        id: AccountId,
        code_hash: &[u8],
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.with(async |conn| {
            conn.execute(
                "INSERT INTO email_codes (account_id, code_hash, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (account_id) DO UPDATE SET code_hash = excluded.code_hash, \
                 expires_at = excluded.expires_at",
                &[&id, &code_hash, &expires_at],
            )
            .await
            .map(drop)
        })
    }

    fn take_email_code(
        &self,
        id: AccountId,
        code_hash: &[u8],
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.with(async |conn| {
            Ok(conn
                .execute(
                    "DELETE FROM email_codes WHERE account_id = $1 AND code_hash = $2 AND expires_at > $3",
                    &[&id, &code_hash, &now],
                )
                .await?
                == 1)
        })
    }

    fn begin_email_verification(
        &self,
        id: AccountId,
        address: &str,
        code_hash: &[u8],
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.with(async |conn| {
            conn.execute(
                "INSERT INTO email_verifications (account_id, address, code_hash, expires_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (account_id) DO UPDATE SET \
                 address = excluded.address, code_hash = excluded.code_hash, expires_at = excluded.expires_at",
                &[&id, &address, &code_hash, &expires_at],
            )
            .await
            .map(drop)
        })
    }

    fn confirm_email(
        &self,
        id: AccountId,
        code_hash: &[u8],
        now: Timestamp,
    ) -> Result<Option<String>, StoreError> {
        self.transaction(async |tx| accounts::confirm_email(tx, id, code_hash, now).await)
    }

    fn create_session(
        &self,
        token_hash: &[u8],
        account: AccountId,
        dialect: Dialect,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.with(async |conn| {
            // Expired sessions go as new ones come: the table stays the size of live ones.
            conn.execute("DELETE FROM sessions WHERE expires_at <= $1", &[&now])
                .await?;
            conn.execute(
                "INSERT INTO sessions (token_hash, account_id, dialect, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[&token_hash, &account, &dialect.as_str(), &now, &expires_at],
            )
            .await
            .map(drop)
        })
    }

    fn session_account(
        &self,
        token_hash: &[u8],
        dialect: Dialect,
        now: Timestamp,
    ) -> Result<Option<(Account, SessionFacts)>, StoreError> {
        self.with(async |conn| accounts::session_account(conn, token_hash, dialect, now).await)
    }

    fn passed_two_factor(&self, token_hash: &[u8], now: Timestamp) -> Result<(), StoreError> {
        self.with(async |conn| {
            conn.execute(
                "UPDATE sessions SET two_factor_at = $2 WHERE token_hash = $1",
                &[&token_hash, &now],
            )
            .await
            .map(drop)
        })
    }

    fn create_personal_token(
        &self,
        account: AccountId,
        token: &NewPersonalToken<'_>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.with(async |conn| accounts::create_personal_token(conn, account, token, now).await)
    }

    fn regenerate_personal_token(
        &self,
        account: AccountId,
        name: &str,
        token_hash: &[u8],
        last_part: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.with(async |conn| {
            Ok(conn
                .execute(
                    "UPDATE sessions SET token_hash = $3, last_part = $4, created_at = $5, \
                     two_factor_at = NULL WHERE account_id = $1 AND name = $2",
                    &[&account, &name, &token_hash, &last_part, &now],
                )
                .await?
                == 1)
        })
    }

    fn personal_tokens(&self, account: AccountId) -> Result<Vec<PersonalToken>, StoreError> {
        self.with(async |conn| accounts::personal_tokens(conn, account).await)
    }

    fn delete_personal_token(&self, account: AccountId, name: &str) -> Result<bool, StoreError> {
        self.with(async |conn| {
            Ok(conn
                .execute(
                    "DELETE FROM sessions WHERE account_id = $1 AND name = $2",
                    &[&account, &name],
                )
                .await?
                == 1)
        })
    }

    fn delete_session(&self, token_hash: &[u8]) -> Result<bool, StoreError> {
        self.with(async |conn| {
            Ok(conn
                .execute("DELETE FROM sessions WHERE token_hash = $1", &[&token_hash])
                .await?
                > 0)
        })
    }

    fn count_attempt(
        &self,
        scope: &str,
        key: &str,
        max: u32,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<Result<super::AttemptId, i64>, StoreError> {
        self.transaction(async |tx| {
            accounts::count_attempt(tx, scope, key, max, expires_at, now).await
        })
    }

    fn forgive_attempt(&self, id: super::AttemptId) -> Result<(), StoreError> {
        self.with(async |conn| {
            conn.execute("DELETE FROM rate_limit_attempts WHERE id = $1", &[&id])
                .await
                .map(drop)
        })
    }

    fn clear_attempts(&self, scope: &str, key: &str) -> Result<(), StoreError> {
        self.with(async |conn| {
            conn.execute(
                "DELETE FROM rate_limit_attempts WHERE scope = $1 AND key = $2",
                &[&scope, &key.as_bytes()],
            )
            .await
            .map(drop)
        })
    }

    fn shared_secret(
        &self,
        name: &str,
        candidate: &[u8],
        now: Timestamp,
    ) -> Result<Vec<u8>, StoreError> {
        self.with(async |conn| {
            conn.execute(
                "INSERT INTO shared_secrets (name, value, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO NOTHING",
                &[&name, &candidate, &now],
            )
            .await?;
            let row = conn
                .query_opt("SELECT value FROM shared_secrets WHERE name = $1", &[&name])
                .await?
                .ok_or_else(|| StoreError::Corrupt {
                    table: "shared_secrets",
                    column: "value",
                    reason: format!("the secret `{name}` vanished as it was stored"),
                })?;
            Ok(row.try_get(0)?)
        })
    }
}

impl TaskStore for PostgresStore {
    fn create_task(
        &self,
        tenant: TenantId,
        command: &str,
        params: &serde_json::Value,
        request: Option<&serde_json::Value>,
        account: Option<AccountId>,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<Task, StoreError> {
        self.with(async |conn| {
            tasks::create(conn, tenant, command, params, request, account, lease, now).await
        })
    }

    fn take_over_expired(
        &self,
        lease: &Lease,
        now: Timestamp,
        max_attempts: u32,
    ) -> Result<Vec<super::TakenTask>, StoreError> {
        self.with(async |conn| tasks::take_over_expired(conn, lease, now, max_attempts).await)
    }

    fn task(&self, id: TaskId) -> Result<Option<Task>, StoreError> {
        self.with(async |conn| tasks::one(conn, id).await)
    }

    fn queued_task(
        &self,
        tenant: TenantId,
        command: &str,
        params: &serde_json::Value,
    ) -> Result<Option<Task>, StoreError> {
        self.with(async |conn| tasks::queued(conn, tenant, command, params).await)
    }

    fn list_tasks_from(
        &self,
        tenant: Option<TenantId>,
        offset: u32,
        limit: u32,
    ) -> Result<Vec<Task>, StoreError> {
        self.with(async |conn| tasks::list(conn, tenant, offset, limit).await)
    }

    fn count_tasks(&self, tenant: Option<TenantId>) -> Result<u64, StoreError> {
        self.with(async |conn| tasks::count(conn, tenant).await)
    }

    fn delete_task(&self, id: TaskId) -> Result<bool, StoreError> {
        self.with(async |conn| {
            Ok(conn
                .execute("DELETE FROM tasks WHERE id = $1", &[&id])
                .await?
                > 0)
        })
    }

    fn update_task(
        &self,
        id: TaskId,
        state: TaskState,
        message: &str,
        result: Option<&serde_json::Value>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.with(async |conn| tasks::update(conn, id, state, message, result, now).await)
    }

    fn request_cancel(
        &self,
        id: TaskId,
        now: Timestamp,
    ) -> Result<super::CancelRequest, StoreError> {
        self.with(async |conn| tasks::request_cancel(conn, id, now).await)
    }

    fn cancel_requested(&self, id: TaskId) -> Result<bool, StoreError> {
        self.with(async |conn| {
            let row = conn
                .query_opt("SELECT cancel_requested FROM tasks WHERE id = $1", &[&id])
                .await?;
            Ok(match row {
                Some(row) => row.try_get(0)?,
                None => false,
            })
        })
    }

    fn claim_tenant(
        &self,
        tenant: TenantId,
        owner: &str,
        task: Option<TaskId>,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<Option<String>, StoreError> {
        self.with(async |conn| tasks::claim_tenant(conn, tenant, owner, task, until, now).await)
    }

    fn release_tenant(&self, tenant: TenantId, owner: &str) -> Result<(), StoreError> {
        self.with(async |conn| {
            conn.execute(
                "DELETE FROM tenant_runs WHERE tenant_id = $1 AND owner = $2",
                &[&super::tenant_key(tenant), &owner],
            )
            .await
            .map(drop)
        })
    }

    fn claim_schedule(
        &self,
        tenant: TenantId,
        period_start: Timestamp,
    ) -> Result<bool, StoreError> {
        self.with(async |conn| {
            Ok(conn
                .execute(
                    "INSERT INTO schedule_fires (tenant_id, period_start) VALUES ($1, $2) \
                     ON CONFLICT (tenant_id) DO UPDATE SET period_start = excluded.period_start \
                     WHERE excluded.period_start > schedule_fires.period_start",
                    &[&super::tenant_key(tenant), &period_start],
                )
                .await?
                == 1)
        })
    }

    fn renew_leases(&self, owner: &str, until: Timestamp) -> Result<u64, StoreError> {
        self.transaction(async |tx| {
            let renewed = tx
                .execute(
                    "UPDATE tasks SET lease_until = $2 \
                     WHERE owner = $1 AND state IN ('queued', 'running')",
                    &[&owner, &until],
                )
                .await?;
            tx.execute(
                "UPDATE tenant_runs SET lease_until = $2 WHERE owner = $1",
                &[&owner, &until],
            )
            .await?;
            Ok(renewed)
        })
    }

    fn interrupt_expired(&self, now: Timestamp, except: Option<&str>) -> Result<u64, StoreError> {
        self.with(async |conn| {
            conn.execute(
                "UPDATE tasks SET state = 'interrupted', \
                 message = 'interrupted: the abacsync process running it stopped before the task ended; run it again', \
                 updated_at = $1 WHERE state IN ('queued', 'running') \
                 AND (lease_until IS NULL OR lease_until < $1) \
                 AND ($2::text IS NULL OR owner IS NULL OR owner <> $2::text)",
                &[&now, &except],
            )
            .await
        })
    }

    fn hand_back(&self, id: TaskId, owner: &str, now: Timestamp) -> Result<bool, StoreError> {
        self.with(async |conn| Ok(tasks::hand_back(conn, Some(id), owner, now).await? == 1))
    }

    fn hand_back_owned(&self, owner: &str, now: Timestamp) -> Result<u64, StoreError> {
        self.with(async |conn| tasks::hand_back(conn, None, owner, now).await)
    }

    fn interrupt_owned(&self, owner: &str, now: Timestamp) -> Result<u64, StoreError> {
        self.transaction(async |tx| {
            let changed = tx
                .execute(
                    "UPDATE tasks SET state = 'interrupted', \
                     message = 'interrupted: abacsync stopped before the task ended; run it again', \
                     updated_at = $1 WHERE state IN ('queued', 'running') AND owner = $2",
                    &[&now, &owner],
                )
                .await?;
            tx.execute("DELETE FROM tenant_runs WHERE owner = $1", &[&owner])
                .await?;
            Ok(changed)
        })
    }
}

impl CatalogStore for PostgresStore {
    fn record_plugin_result(
        &self,
        tenant: TenantId,
        failure: Option<&str>,
        suspend_after: u32,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.with(async |conn| {
            catalog::record_plugin_result(conn, tenant, failure, suspend_after, now).await
        })
    }

    fn plugin_health(&self, tenant: TenantId) -> Result<super::PluginHealthRecord, StoreError> {
        self.with(async |conn| catalog::plugin_health(conn, tenant).await)
    }

    fn resume_plugin(&self, tenant: TenantId) -> Result<(), StoreError> {
        self.with(async |conn| {
            conn.execute(
                "DELETE FROM plugin_health WHERE tenant_id = $1",
                &[&super::tenant_key(tenant)],
            )
            .await
            .map(drop)
        })
    }

    fn catalog_generation(&self) -> Result<i64, StoreError> {
        self.with(async |conn| {
            let row = conn
                .query_opt(
                    "SELECT value FROM store_generations WHERE name = 'catalog'",
                    &[],
                )
                .await?
                .ok_or(StoreError::Corrupt {
                    table: "store_generations",
                    column: "value",
                    reason: "the catalog's generation is missing".into(),
                })?;
            Ok(row.try_get(0)?)
        })
    }

    fn add_plugin(
        &self,
        plugin: &NewPlugin<'_>,
        now: Timestamp,
    ) -> Result<StoredPlugin, StoreError> {
        self.transaction(async |tx| catalog::add_plugin(tx, plugin, now).await)
    }

    fn delete_plugin(&self, id: PluginId) -> Result<PluginDeletion, StoreError> {
        self.transaction(async |tx| catalog::delete_plugin(tx, id).await)
    }

    fn list_plugins(&self, tenant: Option<TenantId>) -> Result<Vec<StoredPlugin>, StoreError> {
        self.with(async |conn| catalog::list_plugins(conn, tenant).await)
    }

    fn plugin(&self, id: PluginId) -> Result<Option<StoredPlugin>, StoreError> {
        self.with(async |conn| catalog::plugin(conn, id).await)
    }

    fn plugin_component(&self, id: PluginId) -> Result<Option<Vec<u8>>, StoreError> {
        self.with(async |conn| {
            let row = conn
                .query_opt("SELECT component FROM plugins WHERE id = $1", &[&id])
                .await?;
            Ok(row.map(|row| row.try_get(0)).transpose()?)
        })
    }

    fn assign_plugin(
        &self,
        tenant: TenantId,
        plugin: PluginId,
        settings: &BTreeMap<String, String>,
        by: Option<AccountId>,
        reason: &str,
        now: Timestamp,
    ) -> Result<Assignment, StoreError> {
        self.with(async |conn| {
            catalog::assign(conn, tenant, plugin, settings, by, reason, now).await
        })
    }

    fn assignments(&self, tenant: TenantId) -> Result<Vec<Assignment>, StoreError> {
        self.with(async |conn| catalog::assignments(conn, tenant).await)
    }

    fn api_tenants(&self) -> Result<Vec<StoredTenant>, StoreError> {
        self.with(async |conn| catalog::api_tenants(conn).await)
    }

    fn put_tenant(&self, id: TenantId, config: &str, now: Timestamp) -> Result<(), StoreError> {
        self.with(async |conn| {
            conn.execute(
                "INSERT INTO tenants (id, config, created_at, updated_at) VALUES ($1, $2, $3, $3) \
                 ON CONFLICT (id) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at",
                &[&super::tenant_key(id), &config, &now],
            )
            .await
            .map(drop)
        })
    }

    fn delete_tenant(&self, id: TenantId) -> Result<bool, StoreError> {
        self.transaction(async |tx| catalog::delete_tenant(tx, id).await)
    }

    fn schedules(&self) -> Result<BTreeMap<TenantId, Option<u64>>, StoreError> {
        self.with(async |conn| catalog::schedules(conn).await)
    }

    fn set_schedule(
        &self,
        tenant: TenantId,
        interval_secs: Option<u64>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let interval = interval_secs.map(|secs| i64::try_from(secs).unwrap_or(i64::MAX));
        self.with(async |conn| {
            conn.execute(
                "INSERT INTO schedules (tenant_id, interval_secs, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant_id) DO UPDATE SET interval_secs = excluded.interval_secs, \
                 updated_at = excluded.updated_at",
                &[&super::tenant_key(tenant), &interval, &now],
            )
            .await
            .map(drop)
        })
    }
}
