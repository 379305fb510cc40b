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

/// Every user of tenant 1 in the store at `db`, by username.
fn stored_users(db: &Path) -> BTreeMap<String, Stored> {
    let connection =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
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
    let connection =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    connection.query_row(sql, [], |row| row.get(0)).unwrap()
}

fn integrity(db: &Path) -> String {
    let connection =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    connection
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap()
}

/// Tenant 1's plugin replaced by settings-map with `settings` (TOML inline-table
/// body).
fn with_settings_map(setup: &Setup, settings: &str) {
    let openldap = abacsync_testkit::plugins::component("openldap-mapping");
    let settings_map = abacsync_testkit::plugins::component("settings-map-mapping");
    let text = std::fs::read_to_string(setup.config()).unwrap();
    let start = text.find("plugin = { path = ").unwrap();
    let end = start + text[start..].find('\n').unwrap();
    let line = &text[start..end];
    assert!(
        line.contains(&openldap.display().to_string())
            || line.contains(&settings_map.display().to_string()),
        "{line}"
    );
    let replaced = format!(
        "{}plugin = {{ path = \"{}\", settings = {{ {settings} }} }}{}",
        &text[..start],
        settings_map.display(),
        &text[end..]
    );
    std::fs::write(setup.config(), replaced).unwrap();
}

fn downsync_in_background(server: &Server, auth: &RcAuth) -> i64 {
    let (status, body) = server.post(
        "/api/v1/domains/1/ldap/downsync?import=true&timeout=0",
        &auth.headers(),
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
    with_settings_map(&setup, r#""abac.dept" = "departmentNumber""#);
    let mut server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let task = downsync_in_background(&server, &admin);
    completed(&server, &admin, task);
    server.kill();
    let before = stored_users(&db);
    assert_eq!(before.len(), PEOPLE);

    // After: the display name from givenName, `dept` from ou, and `city` from l.
    // Every user changes: the user row, two ABAC keys and their audit events.
    with_settings_map(
        &setup,
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
    let interrupted = server.wait_task(&admin, task);
    assert_eq!(interrupted["stateName"], "interrupted", "{interrupted}");
    let rerun = downsync_in_background(&server, &admin);
    let done = completed(&server, &admin, rerun);
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
    // The re-run updated the others and left those already updated alone.
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
