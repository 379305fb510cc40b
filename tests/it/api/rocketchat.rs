//! Rocket.Chat's `ldap.syncNow` and `abac/users/sync`, its login, and two-factor codes
//! (password digest, TOTP, email).

use std::process::Command;
use std::time::Duration;

use abacsync::auth::{token, totp};
use abacsync_testkit::directory::{uid, user_dn};
use serde_json::{Value, json};

use super::{ADMIN, ADMIN_PASSWORD, Server, Setup};

#[test]
fn ldap_sync_now_follows_rocket_chats_contract() {
    let setup = Setup::new(5);
    let server = Server::start(&setup.config());
    let url = "/api/v1/ldap.syncNow";

    // Not logged in, or a token that is no session: 401, as documented, with
    // Rocket.Chat 8's `success`/`error` pair beside the seed's `status`/`message`.
    let logged_out = json!({"status": "error", "message": "You must be logged in to do this.",
        "success": false, "error": "You must be logged in to do this."});
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

    // TOTP: enrol (with the current factor, here the password's digest), confirm, then
    // codes are TOTP codes, each accepted once.
    let (status, body) = server.post("/api/v1/me/totp", &admin.headers(), None);
    assert_eq!(
        (status, &body["errorType"]),
        (400, &json!("totp-required")),
        "enrolling needs the current factor: {body}"
    );
    let (status, enrol) = server.post("/api/v1/me/totp", &with_code, None);
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
pub fn wait_until_step(step: u64) {
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

pub fn base32_decode(text: &str) -> Vec<u8> {
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
fn email_codes_are_sent_and_accepted_once() {
    let sink = abacsync_testkit::smtp::SmtpSink::start().unwrap();
    let smtp = format!(
        "[server.smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"plain\"\nfrom = \"abacsync <noreply@example.org>\"\n",
        sink.port()
    );
    let setup = Setup::with_server(2, &smtp);
    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let digest = token::sha256_hex(ADMIN_PASSWORD);
    let mut with_password = admin.headers();
    with_password.push(("x-2fa-code", &digest));
    let (status, body) = server.call(
        "PUT",
        "/api/v1/me/email2fa",
        &with_password,
        Some(json!({"enabled": true, "email": "ops@example.org"})),
    );
    assert_eq!(status, 202, "{body}");
    // The address counts once the code mailed to it comes back.
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

    // No code: one is mailed, and the error says so.
    let url = "/api/v1/ldap.syncNow";
    let (status, body) = server.post(url, &admin.headers(), None);
    assert_eq!(status, 400);
    assert_eq!(
        body["details"],
        json!({"method": "email", "codeGenerated": true, "availableMethods": ["email"]})
    );
    let messages = sink.messages();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[1].to, ["<ops@example.org>"]);
    let code = mailed_code(&sink, 1);
    // The password digest is no method once email is on; the mailed code works once.
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
    assert_eq!(sink.messages().len(), 3);
}

/// The code in the `index`th message the sink received.
pub fn mailed_code(sink: &abacsync_testkit::smtp::SmtpSink, index: usize) -> String {
    sink.messages()[index]
        .data
        .lines()
        .find_map(|line| line.strip_prefix("Subject: abacsync verification code: "))
        .unwrap()
        .trim()
        .to_owned()
}
