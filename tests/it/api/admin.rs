//! The admin API end to end: plugins (upload, try, assign, versions, roll back),
//! tenants kept in the store (create, replace, delete, survive restarts) and schedules,
//! over real HTTP against the real binary and a real slapd.

use abacsync_testkit::directory::{uid, user_dn};
use serde_json::{Value, json};

use super::{ADMIN, ADMIN_PASSWORD, RcAuth, Server, Setup};

fn upload(server: &Server, auth: &RcAuth, package: &str) -> (u16, Value) {
    server.upload(auth, package)
}

fn put(server: &Server, auth: &RcAuth, path: &str, body: Value) -> (u16, Value) {
    server.call("PUT", path, &auth.headers(), Some(body))
}

fn delete(server: &Server, auth: &RcAuth, path: &str) -> u16 {
    server.call("DELETE", path, &auth.headers(), None).0
}

/// A full sync with import through grommunio's endpoint, as the admin; its results.
fn attributes(server: &Server, auth: &RcAuth, tenant: u64, username: &str) -> Value {
    let (status, users) = server.get(
        &format!("/api/v1/admin/tenants/{tenant}/users?search={username}"),
        &auth.headers(),
    );
    assert_eq!(status, 200, "{users}");
    users["data"][0]["attributes"].clone()
}

#[test]
fn plugins_are_uploaded_tried_assigned_and_rolled_back() {
    let setup = Setup::new(3);
    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);

    // A component that imports what plugins may not: refused, with the reason.
    let (status, body) = upload(&server, &admin, "forbidden-import-mapping");
    assert_eq!(status, 422, "{body}");
    assert!(!body["errors"][0].as_str().unwrap().is_empty(), "{body}");

    let (status, settings_map) = upload(&server, &admin, "settings-map-mapping");
    assert_eq!(status, 201, "{settings_map}");
    let settings_map_id = settings_map["id"].as_i64().unwrap();
    let (status, again) = upload(&server, &admin, "settings-map-mapping");
    assert_eq!(
        (status, &again["id"]),
        (201, &json!(settings_map_id)),
        "stored once"
    );

    // Tried over posted entries, with an expectation that holds and one that does not.
    let entries = json!([{"dn": "uid=alice,ou=people,dc=example,dc=org",
        "attributes": {"uid": ["alice"], "entryUUID": ["6f2c1e52-0000-4000-8000-000000000001"],
                       "mail": ["alice@example.org"], "departmentNumber": ["42"]}}]);
    let settings = json!({"abac.dept": "departmentNumber"});
    let (status, tried) = server.post(
        &format!("/api/v1/admin/plugins/{settings_map_id}/test"),
        &admin.headers(),
        Some(json!({"entries": entries, "settings": settings})),
    );
    assert_eq!(status, 200, "{tried}");
    let result = &tried["results"][0];
    assert_eq!(
        result["dn"], "uid=alice,ou=people,dc=example,dc=org",
        "{tried}"
    );
    let (status, compared) = server.post(
        &format!("/api/v1/admin/plugins/{settings_map_id}/test"),
        &admin.headers(),
        Some(json!({"entries": entries, "settings": settings, "expected": [result]})),
    );
    assert_eq!(
        (status, &compared["matches"]),
        (200, &json!(true)),
        "{compared}"
    );
    let mut wrong = result.clone();
    wrong["user"]["attributes"]["dept"] = json!(["7"]);
    let (_, compared) = server.post(
        &format!("/api/v1/admin/plugins/{settings_map_id}/test"),
        &admin.headers(),
        Some(json!({"entries": entries, "settings": settings, "expected": [wrong]})),
    );
    assert_eq!(compared["matches"], false, "{compared}");
    // Settings the plugin does not know are refused when trying and when assigning.
    let (status, body) = server.post(
        &format!("/api/v1/admin/plugins/{settings_map_id}/test"),
        &admin.headers(),
        Some(json!({"entries": entries, "settings": {"typo": "x"}})),
    );
    assert_eq!(status, 422, "{body}");
    let (status, body) = put(
        &server,
        &admin,
        "/api/v1/admin/tenants/1/plugin",
        json!({"pluginId": settings_map_id, "settings": {"typo": "x"}}),
    );
    assert_eq!(status, 422, "{body}");

    // Assign it: the next sync maps through it.
    let (status, first) = put(
        &server,
        &admin,
        "/api/v1/admin/tenants/1/plugin",
        json!({"pluginId": settings_map_id, "settings": settings}),
    );
    assert_eq!(status, 200, "{first}");
    assert_eq!(server.downsync(&admin, 1).0, 200);
    let user = uid(0);
    assert!(attributes(&server, &admin, 1, &user)["dept"].is_array());

    // A second version, then back to the first.
    let (_, openldap) = upload(&server, &admin, "openldap-mapping");
    let (status, _) = put(
        &server,
        &admin,
        "/api/v1/admin/tenants/1/plugin",
        json!({"pluginId": openldap["id"]}),
    );
    assert_eq!(status, 200);
    assert_eq!(server.downsync(&admin, 1).0, 200);
    let mapped = attributes(&server, &admin, 1, &user);
    assert!(
        mapped["department"].is_array() && mapped.get("dept").is_none(),
        "{mapped}"
    );
    let (status, back) = server.post(
        "/api/v1/admin/tenants/1/plugin/rollback",
        &admin.headers(),
        None,
    );
    assert_eq!(status, 200, "{back}");
    assert_eq!(
        (back["pluginId"].as_i64(), back["reason"].as_str()),
        (Some(settings_map_id), Some("rollback"))
    );
    assert_eq!(back["settings"], settings);
    let (_, versions) = server.get("/api/v1/admin/tenants/1/plugin/versions", &admin.headers());
    assert_eq!(versions["data"].as_array().unwrap().len(), 3, "{versions}");
    assert_eq!(server.downsync(&admin, 1).0, 200);
    assert!(attributes(&server, &admin, 1, &user)["dept"].is_array());

    // The assignment survives a restart.
    drop(server);
    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let (_, current) = server.get("/api/v1/admin/tenants/1/plugin", &admin.headers());
    assert_eq!(
        current["assignment"]["pluginId"], settings_map_id,
        "{current}"
    );
}

