//! What real Rocket.Chat and grommunio clients send where the seed documents are
//! silent (issue 22): each test replays a client's request and asserts the real
//! product's answer.

use serde_json::{Value, json};

use super::{ADMIN, ADMIN_PASSWORD, Server, Setup};

const LOGGED_OUT: &str = "You must be logged in to do this.";

#[test]
fn every_rocketchat_401_carries_both_pairs() {
    let setup = Setup::new(1);
    let server = Server::start(&setup.config());
    let both =
        json!({"status": "error", "message": LOGGED_OUT, "success": false, "error": LOGGED_OUT});
    let bogus = [("x-user-id", "nobody"), ("x-auth-token", "nothing")];
    // The triggers, and the routes both dialects share, called with Rocket.Chat's
    // headers.
    assert_eq!(
        server.post("/api/v1/ldap.syncNow", &bogus, None),
        (401, both.clone())
    );
    assert_eq!(server.get("/api/v1/me", &bogus), (401, both.clone()));
    assert_eq!(
        server.get("/api/v1/admin/tenants", &bogus),
        (401, both.clone())
    );
    // Without any credentials, a shared route answers grommunio's pair and
    // Rocket.Chat's beside.
    let (status, body) = server.get("/api/v1/me", &[]);
    assert_eq!(status, 401);
    assert_eq!(body["message"], "Access denied", "{body}");
    assert_eq!(body["error"], "No token provided", "{body}");
    assert_eq!(
        (&body["status"], &body["success"]),
        (&json!("error"), &json!(false))
    );
    // A failed login likewise, and a good one says `success` too.
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
    let (status, body) = server.post(
        "/api/v1/login",
        &[],
        Some(json!({"user": ADMIN, "password": ADMIN_PASSWORD})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["status"], &body["success"]),
        (&json!("success"), &json!(true))
    );
}

#[test]
fn rocketchat_logs_in_by_each_of_its_forms() {
    let setup = Setup::new(1);
    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    // An account with an address set by an admin, to log in by it.
    server.create_account(
        &admin,
        json!({"username": "ops", "password": "the ops password", "email": "Ops@Example.org", "role": "auditor", "tenant": 1}),
    );
    let login = |body: Value| server.post("/api/v1/login", &[], Some(body));
    let user_id = |answer: &(u16, Value)| answer.1["data"]["userId"].clone();
    let by_username = login(json!({"username": "ops", "password": "the ops password"}));
    assert_eq!(by_username.0, 200, "{}", by_username.1);
    for body in [
        json!({"user": "ops", "password": "the ops password"}),
        json!({"email": "ops@example.org", "password": "the ops password"}),
        json!({"user": "OPS@example.org", "password": "the ops password"}),
    ] {
        let answer = login(body.clone());
        assert_eq!(answer.0, 200, "{body}: {}", answer.1);
        assert_eq!(user_id(&answer), user_id(&by_username));
    }
    let by_user = login(json!({"user": ADMIN, "password": ADMIN_PASSWORD}));
    assert_eq!(by_user.0, 200, "{}", by_user.1);
    let admin_id = user_id(&by_user);
    // An address nobody has is a failed login, like a wrong password.
    let nobody = login(json!({"email": "nobody@example.org", "password": "the ops password"}));
    assert_eq!(nobody.0, 401, "{}", nobody.1);
    // `resume`: a stored token logs in again, as itself; an unknown one does not.
    let token = by_user.1["data"]["authToken"].as_str().unwrap().to_owned();
    let resumed = login(json!({ "resume": token }));
    assert_eq!(resumed.0, 200, "{}", resumed.1);
    assert_eq!(resumed.1["data"]["authToken"], token);
    assert_eq!(user_id(&resumed), admin_id);
    assert_eq!(login(json!({"resume": "not a session"})).0, 401);
    // As a form (`curl -d user=…&password=…`), Rocket.Chat's answer.
    let form = server.send_raw(
        "POST",
        "/api/v1/login",
        &[],
        "application/x-www-form-urlencoded",
        format!("user={ADMIN}&password=correct+horse+battery").as_bytes(),
    );
    assert_eq!(form.0, 200, "{}", form.1);
    assert_eq!(user_id(&form), admin_id);
    assert_eq!(form.1["status"], "success");
}

