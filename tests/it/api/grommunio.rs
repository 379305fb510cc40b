//! grommunio's `ldap/downsync`, its form login and cookie, CSRF.

use std::process::Command;

use serde_json::{Value, json};

use super::{ADMIN, ADMIN_PASSWORD, Server, Setup};

#[test]
fn grommunio_downsync_follows_its_contract() {
    let mut setup = Setup::new(6);
    let server = Server::start(&setup.config());
    let (jwt, csrf) = server.form_login(ADMIN, ADMIN_PASSWORD);
    let cookie = format!("grommunioAuthJwt={jwt}");
    let auth = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())];
    let url = |query: &str| format!("/api/v1/domains/1/ldap/downsync{query}");

    // Logins: a bad password, an incomplete form.
    let mut response = server
        .agent
        .post(&server.url("/api/v1/login"))
        .send_form([("user", ADMIN), ("pass", "wrong")])
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let body: Value = response.body_mut().read_json().unwrap();
    assert_eq!(
        body,
        json!({"message": "Login failed", "error": "Invalid username or password"})
    );
    let response = server
        .agent
        .post(&server.url("/api/v1/login"))
        .send_form([("user", ADMIN)])
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);

    // No cookie; a browser's request without the CSRF token; a wrong token.
    assert_eq!(
        server.post(&url(""), &[], None),
        (
            401,
            json!({"message": "Access denied", "error": "No token provided", "status": "error", "success": false})
        )
    );
    let (status, body) = server.post(
        &url(""),
        &[("cookie", &cookie), ("origin", "https://evil.example")],
        None,
    );
    assert_eq!(
        (status, &body["message"]),
        (401, &json!("Access denied")),
        "{body}"
    );
    let (status, _) = server.post(
        &url(""),
        &[("cookie", &cookie), ("x-csrf-token", "forged")],
        None,
    );
    assert_eq!(status, 401);
    let forged_jwt = format!("grommunioAuthJwt={}x", jwt);
    assert_eq!(
        server
            .post(
                &url(""),
                &[("cookie", &forged_jwt), ("x-csrf-token", &csrf)],
                None
            )
            .0,
        401
    );

    // Invalid parameters: 400 with every error listed (as grommunio, `import` is
    // anything but `true` for no import, never an error).
    let (status, body) = server.post(&url("?timeout=soon&lang=%07"), &auth, None);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"].as_array().unwrap().len(), 2, "{body}");
    // Unknown domain: 404.
    assert_eq!(
        server.post("/api/v1/domains/99/ldap/downsync", &auth, None),
        (404, json!({"message": "Domain not found"}))
    );

    // Without import (`import=1` and `True` are no import either, as in grommunio),
    // nobody is created, and grommunio lists no one.
    for query in [
        "?timeout=60",
        "?import=1&timeout=60",
        "?import=True&timeout=60",
    ] {
        let (status, body) = server.post(&url(query), &auth, None);
        assert_eq!(status, 200, "{query}: {body}");
        assert_eq!(body["data"], json!([]), "{query}: {body}");
        assert!(
            body["message"].as_str().unwrap().starts_with("0/6 synced"),
            "{body}"
        );
    }

    // With import and a language: created, 201 each, with ID and username.
    let (status, body) = server.post(&url("?import=true&lang=de_DE&timeout=60"), &auth, None);
    assert_eq!(status, 200, "{body}");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 6);
    for result in data {
        assert_eq!(result["code"], 201, "{result}");
        assert_eq!(result["message"], "User created", "{result}");
        assert_eq!(result["abacsync"]["code"], 201, "{result}");
        assert!(result["ID"].is_i64() && result["username"].is_string());
    }
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("6/6 synced, 6 created"),
        "{body}"
    );
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    // `lang` is the default for users the plugin gives no language; these all have one.
    let (_, users) = server.get("/api/v1/admin/tenants/1/users", &admin.headers());
    assert_eq!(users["data"][1]["language"], "de", "{users}");
    let tasks = server.tasks(&admin);
    assert!(
        tasks.iter().any(|t| t["params"]["lang"] == "de_DE"),
        "{tasks:?}"
    );

    // timeout=0: 202 with the task, which completes in the background.
    let (status, body) = server.post(&url("?timeout=0"), &auth, None);
    assert_eq!(status, 202, "{body}");
    let id = body["taskID"].as_i64().unwrap();
    assert_eq!(body["message"], format!("Created background task #{id}"));
    let task = server.wait_task(&admin, id);
    assert_eq!(
        (task["state"].as_i64(), task["stateName"].as_str()),
        (Some(3), Some("completed")),
        "{task}"
    );
    // As grommunio keeps it: `ldapSync`, its dates, the results in `params.result`.
    assert_eq!(task["command"], "ldapSync", "{task}");
    let created = task["created"].as_str().unwrap();
    assert!(
        created.len() == 19 && created.as_bytes()[10] == b' ' && !created.contains('T'),
        "{created}"
    );
    let results = task["params"]["result"].as_array().unwrap().clone();
    let mut params = task["params"].clone();
    params.as_object_mut().unwrap().remove("result");
    assert_eq!(params, json!({"domainID": 1, "import": false, "lang": ""}));
    assert_eq!(results.len(), 6, "{task}");
    assert!(
        results.iter().all(|r| r["code"] == 200
            && r["message"] == "Synchronization successful"
            && r["abacsync"]["code"] == 304),
        "{task}"
    );
    assert_eq!(task["result"]["data"], json!(results));

    // The seed document's own curl call (cookie only, as documented).
    let output = Command::new("curl")
        .args([
            "--silent",
            "--request",
            "POST",
            "--url",
            &server.url(&url("?lang=&timeout=1")),
        ])
        .args(["--cookie", &cookie])
        .output()
        .expect("curl");
    let body: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(body["data"].is_array() || body["taskID"].is_i64(), "{body}");

    // And its JavaScript sample, verbatim but for the host and the cookie, under
    // Node: Node's fetch sends `Sec-Fetch-Mode: cors` and nothing else of a browser's,
    // so it is no browser and needs no CSRF token, as curl needs none.
    let sample = "const url = 'https://example.com/api/v1/domains/1/ldap/downsync?lang=&timeout=1';const options = {method: 'POST', headers: {cookie: 'grommunioAuthJwt=<grommunioAuthJwt>'}};\ntry { const response = await fetch(url, options); const data = await response.json(); console.log(JSON.stringify(data));} catch (error) { console.error(error);}"
        .replace("https://example.com", &server.url(""))
        .replace("grommunioAuthJwt=<grommunioAuthJwt>", &cookie);
    let output = Command::new("node")
        .args(["--input-type=module", "--eval", &sample])
        .output()
        .expect("node (scripts/setup.sh installs it)");
    let body: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "{err}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert!(body["data"].is_array() || body["taskID"].is_i64(), "{body}");

    // The directory is down: 503.
    setup.slapd.stop().unwrap();
    let (status, body) = server.post(&url("?timeout=60"), &auth, None);
    assert_eq!(status, 503, "{body}");
    assert!(body["message"].as_str().unwrap().contains("LDAP"), "{body}");
    let _ = &mut setup;
}

#[test]
fn a_sync_whose_every_user_failed_is_a_failed_task_while_grommunio_lists_each() {
    let setup = Setup::new(5);
    // Every entry lacks the attribute the username comes from: each mapping fails.
    setup.set_plugin("settings-map-mapping", r#"username = "noSuchAttribute""#);
    let server = Server::start(&setup.config());
    let (jwt, csrf) = server.form_login(ADMIN, ADMIN_PASSWORD);
    let cookie = format!("grommunioAuthJwt={jwt}");
    let auth = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())];
    let (status, body) = server.post(
        "/api/v1/domains/1/ldap/downsync?import=true&timeout=60",
        &auth,
        None,
    );
    // grommunio's answer: the synchronisation ran, each user failed.
    assert_eq!(status, 200, "{body}");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 5, "{body}");
    assert!(data.iter().all(|user| user["code"] == 400), "{body}");
    // The task is no plain success.
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let task = server.tasks(&admin)[0].clone();
    assert_eq!(task["stateName"], "error", "{task}");
    assert!(
        task["message"]
            .as_str()
            .unwrap()
            .starts_with("every user failed (5 of 5 entries read; the first: uid=user"),
        "{task}"
    );
}
