//! Tenant isolation, one sync at a time, crashes and graceful stops, rate limits, body
//! limits, and the served OpenAPI description.

use std::process::Command;

use abacsync::auth::token;
use serde_json::{Value, json};

use super::{ADMIN, ADMIN_PASSWORD, Server, Setup};

#[test]
fn tenants_are_isolated_and_a_tenant_runs_one_sync_at_a_time() {
    let setup = Setup::new(300);
    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    server.create_account(
        &admin,
        json!({"username": "ops2", "password": "operator password", "tenant": 2, "role": "admin"}),
    );
    let ops2 = server.login("ops2", "operator password");

    // Concurrent triggers on tenant 1.
    let (jwt, csrf) = server.form_login(ADMIN, ADMIN_PASSWORD);
    let cookie = format!("grommunioAuthJwt={jwt}");
    let ids: Vec<i64> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let (server, cookie, csrf) = (&server, &cookie, &csrf);
                scope.spawn(move || {
                    let import = if i % 2 == 0 { "true" } else { "false" };
                    let (status, body) = server.post(
                        &format!("/api/v1/domains/1/ldap/downsync?import={import}&timeout=0"),
                        &[("cookie", cookie), ("x-csrf-token", csrf)],
                        None,
                    );
                    assert_eq!(status, 202, "{body}");
                    body["taskID"].as_i64().unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for id in &ids {
        let task = server.wait_task(&admin, *id);
        assert_eq!(task["stateName"], "completed", "{task}");
    }
    // Identical queued requests were joined; the runs never overlapped.
    let spans = server.runs_never_overlapping(&admin);
    assert!(!spans.is_empty() && spans.len() <= ids.len());

    // Tenant 2's admin sees nothing of tenant 1.
    assert_eq!(
        server
            .get("/api/v1/admin/tenants/1/users", &ops2.headers())
            .0,
        404
    );
    assert_eq!(
        server
            .get(&format!("/api/v1/tasq/tasks/{}", ids[0]), &ops2.headers())
            .0,
        404
    );
    let (_, tasks) = server.get("/api/v1/tasq/tasks", &ops2.headers());
    assert_eq!(tasks["data"], json!([]));
    let (_, tenants) = server.get("/api/v1/admin/tenants", &ops2.headers());
    assert_eq!(tenants["data"].as_array().unwrap().len(), 1);
    assert_eq!(tenants["data"][0]["id"], 2);
    let (status, body) = server.post("/api/v1/domains/1/ldap/downsync", &ops2.step_up(), None);
    assert_eq!(
        (status, body),
        (
            403,
            json!({"message": "Access denied: Insufficient permissions for this operation"})
        )
    );
    // Secrets are never returned.
    let (_, tenant) = server.get("/api/v1/admin/tenants/1", &admin.headers());
    assert_eq!(tenant["ldap"]["bindPassword"], "inline");
    assert!(!tenant.to_string().contains(setup.slapd.admin_password()));
}

#[test]
fn a_task_cut_short_by_a_crash_is_run_again_on_restart() {
    let setup = Setup::new(2000);
    let mut server = Server::start(&setup.config());
    let (jwt, csrf) = server.form_login(ADMIN, ADMIN_PASSWORD);
    let cookie = format!("grommunioAuthJwt={jwt}");
    let auth = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())];
    let (status, first) = server.post(
        "/api/v1/domains/1/ldap/downsync?import=true&timeout=0",
        &auth,
        None,
    );
    assert_eq!(status, 202, "{first}");
    let (status, second) = server.post("/api/v1/domains/1/ldap/downsync?timeout=0", &auth, None);
    assert_eq!(status, 202, "{second}");
    server.kill();

    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    // Both queued again on restart and run from the directory, in their order.
    let first = server.wait_task(&admin, first["taskID"].as_i64().unwrap());
    assert_eq!(
        (first["stateName"].as_str(), first["state"].as_i64()),
        (Some("completed"), Some(3)),
        "{first}"
    );
    let counts = &first["result"]["counts"];
    assert_eq!(
        counts["created"].as_u64().unwrap_or(0) + counts["unchanged"].as_u64().unwrap_or(0),
        2000,
        "{first}"
    );
    let second = server.wait_task(&admin, second["taskID"].as_i64().unwrap());
    assert_eq!(second["stateName"], "completed", "{second}");
    // The cookie session survived the restart.
    let (status, _) = server.get("/api/v1/tasq/tasks", &[("cookie", &cookie)]);
    assert_eq!(status, 200);
}

