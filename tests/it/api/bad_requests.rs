//! Hand-written bad requests: parameters that do not parse, wrong content types, path
//! tricks in plugin names, and expired or re-signed JWTs. Each gets a clear 4xx with a
//! JSON body; none is a 5xx, and the server keeps serving.

use abacsync::auth::jwt::{self, Claims};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::{ADMIN, ADMIN_PASSWORD, Server, Setup};

fn message(body: &Value) -> &str {
    body["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no JSON message in {body}"))
}

#[test]
fn parameters_that_do_not_parse_are_400_with_a_json_message() {
    let setup = Setup::new(2);
    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    for path in [
        "/api/v1/admin/tenants/abc",
        "/api/v1/admin/tenants/-1/users",
        "/api/v1/admin/tenants/99999999999999999999/runs",
        "/api/v1/admin/tenants/1/users?limit=lots",
        "/api/v1/admin/tenants/1/users?limit=-5",
        "/api/v1/tasq/tasks/%00",
        "/api/v1/tasq/tasks?level=9999999999999999999999",
    ] {
        let (status, body) = server.get(path, &admin.headers());
        assert_eq!(status, 400, "{path}: {body}");
        assert!(!message(&body).is_empty(), "{path}: {body}");
    }
    // A method the route does not have: Rocket.Chat's JSON 404 on its routes,
    // grommunio's JSON 405 on the others.
    let (status, body) = server.call("DELETE", "/api/v1/ldap.syncNow", &admin.headers(), None);
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["success"], false, "{body}");
    let (status, body) = server.call("DELETE", "/api/v1/tasq/status", &[], None);
    assert_eq!(status, 405, "{body}");
    assert!(!message(&body).is_empty(), "{body}");
}

#[test]
fn wrong_content_types_and_bodies_are_4xx_never_5xx() {
    let setup = Setup::new(2);
    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let headers = admin.headers();
    for (method, path, content_type, body) in [
        (
            "PUT",
            "/api/v1/admin/tenants/1/schedule",
            "text/plain",
            &b"every hour"[..],
        ),
        (
            "PUT",
            "/api/v1/admin/tenants/1/schedule",
            "application/json",
            &b"{\"interval\":"[..],
        ),
        (
            "POST",
            "/api/v1/admin/tenants",
            "application/x-www-form-urlencoded",
            &b"id=5"[..],
        ),
        (
            "POST",
            "/api/v1/abac/users/sync",
            "application/xml",
            &b"<usernames/>"[..],
        ),
        (
            "POST",
            "/api/v1/admin/accounts",
            "application/json",
            &b"\xff\xfe"[..],
        ),
        (
            "POST",
            "/api/v1/admin/plugins?name=x.wasm",
            "application/json",
            &b"{}"[..],
        ),
        ("POST", "/api/v1/login", "image/png", &b"\x89PNG"[..]),
    ] {
        let (status, body) = server.send_raw(method, path, &headers, content_type, body);
        assert!(
            (400..500).contains(&status),
            "{method} {path} as {content_type}: {status} {body}"
        );
        assert!(body.is_object(), "{method} {path}: not JSON: {body}");
    }
    // Still serving.
    assert_eq!(server.get("/health", &[]).0, 200);
}

#[test]
fn plugin_names_are_labels_never_paths() {
    let setup = Setup::new(2);
    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let bytes = abacsync_testkit::plugins::bytes("openldap-mapping");
    let trick = "../../../../../tmp/abacsync-escaped.wasm";
    let (status, body) = server.send_raw(
        "POST",
        &format!("/api/v1/admin/plugins?name={}", trick.replace('/', "%2F")),
        &admin.headers(),
        "application/wasm",
        &bytes,
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["label"], trick, "{body}");
    assert!(
        !std::path::Path::new("/tmp/abacsync-escaped.wasm").exists(),
        "a plugin name became a file path"
    );
    let (status, body) = server.get(
        &format!("/api/v1/admin/plugins/{}", body["id"]),
        &admin.headers(),
    );
    assert_eq!((status, &body["label"]), (200, &json!(trick)), "{body}");
}