#[test]
fn tenants_are_created_replaced_scheduled_and_deleted_through_the_api() {
    let setup = Setup::new(2);
    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let slapd = &setup.slapd;
    let tenant = json!({
        "id": 5, "name": "api-made",
        "ldap": {"servers": [slapd.url()], "tls": "plain", "bind_dn": slapd.admin_dn(),
                 "bind_password": slapd.admin_password(), "base_dn": format!("ou=people,{}", slapd.base_dn()),
                 "user_filter": "(objectClass=inetOrgPerson)"}
    });
    let (status, created) = server.post(
        "/api/v1/admin/tenants",
        &admin.headers(),
        Some(tenant.clone()),
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        (
            created["source"].as_str(),
            created["ldap"]["bindPassword"].as_str()
        ),
        (Some("api"), Some("inline"))
    );
    assert!(!created.to_string().contains(slapd.admin_password()));
    assert_eq!(
        server
            .post(
                "/api/v1/admin/tenants",
                &admin.headers(),
                Some(tenant.clone())
            )
            .0,
        409
    );
    let mut invalid = tenant.clone();
    invalid["id"] = json!(6);
    invalid["ldap"]["servers"] = json!(["http://nope"]);
    let (status, body) = server.post("/api/v1/admin/tenants", &admin.headers(), Some(invalid));
    assert_eq!(status, 400, "{body}");

    // The file's tenants are read-only here.
    let (status, _) = put(&server, &admin, "/api/v1/admin/tenants/1", tenant.clone());
    assert_eq!(status, 409);

    // Replaced without the password: the stored one is kept.
    let mut renamed = tenant.clone();
    renamed["name"] = json!("renamed");
    renamed["ldap"]
        .as_object_mut()
        .unwrap()
        .remove("bind_password");
    let (status, replaced) = put(&server, &admin, "/api/v1/admin/tenants/5", renamed);
    assert_eq!(
        (status, &replaced["name"]),
        (200, &json!("renamed")),
        "{replaced}"
    );
    let (status, test) = server.post(
        "/api/v1/admin/tenants/5/connection-test",
        &admin.headers(),
        None,
    );
    assert_eq!((status, &test["ok"]), (200, &json!(true)), "{test}");

    // No plugin yet: the sync fails, saying so; with one it runs.
    let (status, body) = server.downsync(&admin, 5);
    assert_eq!(status, 500, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("no plugin"),
        "{body}"
    );
    let (_, plugin) = upload(&server, &admin, "openldap-mapping");
    let (status, _) = put(
        &server,
        &admin,
        "/api/v1/admin/tenants/5/plugin",
        json!({"pluginId": plugin["id"]}),
    );
    assert_eq!(status, 200);
    let (status, body) = server.downsync(&admin, 5);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"].as_array().unwrap().len(), 2);

    // A dry run of the live directory writes nothing.
    let (status, report) = server.post(
        "/api/v1/admin/tenants/5/dry-run",
        &admin.headers(),
        Some(json!({"mode": "full"})),
    );
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (
            report["dry_run"].as_bool(),
            report["counts"]["unchanged"].as_u64()
        ),
        (Some(true), Some(2)),
        "{report}"
    );

    // Schedules: at least a minute; kept across restarts.
    let (status, _) = put(
        &server,
        &admin,
        "/api/v1/admin/tenants/5/schedule",
        json!({"intervalSecs": 30}),
    );
    assert_eq!(status, 400);
    let (status, schedule) = put(
        &server,
        &admin,
        "/api/v1/admin/tenants/5/schedule",
        json!({"intervalSecs": 3600}),
    );
    assert_eq!(
        (status, schedule),
        (200, json!({"intervalSecs": 3600, "source": "api"}))
    );

    // A tenant-scoped admin creates no tenants and sees only its own.
    server.create_account(
        &admin,
        json!({"username": "five", "password": "tenant five admin", "tenant": 5, "role": "admin"}),
    );
    let five = server.login("five", "tenant five admin");
    let mut other = tenant.clone();
    other["id"] = json!(9);
    assert_eq!(
        server
            .post("/api/v1/admin/tenants", &five.headers(), Some(other))
            .0,
        403
    );
    assert_eq!(
        server
            .get("/api/v1/admin/tenants/1/schedule", &five.headers())
            .0,
        404
    );
    assert_eq!(
        server
            .get("/api/v1/admin/tenants/5/schedule", &five.headers())
            .0,
        200
    );
    // Nor may it point its tenant at the server's files or environment.
    let mut sneaky = tenant.clone();
    sneaky["ldap"]["bind_password_env"] = json!("ABACSYNC_ADMIN_PASSWORD");
    sneaky["ldap"]
        .as_object_mut()
        .unwrap()
        .remove("bind_password");
    let (status, body) = put(&server, &five, "/api/v1/admin/tenants/5", sneaky);
    assert_eq!(status, 400, "{body}");
    assert!(
        body["errors"][0]
            .as_str()
            .unwrap()
            .contains("bind_password_env"),
        "{body}"
    );
    let (status, _) = put(
        &server,
        &five,
        "/api/v1/admin/tenants/5/schedule",
        json!({"intervalSecs": u64::MAX}),
    );
    assert_eq!(status, 400, "an interval beyond a year");

    drop(server);
    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let (status, kept) = server.get("/api/v1/admin/tenants/5", &admin.headers());
    assert_eq!(
        (status, &kept["name"], &kept["schedule"]["intervalSecs"]),
        (200, &json!("renamed"), &json!(3600)),
        "{kept}"
    );
    assert_eq!(
        delete(&server, &admin, "/api/v1/admin/tenants/1"),
        409,
        "the file's tenant"
    );
    assert_eq!(delete(&server, &admin, "/api/v1/admin/tenants/5"), 200);
    assert_eq!(
        server.get("/api/v1/admin/tenants/5", &admin.headers()).0,
        404
    );
}

