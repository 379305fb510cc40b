//! Directory faults, seen the way an operator sees them: through the API and its
//! tasks. Each fault fails the sync with a clear cause (or is handled as documented),
//! leaves the store as it was, is recorded in the task, and the next sync succeeds
//! once the fault is gone.

use std::process::Command;
use std::time::Duration;

use abacsync_testkit::directory::{PeopleOptions, people_ldif, uid};
use abacsync_testkit::slapd::Slapd;
use abacsync_testkit::stall::StallingProxy;
use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{ADMIN, ADMIN_PASSWORD, RcAuth, Server, Setup};

const BASE: &str = "dc=example,dc=org";

fn people(count: usize) -> String {
    people_ldif(BASE, count, &PeopleOptions::default()).unwrap()
}

/// Adds `lines` to the entry of user `i` in `ldif`.
fn with_lines(ldif: &str, i: usize, lines: &str) -> String {
    let dn = format!("dn: uid={},ou=people,{BASE}\n", uid(i));
    let start = ldif.find(&dn).unwrap();
    let end = ldif[start..]
        .find("\n\n")
        .map_or(ldif.len(), |at| start + at + 1);
    format!("{}{lines}\n{}", &ldif[..end], &ldif[end..])
}

/// Whether a downsync answer finds every user unchanged.
fn all_unchanged(body: &Value) -> bool {
    body["data"]
        .as_array()
        .is_some_and(|results| results.iter().all(|r| r["abacsync"]["code"] == 304))
}

fn users(server: &Server, auth: &RcAuth) -> Vec<Value> {
    let (status, body) = server.get("/api/v1/admin/tenants/1/users?limit=1000", &auth.headers());
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().unwrap().clone()
}

fn signal(slapd: &Slapd, name: &str) {
    let pid = slapd.pid().unwrap().to_string();
    assert!(
        Command::new("kill")
            .args([name, &pid])
            .status()
            .unwrap()
            .success()
    );
}

