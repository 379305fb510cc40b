//! The attacks of the security review (issue 20), each replayed against the real
//! server: every way into a session asks for the second factor, factors change only
//! with the current one, one trigger rule for both dialects, a deleted tenant takes its
//! accounts with it, and a transport downgrade needs the password again.

use abacsync::auth::{token, totp};
use serde_json::{Value, json};

use abacsync_testkit::plugins;

use super::rocketchat::{base32_decode, mailed_code, wait_until_step};
use super::{ADMIN, ADMIN_PASSWORD, RcAuth, Server, Setup};

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Enrols and confirms TOTP for `auth` (whose account has no factor yet); returns the
/// secret and the step whose code was used.
fn enrol_totp(server: &Server, auth: &RcAuth) -> (Vec<u8>, u64) {
    let (status, enrol) = server.post("/api/v1/me/totp", &auth.step_up(), None);
    assert_eq!(status, 200, "{enrol}");
    let secret = base32_decode(enrol["secret"].as_str().unwrap());
    let step = totp::step_of(unix_now());
    let (status, body) = server.post(
        "/api/v1/me/totp/confirm",
        &auth.headers(),
        Some(json!({"code": totp::code_at(&secret, step)})),
    );
    assert_eq!(status, 200, "{body}");
    (secret, step)
}

/// grommunio's form login with optional extra fields: status, JSON body, whether a
/// session cookie was set.
fn form_login(server: &Server, fields: &[(&str, &str)]) -> (u16, Value, bool) {
    let mut response = server
        .agent
        .post(&server.url("/api/v1/login"))
        .send_form(fields.iter().copied())
        .unwrap();
    let status = response.status().as_u16();
    let cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|value| value.to_str().unwrap().starts_with("grommunioAuthJwt="));
    let text = response.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        cookie,
    )
}

#[test]
fn the_form_login_asks_for_the_second_factor() {
    let setup = Setup::new(2);
    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let (secret, step) = enrol_totp(&server, &admin);
    let password = [("user", ADMIN), ("pass", ADMIN_PASSWORD)];

    // The password alone opened a session before: now it names the missing factor.
    let (status, body, cookie) = form_login(&server, &password);
    assert_eq!(
        (status, &body, cookie),
        (
            401,
            &json!({"message": "Login failed",
                    "error": "Two-factor code required (totp): send it as the form field 'code'",
                    "twoFactor": {"method": "totp", "codeGenerated": false, "availableMethods": ["totp"]}}),
            false
        )
    );
    let wrong = if totp::code_at(&secret, step + 1) == "000000" {
        "111111"
    } else {
        "000000"
    };
    let (status, body, cookie) = form_login(&server, &[password[0], password[1], ("code", wrong)]);
    assert_eq!(
        (status, &body["error"], cookie),
        (401, &json!("Invalid two-factor code (totp)"), false)
    );
    // The password's digest is no factor once TOTP is on.
    let digest = token::sha256_hex(ADMIN_PASSWORD);
    let (status, _, cookie) = form_login(&server, &[password[0], password[1], ("code", &digest)]);
    assert_eq!((status, cookie), (401, false));

    // A current code opens the session, once.
    let code = totp::code_at(&secret, step + 1);
    let with_code = [password[0], password[1], ("code", code.as_str())];
    let (status, body, cookie) = form_login(&server, &with_code);
    assert_eq!((status, cookie), (200, true), "{body}");
    assert!(body["csrf"].is_string(), "{body}");
    let (status, _, cookie) = form_login(&server, &with_code);
    assert_eq!((status, cookie), (401, false), "a replayed code");

    // The JSON login of the same account asks too (it always did).
    let (status, body) = server.post(
        "/api/v1/login",
        &[],
        Some(json!({"user": ADMIN, "password": ADMIN_PASSWORD})),
    );
    assert_eq!((status, &body["error"]), (401, &json!("totp-required")));
}

