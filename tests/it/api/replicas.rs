//! Several `abacsync serve` replicas, each with its own data folder, on one store
//! (issue 17): what one replica does is seen by the others, and none takes another's
//! live work for dead.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::{ADMIN, ADMIN_PASSWORD, Backend, Server, Setup, on_every_store};

on_every_store!(
    replicas_share_cookies_and_a_starting_one_leaves_running_tasks_alone,
    the_task_of_a_killed_replica_is_run_again_by_another_once_its_lease_runs_out,
    a_stopping_replica_hands_its_running_sync_to_another_at_once,
    a_plugin_suspended_on_one_replica_is_suspended_on_every_replica,
    password_guesses_are_counted_once_over_every_replica,
    syncs_asked_of_two_replicas_at_once_run_one_after_the_other,
    a_cancel_sent_to_one_replica_stops_the_sync_another_runs,
    a_schedule_fires_once_per_period_over_three_replicas,
    tenants_and_schedules_changed_through_one_replica_reach_the_others,
    a_request_identical_to_one_queued_on_another_replica_joins_it,
    a_replica_without_room_leaves_a_queued_sync_to_another_and_still_answers_it,
);

/// Replica A on `setup`'s configuration, and replica B on the same store with a data
/// folder of its own.
fn two_replicas(setup: &Setup) -> (Server, Server) {
    let a = Server::start(&setup.config());
    let b = Server::start_with_args(
        &setup.replica_config("b"),
        &["--store", &setup.store_path()],
    );
    (a, b)
}

/// Starts a downsync with import on `server` in the background; its task id.
fn downsync_in_background(server: &Server, auth: &[(&str, &str)]) -> i64 {
    let (status, body) = server.post(
        "/api/v1/domains/1/ldap/downsync?import=true&timeout=0",
        auth,
        None,
    );
    assert_eq!(status, 202, "{body}");
    body["taskID"].as_i64().unwrap()
}

/// A grommunio session on `server`: its cookie header value and CSRF token.
fn grommunio_session(server: &Server) -> (String, String) {
    let (jwt, csrf) = server.form_login(ADMIN, ADMIN_PASSWORD);
    (format!("grommunioAuthJwt={jwt}"), csrf)
}