#[test]
fn a_plugin_that_keeps_failing_is_suspended_until_resumed() {
    let setup = Setup::new(3);
    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let (_, hostile) = upload(&server, &admin, "hostile-mapping");
    let (status, body) = put(
        &server,
        &admin,
        "/api/v1/admin/tenants/1/plugin",
        json!({"pluginId": hostile["id"], "settings": {"behaviour": "panic"}}),
    );
    assert_eq!(status, 200, "{body}");
    for attempt in 1..=abacsync::sync::SUSPEND_AFTER {
        let (status, body) = server.downsync(&admin, 1);
        assert_eq!(status, 500, "{body}");
        assert!(
            !body["message"].as_str().unwrap().contains("suspended"),
            "attempt {attempt}: {body}"
        );
    }
    let (_, current) = server.get("/api/v1/admin/tenants/1/plugin", &admin.headers());
    assert_eq!(current["health"]["status"], "suspended", "{current}");
    assert_eq!(
        current["health"]["consecutiveFailures"],
        abacsync::sync::SUSPEND_AFTER
    );
    // Suspended: the next sync does not run the plugin, and says why.
    let (status, body) = server.downsync(&admin, 1);
    assert_eq!(status, 500);
    assert!(
        body["message"].as_str().unwrap().contains("suspended"),
        "{body}"
    );
    let (_, tenant) = server.get("/api/v1/admin/tenants/1", &admin.headers());
    assert_eq!(tenant["pluginHealth"]["status"], "suspended");
    // Resumed, it runs (and fails) again; a healthy plugin assigned lifts it for good.
    let (status, health) = server.post(
        "/api/v1/admin/tenants/1/plugin/resume",
        &admin.headers(),
        None,
    );
    assert_eq!((status, &health["status"]), (200, &json!("active")));
    let (_, openldap) = upload(&server, &admin, "openldap-mapping");
    let (status, _) = put(
        &server,
        &admin,
        "/api/v1/admin/tenants/1/plugin",
        json!({"pluginId": openldap["id"]}),
    );
    assert_eq!(status, 200);
    let (status, body) = server.downsync(&admin, 1);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"].as_array().unwrap().len(), 3);
}