#[test]
fn a_factor_changes_only_with_the_current_one() {
    let sink = abacsync_testkit::smtp::SmtpSink::start().unwrap();
    let smtp = format!(
        "[server.smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"plain\"\nfrom = \"abacsync <noreply@example.org>\"\n",
        sink.port()
    );
    let setup = Setup::with_server(2, &smtp);
    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let email = |auth: &[(&str, &str)], address: &str| {
        server.call(
            "PUT",
            "/api/v1/me/email2fa",
            auth,
            Some(json!({"enabled": true, "email": address})),
        )
    };

    // A session alone (stolen, or password-only) cannot name an address.
    let (status, body) = email(&admin.headers(), "attacker@example.net");
    assert_eq!(
        (status, &body["errorType"]),
        (400, &json!("totp-required")),
        "{body}"
    );
    let (status, body) = server.post("/api/v1/me/totp", &admin.headers(), None);
    assert_eq!((status, &body["errorType"]), (400, &json!("totp-required")));
    assert!(sink.messages().is_empty());

    // With the current factor the address is asked to prove itself; until then nothing
    // changes: the password's digest still passes, and no code goes to the new address.
    let (status, body) = email(&admin.step_up(), "ops@example.org");
    assert_eq!(
        (status, &body),
        (
            202,
            &json!({"enabled": false, "email": null, "pending": "ops@example.org", "codeSent": true})
        )
    );
    let (_, me) = server.get("/api/v1/me", &admin.headers());
    assert_eq!(me["services"]["email2fa"]["enabled"], false, "{me}");
    assert_eq!(
        server
            .post("/api/v1/ldap.syncNow", &admin.step_up(), None)
            .0,
        200
    );
    let (status, body) = server.post(
        "/api/v1/me/email2fa/confirm",
        &admin.headers(),
        Some(json!({"code": "not the code"})),
    );
    assert_eq!(status, 400, "{body}");
    let proof = mailed_code(&sink, 0);
    let (status, body) = server.post(
        "/api/v1/me/email2fa/confirm",
        &admin.headers(),
        Some(json!({"code": proof})),
    );
    assert_eq!(
        (status, body),
        (200, json!({"enabled": true, "email": "ops@example.org"}))
    );
    let (status, _) = server.post(
        "/api/v1/me/email2fa/confirm",
        &admin.headers(),
        Some(json!({"code": proof})),
    );
    assert_eq!(status, 400, "a proof counts once");

    // The attack of the review: the same session moves codes to another address. The
    // password no longer counts; without a code one goes to the proven address only.
    let (status, body) = email(&admin.step_up(), "attacker@example.net");
    assert_eq!(
        (status, &body["errorType"]),
        (400, &json!("totp-invalid")),
        "{body}"
    );
    let (status, body) = email(&admin.headers(), "attacker@example.net");
    assert_eq!(
        (status, &body["details"]["codeGenerated"]),
        (400, &json!(true)),
        "{body}"
    );
    let messages = sink.messages();
    assert_eq!(messages.len(), 2);
    assert!(
        messages.iter().all(|m| m.to == ["<ops@example.org>"]),
        "{messages:?}"
    );
    // Turning codes off needs a code of the proven address too.
    let (status, _) = server.call(
        "PUT",
        "/api/v1/me/email2fa",
        &admin.step_up(),
        Some(json!({"enabled": false})),
    );
    assert_eq!(status, 400);
    let code = mailed_code(&sink, 1);
    let mut headers = admin.headers();
    headers.push(("x-2fa-code", &code));
    let (status, body) = server.call(
        "PUT",
        "/api/v1/me/email2fa",
        &headers,
        Some(json!({"enabled": false})),
    );
    assert_eq!(
        (status, body),
        (200, json!({"enabled": false, "email": "ops@example.org"}))
    );
}

#[test]
fn removing_totp_needs_a_fresh_code() {
    let setup = Setup::new(2);
    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let (secret, step) = enrol_totp(&server, &admin);
    let (status, body) = server.call("DELETE", "/api/v1/me/totp", &admin.headers(), None);
    assert_eq!((status, &body["errorType"]), (400, &json!("totp-required")));
    // A code used once (here for a sync) is not accepted again, even within the window.
    let code = totp::code_at(&secret, step + 1);
    wait_until_step(step + 1);
    let mut headers = admin.headers();
    headers.push(("x-2fa-code", &code));
    assert_eq!(server.post("/api/v1/ldap.syncNow", &headers, None).0, 200);
    let (status, body) = server.call("DELETE", "/api/v1/me/totp", &headers, None);
    assert_eq!((status, &body["errorType"]), (400, &json!("totp-invalid")));
    let code = totp::code_at(&secret, step + 2);
    wait_until_step(step + 2);
    let mut headers = admin.headers();
    headers.push(("x-2fa-code", &code));
    let (status, body) = server.call("DELETE", "/api/v1/me/totp", &headers, None);
    assert_eq!((status, body), (200, json!({"enabled": false})));
}

#[test]
fn one_rule_for_a_full_sync_in_either_dialect() {
    let setup = Setup::new(2);
    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let downsync = "/api/v1/domains/1/ldap/downsync?import=true&timeout=60";

    // A Rocket.Chat token is asked for the code on grommunio's trigger as on its own.
    let (status, body) = server.post(downsync, &admin.headers(), None);
    assert_eq!(
        (status, &body["errorType"]),
        (400, &json!("totp-required")),
        "{body}"
    );
    let (status, body) = server.post("/api/v1/ldap.syncNow", &admin.headers(), None);
    assert_eq!((status, &body["errorType"]), (400, &json!("totp-required")));
    let mut wrong = admin.headers();
    wrong.push(("x-2fa-code", "0000"));
    assert_eq!(server.post(downsync, &wrong, None).0, 400);
    let (status, body) = server.post(downsync, &admin.step_up(), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"].as_array().unwrap().len(), 2, "{body}");

    // A grommunio cookie was asked for the factor at login, so its downsync needs no
    // code; Rocket.Chat's triggers know Rocket.Chat's tokens only.
    let (jwt, csrf) = server.form_login(ADMIN, ADMIN_PASSWORD);
    let cookie = format!("grommunioAuthJwt={jwt}");
    let with_cookie = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())];
    assert_eq!(server.post(downsync, &with_cookie, None).0, 200);
    let (status, body) = server.post("/api/v1/ldap.syncNow", &with_cookie, None);
    assert_eq!(
        (status, body),
        (
            401,
            json!({"status": "error", "message": "You must be logged in to do this.",
                "success": false, "error": "You must be logged in to do this."})
        )
    );
}