/// Waits (up to 60 s) until task `id` runs, as `server` shows it.
fn wait_running(server: &Server, auth: &[(&str, &str)], id: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.get(&format!("/api/v1/tasq/tasks/{id}"), auth).1["stateName"] != "running" {
        assert!(Instant::now() < deadline, "the sync never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Task `id` as `server` shows it, once it has ended (within `limit`).
fn ended(server: &Server, auth: &[(&str, &str)], id: i64, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let (status, task) = server.get(&format!("/api/v1/tasq/tasks/{id}"), auth);
        assert_eq!(status, 200, "{task}");
        if !matches!(task["stateName"].as_str(), Some("queued" | "running")) {
            return task;
        }
        assert!(Instant::now() < deadline, "task {id} did not end: {task}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn replicas_share_cookies_and_a_starting_one_leaves_running_tasks_alone(backend: Backend) {
    let setup = Setup::with_server_on(backend, 3000, "");
    let a = Server::start(&setup.config());
    let (cookie, csrf) = grommunio_session(&a);
    let auth = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())];
    let task = downsync_in_background(&a, &auth);
    // B starts while A runs the sync: it must not mark A's task interrupted.
    let b = Server::start_with_args(
        &setup.replica_config("b"),
        &["--store", &setup.store_path()],
    );
    // A's cookie is good on B (one signing key for every replica).
    let (status, body) = b.get("/api/v1/tasq/tasks", &auth);
    assert_eq!(status, 200, "{body}");
    let done = ended(&b, &auth, task, Duration::from_secs(120));
    assert_eq!(done["stateName"], "completed", "{done}");
    assert_eq!(done["result"]["counts"]["created"], 3000, "{done}");
    // And B's cookie on A.
    let (jwt, _) = b.form_login(ADMIN, ADMIN_PASSWORD);
    let (status, body) = a.get(
        "/api/v1/tasq/tasks",
        &[("cookie", &format!("grommunioAuthJwt={jwt}"))],
    );
    assert_eq!(status, 200, "{body}");
}

fn the_task_of_a_killed_replica_is_run_again_by_another_once_its_lease_runs_out(backend: Backend) {
    let setup = Setup::with_server_on(backend, 20_000, "[server]\ntask_lease_secs = 2");
    let mut a = Server::start(&setup.config());
    let b = Server::start_with_args(
        &setup.replica_config("b"),
        &["--store", &setup.store_path()],
    );
    let (cookie, csrf) = grommunio_session(&a);
    let auth = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())];
    let task = downsync_in_background(&a, &auth);
    wait_running(&b, &auth, task);
    a.kill();
    let killed = Instant::now();
    // B takes it over once its lease ran out (not at once: it was alive until the
    // kill), runs it again from the directory, and the task ends with that run's
    // outcome: whatever A had written whole is found unchanged, the rest created.
    let deadline = Instant::now() + Duration::from_secs(180);
    let done = loop {
        let (_, now) = b.get(&format!("/api/v1/tasq/tasks/{task}"), &auth);
        if now["message"]
            .as_str()
            .is_some_and(|message| message.contains("stopped; queued again on replica"))
        {
            assert!(
                killed.elapsed() >= Duration::from_millis(500),
                "taken over before its lease could run out: {now}"
            );
        }
        if !matches!(now["stateName"].as_str(), Some("queued" | "running")) {
            break now;
        }
        assert!(Instant::now() < deadline, "task {task} did not end: {now}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(done["stateName"], "completed", "{done}");
    let counts = &done["result"]["counts"];
    assert_eq!(
        counts["created"].as_u64().unwrap_or(0) + counts["unchanged"].as_u64().unwrap_or(0),
        20_000,
        "{done}"
    );
    assert_eq!(counts["failed"], 0, "{done}");
    // Nothing half-applied or twice: one more sync finds every user unchanged.
    let again = downsync_in_background(&b, &auth);
    let again = ended(&b, &auth, again, Duration::from_secs(120));
    assert_eq!(again["result"]["counts"]["unchanged"], 20_000, "{again}");
    let metrics = b.metrics();
    assert!(
        metrics.contains("abacsync_tasks_taken_over_total 1"),
        "{metrics}"
    );
}

fn a_stopping_replica_hands_its_running_sync_to_another_at_once(backend: Backend) {
    // Leases of a minute: the task must move because it is handed back, not because
    // its lease ran out.
    let setup = Setup::with_server_on(
        backend,
        20_000,
        "[server]\ntask_lease_secs = 60\nshutdown_grace_secs = 1",
    );
    let mut a = Server::start(&setup.config());
    let b = Server::start_with_args(
        &setup.replica_config("b"),
        &["--store", &setup.store_path()],
    );
    let (cookie, csrf) = grommunio_session(&a);
    let auth = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())];
    let task = downsync_in_background(&a, &auth);
    wait_running(&b, &auth, task);
    let stopped = Instant::now();
    a.send_term();
    assert!(a.wait_exit().success());
    let done = ended(&b, &auth, task, Duration::from_secs(50));
    assert!(
        stopped.elapsed() < Duration::from_secs(55),
        "waited for the lease instead of the hand-back"
    );
    assert_eq!(done["stateName"], "completed", "{done}");
    let counts = &done["result"]["counts"];
    assert_eq!(
        counts["created"].as_u64().unwrap_or(0) + counts["unchanged"].as_u64().unwrap_or(0),
        20_000,
        "{done}"
    );
}

