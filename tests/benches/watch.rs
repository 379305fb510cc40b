//! Watch benchmark: how soon a change made in the directory is visible through the API.
//! A slapd with the `syncprov` overlay holds N generated users (default 10,000); an
//! `abacsync serve` watches it (`watch = true`). Then, one after another, 1,000
//! modifications with `ldapmodify` and 100 deletions with `ldapdelete`; for each, the
//! time from the tool's return to the change being visible through
//! `GET /api/v1/admin/tenants/1/users/{id}` (polled every 2 ms). Prints p50, p90, p99 and
//! the worst (target: p99 ≤ 1 s).
//!
//! Run: `cargo bench -p abacsync --bench watch` (optionally `-- --users N --changes M
//! --deletions D`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use abacsync_testkit::directory::{PeopleOptions, uid, user_dn, write_people_ldif};
use abacsync_testkit::slapd::Slapd;
use abacsync_testkit::{bench_arg, plugins};
use serde_json::{Value, json};

const BASE: &str = "dc=example,dc=org";
const ADMIN: &str = "bench-admin";
const PASSWORD: &str = "bench admin password 1";

struct Api {
    base: String,
    agent: ureq::Agent,
    headers: Vec<(String, String)>,
}

impl Api {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        abacsync_testkit::http::call_json(
            &self.agent,
            method,
            &format!("{}{path}", self.base),
            &headers,
            body.as_ref(),
        )
    }

    fn user(&self, id: i64) -> Value {
        let (status, user) = self.call("GET", &format!("/api/v1/admin/tenants/1/users/{id}"), None);
        assert_eq!(status, 200, "{user}");
        user
    }

    /// Polls user `id` until `check` holds; how long after `since` that was.
    fn wait(&self, id: i64, since: Instant, check: impl Fn(&Value) -> bool) -> Duration {
        loop {
            let user = self.user(id);
            if check(&user) {
                return since.elapsed();
            }
            if since.elapsed() > Duration::from_secs(60) {
                let (_, tasks) = self.call("GET", "/api/v1/tasq/tasks?level=2&limit=4", None);
                panic!("user {id} never changed: {user}\nthe last tasks: {tasks:#}");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// A child process killed when dropped.
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let users = bench_arg(&args, "--users", 10_000);
    let changes = bench_arg(&args, "--changes", 1000).min(users);
    let deletions = bench_arg(&args, "--deletions", 100).min(users / 20);

    let slapd = Slapd::builder()
        .syncprov(Some(bench_arg(&args, "--session-log", 100_000)))
        .ldif_writer(move |out| write_people_ldif(out, BASE, users, &PeopleOptions::default()))
        .start()
        .expect("slapd");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("abacsync.toml");
    std::fs::write(
        &config,
        format!(
            r#"
            data_dir = "{data}"
            [[tenant]]
            id = 1
            plugin = {{ path = "{plugin}" }}
            [tenant.ldap]
            servers = ["{url}"]
            tls = "plain"
            bind_dn = "{admin}"
            bind_password = "{password}"
            base_dn = "ou=people,{BASE}"
            user_filter = "(objectClass=inetOrgPerson)"
            watch = true
            [tenant.removal]
            max_percent = 100.0
            "#,
            data = dir.path().join("data").display(),
            plugin = plugins::component("openldap-mapping").display(),
            url = slapd.url(),
            admin = slapd.admin_dn(),
            password = slapd.admin_password(),
        ),
    )
    .unwrap();
    let server = Command::new(env!("CARGO_BIN_EXE_abacsync"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .env("ABACSYNC_ADMIN_USER", ADMIN)
        .env("ABACSYNC_ADMIN_PASSWORD", PASSWORD)
        .env(
            "ABACSYNC_LOG",
            std::env::var("BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .spawn()
        .expect("abacsync serve");
    // Stopped however the benchmark ends.
    let mut server = Stopped(server);
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("abacsync listening on ")
        .expect("the address")
        .to_owned();
    let mut api = Api {
        base,
        agent: ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into(),
        headers: Vec::new(),
    };
    let (status, login) = api.call(
        "POST",
        "/api/v1/login",
        Some(json!({"user": ADMIN, "password": PASSWORD})),
    );
    assert_eq!(status, 200, "{login}");
    api.headers = vec![
        (
            "x-user-id".into(),
            login["data"]["userId"].as_str().unwrap().to_owned(),
        ),
        (
            "x-auth-token".into(),
            login["data"]["authToken"].as_str().unwrap().to_owned(),
        ),
    ];

    // The watch's first sync imports everyone.
    let started = Instant::now();
    let id_of = |api: &Api, index: usize| -> Option<i64> {
        let (_, found) = api.call(
            "GET",
            &format!("/api/v1/admin/tenants/1/users?search={}", uid(index)),
            None,
        );
        found["data"][0]["id"].as_i64()
    };
    while id_of(&api, users - 1).is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "no first sync"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "directory: {users} users; the watch's first sync imported them in {:.1?}",
        started.elapsed()
    );

    let step = (users / changes).max(1);
    let mut modified = Vec::with_capacity(changes);
    for n in 0..changes {
        let index = (n * step) % users;
        let id = id_of(&api, index).unwrap();
        let value = format!("watched-{n}");
        slapd
            .modify(&format!(
                "dn: {}\nchangetype: modify\nreplace: departmentNumber\ndepartmentNumber: {value}\n",
                user_dn(BASE, index)
            ))
            .unwrap();
        let written = Instant::now();
        modified.push(api.wait(id, written, |user| {
            user["attributes"]["department"] == json!([value])
        }));
    }
    let mut deleted = Vec::with_capacity(deletions);
    for n in 0..deletions {
        // Users no modification touched.
        let index = (n * step + step / 2 + 1) % users;
        let id = id_of(&api, index).unwrap();
        slapd.delete(&user_dn(BASE, index)).unwrap();
        let written = Instant::now();
        deleted.push(api.wait(id, written, |user| user["active"] == json!(false)));
    }
    drop(server);

    let report = |name: &str, mut times: Vec<Duration>| {
        times.sort();
        let p99 = percentile(&times, 0.99);
        println!(
            "{name:<16} {:>5}  p50 {:>6.1} ms  p90 {:>6.1} ms  p99 {:>6.1} ms  worst {:>6.1} ms  (target p99 ≤ 1 s: {})",
            times.len(),
            percentile(&times, 0.5).as_secs_f64() * 1000.0,
            percentile(&times, 0.9).as_secs_f64() * 1000.0,
            p99.as_secs_f64() * 1000.0,
            times.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
            if p99 <= Duration::from_secs(1) {
                "met"
            } else {
                "MISSED"
            }
        );
    };
    println!("from the tool's return to the change visible through the API:");
    report("modifications", modified);
    report("deletions", deleted);
}