/// The newest task's state name and message.
fn last_task(server: &Server, auth: &RcAuth) -> (String, String) {
    let tasks = server.tasks(auth);
    let task = &tasks[0];
    (
        task["stateName"].as_str().unwrap().to_owned(),
        task["message"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn a_directory_that_stops_answering_times_out_and_changes_nothing() {
    let slapd = Slapd::builder().ldif(people(20)).start().unwrap();
    let setup = Setup::custom(slapd, "operation_timeout_secs = 2", "", "");
    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    assert_eq!(server.downsync(&admin, 1).0, 200);
    let before = users(&server, &admin);
    assert_eq!(before.len(), 20);

    // slapd frozen: connections are accepted by the kernel, nothing answers.
    signal(&setup.slapd, "-STOP");
    let (status, body) = server.downsync(&admin, 1);
    signal(&setup.slapd, "-CONT");
    assert_eq!(status, 503, "{body}");
    let (state, message) = last_task(&server, &admin);
    assert_eq!(state, "error");
    assert!(message.contains("no answer"), "{message}");
    assert_eq!(users(&server, &admin), before, "nothing changed");

    let (status, body) = server.downsync(&admin, 1);
    assert_eq!(status, 200, "{body}");
    assert!(all_unchanged(&body), "{body}");
}

/// Makes the configuration bind anonymously: the root DN has no limits.
fn anonymous(setup: &Setup) {
    let text = std::fs::read_to_string(setup.config()).unwrap();
    let text: String = text
        .lines()
        .filter(|line| !line.trim_start().starts_with("bind_"))
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(setup.config(), text).unwrap();
}

#[test]
fn a_size_limit_is_an_error_never_a_short_list() {
    // Paged searches may return 10 entries in all; the directory holds 20.
    let slapd = Slapd::builder()
        .size_limit(Some(10))
        .paged_total_limit(Some(10))
        .ldif(people(20))
        .start()
        .unwrap();
    let setup = Setup::custom(slapd, "", "", "");
    anonymous(&setup);
    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let (status, body) = server.downsync(&admin, 1);
    assert_eq!(status, 500, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("size limit"),
        "{body}"
    );
    let (state, message) = last_task(&server, &admin);
    assert_eq!(state, "error", "{message}");
    assert!(
        users(&server, &admin).is_empty(),
        "nothing half-read was written"
    );
}

#[test]
fn a_time_limit_is_an_error_never_a_short_list() {
    // slapd gives each search by anyone but the root DN one second. Read in pages of
    // 500, 20,000 people sync: each page is sent at once.
    const PEOPLE: usize = 20_000;
    let slapd = Slapd::builder()
        .time_limit(Some(1))
        .ldif(people(PEOPLE))
        .start()
        .unwrap();
    let setup = Setup::custom(slapd, "", "", "");
    anonymous(&setup);
    let config = std::fs::read_to_string(setup.config()).unwrap().replacen(
        "page_size = 7",
        "page_size = 500",
        1,
    );
    std::fs::write(setup.config(), &config).unwrap();
    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let (status, body) = server.downsync(&admin, 1);
    assert_eq!(status, 200, "{body}");
    let before = users(&server, &admin);
    drop(server);

    // Now one page holds everyone, read through a link that stalls for 2.5 s after
    // the first megabyte: slapd's writes block, and the search runs out of time.
    let address = format!("127.0.0.1:{}", setup.slapd.port()).parse().unwrap();
    let proxy = StallingProxy::start(address, 1 << 20, Duration::from_millis(2500)).unwrap();
    let stalling = config
        .replacen("page_size = 500", "page_size = 20000", 1)
        .replacen(&setup.slapd.url(), &proxy.ldap_url(), 1);
    assert!(stalling.contains(&proxy.ldap_url()));
    std::fs::write(setup.config(), &stalling).unwrap();
    let server = Server::start(&setup.config());
    let (status, body) = server.downsync(&admin, 1);
    assert_eq!(status, 500, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("time limit exceeded"), "{message}");
    assert!(message.contains("lower the page size"), "{message}");
    let (state, task) = last_task(&server, &admin);
    assert_eq!(state, "error");
    assert!(task.contains("time limit exceeded"), "{task}");
    assert_eq!(users(&server, &admin), before, "nothing changed");
    assert_eq!(proxy.stalls(), 1);
    drop(server);

    // Back to pages of 500: the next sync succeeds and finds everyone unchanged.
    std::fs::write(setup.config(), &config).unwrap();
    let server = Server::start(&setup.config());
    let (status, body) = server.downsync(&admin, 1);
    assert_eq!(status, 200, "{body}");
    let results = body["data"].as_array().unwrap();
    assert_eq!(results.len(), PEOPLE);
    assert!(all_unchanged(&body), "{}", results[0]);
}

/// A directory of 10 people with a referral to another server inside the base;
/// tenant 1 synced once, then user 3 deleted from the directory.
fn referral_setup(ldap_extra: &str) -> (Setup, Server, RcAuth) {
    let mut ldif = people(10);
    ldif.push_str(&format!(
        "\ndn: ou=moved,ou=people,{BASE}\nobjectClass: referral\nobjectClass: extensibleObject\nou: moved\nref: ldap://ldap.elsewhere.example/ou=people,dc=elsewhere\n"
    ));
    let slapd = Slapd::builder().ldif(ldif).start().unwrap();
    let setup = Setup::custom(slapd, ldap_extra, "", "");
    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let (status, body) = server.downsync(&admin, 1);
    assert_eq!(status, 200, "{body}");
    assert_eq!(users(&server, &admin).len(), 10);
    setup
        .slapd
        .delete(&format!("uid={},ou=people,{BASE}", uid(3)))
        .unwrap();
    (setup, server, admin)
}

#[test]
fn a_referral_inside_the_base_means_nobody_is_removed() {
    let (_setup, server, admin) = referral_setup("");
    let (status, body) = server.downsync(&admin, 1);
    assert_eq!(status, 200, "{body}");
    assert!(
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["abacsync"]["code"] != 410),
        "{body}"
    );
    let tasks = server.tasks(&admin);
    let result = &tasks[0]["result"];
    assert_eq!(
        (&result["removal"]["state"], &result["references"]),
        (&json!("skipped-after-referrals"), &json!(1)),
        "{result}"
    );
    assert!(users(&server, &admin).iter().all(|u| u["active"] == true));
}

#[test]
fn referrals_ignored_on_request_let_removals_happen() {
    let (_setup, server, admin) = referral_setup("ignore_referrals = true");
    let (status, body) = server.downsync(&admin, 1);
    assert_eq!(status, 200, "{body}");
    let removed: Vec<&Value> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["abacsync"]["code"] == 410)
        .collect();
    assert_eq!(removed.len(), 1, "{body}");
    assert_eq!(removed[0]["username"], uid(3));
}

#[test]
fn a_five_megabyte_photo_becomes_an_avatar() {
    let photo: Vec<u8> = (0..5 * 1024 * 1024)
        .map(|i: usize| (i % 251) as u8)
        .collect();
    let encoded = base64::engine::general_purpose::STANDARD.encode(&photo);
    let ldif = with_lines(&people(3), 0, &format!("jpegPhoto:: {encoded}"));
    let slapd = Slapd::builder().ldif(ldif).start().unwrap();
    let setup = Setup::custom(slapd, "", "sync_avatars = true", "");
    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let (status, body) = server.downsync(&admin, 1);
    assert_eq!(status, 200, "{body}");
    let all = users(&server, &admin);
    let with_photo = all.iter().find(|u| u["username"] == uid(0)).unwrap();
    let sha: String = Sha256::digest(&photo)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(with_photo["avatarSha256"], sha);
    assert!(all.iter().filter(|u| u["avatarSha256"].is_string()).count() == 1);
}

#[test]
fn text_that_is_not_utf8_is_kept_as_bytes_and_counted() {
    // A text attribute without a matching rule keeps whatever bytes it was given
    // (slapd normalizes values only for matching, and `slapadd -q` skips checks), here
    // Latin-1 "München" in user 4's legacyNote; the others hold "Berlin". Mapped by
    // settings-map as the ABAC attribute `note`.
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("legacy.schema");
    std::fs::write(
        &schema,
        "attributetype ( 1.3.6.1.4.1.55555.1.1 NAME 'legacyNote'\n  \
         SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )\n\
         objectclass ( 1.3.6.1.4.1.55555.2.1 NAME 'legacyPerson' AUXILIARY MAY legacyNote )\n",
    )
    .unwrap();
    let latin1: Vec<u8> = "München"
        .chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap())
        .collect();
    assert!(std::str::from_utf8(&latin1).is_err());
    // (slapadd wants an entry's object classes on consecutive lines.)
    let mut ldif = people(10).replace(
        "objectClass: inetOrgPerson\n",
        "objectClass: inetOrgPerson\nobjectClass: legacyPerson\n",
    );
    for i in 0..10 {
        let note = if i == 4 {
            format!(
                "legacyNote:: {}",
                base64::engine::general_purpose::STANDARD.encode(&latin1)
            )
        } else {
            "legacyNote: Berlin".to_owned()
        };
        ldif = with_lines(&ldif, i, &note);
    }
    let slapd = Slapd::builder()
        .schemas(&[
            "core",
            "cosine",
            "inetorgperson",
            "nis",
            schema.to_str().unwrap(),
        ])
        .ldif(ldif)
        .start()
        .unwrap();
    let setup = Setup::custom(slapd, "", "", "");
    setup.set_plugin("settings-map-mapping", r#""abac.note" = "legacyNote""#);
    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let (status, body) = server.downsync(&admin, 1);
    assert_eq!(status, 200, "{body}");
    let results = body["data"].as_array().unwrap();
    assert_eq!(results.len(), 10);
    assert!(results.iter().all(|r| r["code"] == 201), "{body}");
    // User 4 has no `note`: the plugin got the value as bytes, as it would get a
    // binary attribute, and settings-map maps text only. Nothing was replaced by U+FFFD.
    for user in users(&server, &admin) {
        let expected = if user["username"] == uid(4) {
            json!({})
        } else {
            json!({"note": ["Berlin"]})
        };
        assert_eq!(user["attributes"], expected, "{user}");
    }
    let (_, runs) = server.get("/api/v1/admin/tenants/1/runs", &admin.headers());
    assert_eq!(
        runs["data"][0]["summary"]["invalid_utf8_values"], 1,
        "{runs}"
    );
    let (status, body) = server.downsync(&admin, 1);
    assert_eq!(status, 200, "{body}");
    assert!(all_unchanged(&body), "{body}");
}

#[test]
fn two_entries_with_one_unique_id_conflict_and_the_rest_sync() {
    let ldif = with_lines(&people(4), 1, "employeeNumber: 4711");
    let ldif = with_lines(&ldif, 2, "employeeNumber: 4711");
    let ldif = with_lines(&ldif, 0, "employeeNumber: 1000");
    let ldif = with_lines(&ldif, 3, "employeeNumber: 1003");
    let slapd = Slapd::builder().ldif(ldif).start().unwrap();
    let setup = Setup::custom(slapd, "unique_identifiers = [\"employeeNumber\"]", "", "");
    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    // The settings-map plugin takes the directory id from employeeNumber.
    let (status, plugin) = server.upload(&admin, "settings-map-mapping");
    assert_eq!(status, 201, "{plugin}");
    let (status, body) = server.call(
        "PUT",
        "/api/v1/admin/tenants/1/plugin",
        &admin.headers(),
        Some(json!({"pluginId": plugin["id"], "settings": {"ldap-id": "employeeNumber"}})),
    );
    assert_eq!(status, 200, "{body}");
    for _ in 0..2 {
        let (status, body) = server.downsync(&admin, 1);
        assert_eq!(status, 200, "{body}");
        let conflicts = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["abacsync"]["code"] == 409)
            .count();
        assert_eq!(conflicts, 1, "{body}");
    }
    assert_eq!(users(&server, &admin).len(), 3);
}

