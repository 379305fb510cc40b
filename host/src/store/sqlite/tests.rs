//! SQLite's own tests across the store: files and their modes, readers beside a writer,
//! the checkpoint thread, a deleted tenant's rows, and the time a large first sync
//! takes. The conformance suite, instantiated here, checks what every backend does.

use std::path::Path;
use std::time::Instant;

use rusqlite::Connection;

use super::*;
use crate::store::testing::*;

#[test]
fn the_store_is_shareable() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<SqliteStore>();
    let _: Box<dyn UserStore> = Box::new(SqliteStore::open_in_memory().unwrap());
}

crate::store::conformance::suite!(SqliteStore::open_in_memory().unwrap());

#[test]
fn in_memory_stores_are_private() {
    let one = SqliteStore::open_in_memory().unwrap();
    let two = SqliteStore::open_in_memory().unwrap();
    create(&one, T1, fields("alice"));
    assert_eq!(one.clone().count_users(T1).unwrap(), 1);
    assert_eq!(two.count_users(T1).unwrap(), 0);
}

#[test]
fn a_file_store_keeps_its_data_and_migrates_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.db");
    let store = SqliteStore::open(&path).unwrap();
    let alice = create(&store, T1, fields("alice"));
    let state = SyncState {
        high_water_mark: Some("42".into()),
        ..SyncState::default()
    };
    store.set_sync_state(T1, &state).unwrap();
    drop(store);

    // Reopening runs no migration again (their CREATE TABLEs would fail).
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        store.user(T1, alice).unwrap().unwrap().fields,
        fields("alice")
    );
    assert_eq!(store.sync_state(T1).unwrap(), state);
    let conn = store.writer();
    let known = migrate::MIGRATIONS.len() as u32;
    assert_eq!(migrate::user_version(&conn).unwrap(), known);
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let foreign_keys: bool = conn
        .pragma_query_value(None, "foreign_keys", |row| row.get(0))
        .unwrap();
    assert!(foreign_keys);
}

#[test]
fn a_newer_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.db");
    drop(SqliteStore::open(&path).unwrap());
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 1000)
        .unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(
        matches!(err, StoreError::TooNew { found: 1000, .. }),
        "{err}"
    );
}

/// The modes of the database file and its -wal and -shm companions.
fn store_modes(path: &Path) -> Vec<(String, u32)> {
    use std::os::unix::fs::PermissionsExt;
    ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| {
            let file = format!("{}{suffix}", path.display());
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            (file, mode)
        })
        .collect()
}

#[test]
fn the_files_holding_secrets_are_the_owners_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.db");
    let store = SqliteStore::open(&path).unwrap();
    create(&store, 1, fields("someone"));
    for (file, mode) in store_modes(&path) {
        assert_eq!(mode, 0o600, "{file}: {mode:o}");
    }
    drop(store);

    // A store left world-readable by an older version is narrowed when opened.
    let old = dir.path().join("old.db");
    drop(SqliteStore::open(&old).unwrap());
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
    let store = SqliteStore::open(&old).unwrap();
    create(&store, 1, fields("someone"));
    for (file, mode) in store_modes(&old) {
        assert_eq!(mode, 0o600, "{file}: {mode:o}");
    }
}

#[test]
fn a_missing_directory_is_a_clear_open_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nowhere").join("users.db");
    let err = SqliteStore::open(&path).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, StoreError::Open { .. }), "{message}");
    assert!(message.contains("does not exist"), "{message}");
    assert!(message.contains("nowhere"), "{message}");
    assert!(!path.parent().unwrap().exists(), "not created");
}

#[test]
fn a_read_only_directory_is_a_clear_open_error() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
    let writable = |dir: &Path| {
        let probe = dir.join("probe");
        let created = std::fs::write(&probe, b"").is_ok();
        let _ = std::fs::remove_file(probe);
        created
    };
    // Root ignores permission bits; a read-only file system does not.
    let dir_path = if !writable(dir.path()) {
        dir.path().to_owned()
    } else if Path::new("/sys").is_dir() && !writable(Path::new("/sys")) {
        Path::new("/sys").to_owned()
    } else {
        eprintln!("skipped: every directory is writable for this user");
        return;
    };
    let path = dir_path.join("users.db");
    let err = SqliteStore::open(&path).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, StoreError::Open { .. }), "{message}");
    assert!(message.contains("writable"), "{message}");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn reads_do_not_wait_for_a_writing_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("users.db")).unwrap();
    let alice = create(&store, T1, fields("alice"));

    let mut writer = store.writer();
    let tx = writer
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    tx.execute("UPDATE users SET username = 'renamed'", [])
        .unwrap();
    // Same thread: a read through the writer would deadlock; the readers see the last
    // committed state.
    let started = Instant::now();
    assert_eq!(
        store.user(T1, alice).unwrap().unwrap().fields.username,
        "alice"
    );
    assert_eq!(store.count_users(T1).unwrap(), 1);
    assert!(started.elapsed() < BUSY_TIMEOUT);
    tx.commit().unwrap();
    drop(writer);
    assert_eq!(
        store.user(T1, alice).unwrap().unwrap().fields.username,
        "renamed"
    );
}

