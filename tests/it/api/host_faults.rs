//! Host faults: the process killed while it writes, and a data directory that is full
//! or read-only. The store stays consistent, the error is clear, and the next run
//! converges.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{ADMIN, ADMIN_PASSWORD, RcAuth, Server, Setup};

/// A user as the store holds it: display name and ABAC attributes.
type Stored = (Option<String>, BTreeMap<String, BTreeSet<String>>);

fn read_only(db: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap()
}

/// Every user of tenant 1 in the store at `db`, by username.
fn stored_users(db: &Path) -> BTreeMap<String, Stored> {
    let connection = read_only(db);
    let mut users: BTreeMap<i64, (String, Stored)> = BTreeMap::new();
    let mut statement = connection
        .prepare("SELECT id, username, display_name FROM users WHERE tenant_id = 1")
        .unwrap();
    let rows = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap();
    for row in rows {
        let (id, username, display_name): (i64, String, Option<String>) = row.unwrap();
        users.insert(id, (username, (display_name, BTreeMap::new())));
    }
    let mut statement = connection
        .prepare("SELECT user_id, key, value FROM user_attributes WHERE tenant_id = 1")
        .unwrap();
    let rows = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap();
    for row in rows {
        let (id, key, value): (i64, String, String) = row.unwrap();
        let (_, (_, attributes)) = users.get_mut(&id).expect("attributes of a known user");
        attributes.entry(key).or_default().insert(value);
    }
    users.into_values().collect()
}

/// Answers `sql` (one count) on the store at `db`.
fn count(db: &Path, sql: &str) -> i64 {
    read_only(db).query_row(sql, [], |row| row.get(0)).unwrap()
}

fn integrity(db: &Path) -> String {
    read_only(db)
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap()
}

fn downsync_in_background(server: &Server, auth: &RcAuth) -> i64 {
    let (status, body) = server.post(
        "/api/v1/domains/1/ldap/downsync?import=true&timeout=0",
        &auth.step_up(),
        None,
    );
    assert_eq!(status, 202, "{body}");
    body["taskID"].as_i64().unwrap()
}

fn completed(server: &Server, auth: &RcAuth, task: i64) -> Value {
    let done = server.wait_task(auth, task);
    assert_eq!(done["stateName"], "completed", "{done}");
    done
}

#[test]
fn sigkill_while_applying_leaves_every_user_whole_and_a_rerun_converges() {
    const PEOPLE: usize = 20_000;
    let setup = Setup::new(PEOPLE);
    let db = setup.data_dir().join("abacsync.db");
    // Before: the display name from displayName, `dept` from departmentNumber.
    setup.set_plugin(
        "settings-map-mapping",
        r#""abac.dept" = "departmentNumber""#,
    );
    let mut server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let task = downsync_in_background(&server, &admin);
    completed(&server, &admin, task);
    server.kill();
    let before = stored_users(&db);
    assert_eq!(before.len(), PEOPLE);

    // After: the display name from givenName, `dept` from ou, and `city` from l.
    // Every user changes: the user row, two ABAC keys and their audit events.
    setup.set_plugin(
        "settings-map-mapping",
        r#"display-name = "givenName", "abac.dept" = "ou", "abac.city" = "l""#,
    );
    let mut server = Server::start(&setup.config());
    let task = downsync_in_background(&server, &admin);
    // Killed as soon as the first changes are committed, watched through SQLite.
    let deadline = Instant::now() + Duration::from_secs(120);
    let seen = loop {
        let written = count(
            &db,
            "SELECT count(*) FROM user_attributes WHERE tenant_id = 1 AND key = 'city'",
        );
        if written > 0 {
            server.kill();
            break written;
        }
        assert!(Instant::now() < deadline, "the sync wrote nothing");
        std::thread::sleep(Duration::from_millis(2));
    };
    assert_eq!(integrity(&db), "ok");
    let torn = stored_users(&db);

    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    // The restarted server runs the killed task again, from the directory.
    let done = completed(&server, &admin, task);
    let after = stored_users(&db);
    assert_eq!(after.len(), PEOPLE);

    // Each user is wholly before or wholly after; some of each, so the kill landed
    // inside the apply.
    let mut updated = 0;
    for (username, state) in &torn {
        if *state == after[username] {
            updated += 1;
        } else {
            assert_eq!(*state, before[username], "{username} is torn");
        }
    }
    assert!(
        updated >= usize::try_from(seen).unwrap(),
        "{updated} < {seen}"
    );
    assert!(
        updated > 0 && updated < PEOPLE,
        "the kill landed after {updated} of {PEOPLE} updates"
    );
    eprintln!("killed after {updated} of {PEOPLE} updates ({seen} seen)");
    // The run again updated the others and left those already updated alone.
    let counts = &done["result"]["counts"];
    assert_eq!(counts["updated"], PEOPLE - updated, "{counts}");
    assert_eq!(counts["unchanged"], updated, "{counts}");
    // Each user's change is audited once: the committed part of the killed run kept
    // its events, and the re-run added none for those users.
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM audit_events WHERE tenant_id = 1 AND key = 'city'"
        ),
        i64::try_from(PEOPLE).unwrap()
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(DISTINCT user_id) FROM audit_events WHERE tenant_id = 1 AND key = 'city'"
        ),
        i64::try_from(PEOPLE).unwrap()
    );
}