#[test]
fn a_graceful_stop_finishes_the_running_sync_and_hands_the_queued_one_back() {
    let setup = Setup::new(3000);
    let mut server = Server::start(&setup.config());
    let (jwt, csrf) = server.form_login(ADMIN, ADMIN_PASSWORD);
    let cookie = format!("grommunioAuthJwt={jwt}");
    let auth = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())];
    let (_, first) = server.post(
        "/api/v1/domains/1/ldap/downsync?import=true&timeout=0",
        &auth,
        None,
    );
    let (_, second) = server.post("/api/v1/domains/1/ldap/downsync?timeout=0", &auth, None);
    assert!(server.terminate().success());

    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let first = server.wait_task(&admin, first["taskID"].as_i64().unwrap());
    assert_eq!(
        first["stateName"], "completed",
        "the running sync finished: {first}"
    );
    assert_eq!(first["result"]["counts"]["created"], 3000);
    // Handed back when the replica stopped, and run by the next one to start (here
    // the same, restarted).
    let second = server.wait_task(&admin, second["taskID"].as_i64().unwrap());
    assert_eq!(second["stateName"], "completed", "{second}");
    assert_eq!(second["result"]["counts"]["unchanged"], 3000, "{second}");
    let (_, users) = server.get("/api/v1/admin/tenants/1/users?limit=1000", &admin.headers());
    assert_eq!(users["data"].as_array().unwrap().len(), 1000);
}