fn a_plugin_suspended_on_one_replica_is_suspended_on_every_replica(backend: Backend) {
    let setup = Setup::with_server_on(backend, 3, "");
    let (a, b) = two_replicas(&setup);
    let admin = a.login(ADMIN, ADMIN_PASSWORD);
    let (status, hostile) = a.upload(&admin, "hostile-mapping");
    assert!(status < 300, "{hostile}");
    let (status, body) = a.call(
        "PUT",
        "/api/v1/admin/tenants/1/plugin",
        &admin.headers(),
        Some(serde_json::json!({"pluginId": hostile["id"], "settings": {"behaviour": "panic"}})),
    );
    assert_eq!(status, 200, "{body}");
    // Failures counted over both replicas: one on B, the rest on A.
    let (status, body) = b.downsync(&admin, 1);
    assert_eq!(status, 500, "{body}");
    for _ in 1..abacsync::sync::SUSPEND_AFTER {
        let (status, body) = a.downsync(&admin, 1);
        assert_eq!(status, 500, "{body}");
    }
    let (_, current) = b.get("/api/v1/admin/tenants/1/plugin", &admin.headers());
    assert_eq!(current["health"]["status"], "suspended", "{current}");
    let (status, body) = b.downsync(&admin, 1);
    assert_eq!(status, 500, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("suspended"),
        "B runs no suspended plugin: {body}"
    );
    // Resumed through B, active on A.
    let (status, health) = b.post(
        "/api/v1/admin/tenants/1/plugin/resume",
        &admin.headers(),
        None,
    );
    assert_eq!(
        (status, &health["status"]),
        (200, &serde_json::json!("active"))
    );
    let (_, current) = a.get("/api/v1/admin/tenants/1/plugin", &admin.headers());
    assert_eq!(current["health"]["status"], "active", "{current}");
}

fn password_guesses_are_counted_once_over_every_replica(backend: Backend) {
    let setup = Setup::with_server_on(backend, 1, "[server]\nrate_limit_attempts = 4");
    let (a, b) = two_replicas(&setup);
    let guess = |server: &Server, password: &str| {
        server
            .post(
                "/api/v1/login",
                &[],
                Some(serde_json::json!({"user": ADMIN, "password": password})),
            )
            .0
    };
    // Four wrong guesses spread over two replicas use up the one allowance…
    for server in [&a, &b, &a, &b] {
        assert_eq!(guess(server, "wrong"), 401);
    }
    // …on both: neither replica lets a fifth through, not even the right password.
    assert_eq!(guess(&a, ADMIN_PASSWORD), 429);
    assert_eq!(guess(&b, ADMIN_PASSWORD), 429);
}

fn syncs_asked_of_two_replicas_at_once_run_one_after_the_other(backend: Backend) {
    let setup = Setup::with_server_on(backend, 3000, "");
    let (a, b) = two_replicas(&setup);
    let (cookie, csrf) = grommunio_session(&a);
    let auth = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())];
    let first = downsync_in_background(&a, &auth);
    // Not identical (another language), so that B's request is not joined to A's
    // still-queued task but queued as a sync of its own.
    let (status, body) = b.post(
        "/api/v1/domains/1/ldap/downsync?import=true&timeout=0&lang=de",
        &auth,
        None,
    );
    assert_eq!(status, 202, "{body}");
    let second = body["taskID"].as_i64().unwrap();
    assert_ne!(first, second, "{body}");
    let first = ended(&b, &auth, first, Duration::from_secs(120));
    let second = ended(&a, &auth, second, Duration::from_secs(120));
    // One created every user; the other, run after it, found them all unchanged:
    // never 3,000 conflicts from two syncs at once.
    let counts = |task: &Value| {
        let counts = &task["result"]["counts"];
        (
            counts["created"].as_u64(),
            counts["unchanged"].as_u64(),
            counts["failed"].as_u64(),
        )
    };
    let mut seen = [counts(&first), counts(&second)];
    seen.sort();
    assert_eq!(
        seen,
        [
            (Some(0), Some(3000), Some(0)),
            (Some(3000), Some(0), Some(0))
        ],
        "{first} {second}"
    );
    assert_eq!(first["stateName"], "completed", "{first}");
    assert_eq!(second["stateName"], "completed", "{second}");
    let admin = a.login(ADMIN, ADMIN_PASSWORD);
    assert_eq!(a.runs_never_overlapping(&admin).len(), 2);
}