#[test]
fn concurrent_readers_and_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("users.db")).unwrap();
    std::thread::scope(|scope| {
        let writer = store.clone();
        scope.spawn(move || {
            for batch in 0..20 {
                let users = (0..50)
                    .map(|n| fields(&format!("user{batch}-{n}")))
                    .collect();
                create_many(&writer, T1, users);
            }
        });
        for _ in 0..3 {
            let reader = store.clone();
            scope.spawn(move || {
                let mut last = 0;
                while last < 1000 {
                    let count = reader.count_users(T1).unwrap();
                    assert!(count >= last && count.is_multiple_of(50), "{count}");
                    last = count;
                    reader.list_users(T1, &UserQuery::default()).unwrap();
                }
            });
        }
    });
    assert!(store.inner.readers.as_ref().unwrap().idle().len() <= MAX_IDLE_READERS);
}

/// A first sync: 20,000 users with four keys and six values each, in batches of 1,000.
#[test]
fn first_sync_throughput() {
    const USERS: usize = 20_000;
    const BATCH: usize = 1_000;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("users.db")).unwrap();
    let users: Vec<Change> = (0..USERS)
        .map(|n| {
            let mut fields = fields(&format!("user{n:06}"));
            fields.attributes = attrs(&[
                ("department", &[["sales", "it", "hr", "legal"][n % 4]]),
                ("roles", &["reader", "writer"]),
                ("site", &[["paris", "oslo", "lima"][n % 3]]),
                ("groups", &["staff", "vpn"]),
            ]);
            Change::Create {
                fields,
                avatar: None,
                mapped: None,
            }
        })
        .collect();

    let started = Instant::now();
    for batch in users.chunks(BATCH) {
        store.apply(T1, batch, &cause()).unwrap();
    }
    let elapsed = started.elapsed();
    eprintln!(
        "store: created {USERS} users (6 values, 5 events each) in batches of {BATCH}: \
         {elapsed:?}, {:.0} users/s",
        USERS as f64 / elapsed.as_secs_f64()
    );

    let started = Instant::now();
    let index = store.ldap_user_index(T1).unwrap();
    let ldap_ids: Vec<String> = index.iter().map(|user| user.ldap_id.clone()).collect();
    for batch in ldap_ids.chunks(BATCH) {
        assert_eq!(
            store.users_by_ldap_ids(T1, batch).unwrap().len(),
            batch.len()
        );
    }
    eprintln!(
        "store: read the index and all {USERS} users back by LDAP id: {:?}",
        started.elapsed()
    );
    assert_eq!(store.count_users(T1).unwrap(), USERS as u64);
}

#[test]
fn the_log_is_copied_back_by_the_checkpoint_thread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = SqliteStore::open_with(&path, 8).unwrap();
    let before = std::fs::metadata(&path).unwrap().len();
    // A few hundred users: well over 8 pages of log, written by commits that never
    // checkpoint themselves.
    let users = (0..500).map(|i| fields(&format!("user{i}"))).collect();
    create_many(&store, T1, users);
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let size = std::fs::metadata(&path).unwrap().len();
        if size > before + 64 * 1024 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the database file stayed at {size} bytes (from {before}): no checkpoint"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(store.count_users(T1).unwrap(), 500);
    drop(store);
    // Reopened, the data is all there.
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.count_users(T1).unwrap(), 500);
}

