//! The attacks of the security review (issue 20), each replayed against the real
//! server: every way into a session asks for the second factor, factors change only
//! with the current one, one trigger rule for both dialects, a deleted tenant takes its
//! accounts with it, and a transport downgrade needs the password again.

use abacsync::auth::{token, totp};
use serde_json::{Value, json};

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
            json!({"status": "error", "message": "You must be logged in to do this."})
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
