//! Hostile plugins next to healthy tenants: while tenants with misbehaving plugins
//! sync again and again, a healthy tenant's sync gives correct results in bounded
//! time, reads stay fast, and each failing plugin ends up suspended for its tenant.

use std::time::{Duration, Instant};

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
