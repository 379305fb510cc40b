//! [`SqliteStore`]: the embedded SQLite backend of [`UserStore`].
//!
//! One writer connection behind a mutex runs every write, each [`UserStore::apply`] in
//! one `IMMEDIATE` transaction; reads go to a small pool of reader connections, so an
//! API read does not queue behind a long sync transaction (WAL lets readers see the
//! last committed state meanwhile). An in-memory store has one connection for both.
//!
//! Every statement filters by tenant. Tenant ids are stored as `INTEGER`, the `u64`
//! reinterpreted as `i64` (see [`tenant_key`]). Statements are prepared once per
//! connection and cached; lists of ids or names are bound as one JSON array and
//! unpacked with `json_each`, so a lookup is one query whatever its size.

mod accounts;
mod apply;
mod audit;
mod catalog;
mod migrate;
mod retention;
mod sync_state;
mod tasks;
mod traits;
mod users;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::{
    Account, AccountId, AccountStore, Assignment, AuditEvent, AuditQuery, Avatar, CatalogStore,
    Change, ChangeCause, DatabaseError, Dialect, HistoryLimits, LdapUserRef, Lease, NewAccount,
    NewPersonalToken, NewPlugin, PersonalToken, PluginDeletion, PluginId, SessionFacts, StoreError,
    StoredPlugin, StoredTenant, StoredUser, SyncRunRecord, SyncState, Task, TaskId, TaskState,
    TaskStore, Timestamp, UserId, UserIdentifiers, UserQuery, UserStore,
};
use super::{json_attributes, parse_attributes, tenant_from_key, tenant_key};
use crate::plugin::model::TenantId;

/// How long a connection waits for another's lock before giving up with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Reader connections kept open between reads; more are opened under load and closed
/// after use.
const MAX_IDLE_READERS: usize = 4;

/// Cached prepared statements per connection: enough for every statement of `apply`
/// and the filter combinations of the list queries.
const STATEMENT_CACHE: usize = 64;

/// Page cache of the writer, in KiB: a sync batch touches the users table and four
/// indexes; a larger cache keeps their upper levels in memory.
const WRITER_CACHE_KIB: i64 = 32 * 1024;
/// Write-ahead log pages after which a commit wakes the checkpointer.
const WAL_CHECKPOINT_PAGES: i64 = 16_384;

/// The embedded user store: one SQLite file in WAL mode.
///
/// Cheap to clone (the connections are shared) and safe to use from many threads.
/// Every method blocks; async callers use `spawn_blocking`.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// The only connection that writes.
    writer: Mutex<Connection>,
    /// Reader connections; `None` for an in-memory store, which reads through the writer.
    readers: Option<ReaderPool>,
}

/// Copies the write-ahead log back into the database file on a thread of its own, so
/// that a commit never waits for it (with SQLite's automatic checkpoints, the commit
/// that crosses the threshold copies the log itself, fsync included). The writer's
/// WAL hook wakes it once the log holds `checkpoint_pages`; it stops when the store
/// (the hook's sender) is gone.
fn start_checkpointer(
    path: &Path,
    writer: &mut Connection,
    checkpoint_pages: i64,
) -> rusqlite::Result<()> {
    let conn = open_file(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let (wake, woken) = std::sync::mpsc::sync_channel::<()>(1);
    // Replaces SQLite's automatic checkpoints, which are a WAL hook too.
    writer.wal_hook(Some(
        move |_: &mut rusqlite::hooks::Wal, pages: std::ffi::c_int| {
            if i64::from(pages) >= checkpoint_pages {
                // Full: a wake-up is pending already.
                let _ = wake.try_send(());
            }
            Ok(())
        },
    ))?;
    let path = path.to_owned();
    let spawned = std::thread::Builder::new()
        .name("abacsync-checkpoint".into())
        .spawn(move || {
            while woken.recv().is_ok() {
                // PASSIVE: copies what no reader still needs, never waits for one.
                let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                    Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
                });
                match done {
                    Ok((log, copied)) => {
                        tracing::debug!(path = %path.display(), log, copied, "checkpoint");
                    }
                    Err(err) => {
                        tracing::warn!(path = %path.display(), error = %err, "checkpoint failed; the next commit retries it");
                    }
                }
            }
        });
    if let Err(err) = spawned {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            Some(format!("cannot start the checkpoint thread: {err}")),
        ));
    }
    Ok(())
}

struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = self.inner.readers.as_ref().map(|pool| pool.path.as_path());
        f.debug_struct("SqliteStore").field("path", &path).finish()
    }
}