/// A wrapper for [`Server::start_wrapped`]: the server runs in its own user and mount
/// namespaces (no privileges needed), where `dir` is a fresh tmpfs of `size` bytes
/// (`16m`). The test reaches that file system through `/proc/<pid>/root`.
fn on_small_filesystem(dir: &Path, size: &str) -> Vec<String> {
    let probe = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "true"])
        .output()
        .expect("unshare (util-linux) runs");
    assert!(
        probe.status.success(),
        "this test needs unprivileged user and mount namespaces (unshare -rm): {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    std::fs::create_dir_all(dir).unwrap();
    [
        "unshare",
        "--user",
        "--map-root-user",
        "--mount",
        "sh",
        "-c",
        r#"mount -t tmpfs -o "size=$1" abacsync-test "$2" || exit 90; shift 2; exec "$@""#,
        "sh",
        size,
        dir.to_str().unwrap(),
    ]
    .map(str::to_owned)
    .to_vec()
}

/// `path` as the server at `pid` sees it.
fn inside(pid: u32, path: &Path) -> std::path::PathBuf {
    Path::new(&format!("/proc/{pid}/root")).join(path.strip_prefix("/").unwrap())
}

/// A copy of the store in `dir` (its database and write-ahead log), taken while the
/// server is idle: SQLite resolves `/proc/<pid>/root` to the test's own root, so the
/// store is opened from a copy.
fn copy_store(dir: &Path) -> (tempfile::TempDir, std::path::PathBuf) {
    let copy = tempfile::tempdir().unwrap();
    for name in ["abacsync.db", "abacsync.db-wal"] {
        let from = dir.join(name);
        if from.exists() {
            std::fs::copy(&from, copy.path().join(name)).unwrap();
        }
    }
    let db = copy.path().join("abacsync.db");
    (copy, db)
}

/// Fills the file system holding `dir` with `dir/ballast` until it is full, then
/// gives `room` bytes back.
fn fill(dir: &Path, room: u64) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("ballast");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    loop {
        if let Err(err) = file.write_all(&chunk).and_then(|()| file.sync_all()) {
            assert_eq!(err.raw_os_error(), Some(28), "{err}"); // ENOSPC
            break;
        }
    }
    let size = file.metadata().unwrap().len();
    file.set_len(size.saturating_sub(room)).unwrap();
    path
}

