//! The HTTP API end to end: the real `abacsync serve` binary on a free loopback port,
//! a real slapd, the OpenLDAP plugin, real HTTP (and the seed documents' own `curl`
//! calls). Every documented status and body of the three triggers is checked here.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use abacsync::auth::{token, totp};
use abacsync_testkit::directory::{PeopleOptions, people_ldif, uid, user_dn};
use abacsync_testkit::plugins;
use abacsync_testkit::slapd::Slapd;
use serde_json::{Value, json};

use crate::sync::tenant_toml;

pub const ADMIN: &str = "admin";
pub const ADMIN_PASSWORD: &str = "correct horse battery";

/// A running `abacsync serve`, killed on drop.
pub struct Server {
    child: Child,
    base: String,
    pub agent: ureq::Agent,
}

impl Server {
    pub fn start(config: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_abacsync"))
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(config)
            .env("ABACSYNC_ADMIN_USER", ADMIN)
            .env("ABACSYNC_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("ABACSYNC_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start abacsync serve");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let base = line
            .trim()
            .strip_prefix("abacsync listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_owned();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Self { child, base, agent }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request; returns status and JSON body (Null when the body is not JSON).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(self.url(path));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let mut response = match body {
            Some(body) => self.agent.run(
                request
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .unwrap(),
            ),
            None => self.agent.run(request.body(()).unwrap()),
        }
        .unwrap();
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: Option<Value>) -> (u16, Value) {
        self.call("POST", path, headers, body)
    }

    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
        self.call("GET", path, headers, None)
    }

    /// Rocket.Chat login: (userId, authToken).
    pub fn login(&self, user: &str, password: &str) -> RcAuth {
        let (status, body) = self.post(
            "/api/v1/login",
            &[],
            Some(json!({"user": user, "password": password})),
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "success");
        RcAuth {
            user_id: body["data"]["userId"].as_str().unwrap().to_owned(),
            token: body["data"]["authToken"].as_str().unwrap().to_owned(),
        }
    }

    /// grommunio login: (jwt, csrf), checking the cookie is set.
    pub fn form_login(&self, user: &str, password: &str) -> (String, String) {
        let mut response = self
            .agent
            .post(&self.url("/api/v1/login"))
            .send_form([("user", user), ("pass", password)])
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let cookie = response
            .headers()
            .get("set-cookie")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let body: Value = response.body_mut().read_json().unwrap();
        let jwt = body["grommunioAuthJwt"].as_str().unwrap().to_owned();
        assert!(
            cookie.starts_with(&format!("grommunioAuthJwt={jwt};")),
            "{cookie}"
        );
        assert!(cookie.contains("HttpOnly"));
        (jwt, body["csrf"].as_str().unwrap().to_owned())
    }

    /// Creates an account through the admin API.
    pub fn create_account(&self, admin: &RcAuth, body: Value) {
        let (status, answer) = self.post("/api/v1/admin/accounts", &admin.headers(), Some(body));
        assert_eq!(status, 201, "{answer}");
    }

    /// Polls a task until it ends.
    pub fn wait_task(&self, auth: &RcAuth, id: i64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, task) = self.get(&format!("/api/v1/tasq/tasks/{id}"), &auth.headers());
            assert_eq!(status, 200, "{task}");
            if !matches!(task["stateName"].as_str(), Some("queued" | "running")) {
                return task;
            }
            assert!(Instant::now() < deadline, "task {id} did not end: {task}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn tasks(&self, auth: &RcAuth) -> Vec<Value> {
        let (status, body) = self.get("/api/v1/tasq/tasks?level=2", &auth.headers());
        assert_eq!(status, 200, "{body}");
        body["data"].as_array().unwrap().clone()
    }

    /// Sends SIGTERM and waits for the process to end; its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "abacsync did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct RcAuth {
    pub user_id: String,
    pub token: String,
}

impl RcAuth {
    pub fn headers(&self) -> Vec<(&str, &str)> {
        vec![("x-user-id", &self.user_id), ("x-auth-token", &self.token)]
    }
}

/// A directory of `count` people and a configuration with tenant 1 on it and tenant 2
/// with LDAP and ABAC disabled.
pub struct Setup {
    pub slapd: Slapd,
    dir: tempfile::TempDir,
}

impl Setup {
    pub fn new(count: usize) -> Self {
        Self::with_server(count, "")
    }

