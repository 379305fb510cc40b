//! Hostile plugins next to healthy tenants: while tenants with misbehaving plugins
//! sync again and again, a healthy tenant's sync gives correct results in bounded
//! time, reads stay fast, and each failing plugin ends up suspended for its tenant.

use std::time::{Duration, Instant};

use abacsync_testkit::plugins::{self, Language};
use serde_json::Value;

use super::{ADMIN, ADMIN_PASSWORD, RcAuth, Server};

const PEOPLE: usize = 5_000;
/// Tenants 3 onwards, one behaviour each (tests/plugins/hostile).
const HOSTILE: [&str; 6] = [
    "loop",
    "memory",
    "recursion",
    "panic",
    "oversized",
    "log-flood",
];

fn downsync(server: &Server, auth: &RcAuth, tenant: u64) -> (u16, Value, Duration) {
    let started = Instant::now();
    let (status, body) = server.downsync(auth, tenant);
    (status, body, started.elapsed())
}

/// Tenant `tenant`'s users as (username, attributes), sorted.
fn users(server: &Server, auth: &RcAuth, tenant: u64) -> Vec<(String, Value)> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let (status, body) = server.get(
            &format!("/api/v1/admin/tenants/{tenant}/users?limit=1000&after={after}"),
            &auth.headers(),
        );
        assert_eq!(status, 200, "{body}");
        let page = body["data"].as_array().unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().unwrap()["id"].as_i64().unwrap();
        all.extend(page.iter().map(|user| {
            (
                user["username"].as_str().unwrap().to_owned(),
                user["attributes"].clone(),
            )
        }));
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

/// Median and maximum of `GET …/users?limit=100` over `window`.
fn read_latency(server: &Server, auth: &RcAuth, window: Duration) -> (Duration, Duration) {
    let until = Instant::now() + window;
    let mut samples = Vec::new();
    while Instant::now() < until {
        let started = Instant::now();
        let (status, _) = server.get("/api/v1/admin/tenants/1/users?limit=100", &auth.headers());
        samples.push(started.elapsed());
        assert_eq!(status, 200);
    }
    samples.sort();
    (samples[samples.len() / 2], *samples.last().unwrap())
}