#[test]
fn me_is_rocketchats_user_object() {
    let setup = Setup::new(1);
    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let (status, me) = server.get("/api/v1/me", &admin.headers());
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["success"], true);
    assert_eq!(me["_id"], admin.user_id.as_str());
    assert_eq!(me["username"], ADMIN);
    assert_eq!(me["name"], ADMIN);
    assert_eq!(me["active"], true);
    assert!(me["status"].is_string(), "{me}");
    assert!(me["emails"].is_array(), "{me}");
    let roles = me["roles"].as_array().unwrap();
    assert!(
        roles.contains(&json!("admin")) && roles.contains(&json!("user")),
        "{me}"
    );
    // A tenant's auditor is no workspace admin.
    server.create_account(
        &admin,
        json!({"username": "auditor", "password": "an auditor's password", "tenant": 1, "role": "auditor"}),
    );
    let auditor = server.login("auditor", "an auditor's password");
    let (_, me) = server.get("/api/v1/me", &auditor.headers());
    assert_eq!(me["roles"], json!(["user"]), "{me}");
}

#[test]
fn the_version_probe_and_unknown_routes_answer_json() {
    let setup = Setup::new(1);
    let server = Server::start(&setup.config());
    // Without a login, as clients probe before anything else.
    let (status, info) = server.get("/api/info", &[]);
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["success"], true);
    assert_eq!(info["version"], "8.5.0");
    assert_eq!(info["abacsync"]["version"], env!("CARGO_PKG_VERSION"));
    // Rocket.Chat: an unknown route, or a method a route does not take, is a JSON 404.
    let rocketchat_404 = json!({"success": false, "error": "Resource not found",
        "status": "error", "message": "API endpoint does not exist"});
    assert_eq!(
        server.get("/api/v1/ldap.syncNow", &[]),
        (404, rocketchat_404.clone())
    );
    assert_eq!(
        server.post("/api/v1/users.nothing", &[], None),
        (404, rocketchat_404.clone())
    );
    assert_eq!(
        server.call("DELETE", "/api/v1/abac/users/sync", &[], None),
        (404, rocketchat_404)
    );
    // grommunio: its own words, and 405 keeps the Allow header.
    assert_eq!(
        server.get("/api/v1/nothing/here", &[]),
        (404, json!({"message": "Resource not found"}))
    );
    assert_eq!(
        server.get("/api/v1/domains/1/ldap/downsync", &[]),
        (
            405,
            json!({"message": "Method 'GET' not allowed on this endpoint"})
        )
    );
}

/// grommunio's form login, its cookie and CSRF token, as `[(header, value)]`.
fn grommunio_auth(server: &Server) -> (String, String) {
    let (jwt, csrf) = server.form_login(ADMIN, ADMIN_PASSWORD);
    (format!("grommunioAuthJwt={jwt}"), csrf)
}

