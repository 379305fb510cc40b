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
mod tls;
mod traits;
mod users;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, GenericClient, NoTls, Statement};

use super::{DatabaseError, DatabaseErrorKind, StoreError};

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
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        include_str!("../../../migrations/postgres/0001_schema.sql"),
    ),
    (
        2,
        include_str!("../../../migrations/postgres/0002_change_tracking.sql"),
    ),
    (
        3,
        include_str!("../../../migrations/postgres/0003_task_results.sql"),
    ),
];

/// How to reach the server.
#[derive(Clone)]
pub struct PostgresOptions {
    /// A `postgres://user@host:port/database` URL (key=value strings work too).
    pub url: String,
    /// The password, when the URL has none (read from a file or the environment).
    pub password: Option<String>,
    /// Connections opened at most.
    pub max_connections: usize,
    /// The CA the server's certificate must chain to when the URL asks for TLS
    /// (`sslrootcert` in the URL wins); the system's roots without one.
    pub ca_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresOptions")
            .field("url", &redact(&self.url))
            .field("max_connections", &self.max_connections)
            .field("ca_file", &self.ca_file)
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
    /// TLS over every connection, when the URL asked for it.
    tls: Option<tls::Rustls>,
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

    /// Runs `sql` (no parameters, nothing returned): savepoints.
    async fn run(&mut self, sql: &str) -> Result<(), StoreError> {
        Ok(self.tx.batch_execute(sql).await?)
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

    /// Runs one statement; PostgreSQL's own error, for a caller that handles some.
    async fn query_or(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>, StoreError> {
        let statement = self.prepare(sql).await?;
        Ok(self.parts().0.query(&statement, params).await)
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
        let tls = self.tls.clone();
        let connecting = self.runtime().spawn(async move {
            let ended = move |err: tokio_postgres::Error| {
                tracing::warn!(store = %location, error = %err, "a connection to the store ended");
            };
            let client = match tls {
                Some(tls) => {
                    let (client, connection) = config.connect(tls).await?;
                    tokio::spawn(async move { connection.await.map_err(ended) });
                    client
                }
                None => {
                    let (client, connection) = config.connect(NoTls).await?;
                    tokio::spawn(async move { connection.await.map_err(ended) });
                    client
                }
            };
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
        let asked = tls::request(&options.url).map_err(open_error)?;
        let mut config: tokio_postgres::Config = asked
            .url
            .parse()
            .map_err(|err| open_error(format!("not a PostgreSQL URL: {err}")))?;
        let tls = if asked.required {
            let ca_file = asked.root_cert.as_deref().or(options.ca_file.as_deref());
            let client = crate::tls::client_config(ca_file).map_err(|reason| {
                open_error(match ca_file {
                    Some(path) => format!("cannot read the CA file {}: {reason}", path.display()),
                    None => reason,
                })
            })?;
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
            Some(tls::Rustls::new(client))
        } else {
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
            None
        };
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
                tls,
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
