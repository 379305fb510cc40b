//! Watch mode: `abacsync serve` with `watch = true` keeps a persistent search open on a
//! slapd with `syncprov` and syncs each change as it happens, deletions included; with
//! several replicas one watches, and another takes the watch over when it dies.

use std::path::Path;
use std::time::{Duration, Instant};

use abacsync_testkit::directory::{PeopleOptions, people_ldif, uid, user_dn};
use abacsync_testkit::slapd::Slapd;
use serde_json::{Value, json};

use super::{ADMIN, ADMIN_PASSWORD, Backend, RcAuth, Server, Setup, on_every_store};

const BASE: &str = "dc=example,dc=org";

fn watched(backend: Backend, count: usize) -> Setup {
    let slapd = Slapd::builder()
        .syncprov(Some(10_000))
        .ldif(people_ldif(BASE, count, &PeopleOptions::default()).unwrap())
        .start()
        .unwrap();
    Setup::custom_on(backend, slapd, "watch = true", "", "")
}

/// The user `username` once `check` holds of it, and how long that took; fails after
/// `within`.
fn wait_user(
    server: &Server,
    admin: &RcAuth,
    username: &str,
    within: Duration,
    check: impl Fn(&Value) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let (status, users) = server.get(
            &format!("/api/v1/admin/tenants/1/users?search={username}"),
            &admin.headers(),
        );
        assert_eq!(status, 200, "{users}");
        let user = &users["data"][0];
        if user["username"] == json!(username) && check(user) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "{username} not as expected after {within:?}: {user}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn set_city(slapd: &Slapd, index: usize, city: &str) {
    let dn = user_dn(BASE, index);
    slapd
        .modify(&format!(
            "dn: {dn}\nchangetype: modify\nreplace: l\nl: {city}\n"
        ))
        .unwrap();
}

fn located(city: &'static str) -> impl Fn(&Value) -> bool {
    move |user| user["attributes"]["location"] == json!([city])
}

fn watching(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches("watching the directory")
        .count()
}

on_every_store!(a_watched_directory_is_synced_as_it_changes);

fn a_watched_directory_is_synced_as_it_changes(backend: Backend) {
    let setup = watched(backend, 30);
    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    // The watch starts with a sync of what it has not seen: everything.
    wait_user(&server, &admin, &uid(29), Duration::from_secs(30), |user| {
        user["active"] == json!(true)
    });

    set_city(&setup.slapd, 3, "Tokyo");
    let took = wait_user(
        &server,
        &admin,
        &uid(3),
        Duration::from_secs(10),
        located("Tokyo"),
    );
    eprintln!("a change reached the store {took:?} after the directory answered");

    setup.slapd.delete(&user_dn(BASE, 5)).unwrap();
    wait_user(&server, &admin, &uid(5), Duration::from_secs(10), |user| {
        user["active"] == json!(false)
    });

    // Each sync is a task caused by the watch.
    let tasks = server.tasks(&admin);
    assert!(
        tasks.iter().any(|task| task["command"] == json!("watch")),
        "{tasks:?}"
    );
}

on_every_store!(one_replica_watches_and_another_takes_over_when_it_dies);

fn one_replica_watches_and_another_takes_over_when_it_dies(backend: Backend) {
    let setup = watched(backend, 10);
    let logs = tempfile::tempdir().unwrap();
    let (log_a, log_b) = (logs.path().join("a.log"), logs.path().join("b.log"));
    let mut a = Server::start_logging_at(&setup.config(), &log_a, "info");
    let mut b = Server::start_logging_with_args(
        &setup.replica_config("b"),
        &log_b,
        "info",
        &["--store", &setup.store_path()],
    );
    let admin = a.login(ADMIN, ADMIN_PASSWORD);
    wait_user(&a, &admin, &uid(9), Duration::from_secs(30), |user| {
        user["active"] == json!(true)
    });
    set_city(&setup.slapd, 1, "Lima");
    wait_user(
        &a,
        &admin,
        &uid(1),
        Duration::from_secs(10),
        located("Lima"),
    );
    // Both asked; one holds the watch.
    std::thread::sleep(Duration::from_secs(3));
    let (on_a, on_b) = (watching(&log_a), watching(&log_b));
    assert_eq!(
        (on_a + on_b, on_a.max(on_b)),
        (1, 1),
        "a: {on_a}, b: {on_b}"
    );

    // The watcher dies without giving its lease back: the other takes the watch over
    // once the lease runs out, and reads what changed meanwhile.
    let (survivor, survivor_log) = if on_a == 1 {
        a.kill();
        (&b, &log_b)
    } else {
        b.kill();
        (&a, &log_a)
    };
    let admin = survivor.login(ADMIN, ADMIN_PASSWORD);
    set_city(&setup.slapd, 2, "Quito");
    wait_user(
        survivor,
        &admin,
        &uid(2),
        Duration::from_secs(45),
        located("Quito"),
    );
    assert_eq!(watching(survivor_log), 1);
    set_city(&setup.slapd, 4, "Accra");
    wait_user(
        survivor,
        &admin,
        &uid(4),
        Duration::from_secs(10),
        located("Accra"),
    );
}

#[test]
fn the_command_line_watches_too_and_gives_the_watch_back_when_stopped() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    // Twenty: one deletion stays under the removal threshold (10%).
    let setup = watched(Backend::Sqlite, 20);
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_abacsync"))
            .args(["sync", "--tenant", "1", "--watch", "--json", "--config"])
            .arg(setup.config())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut child = start();
    let (lines, reports) = std::sync::mpsc::channel::<Value>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(serde_json::from_str(&line).unwrap()).is_err() {
                break;
            }
        }
    });
    let next_where = |check: &dyn Fn(&Value) -> bool| loop {
        let report = reports
            .recv_timeout(Duration::from_secs(20))
            .expect("a report within 20 s");
        if check(&report) {
            return report;
        }
    };
    let first = next_where(&|report| report["counts"]["created"] == json!(20));
    assert_eq!(first["mode"], json!("full"));
    setup.slapd.delete(&user_dn(BASE, 6)).unwrap();
    let gone = next_where(&|report| report["counts"]["deactivated"] == json!(1));
    assert_eq!(
        (&gone["mode"], &gone["tracking"]),
        (&json!("incremental"), &json!("syncrepl"))
    );

    // A second watcher of the tenant is refused, before it syncs, while the first
    // holds the watch.
    let second = start().wait_with_output().unwrap();
    assert_eq!(second.status.code(), Some(2));
    assert!(second.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("is watched by another process"), "{stderr}");

    // Stopped, the first gives the watch back: a new one starts at once.
    let stopped = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    assert!(child.wait().unwrap().success());
    let mut again = start();
    let stderr = again.stderr.take().unwrap();
    let mut line = String::new();
    BufReader::new(stderr).read_line(&mut line).unwrap();
    assert!(line.contains("watching the directory"), "{line}");
    again.kill().unwrap();
    again.wait().unwrap();
}