impl SqliteStore {
    /// Opens the store in the file at `path`, creating the file and migrating its
    /// schema as needed. The directory must exist and be writable: SQLite creates the
    /// file and its `-wal` and `-shm` companions there.
    ///
    /// Connections use WAL, `synchronous=NORMAL` (a power loss may lose the last
    /// transactions, never corrupt the file), foreign keys on, and a 5 s busy timeout.
    ///
    /// # Errors
    /// [`StoreError::Open`] when the file cannot be opened or created,
    /// [`StoreError::TooNew`] when a newer abacsync wrote it, [`StoreError::Migration`]
    /// when a migration fails.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, WAL_CHECKPOINT_PAGES)
    }

    /// [`SqliteStore::open`], checkpointing once the log holds `checkpoint_pages`.
    fn open_with(path: &Path, checkpoint_pages: i64) -> Result<Self, StoreError> {
        keep_private(path);
        let mut writer = open_file(path).map_err(|cause| open_error(path, cause))?;
        // SQLite opens a file it cannot write read-only, without an error; the first
        // write would fail instead, far from the cause.
        if writer.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
            return Err(open_error(
                path,
                rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_READONLY),
                    Some(
                        "the database file can only be opened read-only (its permissions, its owner, or a read-only mount)"
                            .into(),
                    ),
                ),
            ));
        }
        configure_writer(&writer, true).map_err(|cause| open_error(path, cause))?;
        migrate::migrate(&mut writer, migrate::MIGRATIONS)?;
        start_checkpointer(path, &mut writer, checkpoint_pages)
            .map_err(|cause| open_error(path, cause))?;
        Ok(Self::from_parts(
            writer,
            Some(ReaderPool {
                path: path.to_owned(),
                idle: Mutex::new(Vec::new()),
            }),
        ))
    }

    /// Opens a new, empty store in memory, private to this value and its clones: for
    /// tests. Reads and writes share one connection.
    ///
    /// # Errors
    /// As [`SqliteStore::open`]; in practice only when out of memory.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let path = Path::new(":memory:");
        let mut writer = Connection::open_in_memory().map_err(|cause| open_error(path, cause))?;
        configure_writer(&writer, false).map_err(|cause| open_error(path, cause))?;
        migrate::migrate(&mut writer, migrate::MIGRATIONS)?;
        Ok(Self::from_parts(writer, None))
    }

    fn from_parts(writer: Connection, readers: Option<ReaderPool>) -> Self {
        Self {
            inner: Arc::new(Inner {
                writer: Mutex::new(writer),
                readers,
            }),
        }
    }

    /// The writer connection.
    fn writer(&self) -> MutexGuard<'_, Connection> {
        // A panic while the lock was held unwound through rusqlite's `Transaction`,
        // whose drop rolled back: the connection is consistent, the poison is moot.
        self.inner
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `read` on a reader connection (the writer for an in-memory store).
    fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let Some(pool) = &self.inner.readers else {
            return read(&self.writer());
        };
        let conn = pool.take()?;
        let result = read(&conn);
        pool.give_back(conn);
        result
    }
}

impl ReaderPool {
    fn take(&self) -> Result<Connection, StoreError> {
        if let Some(conn) = self.idle().pop() {
            return Ok(conn);
        }
        let conn = open_file(&self.path).map_err(|cause| open_error(&self.path, cause))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        conn.busy_timeout(BUSY_TIMEOUT)
            .and_then(|()| conn.pragma_update(None, "query_only", true))
            .map_err(|cause| open_error(&self.path, cause))?;
        Ok(conn)
    }

    fn give_back(&self, conn: Connection) {
        let mut idle = self.idle();
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
    }