#[test]
fn grommunio_admin_web_logs_in_renews_and_reads_its_profile() {
    let setup = Setup::new(1);
    let server = Server::start(&setup.config());
    let (cookie, _) = grommunio_auth(&server);
    // admin-web's `renew()`: a form POST with no body, the cookie, no CSRF token.
    let renew = |cookie: &str| {
        let mut headers = vec![];
        if !cookie.is_empty() {
            headers.push(("cookie", cookie));
        }
        server.send_raw(
            "POST",
            "/api/v1/login",
            &headers,
            "application/x-www-form-urlencoded",
            b"",
        )
    };
    let (status, renewed) = renew(&cookie);
    assert_eq!(status, 200, "{renewed}");
    let new_cookie = format!(
        "grommunioAuthJwt={}",
        renewed["grommunioAuthJwt"].as_str().unwrap()
    );
    assert!(renewed["csrf"].is_string(), "{renewed}");
    assert_ne!(new_cookie, cookie);
    // The renewed cookie works; the one it replaced does not.
    assert_eq!(server.get("/api/v1/me", &[("cookie", &new_cookie)]).0, 200);
    assert_eq!(server.get("/api/v1/me", &[("cookie", &cookie)]).0, 401);
    // Without a valid cookie it is the incomplete form it always was.
    for cookie in ["", "grommunioAuthJwt=forged"] {
        assert_eq!(
            renew(cookie),
            (400, json!({"message": "Incomplete login form"})),
            "{cookie}"
        );
    }
    // The profile admin-web reads right after the login.
    let (status, profile) = server.get("/api/v1/profile", &[("cookie", &new_cookie)]);
    assert_eq!(status, 200, "{profile}");
    assert_eq!(profile["user"]["username"], ADMIN, "{profile}");
    let capabilities = profile["capabilities"].as_array().unwrap();
    for capability in [
        "SystemAdminWrite",
        "SystemAdminRead",
        "DomainAdminWrite",
        "DomainAdminRead",
    ] {
        assert!(capabilities.contains(&json!(capability)), "{profile}");
    }
}