#[test]
fn hostile_plugins_do_not_disturb_healthy_tenants_and_end_up_suspended() {
    let slapd = super::people_slapd(PEOPLE);
    let dir = tempfile::tempdir().unwrap();
    let openldap = abacsync_testkit::plugins::component("openldap-mapping");
    let hostile = abacsync_testkit::plugins::component("hostile-mapping");
    let mut text = format!("data_dir = \"{}\"\n", dir.path().join("data").display());
    for id in 1..=2 {
        text.push_str(&super::numbered_tenant(&slapd, id, &openldap, ""));
    }
    for (i, behaviour) in (3..).zip(HOSTILE) {
        text.push_str(&super::numbered_tenant(
            &slapd,
            i,
            &hostile,
            &format!("behaviour = \"{behaviour}\""),
        ));
    }
    let config = dir.path().join("abacsync.toml");
    std::fs::write(&config, text).unwrap();
    let server = Server::start(&config);
    let admin = server.login(ADMIN, ADMIN_PASSWORD);

    // Alone: tenant 1 imports everyone; reads are timed while nothing runs.
    let (status, body, alone) = downsync(&server, &admin, 1);
    assert_eq!(status, 200, "{body}");
    let (idle_median, idle_max) = read_latency(&server, &admin, Duration::from_secs(2));

    // Beside the hostile tenants, each failing SUSPEND_AFTER syncs in a row: tenant 2
    // does the same work as tenant 1 did alone, and reads are timed again.
    let attempts = abacsync::sync::SUSPEND_AFTER;
    let (beside, busy_median, busy_max) = std::thread::scope(|scope| {
        let storms: Vec<_> = (0..HOSTILE.len())
            .map(|i| {
                let (server, admin) = (&server, &admin);
                scope.spawn(move || {
                    let tenant = (i + 3) as u64;
                    for attempt in 1..=attempts {
                        let (status, body, _) = downsync(server, admin, tenant);
                        assert_eq!(status, 500, "{} attempt {attempt}: {body}", HOSTILE[i]);
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let reads = scope.spawn(|| read_latency(&server, &admin, Duration::from_secs(4)));
        let (status, body, beside) = downsync(&server, &admin, 2);
        assert_eq!(status, 200, "{body}");
        let results = body["data"].as_array().unwrap();
        assert_eq!(results.len(), PEOPLE);
        assert!(results.iter().all(|r| r["code"] == 201), "{}", results[0]);
        for storm in storms {
            storm.join().unwrap();
        }
        let (median, max) = reads.join().unwrap();
        (beside, median, max)
    });
    eprintln!(
        "healthy sync of {PEOPLE}: alone {alone:?}, beside six hostile plugins {beside:?}; \
         reads: idle p50 {idle_median:?} max {idle_max:?}, busy p50 {busy_median:?} max {busy_max:?}"
    );

    // Correct: tenant 2's users are tenant 1's, attribute for attribute.
    let first = users(&server, &admin, 1);
    assert_eq!(first.len(), PEOPLE);
    assert_eq!(users(&server, &admin, 2), first);
    // Bounded: the hostile calls end at their deadline (5 s) or limit, so the healthy
    // sync takes at most a few times as long (the loop holds one of two cores).
    assert!(
        beside <= alone * 4 + Duration::from_secs(5),
        "alone {alone:?}, beside {beside:?}"
    );
    assert!(busy_max < Duration::from_secs(2), "{busy_max:?}");

    // Each hostile tenant's plugin is suspended, with the reason visible.
    for (i, behaviour) in HOSTILE.iter().enumerate() {
        let tenant = i + 3;
        let (status, view) =
            server.get(&format!("/api/v1/admin/tenants/{tenant}"), &admin.headers());
        assert_eq!(status, 200, "{view}");
        assert_eq!(
            view["pluginHealth"]["status"], "suspended",
            "{behaviour}: {view}"
        );
    }
    for tenant in 1..=2 {
        let (_, view) = server.get(&format!("/api/v1/admin/tenants/{tenant}"), &admin.headers());
        assert_ne!(view["pluginHealth"]["status"], "suspended", "{view}");
    }
}

/// One `POST …/plugins/{id}/test` of a plugin that sleeps 20 s: its status, body and
/// how long it took.
fn sleeping_test(server: &Server, auth: &RcAuth, plugin: &Value) -> (u16, Value, Duration) {
    let started = Instant::now();
    let (status, body) = server.post(
        &format!("/api/v1/admin/plugins/{}/test", plugin["id"]),
        &auth.headers(),
        Some(serde_json::json!({
            "entries": [{"dn": "uid=x,dc=example,dc=org", "attributes": {"uid": ["x"]}}],
            "settings": {"behaviour": "sleep", "secs": "20"},
        })),
    );
    (status, body, started.elapsed())
}

/// What the rest of the server does while one tenant's sleeping calls pile up: an
/// admin login, a readiness probe and another tenant's sync, each timed.
fn neighbours_while(server: &Server, admin: &RcAuth) -> [(&'static str, Duration); 3] {
    let started = Instant::now();
    server.login(ADMIN, ADMIN_PASSWORD);
    let login = started.elapsed();
    let started = Instant::now();
    let (status, body) = server.get("/ready", &[]);
    assert_eq!(status, 200, "{body}");
    let ready = started.elapsed();
    let (status, body, sync) = downsync(server, admin, 1);
    assert_eq!(status, 200, "{body}");
    [("login", login), ("ready", ready), ("sync", sync)]
}

/// The sandbox's deadline bounds sleeps in host calls, a tenant's calls run in its
/// share of the plugin threads, and those threads are not the pool that serves
/// logins and sessions: 64, then 600 calls of a sleeping plugin from one tenant admin
/// leave another tenant's sync, an admin login and `/ready` as fast as before.
#[test]
fn a_tenant_of_sleeping_plugins_stalls_nobody_else() {
    let setup = super::Setup::new(200);
    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    server.create_account(
        &admin,
        serde_json::json!({"username": "two", "password": "tenant two admin", "tenant": 2, "role": "admin"}),
    );
    let two = server.login("two", "tenant two admin");
    let (status, plugin) = server.upload(&two, "hostile-mapping");
    assert!(status == 200 || status == 201, "{plugin}");
    let (status, body, alone) = downsync(&server, &admin, 1);
    assert_eq!(status, 200, "{body}");

    for calls in [64, 600] {
        let (answers, beside) = std::thread::scope(|scope| {
            let storm: Vec<_> = (0..calls)
                .map(|_| scope.spawn(|| sleeping_test(&server, &two, &plugin)))
                .collect();
            std::thread::sleep(Duration::from_millis(500));
            let beside = neighbours_while(&server, &admin);
            let answers: Vec<_> = storm.into_iter().map(|t| t.join().unwrap()).collect();
            (answers, beside)
        });
        eprintln!("{calls} sleeping calls: tenant 1 alone {alone:?}, beside them {beside:?}");
        for (what, took) in beside {
            assert!(
                took < Duration::from_secs(3),
                "{what} took {took:?} beside {calls} sleeping calls"
            );
        }
        // Every call ends at its deadline (5 s, not the 20 s it asked for) or is
        // refused at once because the tenant's queue is full.
        let (mut stopped, mut refused) = (0, 0);
        for (status, body, took) in &answers {
            match status {
                422 => {
                    assert!(body.to_string().contains("deadline"), "{body}");
                    stopped += 1;
                }
                429 => {
                    assert!(body.to_string().contains("calls waiting"), "{body}");
                    assert!(*took < Duration::from_secs(3), "refused after {took:?}");
                    refused += 1;
                }
                _ => panic!("{status} {body}"),
            }
        }
        // Sixteen run at once and 64 wait: 80 are served, in five rounds of 5 s.
        assert_eq!(stopped, calls.min(80), "{refused} refused");
        let slowest = answers.iter().map(|a| a.2).max().unwrap();
        assert!(slowest < Duration::from_secs(40), "{slowest:?}");
    }
}

/// SIGTERM while plugin calls sleep: the server stops within the calls' deadline,
/// well inside its grace period, and without a panic.
#[test]
fn a_stop_during_sleeping_calls_is_quick_and_clean() {
    let setup = super::Setup::new(2);
    let log = setup.data_dir().with_file_name("serve.log");
    let mut server = Server::start_logging_to(&setup.config(), &log);
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let (status, plugin) = server.upload(&admin, "hostile-mapping");
    assert!(status == 200 || status == 201, "{plugin}");
    let (answers, stopped_after) = std::thread::scope(|scope| {
        let calls: Vec<_> = (0..20)
            .map(|_| scope.spawn(|| sleeping_test(&server, &admin, &plugin)))
            .collect();
        std::thread::sleep(Duration::from_millis(800));
        let started = Instant::now();
        server.send_term();
        let answers: Vec<_> = calls.into_iter().map(|c| c.join()).collect();
        (answers, started)
    });
    let exit = server.wait_exit();
    let took = stopped_after.elapsed();
    assert!(exit.success(), "{exit:?}");
    // The calls end at their deadline (5 s); the grace period is 30 s.
    assert!(took < Duration::from_secs(12), "stopped after {took:?}");
    // Answered (the deadline) or cut off by the stop; never a hung client.
    for (status, body, _) in answers.into_iter().flatten() {
        assert!(status == 422 || status == 503, "{status} {body}");
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("panicked"), "{text}");
}

/// Python and JavaScript plugins that misbehave, beside a healthy tenant: tenants 3
/// onwards, one (language, behaviour) each (tests/plugins/hostile-py, hostile-js).
const SCRIPT_HOSTILE: [(Language, &str); 6] = [
    (Language::Python, "loop"),
    (Language::Python, "memory"),
    (Language::Python, "raise-batch"),
    (Language::JavaScript, "loop"),
    (Language::JavaScript, "memory"),
    (Language::JavaScript, "raise-batch"),
];

#[test]
fn hostile_script_plugins_do_not_disturb_a_healthy_tenant() {
    const SCRIPT_PEOPLE: usize = 2_000;
    let slapd = super::people_slapd(SCRIPT_PEOPLE);
    let dir = tempfile::tempdir().unwrap();
    let openldap = abacsync_testkit::plugins::component("openldap-mapping");
    let python = plugins::script_component(Language::Python, "tests/plugins/hostile-py");
    let javascript = plugins::script_component(Language::JavaScript, "tests/plugins/hostile-js");
    let mut text = format!("data_dir = \"{}\"\n", dir.path().join("data").display());
    for id in 1..=2 {
        text.push_str(&super::numbered_tenant(&slapd, id, &openldap, ""));
    }
    for (tenant, (language, behaviour)) in (3..).zip(SCRIPT_HOSTILE) {
        let component = match language {
            Language::Python => &python,
            Language::JavaScript => &javascript,
        };
        text.push_str(&super::numbered_tenant(
            &slapd,
            tenant,
            component,
            &format!("behaviour = \"{behaviour}\""),
        ));
    }
    let config = dir.path().join("abacsync.toml");
    std::fs::write(&config, text).unwrap();
    let server = Server::start(&config);
    let admin = server.login(ADMIN, ADMIN_PASSWORD);

    let (status, body, alone) = downsync(&server, &admin, 1);
    assert_eq!(status, 200, "{body}");
    // A first failing sync each, together: it compiles the language runtimes (tens of
    // seconds), so that the storm below runs hostile code, not the compiler.
    std::thread::scope(|scope| {
        for tenant in 3..3 + SCRIPT_HOSTILE.len() as u64 {
            let (server, admin) = (&server, &admin);
            scope.spawn(move || {
                let (status, body, _) = downsync(server, admin, tenant);
                assert_eq!(status, 500, "tenant {tenant}: {body}");
            });
        }
    });
    let attempts = abacsync::sync::SUSPEND_AFTER;
    let (beside, busy_max) = std::thread::scope(|scope| {
        let storms: Vec<_> = SCRIPT_HOSTILE
            .iter()
            .enumerate()
            .map(|(i, (language, behaviour))| {
                let (server, admin) = (&server, &admin);
                scope.spawn(move || {
                    let tenant = (i + 3) as u64;
                    for attempt in 2..=attempts {
                        let (status, body, _) = downsync(server, admin, tenant);
                        assert_eq!(
                            status, 500,
                            "{language:?} {behaviour} attempt {attempt}: {body}"
                        );
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let reads = scope.spawn(|| read_latency(&server, &admin, Duration::from_secs(4)));
        let (status, body, beside) = downsync(&server, &admin, 2);
        assert_eq!(status, 200, "{body}");
        let results = body["data"].as_array().unwrap();
        assert_eq!(results.len(), SCRIPT_PEOPLE);
        assert!(results.iter().all(|r| r["code"] == 201), "{}", results[0]);
        for storm in storms {
            storm.join().unwrap();
        }
        let (_, max) = reads.join().unwrap();
        (beside, max)
    });
    eprintln!(
        "healthy sync of {SCRIPT_PEOPLE}: alone {alone:?}, beside six hostile script plugins {beside:?}; reads max {busy_max:?}"
    );
    assert_eq!(users(&server, &admin, 2), users(&server, &admin, 1));
    assert!(
        beside <= alone * 4 + Duration::from_secs(5),
        "alone {alone:?}, beside {beside:?}"
    );
    assert!(busy_max < Duration::from_secs(2), "{busy_max:?}");
    for (i, (language, behaviour)) in SCRIPT_HOSTILE.iter().enumerate() {
        let tenant = i + 3;
        let (_, view) = server.get(&format!("/api/v1/admin/tenants/{tenant}"), &admin.headers());
        assert_eq!(
            view["pluginHealth"]["status"], "suspended",
            "{language:?} {behaviour}: {view}"
        );
    }
    let (_, view) = server.get("/api/v1/admin/tenants/2", &admin.headers());
    assert_ne!(view["pluginHealth"]["status"], "suspended", "{view}");
}