    fn idle(&self) -> MutexGuard<'_, Vec<Connection>> {
        // The list is only pushed to and popped from: a panic cannot leave it torn.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Makes the database file, and the `-wal` and `-shm` files that SQLite creates beside
/// it with the database's mode, readable by their owner only: the store holds bind
/// passwords and TOTP secrets. A new file is created 0600 before SQLite opens it; an
/// existing one is narrowed to 0600. Where that is not possible (a directory that
/// cannot be written) SQLite's own open reports the cause.
fn keep_private(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
        if created.is_ok() {
            return;
        }
        for suffix in ["", "-wal", "-shm"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            let file = Path::new(&name);
            let Ok(meta) = std::fs::metadata(file) else {
                continue;
            };
            if meta.is_file() && meta.permissions().mode() & 0o077 != 0 {
                match std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)) {
                    Ok(()) => {
                        tracing::info!(file = %file.display(), "narrowed to mode 0600: it holds secrets")
                    }
                    Err(err) => {
                        tracing::warn!(file = %file.display(), %err, "others can read this file, and its mode cannot be narrowed to 0600")
                    }
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Opens a database file (no URI interpretation: a configured path is a path).
fn open_file(path: &Path) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    Connection::open_with_flags(path, flags)
}

/// Sets the writer's pragmas; `wal` is false for an in-memory database.
fn configure_writer(conn: &Connection, wal: bool) -> rusqlite::Result<()> {
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.busy_timeout(BUSY_TIMEOUT)?;
    if wal {
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                Some(format!(
                    "the database refuses WAL mode (journal mode stays {mode})"
                )),
            ));
        }
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
    // A large import writes hundreds of megabytes of pages; checkpointing every 1,000
    // pages (SQLite's default) copied the hottest index pages back again and again.
    // Every 16,384 pages (64 MiB at 4 KiB), and the log is cut back to that size. A
    // file store's checkpoints then move to their own thread (`start_checkpointer`).
    conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)?;
    conn.pragma_update(None, "journal_size_limit", WAL_CHECKPOINT_PAGES * 4096)?;
    Ok(())
}

/// A [`StoreError::Open`], with a hint when the cause is a missing or read-only
/// directory (SQLite's own message is "unable to open database file").
fn open_error(path: &Path, cause: rusqlite::Error) -> StoreError {
    let cause = match cause {
        rusqlite::Error::SqliteFailure(code, message)
            if matches!(
                code.code,
                ErrorCode::CannotOpen | ErrorCode::ReadOnly | ErrorCode::PermissionDenied
            ) =>
        {
            let dir = match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir,
                _ => Path::new("."),
            };
            let hint = if dir.is_dir() {
                format!(
                    "is the directory {} writable? SQLite creates the database and its -wal and -shm files there",
                    dir.display()
                )
            } else {
                format!("the directory {} does not exist", dir.display())
            };
            let message = message.unwrap_or_else(|| code.to_string());
            // SQLite appends the path, which StoreError::Open shows already.
            let suffix = format!(": {}", path.display());
            let message = message.strip_suffix(&suffix).unwrap_or(&message);
            rusqlite::Error::SqliteFailure(code, Some(format!("{message}; {hint}")))
        }
        other => other,
    };
    StoreError::Open {
        location: path.display().to_string(),
        cause: cause.into(),
    }
}

impl From<rusqlite::Error> for DatabaseError {
    fn from(err: rusqlite::Error) -> Self {
        use super::DatabaseErrorKind as Kind;
        let kind = match &err {
            rusqlite::Error::SqliteFailure(code, _) => match code.code {
                ErrorCode::DiskFull => Kind::Full,
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => Kind::Busy,
                ErrorCode::CannotOpen | ErrorCode::SystemIoFailure => Kind::Unavailable,
                ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => Kind::Corrupt,
                _ => Kind::Other,
            },
            rusqlite::Error::ToSqlConversionFailure(_) => Kind::Encoding,
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::IntegralValueOutOfRange(..)
            | rusqlite::Error::Utf8Error(..) => Kind::Corrupt,
            _ => Kind::Other,
        };
        DatabaseError::new(kind, err.to_string())
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        StoreError::Database(err.into())
    }
}

/// Runs an `INSERT … RETURNING` that returns one row, and steps it to its end.
///
/// Outside a transaction SQLite commits when the statement completes, so the commit
/// can fail (a full disk) after the row was returned. `query_row` stops at the row and
/// drops that error: it would hand back the row of an insert that never happened.
fn insert_returning<T>(
    stmt: &mut rusqlite::CachedStatement<'_>,
    params: impl rusqlite::Params,
    map: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    let mut rows = stmt.query(params)?;
    let value = match rows.next()? {
        Some(row) => map(row),
        None => return Err(rusqlite::Error::QueryReturnedNoRows),
    };
    while rows.next()?.is_some() {}
    value
}

/// A JSON array of strings, bound as one parameter and unpacked with `json_each`.
fn json_strings<'a>(values: impl IntoIterator<Item = &'a String>) -> String {
    serde_json::Value::Array(
        values
            .into_iter()
            .map(|value| serde_json::Value::from(value.as_str()))
            .collect(),
    )
    .to_string()
}

/// A JSON array of integers, bound as one parameter and unpacked with `json_each`.
fn json_ids(ids: impl IntoIterator<Item = i64>) -> String {
    serde_json::Value::Array(ids.into_iter().map(serde_json::Value::from).collect()).to_string()
}