#[test]
fn a_full_data_directory_fails_the_sync_clearly_and_loses_nothing() {
    let setup = Setup::new(1500);
    let data = setup.data_dir();
    let wrapper = on_small_filesystem(&data, "24m");
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let server = Server::start_wrapped(&setup.config(), &wrapper);
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let task = downsync_in_background(&server, &admin);
    completed(&server, &admin, task);
    let data = inside(server.pid(), &data);
    let (_copy, db) = copy_store(&data);
    let before = stored_users(&db);
    assert_eq!(before.len(), 1500);

    // 1,500 more people, and no room left for them.
    let more = abacsync_testkit::directory::people_ldif(
        "dc=example,dc=org",
        3000,
        &abacsync_testkit::directory::PeopleOptions::default(),
    )
    .unwrap();
    let start = more
        .find(&format!(
            "dn: uid={},",
            abacsync_testkit::directory::uid(1500)
        ))
        .unwrap();
    setup.slapd.add(&more[start..]).unwrap();
    let ballast = fill(&data, 0);
    let (status, body) = server.downsync(&admin, 1);
    // Recording the task fails: 503, naming the cause.
    assert_eq!(status, 503, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("the data directory is full"), "{message}");
    // Reads still work, and the store holds what it held.
    let (status, body) = server.get("/api/v1/admin/tenants/1/users?limit=1", &admin.headers());
    assert_eq!(status, 200, "{body}");
    let (_copy, db) = copy_store(&data);
    assert_eq!(integrity(&db), "ok");
    assert_eq!(stored_users(&db), before);

    // Room for the task, not for 1,500 users: the sync fails while applying, and
    // nothing of it stays.
    std::fs::remove_file(&ballast).unwrap();
    let ballast = fill(&data, 256 * 1024);
    let (status, body) = server.downsync(&admin, 1);
    assert_eq!(status, 500, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("database or disk is full, after 0 of 1500 changes were written"),
        "{message}"
    );
    let (_copy, db) = copy_store(&data);
    assert_eq!(integrity(&db), "ok");
    assert_eq!(stored_users(&db), before);
    let (state, task) = {
        let tasks = server.tasks(&admin);
        (tasks[0]["stateName"].clone(), tasks[0]["message"].clone())
    };
    assert_eq!(state, "error", "{task}");
    assert!(
        task.as_str()
            .unwrap()
            .starts_with("tenant 1: user store: database or disk is full")
            && task.as_str().unwrap().contains("(3000 entries read, "),
        "{task}"
    );

    // With room again, the next sync imports the newcomers.
    std::fs::remove_file(ballast).unwrap();
    let (status, body) = server.downsync(&admin, 1);
    assert_eq!(status, 200, "{body}");
    let results = body["data"].as_array().unwrap();
    assert_eq!(results.iter().filter(|r| r["code"] == 201).count(), 1500);
    assert_eq!(
        results
            .iter()
            .filter(|r| r["abacsync"]["code"] == 304)
            .count(),
        1500
    );
    let (_copy, db) = copy_store(&data);
    assert_eq!(integrity(&db), "ok");
    assert_eq!(stored_users(&db).len(), 3000);
}

#[test]
fn a_read_only_data_directory_stops_the_start_with_a_clear_error() {
    let setup = Setup::new(10);
    let mut server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let task = downsync_in_background(&server, &admin);
    completed(&server, &admin, task);
    server.kill();

    // The same data directory, mounted read-only (a bind mount in the server's own
    // namespaces: even root cannot write there).
    let data = setup.data_dir();
    let output = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
        .arg(r#"mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" || exit 90; shift; exec "$@""#)
        .arg("sh")
        .arg(&data)
        .arg(env!("CARGO_BIN_EXE_abacsync"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(setup.config())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_ne!(output.status.code(), Some(90), "mounting failed: {stderr}");
    assert!(!output.status.success(), "{stderr}");
    assert!(output.stdout.is_empty(), "it never listened");
    assert!(
        stderr.contains(&format!(
            "cannot open the user store at {}: the database file can only be opened read-only (its permissions, its owner, or a read-only mount); is the directory {} writable?",
            data.join("abacsync.db").display(),
            data.display()
        )),
        "{stderr}"
    );

    // Writable again, the store is as it was.
    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let (status, body) = server.get("/api/v1/admin/tenants/1/users", &admin.headers());
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"].as_array().unwrap().len(), 10);
}

#[test]
fn a_spill_folder_that_cannot_take_the_plan_fails_the_sync_before_anything_is_written() {
    // 100,000 new users: their planned changes pass the few MiB a sync keeps in
    // memory, so the rest go to a file in `spill_dir` (by default the data folder).
    let setup = Setup::new(100_000);
    let config = std::fs::read_to_string(setup.config()).unwrap();
    let sync = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_abacsync"))
            .args(["sync", "--tenant", "1", "--config"])
            .arg(setup.config())
            .output()
            .unwrap()
    };
    let missing = setup.data_dir().join("no-such-folder");
    std::fs::write(
        setup.config(),
        format!("spill_dir = \"{}\"\n{config}", missing.display()),
    )
    .unwrap();
    let failed = sync();
    let report = String::from_utf8_lossy(&failed.stdout);
    assert!(!failed.status.success(), "{report}");
    assert!(
        report.contains("cannot keep the sync's plan in")
            && report.contains("no-such-folder (spill_dir)")
            && report.contains("nothing was written"),
        "{report}"
    );
    let db = setup.data_dir().join("abacsync.db");
    assert_eq!(count(&db, "SELECT count(*) FROM users"), 0);

    // Into the data folder, the same sync writes every user, and leaves no file
    // behind.
    std::fs::write(setup.config(), &config).unwrap();
    let before: Vec<_> = std::fs::read_dir(setup.data_dir()).unwrap().collect();
    let done = sync();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stdout)
    );
    assert_eq!(count(&db, "SELECT count(*) FROM users"), 100_000);
    let after: Vec<_> = std::fs::read_dir(setup.data_dir()).unwrap().collect();
    assert_eq!(before.len(), after.len(), "{after:?}");
}