fn a_cancel_sent_to_one_replica_stops_the_sync_another_runs(backend: Backend) {
    let setup = Setup::with_server_on(backend, 20_000, "");
    let (a, b) = two_replicas(&setup);
    let (cookie, csrf) = grommunio_session(&a);
    let auth = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())];
    let task = downsync_in_background(&a, &auth);
    // Once A runs it, B is asked to cancel it.
    wait_running(&a, &auth, task);
    let (status, body) = b.post(&format!("/api/v1/tasq/tasks/{task}/cancel"), &auth, None);
    assert!(status < 300, "{status} {body}");
    let done = ended(&b, &auth, task, Duration::from_secs(60));
    assert_eq!(done["stateName"], "cancelled", "{done}");
    // Stopped before writing: nobody was created.
    let admin = b.login(ADMIN, ADMIN_PASSWORD);
    let (_, users) = b.get("/api/v1/admin/tenants/1/users?limit=1", &admin.headers());
    assert_eq!(users["data"], serde_json::json!([]), "{users}");
}

fn a_schedule_fires_once_per_period_over_three_replicas(backend: Backend) {
    const INTERVAL: u64 = 4;
    const PERIODS: u64 = 5;
    let setup = Setup::custom_on(
        backend,
        super::people_slapd(20),
        "",
        &format!("sync_interval_secs = {INTERVAL}"),
        "",
    );
    let store = setup.store_path();
    let a = Server::start(&setup.config());
    let b = Server::start_with_args(&setup.replica_config("b"), &["--store", &store]);
    let c = Server::start_with_args(&setup.replica_config("c"), &["--store", &store]);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(INTERVAL * PERIODS));
    let elapsed = started.elapsed().as_secs();
    let admin = b.login(ADMIN, ADMIN_PASSWORD);
    let scheduled: Vec<Value> = c
        .tasks(&admin)
        .into_iter()
        .filter(|task| task["trigger"] == "schedule" || task["command"] == "schedule")
        .collect();
    // Once per period that began while the replicas ran: never three times (once per
    // replica), and every one of them completed.
    let fired = scheduled.len() as u64;
    assert!(
        (PERIODS - 1..=elapsed / INTERVAL + 1).contains(&fired),
        "{fired} scheduled syncs in {elapsed} s: {scheduled:?}"
    );
    let mut periods: Vec<u64> = scheduled
        .iter()
        .map(|task| {
            let created = task["created"].as_str().unwrap();
            let seconds = created[11..13].parse::<u64>().unwrap() * 3600
                + created[14..16].parse::<u64>().unwrap() * 60
                + created[17..19].parse::<u64>().unwrap();
            seconds / INTERVAL
        })
        .collect();
    periods.sort_unstable();
    periods.dedup();
    assert_eq!(
        periods.len() as u64,
        fired,
        "two in one period: {scheduled:?}"
    );
    drop(a);
    let admin_a = b.login(ADMIN, ADMIN_PASSWORD);
    // The replica that fired them may die: the others go on firing.
    let before = b.tasks(&admin_a).len();
    std::thread::sleep(Duration::from_secs(INTERVAL * 2 + 1));
    assert!(
        b.tasks(&admin_a).len() > before,
        "no period fired after a replica stopped"
    );
}