#[test]
fn a_deleted_tenant_takes_its_accounts_and_data_with_it() {
    let setup = Setup::new(3);
    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let slapd = &setup.slapd;
    let tenant = json!({
        "id": 4, "name": "short-lived",
        "ldap": {"servers": [slapd.url()], "tls": "plain", "bind_dn": slapd.admin_dn(),
                 "bind_password": slapd.admin_password(), "base_dn": format!("ou=people,{}", slapd.base_dn()),
                 "user_filter": "(objectClass=inetOrgPerson)"}
    });
    let (status, body) = server.post(
        "/api/v1/admin/tenants",
        &admin.headers(),
        Some(tenant.clone()),
    );
    assert_eq!(status, 201, "{body}");
    let (status, plugin) = server.upload(&admin, "openldap-mapping");
    assert!(status == 200 || status == 201, "{plugin}");
    let (status, body) = server.call(
        "PUT",
        "/api/v1/admin/tenants/4/plugin",
        &admin.headers(),
        Some(json!({"pluginId": plugin["id"]})),
    );
    assert_eq!(status, 200, "{body}");
    server.create_account(
        &admin,
        json!({"username": "four", "password": "tenant four admin", "tenant": 4, "role": "admin"}),
    );
    let four = server.login("four", "tenant four admin");
    let (jwt, _) = server.form_login("four", "tenant four admin");
    let four_cookie = format!("grommunioAuthJwt={jwt}");
    let (status, body) = server.downsync(&four, 4);
    assert_eq!(status, 200, "{body}");
    let (_, users) = server.get("/api/v1/admin/tenants/4/users", &four.headers());
    assert_eq!(users["data"].as_array().unwrap().len(), 3, "{users}");

    let (status, body) = server.call("DELETE", "/api/v1/admin/tenants/4", &admin.headers(), None);
    assert!(status == 200 || status == 204, "{status} {body}");

    // Its admin's sessions end and the account is gone.
    assert_eq!(server.get("/api/v1/me", &four.headers()).0, 401);
    assert_eq!(server.get("/api/v1/me", &[("cookie", &four_cookie)]).0, 401);
    let (status, _) = server.post(
        "/api/v1/login",
        &[],
        Some(json!({"user": "four", "password": "tenant four admin"})),
    );
    assert_eq!(status, 401);
    let (_, accounts) = server.get("/api/v1/admin/accounts", &admin.headers());
    assert!(!accounts.to_string().contains("\"four\""), "{accounts}");

    // A new tenant with the same id starts empty: no users, audit, runs or tasks.
    let mut again = tenant.clone();
    again["name"] = json!("successor");
    let (status, body) = server.post("/api/v1/admin/tenants", &admin.headers(), Some(again));
    assert_eq!(status, 201, "{body}");
    for path in ["users", "audit", "runs"] {
        let (status, body) =
            server.get(&format!("/api/v1/admin/tenants/4/{path}"), &admin.headers());
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(body["data"], json!([]), "{path}: {body}");
    }
    let (_, plugin) = server.get("/api/v1/admin/tenants/4/plugin", &admin.headers());
    assert!(plugin["assignment"].is_null(), "{plugin}");
    let tasks = server.tasks(&admin);
    assert!(tasks.iter().all(|task| task["domainID"] != 4), "{tasks:?}");
    // The name is free again, for an account of the new tenant.
    server.create_account(
        &admin,
        json!({"username": "four", "password": "the successor's admin", "tenant": 4, "role": "admin"}),
    );
}

#[test]
fn a_transport_downgrade_needs_the_password_again() {
    let setup = Setup::new(2);
    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let slapd = &setup.slapd;
    let tenant = json!({
        "id": 6, "name": "tls-bound",
        "ldap": {"servers": [slapd.url()], "tls": "starttls", "bind_dn": slapd.admin_dn(),
                 "bind_password": slapd.admin_password(), "base_dn": format!("ou=people,{}", slapd.base_dn()),
                 "user_filter": "(objectClass=inetOrgPerson)"}
    });
    let (status, body) = server.post(
        "/api/v1/admin/tenants",
        &admin.headers(),
        Some(tenant.clone()),
    );
    assert_eq!(status, 201, "{body}");
    let without_password = |change: &dyn Fn(&mut Value)| {
        let mut body = tenant.clone();
        body["ldap"]
            .as_object_mut()
            .unwrap()
            .remove("bind_password");
        change(&mut body);
        server.call(
            "PUT",
            "/api/v1/admin/tenants/6",
            &admin.headers(),
            Some(body),
        )
    };
    let (status, body) = without_password(&|body| body["ldap"]["tls"] = json!("plain"));
    assert_eq!(status, 400, "{body}");
    assert!(
        body.to_string().contains("tls changed"),
        "the error names the change: {body}"
    );
    let (status, body) =
        without_password(&|body| body["ldap"]["ca_file"] = json!("/tmp/other.pem"));
    assert_eq!(status, 400, "{body}");
    // Unchanged transport keeps the stored password; the downgrade with it is accepted.
    let (status, body) = without_password(&|body| body["name"] = json!("renamed"));
    assert_eq!(status, 200, "{body}");
    let mut plain = tenant.clone();
    plain["ldap"]["tls"] = json!("plain");
    let (status, body) = server.call(
        "PUT",
        "/api/v1/admin/tenants/6",
        &admin.headers(),
        Some(plain),
    );
    assert_eq!(status, 200, "{body}");
    let (status, test) = server.post(
        "/api/v1/admin/tenants/6/connection-test",
        &admin.headers(),
        None,
    );
    assert_eq!((status, &test["ok"]), (200, &json!(true)), "{test}");
}