#[test]
fn two_hundred_concurrent_triggers_run_one_sync_at_a_time() {
    let setup = Setup::new(500);
    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let digest = token::sha256_hex(ADMIN_PASSWORD);
    let answers: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..200)
            .map(|_| {
                let (server, admin, digest) = (&server, &admin, &digest);
                scope.spawn(move || {
                    let mut headers = admin.headers();
                    headers.push(("x-2fa-code", digest));
                    server.post("/api/v1/ldap.syncNow", &headers, None)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Every request is answered: the sync started, or (two-factor attempts are
    // counted when they begin, per account) a 429 once more than the limit are in
    // flight at once.
    let ok = json!({"message": "Sync_in_progress", "success": true});
    let started = answers
        .iter()
        .filter(|answer| **answer == (200, ok.clone()))
        .count();
    let limited = answers
        .iter()
        .filter(|(status, body)| *status == 429 && body["errorType"] == "error-too-many-requests")
        .count();
    assert_eq!(started + limited, 200, "{answers:?}");
    assert!(started >= 1);
    // Identical requests joined the queued one: a handful of tasks, never 200.
    let tasks = server.tasks(&admin);
    assert!(tasks.len() < 200, "{} tasks", tasks.len());
    for task in &tasks {
        let task = server.wait_task(&admin, task["ID"].as_i64().unwrap());
        assert_eq!(task["stateName"], "completed", "{task}");
    }
    let spans = server.runs_never_overlapping(&admin);
    assert_eq!(spans.len(), tasks.len());
    // Bodies over the limit are refused, and the server keeps serving.
    // (curl, which waits for the early answer instead of writing into a closed socket.)
    let body_file = setup.config().with_file_name("huge.json");
    let huge = json!({"usernames": ["x".repeat(3 * 1024 * 1024)]});
    std::fs::write(&body_file, huge.to_string()).unwrap();
    let output = Command::new("curl")
        .args([
            "--silent",
            "--output",
            "/dev/null",
            "--write-out",
            "%{http_code}",
        ])
        .args(["--header", "content-type: application/json"])
        .args(["--header", &format!("x-auth-token: {}", admin.token)])
        .args(["--header", &format!("x-user-id: {}", admin.user_id)])
        .arg("--data-binary")
        .arg(format!("@{}", body_file.display()))
        .arg(server.url("/api/v1/abac/users/sync"))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "413");
    assert_eq!(server.get("/health", &[]).0, 200);
}

#[test]
fn failed_logins_are_rate_limited() {
    let setup = Setup::new(1);
    let server = Server::start(&setup.config());
    for _ in 0..10 {
        let (status, body) = server.post(
            "/api/v1/login",
            &[],
            Some(json!({"user": ADMIN, "password": "wrong"})),
        );
        assert_eq!(
            (status, body),
            (
                401,
                json!({"status": "error", "error": "Unauthorized", "message": "Unauthorized", "success": false})
            )
        );
    }
    let (status, body) = server.post(
        "/api/v1/login",
        &[],
        Some(json!({"user": ADMIN, "password": ADMIN_PASSWORD})),
    );
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["errorType"], "error-too-many-requests");
    // grommunio's queue status needs no login.
    let (status, body) = server.get("/api/v1/tasq/status", &[]);
    assert_eq!((status, &body["running"]), (200, &json!(false)), "{body}");
    let (status, body) = server.get("/health", &[]);
    assert_eq!((status, &body["status"]), (200, &json!("ok")));
    let metrics = server.metrics();
    assert!(metrics.contains("abacsync_tasks_running 0"), "{metrics}");
}

#[test]
fn the_served_openapi_description_matches_the_routes() {
    let setup = Setup::new(1);
    let server = Server::start(&setup.config());
    let (status, doc) = server.get("/api/v1/openapi.json", &[]);
    assert_eq!(status, 200);
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 20, "{}", paths.len());
    // Every documented operation is routed: without credentials it answers with a body
    // of its own (401, 400, …), never the router's bare 404 or 405.
    for (path, item) in paths {
        let concrete = path
            .replace("{domainID}", "1")
            .replace("{tenant}", "1")
            .replace("{user}", "1")
            .replace("{account}", "1")
            .replace("{id}", "1");
        for method in item.as_object().unwrap().keys() {
            let mut response = server
                .agent
                .run(
                    ureq::http::Request::builder()
                        .method(method.to_uppercase().as_str())
                        .uri(server.url(&concrete))
                        .body(())
                        .unwrap(),
                )
                .unwrap();
            let status = response.status().as_u16();
            let body = response.body_mut().read_to_string().unwrap_or_default();
            assert!(
                status != 405 && !(status == 404 && body.is_empty()),
                "{method} {path}: {status}"
            );
        }
    }
}

/// Five tenants of 20,000 users each, syncing at once: every tenant gets all of its
/// users, each sync on its own, and none of them sees another tenant's users.
#[test]
fn five_tenants_of_twenty_thousand_users_sync_at_once() {
    const PEOPLE: u64 = 20_000;
    const TENANTS: u64 = 5;
    let slapd = super::people_slapd(PEOPLE as usize);
    let dir = tempfile::tempdir().unwrap();
    let plugin = abacsync_testkit::plugins::component("openldap-mapping");
    let mut text = format!("data_dir = \"{}\"\n", dir.path().join("data").display());
    for id in 1..=TENANTS {
        text.push_str(&super::numbered_tenant(&slapd, id, &plugin, ""));
    }
    let config = dir.path().join("abacsync.toml");
    std::fs::write(&config, text).unwrap();
    let server = Server::start(&config);
    let admin = server.login(ADMIN, ADMIN_PASSWORD);

    let tasks: Vec<(u64, i64)> = (1..=TENANTS)
        .map(|tenant| {
            let (status, body) = server.post(
                &format!("/api/v1/domains/{tenant}/ldap/downsync?import=true&timeout=0"),
                &admin.step_up(),
                None,
            );
            assert_eq!(status, 202, "tenant {tenant}: {body}");
            (tenant, body["taskID"].as_i64().unwrap())
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    let mut spans = Vec::new();
    for (tenant, task) in tasks {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
        let done = loop {
            let (_, body) = server.get(&format!("/api/v1/tasq/tasks/{task}"), &admin.headers());
            if !matches!(body["stateName"].as_str(), Some("queued" | "running")) {
                break body;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "tenant {tenant}: {body}"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        };
        assert_eq!(done["stateName"], "completed", "tenant {tenant}: {done}");
        let (status, runs) = server.get(
            &format!("/api/v1/admin/tenants/{tenant}/runs"),
            &admin.headers(),
        );
        assert_eq!(status, 200, "{runs}");
        let run = &runs["data"][0];
        spans.push((
            run["started"].as_str().unwrap().to_owned(),
            run["finished"].as_str().unwrap().to_owned(),
        ));
        let counts = &run["summary"]["counts"];
        assert_eq!(counts["created"], PEOPLE, "tenant {tenant}: {counts}");
        assert_eq!(counts["failed"], 0, "tenant {tenant}: {counts}");
        // Each tenant has its own user rows, not shared ones.
        let (status, users) = server.get(
            &format!("/api/v1/admin/tenants/{tenant}/users?limit=5"),
            &admin.headers(),
        );
        assert_eq!(status, 200, "{users}");
        let first = users["data"][0]["id"].as_i64().unwrap();
        assert!(ids.insert(first), "tenant {tenant} shares user {first}");
    }
    // The tenants' syncs ran at the same time (ISO 8601 UTC sorts as text).
    let latest_start = spans.iter().map(|(start, _)| start).max().unwrap();
    let earliest_end = spans.iter().map(|(_, end)| end).min().unwrap();
    assert!(
        latest_start < earliest_end,
        "the syncs did not overlap: {spans:?}"
    );
}