/// Waits until `check` holds of what `server` answers at `path` (within 15 s).
fn eventually(
    server: &Server,
    auth: &super::RcAuth,
    path: &str,
    check: impl Fn(u16, &Value) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = server.get(path, &auth.headers());
        if check(status, &body) {
            return;
        }
        assert!(Instant::now() < deadline, "{path}: {status} {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn tenants_and_schedules_changed_through_one_replica_reach_the_others(backend: Backend) {
    let setup = Setup::with_server_on(backend, 2, "");
    let (a, b) = two_replicas(&setup);
    let admin = a.login(ADMIN, ADMIN_PASSWORD);
    let slapd = &setup.slapd;
    let (status, body) = a.post(
        "/api/v1/admin/tenants",
        &admin.headers(),
        Some(serde_json::json!({
            "id": 9, "name": "made on a",
            "ldap": {"servers": [slapd.url()], "tls": "plain", "bind_dn": slapd.admin_dn(),
                     "bind_password": slapd.admin_password(), "base_dn": slapd.base_dn(),
                     "user_filter": "(objectClass=inetOrgPerson)"}
        })),
    );
    assert_eq!(status, 201, "{body}");
    eventually(&b, &admin, "/api/v1/admin/tenants/9", |status, body| {
        status == 200 && body["name"] == "made on a"
    });
    let (status, body) = a.call(
        "PUT",
        "/api/v1/admin/tenants/9/schedule",
        &admin.headers(),
        Some(serde_json::json!({"intervalSecs": 3600})),
    );
    assert_eq!(status, 200, "{body}");
    eventually(
        &b,
        &admin,
        "/api/v1/admin/tenants/9/schedule",
        |status, body| status == 200 && body["intervalSecs"] == 3600,
    );
    let (status, body) = a.call("DELETE", "/api/v1/admin/tenants/9", &admin.headers(), None);
    assert!(status < 300, "{status} {body}");
    eventually(&b, &admin, "/api/v1/admin/tenants/9", |status, _| {
        status == 404
    });
}

fn a_request_identical_to_one_queued_on_another_replica_joins_it(backend: Backend) {
    let setup = Setup::with_server_on(backend, 20_000, "");
    let (a, b) = two_replicas(&setup);
    let (cookie, csrf) = grommunio_session(&a);
    let auth = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())];
    // A long sync runs on A; the next request waits, queued, behind it.
    let running = downsync_in_background(&a, &auth);
    wait_running(&a, &auth, running);
    let again =
        |server: &Server| server.post("/api/v1/domains/1/ldap/downsync?timeout=0", &auth, None);
    let (status, queued) = again(&a);
    assert_eq!(status, 202, "{queued}");
    // The same request sent to B joins A's queued task instead of queuing another.
    let (status, joined) = again(&b);
    assert_eq!(status, 202, "{joined}");
    assert_eq!(joined["taskID"], queued["taskID"], "{joined}");
    let id = queued["taskID"].as_i64().unwrap();
    assert_eq!(
        joined["message"],
        format!("Joined background task #{id}, queued by an identical request"),
        "{joined}"
    );
    assert_eq!(
        ended(&b, &auth, running, Duration::from_secs(120))["stateName"],
        "completed"
    );
    assert_eq!(
        ended(&b, &auth, id, Duration::from_secs(120))["stateName"],
        "completed"
    );
}