    /// With `server` appended to the configuration (e.g. a `[server.smtp]` table).
    pub fn with_server(count: usize, server: &str) -> Self {
        let ldif = people_ldif("dc=example,dc=org", count, &PeopleOptions::default()).unwrap();
        let slapd = Slapd::builder().ldif(ldif).start().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let setup = Self { slapd, dir };
        setup.write_config(server);
        setup
    }

    fn write_config(&self, server: &str) {
        let plugin = plugins::component("openldap-mapping");
        let one = tenant_toml(&self.slapd, &plugin, "", "");
        let two = tenant_toml(
            &self.slapd,
            &plugin,
            "",
            "ldap_enabled = false\nabac_enabled = false",
        )
        .replace("id = 1", "id = 2")
        .replace("name = \"example\"", "name = \"other\"");
        let text = format!(
            "data_dir = \"{}\"\n{one}\n{two}\n{server}",
            self.dir.path().join("data").display()
        );
        std::fs::write(self.config(), text).unwrap();
    }

    pub fn config(&self) -> std::path::PathBuf {
        self.dir.path().join("abacsync.toml")
    }
}

#[test]
fn ldap_sync_now_follows_rocket_chats_contract() {
    let setup = Setup::new(5);
    let server = Server::start(&setup.config());
    let url = "/api/v1/ldap.syncNow";

    // Not logged in, or a token that is no session: 401, as documented.
    let logged_out = json!({"status": "error", "message": "You must be logged in to do this."});
    assert_eq!(server.post(url, &[], None), (401, logged_out.clone()));
    let bogus = [("x-user-id", "nobody"), ("x-auth-token", "nothing")];
    assert_eq!(server.post(url, &bogus, None), (401, logged_out));

    // Logged in without a code: two-factor first (password fallback: no TOTP yet).
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let (status, body) = server.post(url, &admin.headers(), None);
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"success": false, "error": "TOTP Required [totp-required]", "errorType": "totp-required",
               "details": {"method": "password", "codeGenerated": false, "availableMethods": []}})
    );
    let mut wrong = admin.headers();
    wrong.push(("x-2fa-code", "0000"));
    let (status, body) = server.post(url, &wrong, None);
    assert_eq!(
        (status, &body["errorType"]),
        (400, &json!("totp-invalid")),
        "{body}"
    );

    // The password method's code is the password's SHA-256 digest: the sync starts.
    let digest = token::sha256_hex(ADMIN_PASSWORD);
    let mut with_code = admin.headers();
    with_code.push(("x-2fa-code", &digest));
    with_code.push(("x-2fa-method", "password"));
    let (status, body) = server.post(url, &with_code, None);
    assert_eq!(
        (status, body),
        (200, json!({"message": "Sync_in_progress", "success": true}))
    );
    let task = server
        .tasks(&admin)
        .into_iter()
        .find(|t| t["command"] == "ldap.syncNow")
        .unwrap();
    let task = server.wait_task(&admin, task["ID"].as_i64().unwrap());
    assert_eq!(task["stateName"], "completed", "{task}");
    assert_eq!(
        task["domainID"], 1,
        "tenant 2 has LDAP disabled: not synced"
    );
    assert_eq!(task["result"]["counts"]["created"], 5, "{task}");
    let (_, users) = server.get("/api/v1/admin/tenants/1/users", &admin.headers());
    assert_eq!(users["data"].as_array().unwrap().len(), 5, "{users}");

    // Without the permission: 400 error-not-authorized, after two-factor.
    server.create_account(
        &admin,
        json!({"username": "auditor", "password": "auditor password", "role": "auditor"}),
    );
    let auditor = server.login("auditor", "auditor password");
    let (status, body) = server.post(url, &auditor.headers(), None);
    assert_eq!((status, &body["errorType"]), (400, &json!("totp-required")));
    let auditor_digest = token::sha256_hex("auditor password");
    let mut headers = auditor.headers();
    headers.push(("x-2fa-code", &auditor_digest));
    assert_eq!(
        server.post(url, &headers, None),
        (
            400,
            json!({"success": false, "error": "error-not-authorized"})
        )
    );

    // A tenant-scoped operator whose tenant has LDAP disabled: LDAP_disabled.
    server.create_account(
        &admin,
        json!({"username": "ops2", "password": "operator password", "tenant": 2, "role": "sync-operator"}),
    );
    let ops2 = server.login("ops2", "operator password");
    let ops2_digest = token::sha256_hex("operator password");
    let mut headers = ops2.headers();
    headers.push(("x-2fa-code", &ops2_digest));
    assert_eq!(
        server.post(url, &headers, None),
        (400, json!({"success": false, "error": "LDAP_disabled"}))
    );

    // TOTP: enrol, confirm, then codes are TOTP codes, each accepted once.
    let (status, enrol) = server.post("/api/v1/me/totp", &admin.headers(), None);
    assert_eq!(status, 200, "{enrol}");
    assert!(
        enrol["url"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/abacsync:admin?secret=")
    );
    let secret = base32_decode(enrol["secret"].as_str().unwrap());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let step = totp::step_of(now);
    let (status, body) = server.post(
        "/api/v1/me/totp/confirm",
        &admin.headers(),
        Some(json!({"code": totp::code_at(&secret, step)})),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.post(url, &admin.headers(), None);
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"success": false, "error": "TOTP Required [totp-required]", "errorType": "totp-required",
               "details": {"method": "totp", "codeGenerated": false, "availableMethods": ["totp"]}})
    );
    // The password digest no longer works once TOTP is on.
    let (status, body) = server.post(url, &with_code, None);
    assert_eq!(
        (status, body),
        (
            400,
            json!({"success": false, "error": "TOTP Invalid [totp-invalid]", "errorType": "totp-invalid",
                     "details": {"method": "totp", "codeGenerated": false}})
        )
    );
    // The next step's code (within the drift window) is fresh: accepted once.
    let fresh = totp::code_at(&secret, step + 1);
    let mut headers = admin.headers();
    headers.push(("x-2fa-code", &fresh));
    assert_eq!(server.post(url, &headers, None).0, 200);
    let (status, body) = server.post(url, &headers, None);
    assert_eq!(
        (status, &body["errorType"]),
        (400, &json!("totp-invalid")),
        "a replayed code"
    );

    // The seed document's own curl call, with a real token and code.
    let code = totp::code_at(&secret, step + 2);
    wait_until_step(step + 1);
    let output = Command::new("curl")
        .args([
            "--silent",
            "--location",
            "--request",
            "POST",
            &server.url(url),
        ])
        .args(["--header", &format!("x-auth-token: {}", admin.token)])
        .args(["--header", &format!("x-user-id: {}", admin.user_id)])
        .args(["--header", &format!("x-2fa-code: {code}")])
        .output()
        .expect("curl");
    let body: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        body,
        json!({"message": "Sync_in_progress", "success": true})
    );

    // Logout ends the session.
    let (status, body) = server.post("/api/v1/logout", &ops2.headers(), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.post(url, &ops2.headers(), None).0, 401);
}