#[test]
fn grommunio_scripts_read_its_codes_tasks_and_queue() {
    // Removals allowed beyond the default threshold: one of four users goes.
    let setup = Setup::custom(
        super::people_slapd(4),
        "",
        "removal = { max_percent = 100.0 }",
        "",
    );
    let server = Server::start(&setup.config());
    let (cookie, csrf) = grommunio_auth(&server);
    let auth = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())];
    let downsync = |query: &str| {
        server.post(
            &format!("/api/v1/domains/1/ldap/downsync?{query}"),
            &auth,
            None,
        )
    };
    let codes = |body: &Value| -> Vec<(i64, String, i64)> {
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["code"].as_i64().unwrap(),
                    r["message"].as_str().unwrap().to_owned(),
                    r["abacsync"]["code"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    // Unknown parameters ignored, any language: as grommunio.
    let (status, body) = downsync("import=true&lang=de%20DE&timeout=60&foo=bar");
    assert_eq!(status, 200, "{body}");
    assert!(
        codes(&body)
            .iter()
            .all(|c| c == &(201, "User created".into(), 201)),
        "{body}"
    );
    // Unchanged linked users are grommunio's 200.
    let (_, body) = downsync("timeout=60");
    assert!(
        codes(&body)
            .iter()
            .all(|c| c == &(200, "Synchronization successful".into(), 304)),
        "{body}"
    );
    // A user gone from the directory: grommunio's 500, and the summary counts the
    // entries read.
    setup
        .slapd
        .delete(&abacsync_testkit::directory::user_dn(
            setup.slapd.base_dn(),
            0,
        ))
        .unwrap();
    let (status, body) = downsync("timeout=60");
    assert_eq!(status, 200, "{body}");
    let gone: Vec<_> = codes(&body).into_iter().filter(|c| c.2 == 410).collect();
    assert_eq!(
        gone,
        vec![(500, "Failed to get user data".into(), 410)],
        "{body}"
    );
    let summary = body["message"].as_str().unwrap();
    assert!(summary.starts_with("3/3 synced"), "{summary}");
    // A negative timeout: 202 at once.
    let (status, body) = downsync("timeout=-1");
    assert_eq!(status, 202, "{body}");
    let id = body["taskID"].as_i64().unwrap();

    // The queue's status needs no login; `running` is a boolean.
    let (status, queue) = server.get("/api/v1/tasq/status", &[]);
    assert_eq!(status, 200, "{queue}");
    assert!(
        queue["running"].is_boolean() && queue["queued"].is_i64(),
        "{queue}"
    );
    // The list has `count` and honours `offset`.
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let task = server.wait_task(&admin, id);
    assert_eq!(task["command"], "ldapSync", "{task}");
    // Its per-user results are stored in pages beside its report, which holds only
    // their number; the task's view shows them.
    let shown = task["params"]["result"].as_array().expect("results").len();
    assert!(shown > 0, "{task}");
    let db = rusqlite::Connection::open(setup.data_dir().join("abacsync.db")).unwrap();
    let (stored, pages): (String, i64) = db
        .query_row(
            "SELECT result, (SELECT count(*) FROM task_results WHERE task_id = ?1) \
             FROM tasks WHERE id = ?1",
            [id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    let stored: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(stored["results_stored"], json!(shown), "{stored}");
    assert!(stored.get("results").is_none(), "{stored}");
    assert_eq!(pages, 1);
    // They are read a page at a time, and by code.
    let results = format!("/api/v1/tasq/tasks/{id}/results");
    let (status, first) = server.get(&format!("{results}?limit=2"), &auth);
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["data"].as_array().unwrap().len(), 2, "{first}");
    assert_eq!(first["next"], 2, "{first}");
    let (_, rest) = server.get(&format!("{results}?offset=2&limit=1000"), &auth);
    assert_eq!(rest["data"].as_array().unwrap().len(), shown - 2, "{rest}");
    assert_eq!(rest["next"], Value::Null, "{rest}");
    assert_eq!(rest["data"][0]["code"], 304, "{rest}");
    let (_, unchanged) = server.get(&format!("{results}?code=304&limit=1"), &auth);
    assert_eq!(unchanged["data"][0]["action"], "unchanged", "{unchanged}");
    let (_, none) = server.get(&format!("{results}?code=409"), &auth);
    assert_eq!(none, json!({"data": [], "next": null}));
    for bad in ["limit=0", "limit=1001", "code=x", "page=2"] {
        assert_eq!(
            server.get(&format!("{results}?{bad}"), &auth).0,
            400,
            "{bad}"
        );
    }
    let (_, all) = server.get("/api/v1/tasq/tasks", &auth);
    let count = all["count"].as_i64().unwrap();
    assert_eq!(count, 4, "{all}");
    let (_, rest) = server.get("/api/v1/tasq/tasks?offset=1&limit=2", &auth);
    let rest = rest["data"].as_array().unwrap();
    assert_eq!(rest.len(), 2);
    assert_eq!(rest[0]["ID"], all["data"][1]["ID"]);
    // A task can be deleted, as in grommunio.
    let path = format!("/api/v1/tasq/tasks/{id}");
    assert_eq!(
        server.call("DELETE", &path, &auth, None),
        (200, json!({ "message": format!("Deleted task #{id}") }))
    );
    assert_eq!(server.get(&path, &auth).0, 404);
    // A caller without the permission: grommunio's 403 words.
    server.create_account(
        &admin,
        json!({"username": "auditor", "password": "an auditor's password", "tenant": 1, "role": "auditor"}),
    );
    let (jwt, csrf) = server.form_login("auditor", "an auditor's password");
    let cookie = format!("grommunioAuthJwt={jwt}");
    let (status, body) = server.post(
        "/api/v1/domains/1/ldap/downsync",
        &[("cookie", &cookie), ("x-csrf-token", &csrf)],
        None,
    );
    assert_eq!(
        (status, body),
        (
            403,
            json!({"message": "Access denied: Insufficient permissions for this operation"})
        )
    );
}

#[test]
fn rocketchat_ids_that_name_nobody_are_said_in_the_task() {
    let setup = Setup::new(2);
    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let (status, body) = server.downsync(&admin, 1);
    assert_eq!(status, 200, "{body}");
    // A Rocket.Chat client's `_id` (17 characters) and a username that exists.
    let user = abacsync_testkit::directory::uid(0);
    let (status, body) = server.post(
        "/api/v1/abac/users/sync",
        &admin.headers(),
        Some(json!({"ids": ["2tTEqR7ZNMJ4HGGNa"], "usernames": [user]})),
    );
    // As Rocket.Chat: success, whoever matched.
    assert_eq!((status, body), (200, json!({"success": true})));
    let tasks = server.tasks(&admin);
    let task = tasks
        .iter()
        .find(|task| task["trigger"] == "abac.usersSync")
        .expect("the task");
    let message = task["message"].as_str().unwrap();
    assert!(message.contains("1 matched nobody"), "{message}");
    assert!(message.contains("not Rocket.Chat's _id"), "{message}");
    let not_found: Vec<&Value> = task["result"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["abacsync"]["code"] == 404)
        .collect();
    assert_eq!(not_found.len(), 1, "{task}");
}

fn as_refs(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

#[test]
fn a_script_runs_ldap_sync_now_with_a_personal_access_token() {
    use abacsync::auth::totp;
    let setup = Setup::new(2);
    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let generate = |headers: &[(&str, &str)], body: Value| {
        server.post(
            "/api/v1/users.generatePersonalAccessToken",
            headers,
            Some(body),
        )
    };
    let pat = |token: &str| -> Vec<(String, String)> {
        vec![
            ("x-user-id".into(), admin.user_id.clone()),
            ("x-auth-token".into(), token.to_owned()),
        ]
    };
    let sync_now = |headers: &[(&str, &str)]| server.post("/api/v1/ldap.syncNow", headers, None);

    // Making a token needs the current second factor (here the password method).
    let (status, body) = generate(
        &admin.headers(),
        json!({"tokenName": "nightly", "bypassTwoFactor": true}),
    );
    assert_eq!(
        (status, &body["errorType"]),
        (400, &json!("totp-required")),
        "{body}"
    );
    let (status, body) = generate(
        &admin.step_up(),
        json!({"tokenName": "nightly", "bypassTwoFactor": true}),
    );
    assert_eq!((status, &body["success"]), (200, &json!(true)), "{body}");
    let nightly = body["token"].as_str().unwrap().to_owned();
    let (status, body) = generate(&admin.step_up(), json!({"tokenName": "plain"}));
    assert_eq!(status, 200, "{body}");
    let plain = body["token"].as_str().unwrap().to_owned();
    let (status, body) = generate(&admin.step_up(), json!({"tokenName": "nightly"}));
    assert_eq!(
        (status, body),
        (
            400,
            json!({"success": false, "error": "A token with this name already exists [error-token-already-exists]",
                "errorType": "error-token-already-exists"})
        )
    );
    for bad in [
        json!({}),
        json!({"tokenName": ""}),
        json!({"tokenName": "x", "extra": 1}),
    ] {
        let (status, body) = generate(&admin.step_up(), bad.clone());
        assert_eq!(
            (status, &body["errorType"]),
            (400, &json!("error-invalid-params")),
            "{bad}: {body}"
        );
    }

    // The bypassing token runs ldap.syncNow unattended; the other asks for a code.
    let (status, body) = sync_now(&as_refs(&pat(&nightly)));
    assert_eq!(
        (status, body),
        (200, json!({"message": "Sync_in_progress", "success": true}))
    );
    let (status, body) = sync_now(&as_refs(&pat(&plain)));
    assert_eq!(
        (status, &body["errorType"]),
        (400, &json!("totp-required")),
        "{body}"
    );
    // A bypassing token cannot mint another without the factor.
    let (status, body) = generate(&as_refs(&pat(&nightly)), json!({"tokenName": "minted"}));
    assert_eq!(
        (status, &body["errorType"]),
        (400, &json!("totp-required")),
        "{body}"
    );

    // Listed without their values.
    let (status, list) = server.get("/api/v1/users.getPersonalAccessTokens", &admin.headers());
    assert_eq!(status, 200, "{list}");
    let tokens = list["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2, "{list}");
    assert_eq!(tokens[0]["name"], "nightly");
    assert_eq!(tokens[0]["bypassTwoFactor"], true);
    assert_eq!(tokens[0]["lastTokenPart"], &nightly[nightly.len() - 6..]);
    assert_eq!(tokens[1]["bypassTwoFactor"], false);
    assert!(!list.to_string().contains(&nightly) && !list.to_string().contains(&plain));

    // Regenerated: the old value stops working, the new one bypasses as before.
    let (status, body) = server.post(
        "/api/v1/users.regeneratePersonalAccessToken",
        &admin.step_up(),
        Some(json!({"tokenName": "nightly"})),
    );
    assert_eq!(status, 200, "{body}");
    let renewed = body["token"].as_str().unwrap().to_owned();
    assert_eq!(sync_now(&as_refs(&pat(&nightly))).0, 401);
    assert_eq!(sync_now(&as_refs(&pat(&renewed))).0, 200);

    // Removed: it opens nothing, and a second removal says there is no such token.
    let remove = || {
        server.post(
            "/api/v1/users.removePersonalAccessToken",
            &admin.step_up(),
            Some(json!({"tokenName": "plain"})),
        )
    };
    assert_eq!(remove(), (200, json!({"success": true})));
    assert_eq!(sync_now(&as_refs(&pat(&plain))).0, 401);
    let (status, body) = remove();
    assert_eq!(
        (status, &body["errorType"]),
        (400, &json!("error-token-does-not-exists")),
        "{body}"
    );

    // With TOTP enrolled, a login session needs its code; the token still does not.
    let (status, enrol) = server.post("/api/v1/me/totp", &admin.step_up(), None);
    assert_eq!(status, 200, "{enrol}");
    let secret = super::rocketchat::base32_decode(enrol["secret"].as_str().unwrap());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let code = totp::code_at(&secret, totp::step_of(now));
    let (status, body) = server.post(
        "/api/v1/me/totp/confirm",
        &admin.headers(),
        Some(json!({ "code": code })),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = sync_now(&admin.step_up());
    assert_eq!(
        (status, &body["errorType"]),
        (400, &json!("totp-invalid")),
        "{body}"
    );
    let (status, _) = sync_now(&as_refs(&pat(&renewed)));
    assert_eq!(status, 200);
}

#[test]
fn a_passed_second_factor_is_remembered_by_the_store_when_configured() {
    let setup = Setup::with_server(1, "[server]\ntwo_factor_remember_secs = 60");
    let mut server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let other = server.login(ADMIN, ADMIN_PASSWORD);
    let sync_now = |server: &Server, headers: &[(&str, &str)]| {
        server.post("/api/v1/ldap.syncNow", headers, None).0
    };
    assert_eq!(sync_now(&server, &admin.headers()), 400, "asked at first");
    assert_eq!(sync_now(&server, &admin.step_up()), 200);
    // Within the window the same session needs no code; another session does.
    assert_eq!(sync_now(&server, &admin.headers()), 200);
    assert_eq!(sync_now(&server, &other.headers()), 400);
    // Kept in the store: another process (a restart, a replica) remembers it too.
    server.terminate();
    let server = Server::start(&setup.config());
    assert_eq!(sync_now(&server, &admin.headers()), 200);
    // Changes to factors always need a current code.
    let (status, body) = server.post("/api/v1/me/totp", &admin.headers(), None);
    assert_eq!(
        (status, &body["errorType"]),
        (400, &json!("totp-required")),
        "{body}"
    );
}

#[test]
fn grommunio_downsyncs_every_domain_for_system_admins() {
    let setup = Setup::new(3);
    let server = Server::start(&setup.config());
    let (cookie, csrf) = grommunio_auth(&server);
    let auth = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())];
    let all = |query: &str, headers: &[(&str, &str)]| {
        server.post(
            &format!("/api/v1/domains/ldap/downsync?{query}"),
            headers,
            None,
        )
    };
    // Tenant 1 has LDAP, tenant 2 not: tenant 1's users, in grommunio's words.
    let (status, body) = all("import=true&timeout=60", &auth);
    assert_eq!(status, 200, "{body}");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 3, "{body}");
    assert!(data.iter().all(|r| r["code"] == 201), "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("domain 1: 3/3 synced"),
        "{body}"
    );
    let (status, body) = all("timeout=0", &auth);
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["taskIDs"].as_array().unwrap().len(), 1, "{body}");
    // A domain whose sync fails (no plugin) is named; the others' results stand.
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let slapd = &setup.slapd;
    let (status, body) = server.post(
        "/api/v1/admin/tenants",
        &admin.headers(),
        Some(json!({
            "id": 5, "name": "no plugin",
            "ldap": {"servers": [slapd.url()], "tls": "plain", "bind_dn": slapd.admin_dn(),
                     "bind_password": slapd.admin_password(), "base_dn": slapd.base_dn(),
                     "user_filter": "(objectClass=inetOrgPerson)"}
        })),
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = all("timeout=60", &auth);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"].as_array().unwrap().len(), 3, "{body}");
    assert_eq!(body["failed"][0]["domainID"], 5, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("domain 5: failed"),
        "{body}"
    );
    // A tenant's admin syncs its own domain, not every one.
    server.create_account(
        &admin,
        json!({"username": "one", "password": "tenant one admin", "tenant": 1, "role": "admin"}),
    );
    let (jwt, csrf) = server.form_login("one", "tenant one admin");
    let cookie = format!("grommunioAuthJwt={jwt}");
    let (status, body) = all(
        "timeout=60",
        &[("cookie", &cookie), ("x-csrf-token", &csrf)],
    );
    assert_eq!(status, 403, "{body}");
}

#[test]
fn grommunio_downsyncs_one_user() {
    let setup = Setup::new(2);
    let server = Server::start(&setup.config());
    let (cookie, csrf) = grommunio_auth(&server);
    let auth = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())];
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let (status, body) = server.downsync(&admin, 1);
    assert_eq!(status, 200, "{body}");
    let (_, users) = server.get("/api/v1/admin/tenants/1/users", &admin.headers());
    let id_of = |uid: &str| {
        users["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|user| user["username"] == uid)
            .unwrap_or_else(|| panic!("{uid} in {users}"))["id"]
            .as_i64()
            .unwrap()
    };
    let (first, second) = (
        abacsync_testkit::directory::uid(0),
        abacsync_testkit::directory::uid(1),
    );
    let base = setup.slapd.base_dn().to_owned();
    let first_dn = abacsync_testkit::directory::user_dn(&base, 0);
    setup
        .slapd
        .modify(&format!(
            "dn: {first_dn}\nchangetype: modify\nreplace: mail\nmail: renamed@example.org\n"
        ))
        .unwrap();
    let path = |id: i64| format!("/api/v1/domains/1/users/{id}/downsync");
    // The changed entry is read and the user answered, every field updated.
    let (status, user) = server.call("PUT", &path(id_of(&first)), &auth, None);
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["email"], "renamed@example.org", "{user}");
    // Gone from the directory; unknown; another directory object named.
    setup
        .slapd
        .delete(&abacsync_testkit::directory::user_dn(&base, 1))
        .unwrap();
    assert_eq!(
        server.call("PUT", &path(id_of(&second)), &auth, None),
        (
            404,
            json!({"message": "Cannot synchronize user: LDAP object not found"})
        )
    );
    assert_eq!(
        server.call("PUT", &path(999_999), &auth, None),
        (404, json!({"message": "User not found"}))
    );
    let (status, body) = server.call(
        "PUT",
        &format!("{}?ID=someone-else", path(id_of(&first))),
        &auth,
        None,
    );
    assert_eq!(status, 400, "{body}");
}