#[test]
fn postgres_restarted_mid_sync_leaves_nothing_half_written_and_the_next_sync_completes() {
    // A server of its own: restarting the binary's shared one would cut other tests.
    let mut postgres = abacsync_testkit::postgres::Postgres::start().unwrap();
    postgres.create_database("abacsync").unwrap();
    let setup = Setup::on_database(postgres.url("abacsync"), 10_000);
    let log = setup.data_dir().with_file_name("server.log");
    let a = Server::start_logging_at(&setup.config(), &log, "info");
    let (cookie, csrf) = grommunio_session(&a);
    let auth = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())];
    let task = downsync_in_background(&a, &auth);
    wait_running(&a, &auth, task);
    std::thread::sleep(Duration::from_millis(300));
    // Down for a while, as a database restarted by its operator: the sync's writes
    // fail, and so does recording its end until the server is back.
    postgres.stop();
    std::thread::sleep(Duration::from_secs(3));
    postgres.restart().unwrap();
    // The task ends one way or the other (a batch cut by the restart fails the sync;
    // one that got a new connection goes on), and says so.
    let deadline = Instant::now() + Duration::from_secs(300);
    let done = loop {
        let (_, task) = a.get(&format!("/api/v1/tasq/tasks/{task}"), &auth);
        if !matches!(task["stateName"].as_str(), Some("queued" | "running")) {
            break task;
        }
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            Instant::now() < deadline,
            "the task did not end: {task}\n{}",
            &log[log.len().saturating_sub(4000)..]
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let state = done["stateName"].as_str().unwrap_or_default().to_owned();
    assert!(matches!(state.as_str(), "completed" | "error"), "{done}");
    if state == "completed" {
        assert_eq!(done["result"]["counts"]["failed"], 0, "{done}");
    }
    // Whatever was written was written whole: the next sync finds every user created
    // once, or creates the rest, and nothing fails.
    let rerun = downsync_in_background(&a, &auth);
    let rerun = ended(&a, &auth, rerun, Duration::from_secs(300));
    assert_eq!(rerun["stateName"], "completed", "{rerun}");
    let counts = &rerun["result"]["counts"];
    assert_eq!(
        counts["created"].as_u64().unwrap_or(0) + counts["unchanged"].as_u64().unwrap_or(0),
        10_000,
        "{rerun}"
    );
    assert_eq!(counts["failed"], 0, "{rerun}");
    // One `created` event per user: no batch was applied twice or in part.
    let created = postgres
        .psql(
            "abacsync",
            "SELECT (SELECT count(*) FROM users) || ' ' || (SELECT count(*) FROM audit_events WHERE kind = 'created')",
        )
        .unwrap();
    assert_eq!(created, "10000 10000");
}

fn a_replica_without_room_leaves_a_queued_sync_to_another_and_still_answers_it(backend: Backend) {
    let setup = Setup::with_server_on(backend, 20_000, "[server]\nmax_concurrent_syncs = 1\n");
    // Tenant 2 syncs the same directory (it is off by default).
    let text = std::fs::read_to_string(setup.config()).unwrap();
    let text = text.replace("ldap_enabled = false\nabac_enabled = false", "");
    std::fs::write(setup.config(), text).unwrap();
    let (a, b) = two_replicas(&setup);
    let (cookie, csrf) = grommunio_session(&a);
    let auth = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())];
    // A runs tenant 1's long sync: its one slot is taken.
    let first = downsync_in_background(&a, &auth);
    wait_running(&a, &auth, first);
    // Tenant 2's sync, asked of A and waited for there: queued in the store, claimed
    // by B, which has room.
    let second = std::thread::scope(|scope| {
        let asked = scope.spawn(|| {
            a.post(
                "/api/v1/domains/2/ldap/downsync?import=true&timeout=300",
                &auth,
                None,
            )
        });
        // Both run at once, so B runs the second (A runs one sync at a time).
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, tasks) = b.get("/api/v1/tasq/tasks?limit=10", &auth);
            let running = tasks["data"]
                .as_array()
                .map(|tasks| {
                    tasks
                        .iter()
                        .filter(|task| task["stateName"] == "running")
                        .count()
                })
                .unwrap_or(0);
            if running == 2 {
                break;
            }
            assert!(Instant::now() < deadline, "never side by side: {tasks}");
            std::thread::sleep(Duration::from_millis(20));
        }
        asked.join().unwrap()
    });
    // A answered with the outcome B recorded, every user's result in it.
    let (status, body) = second;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"].as_array().map(Vec::len),
        Some(20_000),
        "{}",
        body["message"]
    );
    assert_eq!(
        ended(&a, &auth, first, Duration::from_secs(300))["stateName"],
        "completed"
    );
    // Each replica ran one sync: A its own, B the one A had no room for.
    for (name, server) in [("A", &a), ("B", &b)] {
        let text = server.metrics();
        assert!(
            text.contains("abacsync_syncs_total{outcome=\"succeeded\"} 1\n"),
            "{name}: {text}"
        );
    }
}