/// Waits until the current TOTP step is at least `step` (so `step + 1` is in the window).
fn wait_until_step(step: u64) {
    loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        if totp::step_of(now) >= step {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn base32_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0);
    for c in text.bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => panic!("not base32: {text}"),
        };
        buffer = (buffer << 5) | u32::from(value);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    out
}

#[test]
fn abac_users_sync_follows_rocket_chats_contract() {
    let setup = Setup::new(4);
    let server = Server::start(&setup.config());
    let url = "/api/v1/abac/users/sync";
    let invalid = json!({"success": false, "error": "error-invalid-body-params"});

    // The body is checked first, even before authentication.
    for bad in [
        json!({}),
        json!({"usernames": []}),
        json!({"usernames": ["a", "a"]}),
        json!({"nope": ["a"]}),
    ] {
        assert_eq!(server.post(url, &[], Some(bad)), (400, invalid.clone()));
    }
    let body = json!({"usernames": [uid(1)]});
    assert_eq!(
        server.post(url, &[], Some(body.clone())),
        (
            401,
            json!({"success": false, "error": "error-unauthorized"})
        )
    );
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    assert_eq!(
        server.post(
            url,
            &admin.headers(),
            Some(json!({"ids": (0..101).map(|i| i.to_string()).collect::<Vec<_>>()}))
        ),
        (400, invalid)
    );

    // Without both ABAC permissions: 403.
    server.create_account(
        &admin,
        json!({"username": "half", "password": "half permissions", "permissions": ["abac-management"]}),
    );
    let half = server.login("half", "half permissions");
    assert_eq!(
        server.post(url, &half.headers(), Some(body.clone())),
        (
            403,
            json!({"success": false, "error": "error-not-authorized"})
        )
    );

    // ABAC disabled for the caller's tenant.
    server.create_account(
        &admin,
        json!({"username": "ops2", "password": "operator password", "tenant": 2, "role": "sync-operator"}),
    );
    let ops2 = server.login("ops2", "operator password");
    assert_eq!(
        server.post(url, &ops2.headers(), Some(body.clone())),
        (
            400,
            json!({"success": false, "error": "error-abac-not-enabled"})
        )
    );

    // A full sync first, then a change in the directory reaches only the named user.
    let (jwt, csrf) = server.form_login(ADMIN, ADMIN_PASSWORD);
    let cookie = format!("grommunioAuthJwt={jwt}");
    let (status, answer) = server.post(
        "/api/v1/domains/1/ldap/downsync?import=true&timeout=60",
        &[("cookie", &cookie), ("x-csrf-token", &csrf)],
        None,
    );
    assert_eq!(status, 200, "{answer}");
    for i in [1, 2] {
        setup
            .slapd
            .modify(&format!(
                "dn: {}\nchangetype: modify\nreplace: departmentNumber\ndepartmentNumber: 4242\n",
                user_dn("dc=example,dc=org", i)
            ))
            .unwrap();
    }
    assert_eq!(
        server.post(url, &admin.headers(), Some(body)),
        (200, json!({"success": true}))
    );
    let department = |name: &str| {
        let (_, users) = server.get(
            &format!("/api/v1/admin/tenants/1/users?search={name}"),
            &admin.headers(),
        );
        users["data"][0]["attributes"]["department"].clone()
    };
    assert_eq!(department(&uid(1)), json!(["4242"]));
    assert_ne!(department(&uid(2)), json!(["4242"]), "user 2 was not named");
    // Hostile identifiers are data, not filter syntax.
    let hostile = json!({"usernames": ["*", ")(uid=*", "\\", "a\u{0}b"]});
    assert_eq!(
        server.post(url, &admin.headers(), Some(hostile)),
        (200, json!({"success": true}))
    );
    assert_ne!(department(&uid(2)), json!(["4242"]));
}

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
            json!({"message": "Access denied", "error": "No token provided"})
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

    // Invalid parameters: 400 with every error listed.
    let (status, body) = server.post(&url("?import=maybe&timeout=soon"), &auth, None);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"].as_array().unwrap().len(), 2, "{body}");
    // Unknown domain: 404.
    assert_eq!(
        server.post("/api/v1/domains/99/ldap/downsync", &auth, None),
        (404, json!({"message": "Domain not found"}))
    );

    // Without import, nobody is created: everyone is "not imported".
    let (status, body) = server.post(&url("?timeout=60"), &auth, None);
    assert_eq!(status, 200, "{body}");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 6);
    assert!(data.iter().all(|r| r["code"] == 403), "{body}");

    // With import and a language: created, 201 each, with ID and username.
    let (status, body) = server.post(&url("?import=true&lang=de_DE&timeout=60"), &auth, None);
    assert_eq!(status, 200, "{body}");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 6);
    for result in data {
        assert_eq!(result["code"], 201, "{result}");
        assert!(
            result["ID"].is_i64()
                && result["username"].is_string()
                && result["message"].is_string()
        );
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
    assert_eq!(
        task["params"],
        json!({"domainID": 1, "import": false, "lang": ""})
    );
    assert!(
        task["result"]["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["code"] == 304),
        "{task}"
    );

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

    // The directory is down: 503.
    setup.slapd.stop().unwrap();
    let (status, body) = server.post(&url("?timeout=60"), &auth, None);
    assert_eq!(status, 503, "{body}");
    assert!(body["message"].as_str().unwrap().contains("LDAP"), "{body}");
    let _ = &mut setup;
}

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
    let (_, runs) = server.get("/api/v1/admin/tenants/1/runs", &admin.headers());
    let mut spans: Vec<(String, String)> = runs["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["started"].as_str().unwrap().to_owned(),
                r["finished"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    spans.sort();
    assert!(!spans.is_empty() && spans.len() <= ids.len());
    for pair in spans.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "overlapping runs: {pair:?}");
    }

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
    let (status, body) = server.post("/api/v1/domains/1/ldap/downsync", &ops2.headers(), None);
    assert_eq!(
        (status, body),
        (
            403,
            json!({"message": "Insufficient permissions for this operation"})
        )
    );
    // Secrets are never returned.
    let (_, tenant) = server.get("/api/v1/admin/tenants/1", &admin.headers());
    assert_eq!(tenant["ldap"]["bindPassword"], "inline");
    assert!(!tenant.to_string().contains(setup.slapd.admin_password()));
}