/// A token signed with the server's own key but expired, and one with a forged
/// subject, are refused like a missing one.
#[test]
fn expired_and_resigned_jwts_are_refused() {
    let setup = Setup::new(2);
    let server = Server::start(&setup.config());
    let (token, csrf) = server.form_login(ADMIN, ADMIN_PASSWORD);
    let payload = token.split('.').nth(1).expect("payload");
    let claims: Claims =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64")).expect("claims");
    let secret = setup.jwt_secret();
    let downsync = |jwt: &str| {
        let cookie = format!("grommunioAuthJwt={jwt}");
        server.post(
            "/api/v1/domains/1/ldap/downsync?timeout=30",
            &[("cookie", &cookie), ("x-csrf-token", &csrf)],
            None,
        )
    };
    assert_eq!(downsync(&token).0, 200, "the real token works");

    let expired = Claims {
        iat: claims.iat - 7200,
        exp: claims.iat - 3600,
        ..claims.clone()
    };
    let (status, body) = downsync(&jwt::sign(&expired, &secret));
    assert_eq!(
        (status, &body),
        (
            401,
            &json!({"message": "Access denied", "error": "Token has expired", "status": "error", "success": false})
        )
    );

    // Signed with another key: the signature check fails.
    let (status, _) = downsync(&jwt::sign(&claims, b"not the server's key"));
    assert_eq!(status, 401);

    // The right key but another session id: no such session.
    let other = Claims {
        sid: "0".repeat(claims.sid.len()),
        ..claims
    };
    let (status, _) = downsync(&jwt::sign(&other, &secret));
    assert_eq!(status, 401);
}

/// Reads one HTTP/1.1 response with a content length from `stream`: its head
/// (lower-cased) and body.
fn read_response(stream: &mut std::net::TcpStream) -> (String, Vec<u8>) {
    use std::io::Read;
    let mut received = Vec::new();
    let mut buffer = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let read = stream.read(&mut buffer).expect("reading the response head");
        assert!(read > 0, "connection closed before the response head");
        received.extend_from_slice(&buffer[..read]);
    };
    let head = String::from_utf8_lossy(&received[..head_end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
        .expect("a content length")
        .trim()
        .parse()
        .unwrap();
    let mut body = received[head_end..].to_vec();
    while body.len() < length {
        let read = stream.read(&mut buffer).expect("reading the response body");
        assert!(
            read > 0,
            "connection closed after {} of {length} bytes",
            body.len()
        );
        body.extend_from_slice(&buffer[..read]);
    }
    (head, body)
}

#[test]
fn a_request_body_arriving_late_never_cuts_the_answer_short() {
    // A bodiless POST sent with an empty chunked body (ureq sends bodiless POSTs so),
    // whose last chunk comes after the handler could have answered. hyper closed such
    // connections because the body was left unread, and the late chunk then reset the
    // connection under the answer. Now the answer is whole and the connection stays
    // open for the next request.
    use std::io::Write;
    let setup = Setup::new(2);
    let server = Server::start(&setup.config());
    let admin = server.login(ADMIN, ADMIN_PASSWORD);
    let address = server.url("").trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "POST /api/v1/domains/1/ldap/downsync?import=true&timeout=60 HTTP/1.1\r\n\
         host: {address}\r\nx-user-id: {}\r\nx-auth-token: {}\r\n\
         x-2fa-code: {}\r\ntransfer-encoding: chunked\r\n\r\n",
        admin.user_id, admin.token, admin.password_digest
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    stream.write_all(b"0\r\n\r\n").unwrap();
    let (head, body) = read_response(&mut stream);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 2, "{body}");

    write!(
        stream,
        "GET /api/v1/admin/tenants/1/users HTTP/1.1\r\nhost: {address}\r\n\
         x-user-id: {}\r\nx-auth-token: {}\r\n\r\n",
        admin.user_id, admin.token
    )
    .unwrap();
    let (head, _) = read_response(&mut stream);
    assert!(head.starts_with("http/1.1 200"), "{head}");

    // A chunked body longer than what is read ahead reaches the handler whole: 100 kB
    // of blanks, then an object without the tenant's fields, which the handler reads.
    write!(
        stream,
        "POST /api/v1/admin/tenants HTTP/1.1\r\nhost: {address}\r\n\
         x-user-id: {}\r\nx-auth-token: {}\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\n\r\n",
        admin.user_id, admin.token
    )
    .unwrap();
    let blanks = vec![b' '; 100_000];
    write!(stream, "{:x}\r\n", blanks.len()).unwrap();
    stream.write_all(&blanks).unwrap();
    stream.write_all(b"\r\n2\r\n{}\r\n0\r\n\r\n").unwrap();
    let (head, body) = read_response(&mut stream);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert!(head.starts_with("http/1.1 4"), "{head}{body}");
    assert_eq!(
        body["errors"][0], "id: a non-negative integer is required",
        "{body}"
    );
}