/// A JSON login from `address` (through the trusted proxy at 127.0.0.1); its status
/// and body.
fn login_from(
    server: &Server,
    address: &str,
    user: &str,
    password: &str,
    code: Option<&str>,
) -> (u16, Value) {
    let mut body = json!({"user": user, "password": password});
    if let Some(code) = code {
        body["code"] = json!(code);
    }
    server.post("/api/v1/login", &[("x-forwarded-for", address)], Some(body))
}

#[test]
fn the_login_limit_counts_failures_and_locks_out_no_one() {
    // Two failures per name and address, ten per address, twenty per name.
    let setup = Setup::with_server(
        1,
        "[server]\nrate_limit_attempts = 2\ntrusted_proxies = [\"127.0.0.1\"]\n",
    );
    let server = Server::start(&setup.config());
    // Successes never count: a whole office behind one address logs in.
    for _ in 0..15 {
        let (status, body) = login_from(&server, "192.0.2.1", ADMIN, ADMIN_PASSWORD, None);
        assert_eq!(status, 200, "{body}");
    }
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    server.create_account(
        &admin,
        json!({"username": "victim", "password": "the victim's password", "role": "auditor"}),
    );
    let victim = server.login("victim", "the victim's password");
    let (secret, step) = enrol_totp(&server, &victim);

    // A guesser at one address is stopped after two failures; the victim, elsewhere,
    // is not.
    for _ in 0..2 {
        let (status, _) = login_from(&server, "203.0.113.9", "victim", "guess", None);
        assert_eq!(status, 401);
    }
    let (status, body) = login_from(&server, "203.0.113.9", "victim", "guess", None);
    assert_eq!(status, 429, "{body}");
    let (status, body) = login_from(
        &server,
        "198.51.100.7",
        "victim",
        "the victim's password",
        None,
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("totp-required")),
        "{body}"
    );

    // Guessers at ten addresses reach the name's limit: a login without a code is
    // refused, one with the password and a correct code passes, a wrong code does not.
    for i in 1..=10 {
        for _ in 0..2 {
            let (status, _) = login_from(&server, &format!("10.9.0.{i}"), "victim", "guess", None);
            assert!(status == 401 || status == 429, "{status}");
        }
    }
    let (status, body) = login_from(
        &server,
        "198.51.100.8",
        "victim",
        "the victim's password",
        None,
    );
    assert_eq!(status, 429, "{body}");
    let (status, body) = login_from(
        &server,
        "198.51.100.8",
        "victim",
        "the victim's password",
        Some("000000"),
    );
    assert_eq!(status, 401, "{body}");
    let code = totp::code_at(&secret, step + 1);
    let (status, body) = login_from(
        &server,
        "198.51.100.9",
        "victim",
        "the victim's password",
        Some(&code),
    );
    assert_eq!(status, 200, "{body}");
    // An account without a second factor cannot pass the name's limit: the admin's
    // own address is not limited, its name is not at its limit either.
    let (status, body) = login_from(&server, "192.0.2.1", ADMIN, ADMIN_PASSWORD, None);
    assert_eq!(status, 200, "{body}");
}

#[test]
fn account_names_do_not_leak_across_tenants() {
    let setup = Setup::new(1);
    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    for (name, tenant) in [("one-admin", 1), ("two-admin", 2)] {
        server.create_account(
            &admin,
            json!({"username": name, "password": "a tenant admin's password", "tenant": tenant, "role": "admin"}),
        );
    }
    let two = server.login("two-admin", "a tenant admin's password");
    // Tenant 2's admin tries the name of tenant 1's admin, of the system admin and of
    // its own: one answer for all three, naming no account and no tenant.
    let answers: Vec<_> = ["one-admin", ADMIN, "two-admin"]
        .iter()
        .map(|name| {
            server.post(
                "/api/v1/admin/accounts",
                &two.headers(),
                Some(json!({"username": name, "password": "another password here", "role": "auditor"})),
            )
        })
        .collect();
    for (status, body) in &answers {
        assert_eq!(*status, 409, "{body}");
        assert_eq!(body, &answers[0].1);
        let text = body.to_string();
        assert!(
            !text.contains("admin") && !text.contains("exists"),
            "{text}"
        );
    }
}

/// Rewrites the `[quotas]` table at the end of the setup's configuration.
fn set_quotas(setup: &Setup, quotas: &str) {
    let text = std::fs::read_to_string(setup.config()).unwrap();
    let head = text.split("[quotas]").next().unwrap().to_owned();
    std::fs::write(setup.config(), format!("{head}[quotas]\n{quotas}\n")).unwrap();
}