/// The audit trail over the API: a new user is one `created` event carrying its ABAC
/// values; a later change of a key is an `attribute` event; `key=` finds both, and the
/// user's history shows them newest first.
#[test]
fn the_audit_trail_records_creations_with_their_values() {
    let setup = Setup::new(3);
    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let (status, body) = server.downsync(&admin, 1);
    assert_eq!(status, 200, "{body}");
    let audit = |query: &str| {
        let (status, body) = server.get(
            &format!("/api/v1/admin/tenants/1/audit{query}"),
            &admin.headers(),
        );
        assert_eq!(status, 200, "{body}");
        body["data"].as_array().unwrap().clone()
    };

    let created = audit("");
    assert_eq!(created.len(), 3, "{created:#?}");
    assert!(created.iter().all(|event| event["kind"] == "created"));
    let one = created
        .iter()
        .find(|event| event["username"] == uid(1).as_str())
        .unwrap();
    // User 1 of the generated directory: department 200 in Sales.
    assert_eq!(one["attributes"]["department"], json!(["200"]), "{one}");
    assert_eq!(one["attributes"]["unit"], json!(["Sales"]), "{one}");
    assert_eq!((&one["added"], &one["removed"]), (&json!([]), &json!([])));

    let dn = user_dn("dc=example,dc=org", 1);
    setup
        .slapd
        .modify(&format!(
            "dn: {dn}\nchangetype: modify\nreplace: departmentNumber\ndepartmentNumber: 999\n"
        ))
        .unwrap();
    let (status, body) = server.downsync(&admin, 1);
    assert_eq!(status, 200, "{body}");

    let department = audit("?key=department");
    let kinds: Vec<_> = department.iter().map(|event| &event["kind"]).collect();
    assert_eq!(kinds, ["attribute", "created", "created", "created"]);
    assert_eq!(department[0]["added"], json!(["999"]));
    assert_eq!(department[0]["removed"], json!(["200"]));
    assert_eq!(department[0]["attributes"], Value::Null);
    assert!(audit("?key=nothing").is_empty());

    let id = &department[0]["userId"];
    let (status, user) = server.get(
        &format!("/api/v1/admin/tenants/1/users/{id}"),
        &admin.headers(),
    );
    assert_eq!(status, 200, "{user}");
    let history: Vec<_> = user["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| &event["kind"])
        .collect();
    assert_eq!(history, ["attribute", "created"], "{user}");
    assert_eq!(
        user["history"][1]["attributes"]["department"],
        json!(["200"])
    );
}