#[test]
fn a_task_cut_short_by_a_crash_is_marked_on_restart() {
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
    let second = server.wait_task(&admin, second["taskID"].as_i64().unwrap());
    assert_eq!(
        (second["stateName"].as_str(), second["state"].as_i64()),
        (Some("interrupted"), Some(4)),
        "{second}"
    );
    assert!(second["message"].as_str().unwrap().contains("interrupted"));
    // The cookie session survived the restart.
    let (status, _) = server.get("/api/v1/tasq/tasks", &[("cookie", &cookie)]);
    assert_eq!(status, 200);
}

#[test]
fn a_graceful_stop_finishes_the_running_sync_and_marks_the_queued_one() {
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
    let second = server.wait_task(&admin, second["taskID"].as_i64().unwrap());
    assert_eq!(second["stateName"], "interrupted", "{second}");
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
    let (_, runs) = server.get("/api/v1/admin/tenants/1/runs", &admin.headers());
    let mut spans: Vec<(String, String)> = runs["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["started"].as_str().unwrap().to_owned(),
                r["finished"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    spans.sort();
    assert_eq!(spans.len(), tasks.len());
    for pair in spans.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "overlapping runs: {pair:?}");
    }
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
                json!({"status": "error", "error": "Unauthorized", "message": "Unauthorized"})
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
    assert_eq!(server.get("/api/v1/tasq/status", &[]).0, 401);
    let (status, body) = server.get("/health", &[]);
    assert_eq!((status, &body["status"]), (200, &json!("ok")));
    let metrics = server
        .agent
        .get(&server.url("/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
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

#[test]
fn email_codes_are_sent_and_accepted_once() {
    let sink = abacsync_testkit::smtp::SmtpSink::start().unwrap();
    let smtp = format!(
        "[server.smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"plain\"\nfrom = \"abacsync <noreply@example.org>\"\n",
        sink.port()
    );
    let setup = Setup::with_server(2, &smtp);
    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let (status, body) = server.call(
        "PUT",
        "/api/v1/me/email2fa",
        &admin.headers(),
        Some(json!({"enabled": true, "email": "ops@example.org"})),
    );
    assert_eq!(status, 200, "{body}");

    // No code: one is mailed, and the error says so.
    let url = "/api/v1/ldap.syncNow";
    let (status, body) = server.post(url, &admin.headers(), None);
    assert_eq!(status, 400);
    assert_eq!(
        body["details"],
        json!({"method": "email", "codeGenerated": true, "availableMethods": ["email"]})
    );
    let messages = sink.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].to, ["<ops@example.org>"]);
    let code = messages[0]
        .data
        .lines()
        .find_map(|line| line.strip_prefix("Subject: abacsync verification code: "))
        .unwrap()
        .trim()
        .to_owned();
    // The password digest is no method once email is on; the mailed code works once.
    let digest = token::sha256_hex(ADMIN_PASSWORD);
    let mut headers = admin.headers();
    headers.push(("x-2fa-code", &digest));
    let (status, body) = server.post(url, &headers, None);
    assert_eq!(
        (status, &body["errorType"]),
        (400, &json!("totp-invalid")),
        "{body}"
    );
    let mut headers = admin.headers();
    headers.push(("x-2fa-code", &code));
    assert_eq!(
        server.post(url, &headers, None),
        (200, json!({"message": "Sync_in_progress", "success": true}))
    );
    let (status, body) = server.post(url, &headers, None);
    assert_eq!(
        (status, &body["errorType"]),
        (400, &json!("totp-invalid")),
        "replayed: {body}"
    );

    // Logging in now needs a code too: the method is named, a code is mailed.
    let (status, body) = server.post(
        "/api/v1/login",
        &[("x-2fa-method", "email")],
        Some(json!({"user": ADMIN, "password": ADMIN_PASSWORD})),
    );
    assert_eq!(
        (status, &body["error"]),
        (401, &json!("totp-required")),
        "{body}"
    );
    assert_eq!(body["details"]["codeGenerated"], true);
    assert_eq!(sink.messages().len(), 2);
}