/// slapd killed and started again while a full sync pages through 30,000 people: the
/// paged search's cookie dies with the connection, so the read is incomplete. The sync
/// fails with the cause, nobody is removed, and the next sync finds everyone unchanged.
///
/// The sync reads through a link that stalls for 3 s after its first megabyte, so that
/// the restart happens mid-read however fast the sync is.
#[test]
fn slapd_restarted_between_pages_fails_the_sync_and_removes_nobody() {
    const PEOPLE: u64 = 30_000;
    let slapd = Slapd::builder()
        .ldif(people(PEOPLE as usize))
        .start()
        .unwrap();
    let mut setup = Setup::custom(slapd, "", "", "");
    let config = std::fs::read_to_string(setup.config()).unwrap();
    std::fs::write(
        setup.config(),
        config.replace("page_size = 7", "page_size = 100"),
    )
    .unwrap();
    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let import = |server: &Server| {
        let (status, body) = server.post(
            "/api/v1/domains/1/ldap/downsync?timeout=0&import=true",
            &admin.step_up(),
            None,
        );
        assert_eq!(status, 202, "{body}");
        let task = body["taskID"].as_i64().unwrap();
        assert_eq!(server.wait_task(&admin, task)["stateName"], "completed");
    };
    import(&server);
    drop(server);
    let address = format!("127.0.0.1:{}", setup.slapd.port()).parse().unwrap();
    let proxy = StallingProxy::start(address, 1 << 20, Duration::from_secs(3)).unwrap();
    let config = std::fs::read_to_string(setup.config()).unwrap();
    let stalling = config.replacen(&setup.slapd.url(), &proxy.ldap_url(), 1);
    assert!(stalling.contains(&proxy.ldap_url()));
    std::fs::write(setup.config(), &stalling).unwrap();
    let server = Server::start(&setup.config());
    // In the background: the per-user results of 30,000 users are not needed here.
    let start = |query: &str| {
        let (status, body) = server.post(
            &format!("/api/v1/domains/1/ldap/downsync?timeout=0{query}"),
            &admin.step_up(),
            None,
        );
        assert_eq!(status, 202, "{body}");
        body["taskID"].as_i64().unwrap()
    };
    // The newest run's counts.
    let counts = || {
        let (status, body) = server.get("/api/v1/admin/tenants/1/runs", &admin.headers());
        assert_eq!(status, 200, "{body}");
        body["data"][0]["summary"]["counts"].clone()
    };

    assert_eq!(counts()["created"], PEOPLE);

    let task = start("");
    // The task reports "N read, M mapped" every second while it reads: restart
    // slapd as soon as some pages are in (the link stalls after the first megabyte)
    // and before the read is done.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let (_, body) = server.get(&format!("/api/v1/tasq/tasks/{task}"), &admin.headers());
        let message = body["message"].as_str().unwrap_or_default().to_owned();
        let read: u64 = message
            .split(" read")
            .next()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        if read > 0 {
            assert!(
                read < PEOPLE,
                "the read finished before the restart: {message}"
            );
            break;
        }
        assert_ne!(
            body["stateName"], "completed",
            "the sync ended before the restart"
        );
        assert!(std::time::Instant::now() < deadline, "no progress: {body}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    setup.slapd.restart().unwrap();
    let done = server.wait_task(&admin, task);
    assert_eq!(done["stateName"], "error", "{done}");
    let message = done["message"].as_str().unwrap();
    assert!(
        message.contains("directory connection lost during the search"),
        "{done}"
    );

    // Everyone is still there and active: the next sync changes nothing.
    let again = start("");
    assert_eq!(server.wait_task(&admin, again)["stateName"], "completed");
    let counts = counts();
    assert_eq!(counts["unchanged"], PEOPLE, "{counts}");
    for changed in [
        "created",
        "updated",
        "deactivated",
        "reactivated",
        "deleted",
    ] {
        assert_eq!(counts[changed], 0, "{changed}: {counts}");
    }
}