#[test]
fn a_deleted_tenant_leaves_no_row_behind() {
    use crate::store::{AccountStore, CatalogStore, Dialect, NewAccount, TaskStore};
    let store = SqliteStore::open_in_memory().unwrap();
    let account = |tenant: TenantId, name: &str| {
        let account = store
            .create_account(
                &NewAccount {
                    public_id: format!("public-{name}"),
                    username: name.into(),
                    password_hash: "hash".into(),
                    tenant: Some(tenant),
                    permissions: Default::default(),
                    email: None,
                },
                NOW,
            )
            .unwrap();
        store
            .create_session(
                name.as_bytes(),
                account.id,
                Dialect::RocketChat,
                NOW,
                NOW + 1,
            )
            .unwrap();
        store.put_email_code(account.id, b"code", NOW + 1).unwrap();
        store
            .begin_email_verification(account.id, "a@example.org", b"proof", NOW + 1)
            .unwrap();
        account.id
    };
    for (tenant, name) in [(T1, "one"), (T2, "two")] {
        store.put_tenant(tenant, "{}", NOW).unwrap();
        create(&store, tenant, fields(name));
        account(tenant, name);
        store.set_schedule(tenant, Some(3600), NOW).unwrap();
        let plugin = store
            .add_plugin(
                &NewPlugin {
                    sha256: format!("{tenant:064}"),
                    tenant: Some(tenant),
                    label: format!("plugin-{name}"),
                    name: "mapping".into(),
                    version: "1.0.0".into(),
                    component: name.as_bytes(),
                    uploaded_by: None,
                    quota: None,
                },
                NOW,
            )
            .unwrap();
        store
            .assign_plugin(tenant, plugin.id, &Default::default(), None, "test", NOW)
            .unwrap();
        store
            .record_sync_run(
                tenant,
                &SyncRunRecord {
                    run_id: format!("run-{name}"),
                    mode: "full".into(),
                    dry_run: false,
                    started_at: NOW,
                    finished_at: NOW,
                    outcome: "succeeded".into(),
                    summary: "{}".into(),
                },
            )
            .unwrap();
        store
            .set_sync_state(
                tenant,
                &SyncState {
                    high_water_mark: Some("42".into()),
                    ..SyncState::default()
                },
            )
            .unwrap();
        store
            .create_task(
                tenant,
                "sync",
                &serde_json::json!({}),
                None,
                None,
                Some(&Lease {
                    owner: "replica".into(),
                    until: NOW,
                }),
                NOW,
            )
            .unwrap();
        store
            .claim_tenant(tenant, "replica", None, NOW, NOW)
            .unwrap();
        store.claim_schedule(tenant, NOW).unwrap();
        store.claim_watch(tenant, "replica", NOW + 10, NOW).unwrap();
        store
            .record_plugin_result(tenant, Some("trap"), 3, NOW)
            .unwrap();
    }
    let conn = store.writer();
    // Every table naming a tenant or an account, read from the schema itself, so a
    // table added later is checked too.
    let tables: Vec<(String, String)> = conn
        .prepare(
            "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p
             WHERE m.type = 'table' AND (p.name = 'tenant_id' OR (p.name = 'account_id'
               AND NOT EXISTS (SELECT 1 FROM pragma_table_info(m.name) WHERE name = 'tenant_id')))",
        )
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(tables.len() >= 12, "{tables:?}");
    let rows_of = |conn: &Connection, tenant: TenantId| -> Vec<(String, i64)> {
        let key = i64::from_ne_bytes(tenant.to_ne_bytes());
        tables
            .iter()
            .map(|(table, column)| {
                let sql = if column == "tenant_id" {
                    format!("SELECT count(*) FROM {table} WHERE tenant_id = ?1")
                } else {
                    format!(
                        "SELECT count(*) FROM {table} WHERE account_id IN
                         (SELECT id FROM accounts WHERE tenant_id = ?1)"
                    )
                };
                let count = conn.query_row(&sql, [key], |row| row.get(0)).unwrap();
                (table.clone(), count)
            })
            .collect()
    };
    let before = rows_of(&conn, T1);
    assert!(before.iter().all(|(_, count)| *count > 0), "{before:?}");
    drop(conn);

    assert!(store.delete_tenant(T1).unwrap());
    let conn = store.writer();
    let after = rows_of(&conn, T1);
    assert!(after.iter().all(|(_, count)| *count == 0), "{after:?}");
    assert_eq!(
        rows_of(&conn, T2),
        before,
        "the other tenant keeps everything"
    );
    drop(conn);
    assert!(!store.delete_tenant(T1).unwrap());
}