fn metric(server: &Server, line_start: &str) -> u64 {
    let text = server.metrics();
    text.lines()
        .find_map(|line| line.strip_prefix(line_start))
        .unwrap_or_else(|| panic!("no {line_start} in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

fn bulk_values(server: &Server, admin: &RcAuth) -> Vec<Value> {
    // Page by page: the pages stop at `page_bytes`.
    let mut values = Vec::new();
    let mut path = "/api/v1/admin/tenants/1/users".to_owned();
    loop {
        let (status, users) = server.get(&path, &admin.headers());
        assert_eq!(status, 200, "{users}");
        values.extend(
            users["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|user| user["attributes"]["bulk"].clone()),
        );
        match users["next"]["after"].as_i64() {
            Some(after) => path = format!("/api/v1/admin/tenants/1/users?after={after}"),
            None => return values,
        }
    }
}

#[test]
fn a_tenant_cannot_fill_the_store() {
    // The review's attack: a plugin that returns two 10 KB values per user, new ones
    // every sync, against a store with no bounds.
    let setup = Setup::new(20);
    let plugin = |values: u32, size: u32, salt: &str| {
        setup.set_plugin(
            "hostile-mapping",
            &format!(
                "behaviour = \"bulk\", values = \"{values}\", size = \"{size}\", salt = \"{salt}\""
            ),
        );
    };
    let quotas = "user_attribute_values = 2\nuser_attribute_bytes = 30000\n\
                  tenant_attribute_bytes = 300000\naudit_max_events = 30\npage_bytes = 65536";
    set_quotas(&setup, quotas);

    // 20 users of 2 × 10,004 bytes: 400,160 bytes, over the tenant's 300,000. The
    // sync writes nothing and says which quota.
    plugin(2, 10_000, "a");
    let mut server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let (status, body) = server.downsync(&admin, 1);
    assert_ne!(status, 200, "{body}");
    assert!(
        body.to_string().contains("quotas.tenant_attribute_bytes"),
        "{status} {body}"
    );
    assert!(bulk_values(&server, &admin).is_empty());
    assert_eq!(
        metric(
            &server,
            "abacsync_quota_refusals_total{quota=\"tenant_attribute_bytes\"}"
        ),
        1
    );
    server.terminate();

    // Half the size fits (200,160 bytes); a second sync with new values replaces them,
    // and the audit trail keeps its newest 30 events.
    plugin(2, 5_000, "a");
    let mut server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let (status, body) = server.downsync(&admin, 1);
    assert_eq!(status, 200, "{body}");
    assert_eq!(bulk_values(&server, &admin).len(), 20);
    server.terminate();
    plugin(2, 5_000, "b");
    let mut server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let (status, body) = server.downsync(&admin, 1);
    assert_eq!(status, 200, "{body}");
    assert!(
        metric(&server, "abacsync_audit_events_pruned_total") >= 10,
        "40 events written, 30 kept"
    );
    // Pages stop at 64 KiB of JSON (an event here is ~20 KB) and say where to go on.
    let mut events = 0;
    let mut before: Option<i64> = None;
    let mut pages = 0;
    loop {
        let path = match before {
            Some(id) => format!("/api/v1/admin/tenants/1/audit?limit=1000&before={id}"),
            None => "/api/v1/admin/tenants/1/audit?limit=1000".to_owned(),
        };
        let (status, page) = server.get(&path, &admin.headers());
        assert_eq!(status, 200, "{page}");
        let text = page.to_string();
        assert!(text.len() <= 65_536 + 100, "{} bytes", text.len());
        events += page["data"].as_array().unwrap().len();
        pages += 1;
        match page["next"]["before"].as_i64() {
            Some(id) => {
                assert_eq!(page["truncated"], true);
                before = Some(id);
            }
            None => break,
        }
    }
    assert_eq!(events, 30, "the newest 30 events are kept");
    assert!(pages > 3, "{pages} pages");
    assert!(
        metric(
            &server,
            "abacsync_quota_refusals_total{quota=\"page_bytes\"}"
        ) >= 3
    );

    // Three values per user: over the per-user quota. Every entry fails 413 and each
    // user keeps what it had.
    server.terminate();
    plugin(3, 5_000, "c");
    let mut server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let (status, body) = server.downsync(&admin, 1);
    assert_eq!(status, 200, "{body}");
    let text = body.to_string();
    assert!(text.contains("413"), "{text}");
    assert!(text.contains("over the tenant's quota"), "{text}");
    for values in bulk_values(&server, &admin) {
        let values = values.as_array().unwrap();
        assert_eq!(values.len(), 2);
        assert!(values[0].as_str().unwrap().starts_with("b:"), "{values:?}");
    }
    assert_eq!(
        metric(
            &server,
            "abacsync_quota_refusals_total{quota=\"user_attributes\"}"
        ),
        20
    );
    server.terminate();
}

#[test]
fn a_tenant_admin_uploads_within_the_plugin_quota() {
    let setup = Setup::new(1);
    let small = plugins::bytes("openldap-mapping").len();
    let large = plugins::bytes("hostile-mapping").len();
    let (small_name, large_name, small, large) = if small <= large {
        ("openldap-mapping", "hostile-mapping", small, large)
    } else {
        ("hostile-mapping", "openldap-mapping", large, small)
    };
    // Two plugins of at most the smaller one's size (and the custom section that
    // makes each upload another component).
    let cap = small + 64;
    assert!(cap < large, "{small_name} {small}, {large_name} {large}");
    set_quotas(
        &setup,
        &format!("tenant_plugins = 2\ntenant_plugin_max_bytes = {cap}"),
    );
    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    server.create_account(
        &admin,
        json!({"username": "one", "password": "tenant one admin", "tenant": 1, "role": "admin"}),
    );
    let one = server.login("one", "tenant one admin");

    // Larger than a tenant admin may upload: 413, before anything is compiled.
    let (status, body) = server.upload(&one, large_name);
    assert_eq!(status, 413, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("quotas.tenant_plugin_max_bytes"),
        "{body}"
    );
    // A system admin is bound by the sandbox only.
    let (status, body) = server.upload(&admin, large_name);
    assert_eq!(status, 201, "{body}");

    // Two uploads fill the tenant's count (the same component again is the same
    // plugin, not a new one); the third is refused.
    let upload_as = |name: &str| {
        let bytes = plugins::bytes(small_name);
        server.send_raw(
            "POST",
            &format!("/api/v1/admin/plugins?name={name}.wasm"),
            &one.headers(),
            "application/wasm",
            &with_custom_section(&bytes, name),
        )
    };
    let (status, first) = upload_as("first");
    assert_eq!(status, 201, "{first}");
    let (status, again) = upload_as("first");
    assert_eq!((status, &again["id"]), (201, &first["id"]), "{again}");
    let (status, second) = upload_as("second");
    assert_eq!(status, 201, "{second}");
    let (status, body) = upload_as("third");
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("quotas.tenant_plugins"),
        "{body}"
    );

    // The current plugin stays; an unassigned one can go, and makes room.
    let (status, body) = server.call(
        "PUT",
        "/api/v1/admin/tenants/1/plugin",
        &one.headers(),
        Some(json!({"pluginId": second["id"]})),
    );
    assert_eq!(status, 200, "{body}");
    let path = |plugin: &Value| format!("/api/v1/admin/plugins/{}", plugin["id"]);
    let (status, body) = server.call("DELETE", &path(&second), &one.headers(), None);
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("current plugin of tenant 1"),
        "{body}"
    );
    // Not another's: the system admin's plugin is not the tenant admin's to delete.
    let (_, system) = server.get("/api/v1/admin/plugins", &admin.headers());
    let system = system["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|plugin| plugin["tenant"].is_null())
        .unwrap()
        .clone();
    assert_eq!(
        server
            .call("DELETE", &path(&system), &one.headers(), None)
            .0,
        403
    );
    let (status, body) = server.call("DELETE", &path(&first), &one.headers(), None);
    assert_eq!(status, 204, "{body}");
    assert_eq!(server.get(&path(&first), &one.headers()).0, 404);
    let (status, body) = upload_as("third");
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        metric(
            &server,
            "abacsync_quota_refusals_total{quota=\"tenant_plugins\"}"
        ),
        1
    );
    assert_eq!(
        metric(
            &server,
            "abacsync_quota_refusals_total{quota=\"tenant_plugin_max_bytes\"}"
        ),
        1
    );
}

/// `component` with a custom section named `name`: another component (another hash)
/// that behaves the same.
fn with_custom_section(component: &[u8], name: &str) -> Vec<u8> {
    let mut out = component.to_vec();
    let mut payload = Vec::new();
    payload.push(u8::try_from(name.len()).unwrap());
    payload.extend_from_slice(name.as_bytes());
    payload.extend_from_slice(b"padding");
    out.push(0); // custom section id
    out.push(u8::try_from(payload.len()).unwrap());
    out.extend_from_slice(&payload);
    out
}

/// The claims of a cookie JWT, read without checking its signature.
fn claims_of(jwt: &str) -> abacsync::auth::jwt::Claims {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn forged_and_foreign_credentials_are_refused() {
    let setup = Setup::new(1);
    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    server.create_account(
        &admin,
        json!({"username": "ops", "password": "the ops password", "tenant": 1, "role": "sync-operator"}),
    );
    let ops = server.login("ops", "the ops password");

    // One account's token with another's id.
    let mixed = [
        ("x-user-id", ops.user_id.as_str()),
        ("x-auth-token", admin.token.as_str()),
    ];
    assert_eq!(server.get("/api/v1/me", &mixed).0, 401);
    assert_eq!(server.post("/api/v1/ldap.syncNow", &mixed, None).0, 401);
    assert_eq!(server.get("/api/v1/admin/tenants", &mixed).0, 401);

    // A cookie of a live session, re-signed with an empty HS256 key: refused.
    let (jwt, csrf) = server.form_login(ADMIN, ADMIN_PASSWORD);
    let claims = claims_of(&jwt);
    let cookie = |jwt: &str| format!("grommunioAuthJwt={jwt}");
    assert_eq!(
        server.get("/api/v1/me", &[("cookie", &cookie(&jwt))]).0,
        200,
        "the genuine cookie works"
    );
    let empty_key = abacsync::auth::jwt::sign(&claims, b"");
    let (status, body) = server.get("/api/v1/me", &[("cookie", &cookie(&empty_key))]);
    assert_eq!(status, 401, "{body}");
    // Signed with the server's own key, but naming a Rocket.Chat session: the
    // dialects' sessions are apart.
    let secret = setup.jwt_secret();
    let cross = abacsync::auth::jwt::sign(
        &abacsync::auth::jwt::Claims {
            sid: admin.token.clone(),
            ..claims.clone()
        },
        &secret,
    );
    let (status, body) = server.get("/api/v1/me", &[("cookie", &cookie(&cross))]);
    assert_eq!(status, 401, "{body}");
    // And a Rocket.Chat route never takes the cookie, even a genuine one.
    assert_eq!(
        server
            .post("/api/v1/ldap.syncNow", &[("cookie", &cookie(&jwt))], None)
            .0,
        401
    );

    // A grommunio logout ends the session and clears the cookie; the cookie then
    // opens nothing, and a new login is a new session.
    let mut response = server
        .agent
        .post(&server.url("/api/v1/logout"))
        .header("cookie", &cookie(&jwt))
        .header("x-csrf-token", &csrf)
        .send_empty()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let cleared = response
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let _ = response.body_mut().read_to_string();
    assert_eq!(
        server.get("/api/v1/me", &[("cookie", &cookie(&jwt))]).0,
        401
    );
    let (again, _) = server.form_login(ADMIN, ADMIN_PASSWORD);
    assert_ne!(
        claims_of(&again).sid,
        claims.sid,
        "a login never reuses a session"
    );
}

#[test]
fn an_auditor_changes_nothing() {
    let setup = Setup::new(2);
    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    server.create_account(
        &admin,
        json!({"username": "auditor", "password": "an auditor's password", "tenant": 1, "role": "auditor"}),
    );
    let auditor = server.login("auditor", "an auditor's password");
    let (status, body) = server.downsync(&admin, 1);
    assert_eq!(status, 200, "{body}");
    let (_, users_before) = server.get("/api/v1/admin/tenants/1/users", &admin.headers());
    let (_, plugin) = server.upload(&admin, "openldap-mapping");
    let attempts: [(&str, String, Option<Value>); 9] = [
        (
            "POST",
            "/api/v1/domains/1/ldap/downsync?import=true".into(),
            None,
        ),
        (
            "POST",
            "/api/v1/abac/users/sync".into(),
            Some(json!({"usernames": ["user0"]})),
        ),
        (
            "PUT",
            "/api/v1/admin/tenants/1/schedule".into(),
            Some(json!({"intervalSecs": 3600})),
        ),
        (
            "PUT",
            "/api/v1/admin/tenants/1/plugin".into(),
            Some(json!({"pluginId": plugin["id"]})),
        ),
        (
            "POST",
            "/api/v1/admin/tenants/1/plugin/rollback".into(),
            Some(json!({})),
        ),
        (
            "DELETE",
            format!("/api/v1/admin/plugins/{}", plugin["id"]),
            None,
        ),
        (
            "POST",
            "/api/v1/admin/accounts".into(),
            Some(
                json!({"username": "mine", "password": "a password of mine", "tenant": 1, "role": "admin"}),
            ),
        ),
        ("DELETE", "/api/v1/admin/tenants/1".into(), None),
        (
            "POST",
            "/api/v1/admin/tenants".into(),
            Some(json!({"id": 9, "name": "nine"})),
        ),
    ];
    for (method, path, body) in attempts {
        let (status, answer) = server.call(method, &path, &auditor.step_up(), body);
        assert!(
            status == 403 || status == 401,
            "{method} {path}: {status} {answer}"
        );
    }
    let (status, body) = server.send_raw(
        "POST",
        "/api/v1/admin/plugins?name=x.wasm",
        &auditor.headers(),
        "application/wasm",
        &abacsync_testkit::plugins::bytes("openldap-mapping"),
    );
    assert_eq!(status, 403, "{body}");
    // Nothing changed: the same users, no schedule, no new account, the tenant there.
    let (_, users_after) = server.get("/api/v1/admin/tenants/1/users", &admin.headers());
    assert_eq!(users_after, users_before);
    let (_, schedule) = server.get("/api/v1/admin/tenants/1/schedule", &admin.headers());
    assert_ne!(schedule["intervalSecs"], 3600, "{schedule}");
    let (_, accounts) = server.get("/api/v1/admin/accounts", &admin.headers());
    assert!(!accounts.to_string().contains("\"mine\""), "{accounts}");
    assert_eq!(
        server.get("/api/v1/admin/tenants/1", &admin.headers()).0,
        200
    );
    assert_eq!(
        server
            .get(
                &format!("/api/v1/admin/plugins/{}", plugin["id"]),
                &admin.headers()
            )
            .0,
        200
    );
}

#[test]
fn huge_deep_and_wide_bodies_are_refused_cleanly() {
    let setup = Setup::new(1);
    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    // 100 MB announced: refused at once with 413, before the body is read (a client
    // still sending meets a closed connection, so this one sends the head and a
    // little, then reads).
    {
        use std::io::{Read, Write};
        let address = server.url("").trim_start_matches("http://").to_owned();
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        write!(
            stream,
            "POST /api/v1/admin/tenants HTTP/1.1\r\nHost: {address}\r\nX-User-Id: {}\r\nX-Auth-Token: {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            admin.user_id,
            admin.token,
            100u64 << 20
        )
        .unwrap();
        // The body goes on from another thread until the server stops reading.
        let mut writer = stream.try_clone().unwrap();
        let sending = std::thread::spawn(move || {
            let chunk = vec![b'['; 1 << 20];
            let mut sent = 0u64;
            while sent < 100 << 20 && writer.write_all(&chunk).is_ok() {
                sent += chunk.len() as u64;
            }
            sent
        });
        let mut head = [0u8; 64];
        let read = stream.read(&mut head).unwrap();
        // Unblocks the writer whatever the server does with the connection.
        let _ = stream.shutdown(std::net::Shutdown::Both);
        let sent = sending.join().unwrap();
        assert!(sent < 100 << 20, "the server read all {sent} bytes");
        let head = String::from_utf8_lossy(&head[..read]);
        assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    }
    // 100,000 nested arrays: a 400 with a JSON message, never a stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    for path in ["/api/v1/admin/tenants", "/api/v1/abac/users/sync"] {
        let (status, body) = server.send_raw(
            "POST",
            path,
            &admin.headers(),
            "application/json",
            deep.as_bytes(),
        );
        assert_eq!(status, 400, "{path}: {body}");
    }
    // 100,000 usernames: Rocket.Chat's limit of 100 per list.
    let wide = json!({ "usernames": (0..100_000).map(|i| format!("u{i}")).collect::<Vec<_>>() });
    let (status, body) = server.post("/api/v1/abac/users/sync", &admin.headers(), Some(wide));
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["success"], false, "{body}");
    // The server is still there.
    assert_eq!(server.get("/api/v1/me", &admin.headers()).0, 200);
}

#[test]
fn no_secret_reaches_an_answer_or_the_log() {
    let setup = Setup::new(1);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let mut server = Server::start_logging_at(&setup.config(), &log, "debug");
    let mut answers = String::new();
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let (jwt, csrf) = server.form_login(ADMIN, ADMIN_PASSWORD);
    let (status, body) = server.post(
        "/api/v1/login",
        &[],
        Some(json!({"user": ADMIN, "password": "a wrong password"})),
    );
    assert_eq!(status, 401);
    answers.push_str(&body.to_string());
    // A tenant whose bind password is wrong, tested against the directory.
    let slapd = &setup.slapd;
    let bind_secret = "the-wrong-bind-secret-42";
    let (status, body) = server.post(
        "/api/v1/admin/tenants",
        &admin.headers(),
        Some(json!({
            "id": 5, "name": "five",
            "ldap": {"servers": [slapd.url()], "tls": "plain", "bind_dn": slapd.admin_dn(),
                     "bind_password": bind_secret, "base_dn": slapd.base_dn(),
                     "user_filter": "(objectClass=inetOrgPerson)"}
        })),
    );
    assert_eq!(status, 201, "{body}");
    answers.push_str(&body.to_string());
    let (_, body) = server.post(
        "/api/v1/admin/tenants/5/connection-test",
        &admin.headers(),
        None,
    );
    answers.push_str(&body.to_string());
    // TOTP enrolment: the secret is in its own answer, and nowhere after.
    let (status, enrol) = server.post("/api/v1/me/totp", &admin.step_up(), None);
    assert_eq!(status, 200, "{enrol}");
    let totp_secret = enrol["secret"].as_str().unwrap().to_owned();
    let step = totp::step_of(unix_now());
    let code = totp::code_at(&base32_decode(&totp_secret), step);
    let (status, body) = server.post(
        "/api/v1/me/totp/confirm",
        &admin.headers(),
        Some(json!({ "code": code })),
    );
    assert_eq!(status, 200, "{body}");
    answers.push_str(&body.to_string());
    for path in [
        "/api/v1/me",
        "/api/v1/admin/accounts",
        "/api/v1/admin/tenants",
        "/api/v1/admin/tenants/1",
        "/api/v1/admin/tenants/5",
        "/api/v1/tasq/tasks",
    ] {
        let (status, body) = server.get(path, &admin.headers());
        assert_eq!(status, 200, "{path}: {body}");
        answers.push_str(&body.to_string());
    }
    let (_, body) = server.get(
        "/api/v1/me",
        &[("cookie", &format!("grommunioAuthJwt={jwt}"))],
    );
    answers.push_str(&body.to_string());
    let _ = csrf;
    server.terminate();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("/api/v1/login"),
        "the log is the server's: {logged}"
    );
    for (name, secret) in [
        ("the admin password", ADMIN_PASSWORD),
        ("its digest", admin.password_digest.as_str()),
        ("the Rocket.Chat token", admin.token.as_str()),
        ("the cookie", jwt.as_str()),
        ("the TOTP secret", totp_secret.as_str()),
        ("the directory's password", slapd.admin_password()),
        ("a tenant's bind password", bind_secret),
    ] {
        assert!(!logged.contains(secret), "{name} is in the log");
        assert!(
            !answers.contains(secret),
            "{name} is in an answer: {answers}"
        );
    }
}
