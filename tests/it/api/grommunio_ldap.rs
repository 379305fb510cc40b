//! The neighbours of `downsync` that grommunio-admin-web's LDAP pages call (issue 22,
//! item 11), replayed as admin-web sends them: search, import of one object, dump, and
//! the orphan check with its cleanup, each asserted against grommunio-admin-api's
//! answers (`endpoints/domain/ldap.py`).

use abacsync_testkit::directory::{uid, user_dn};
use serde_json::{Value, json};

use super::{ADMIN, ADMIN_PASSWORD, Server, Setup};

struct Admin<'a> {
    server: &'a Server,
    cookie: String,
    csrf: String,
}

impl Admin<'_> {
    fn headers(&self) -> [(&str, &str); 2] {
        [("cookie", &self.cookie), ("x-csrf-token", &self.csrf)]
    }

    fn get(&self, path: &str) -> (u16, Value) {
        self.server.get(path, &self.headers())
    }

    fn call(&self, method: &str, path: &str) -> (u16, Value) {
        self.server.call(method, path, &self.headers(), None)
    }
}

fn grommunio_admin<'a>(server: &'a Server, user: &str, password: &str) -> Admin<'a> {
    let (jwt, csrf) = server.form_login(user, password);
    Admin {
        server,
        cookie: format!("grommunioAuthJwt={jwt}"),
        csrf,
    }
}

/// The one search match for `text`.
fn directory_id(admin: &Admin<'_>, text: &str) -> String {
    let (status, body) = admin.get(&format!("/api/v1/domains/ldap/search?query={text}"));
    assert_eq!(status, 200, "{body}");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{body}");
    data[0]["ID"].as_str().unwrap().to_owned()
}

#[test]
fn grommunio_searches_dumps_and_imports_directory_objects() {
    let setup = Setup::new(3);
    let server = Server::start(&setup.config());
    let admin = grommunio_admin(&server, ADMIN, ADMIN_PASSWORD);
    let search = |query: &str| admin.get(&format!("/api/v1/domains/ldap/search?{query}"));

    // grommunio's refusals, in its words.
    let short = (400, json!({"message": "Missing or too short query"}));
    assert_eq!(search("query=us"), short);
    assert_eq!(search(""), short);
    // A match, as the domain's plugin maps it; a filter injection matches nothing.
    let (status, body) = search(&format!("query={}", uid(1)));
    assert_eq!(status, 200, "{body}");
    let found = &body["data"][0];
    assert_eq!(body["data"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(found["username"], uid(1), "{body}");
    assert_eq!(found["domainID"], 1, "{body}");
    assert!(
        found["email"].as_str().unwrap().ends_with("@example.org"),
        "{body}"
    );
    assert!(!found["name"].as_str().unwrap().is_empty(), "{body}");
    assert_eq!(search("query=user00"), search("query=USER00"));
    assert_eq!(
        search("query=user00").1["data"].as_array().unwrap().len(),
        3
    );
    assert_eq!(
        search("query=*)(uid%3D*"),
        (200, json!({"data": []})),
        "the query is a substring, never a filter"
    );
    assert_eq!(
        search(&format!("query={}&domain=2", uid(1))),
        (200, json!({"data": []}))
    );
    let id = found["ID"].as_str().unwrap().to_owned();

    // The entry itself, every attribute, as text.
    let (status, body) = admin.get(&format!("/api/v1/domains/ldap/dump?ID={id}"));
    assert_eq!(status, 200, "{body}");
    let text = body["data"].as_str().unwrap();
    let base = setup.slapd.base_dn().to_owned();
    assert!(
        text.starts_with(&format!("dn: {}\n", user_dn(&base, 1))),
        "{text}"
    );
    assert!(text.contains("\nmail: "), "{text}");
    assert_eq!(
        admin.get("/api/v1/domains/ldap/dump?ID=no-such-object"),
        (404, json!({"message": "User not found"}))
    );
    assert_eq!(
        admin.get("/api/v1/domains/ldap/dump"),
        (400, json!({"message": "Invalid ID"}))
    );

    // Import: created once (201), then the same user (200); nothing else imported.
    let import =
        |query: &str| admin.call("POST", &format!("/api/v1/domains/ldap/importUser?{query}"));
    let (status, created) = import(&format!("ID={id}"));
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["username"], uid(1), "{created}");
    assert_eq!(created["ldapId"], id, "{created}");
    let (status, again) = import(&format!("ID={id}"));
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], created["id"]);
    let rc = server.login(ADMIN, ADMIN_PASSWORD);
    let (_, users) = server.get("/api/v1/admin/tenants/1/users", &rc.headers());
    assert_eq!(users["data"].as_array().unwrap().len(), 1, "{users}");
    assert_eq!(
        import("ID=no-such-object"),
        (404, json!({"message": "User not found"}))
    );
    assert_eq!(import(""), (400, json!({"message": "Missing ID"})));

    // The same person again under a new directory object (deleted and added back):
    // the username is held by a user linked to the old object. 409 unless forced;
    // forced, that user is linked to the new object (the same user, not a copy).
    let dn = user_dn(&base, 1);
    let entry = setup
        .slapd
        .search(&format!("(uid={})", uid(1)), &["*"])
        .unwrap();
    setup.slapd.delete(&dn).unwrap();
    setup.slapd.add(&entry).unwrap();
    let new_id = directory_id(&admin, &uid(1));
    assert_ne!(new_id, id);
    assert_eq!(
        import(&format!("ID={new_id}")),
        (
            409,
            json!({"message": "Cannot import user: User exists and is associated with another LDAP object"})
        )
    );
    let (status, adopted) = import(&format!("ID={new_id}&force=true"));
    assert_eq!(status, 200, "{adopted}");
    assert_eq!(adopted["id"], created["id"], "{adopted}");
    let (_, users) = server.get("/api/v1/admin/tenants/1/users", &rc.headers());
    assert_eq!(users["data"].as_array().unwrap().len(), 1, "{users}");
}

#[test]
fn grommunio_checks_for_orphans_and_removes_them_under_the_policy() {
    let setup = Setup::new(3);
    let server = Server::start(&setup.config());
    let admin = grommunio_admin(&server, ADMIN, ADMIN_PASSWORD);
    let check = |method: &str| admin.call(method, "/api/v1/domains/ldap/check");

    assert_eq!(
        check("GET"),
        (
            200,
            json!({"message": "No LDAP users found", "orphaned": []})
        )
    );
    let rc = server.login(ADMIN, ADMIN_PASSWORD);
    let (status, body) = server.downsync(&rc, 1);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        check("GET"),
        (
            200,
            json!({"message": "All LDAP users are valid", "orphaned": []})
        )
    );

    // One person leaves: listed, not yet touched.
    let base = setup.slapd.base_dn().to_owned();
    setup.slapd.delete(&user_dn(&base, 2)).unwrap();
    let (_, users) = server.get("/api/v1/admin/tenants/1/users", &rc.headers());
    let gone = users["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|user| user["username"] == uid(2))
        .unwrap()["id"]
        .clone();
    let orphan = |list: &Value| {
        list.as_array()
            .unwrap()
            .iter()
            .map(|entry| {
                (
                    entry["ID"].clone(),
                    entry["username"].clone(),
                    entry["domainID"].clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    let expected = vec![(gone.clone(), json!(uid(2)), json!(1))];
    let (status, body) = check("GET");
    assert_eq!(status, 200, "{body}");
    assert_eq!(orphan(&body["orphaned"]), expected, "{body}");
    let (_, user) = server.get(
        &format!("/api/v1/admin/tenants/1/users/{gone}"),
        &rc.headers(),
    );
    assert_eq!(user["active"], true, "a check changes nothing: {user}");

    // DELETE removes under the tenant's policy (deactivate, the default); nothing
    // else of the sync is applied.
    let first = user_dn(&base, 0);
    setup
        .slapd
        .modify(&format!(
            "dn: {first}\nchangetype: modify\nreplace: mail\nmail: changed@example.org\n"
        ))
        .unwrap();
    // One of three is over the default threshold (10%): refused, named, until forced.
    let (status, body) = check("DELETE");
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["deleted"], json!([]), "{body}");
    let refusal = body["failed"][0]["message"].as_str().unwrap();
    assert!(
        refusal.starts_with("refused to remove 1 of 3 directory users")
            && refusal.ends_with("add force=true to remove them"),
        "{body}"
    );
    let (status, body) = admin.call("DELETE", "/api/v1/domains/ldap/check?force=true");
    assert_eq!(status, 200, "{body}");
    assert_eq!(orphan(&body["deleted"]), expected, "{body}");
    assert_eq!(body["kept"], json!([]), "{body}");
    let (_, user) = server.get(
        &format!("/api/v1/admin/tenants/1/users/{gone}"),
        &rc.headers(),
    );
    assert_eq!(user["active"], false, "{user}");
    let (_, users) = server.get("/api/v1/admin/tenants/1/users", &rc.headers());
    assert!(
        users["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|user| user["email"] != "changed@example.org"),
        "only removals are applied: {users}"
    );
    // Still an orphan (linked to an object that is gone); removed already, so kept.
    let (_, body) = check("GET");
    assert_eq!(orphan(&body["orphaned"]), expected, "{body}");
    let (status, body) = admin.call("DELETE", "/api/v1/domains/ldap/check?force=true");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deleted"], json!([]), "{body}");
    assert_eq!(orphan(&body["kept"]), expected, "{body}");

    // grommunio's permission rules: a read-only admin (DomainAdminRO) checks and
    // searches; only a domain admin imports and removes.
    server.create_account(
        &rc,
        json!({"username": "reader", "password": "a reader of one", "tenant": 1, "role": "auditor"}),
    );
    let reader = grommunio_admin(&server, "reader", "a reader of one");
    assert_eq!(reader.call("GET", "/api/v1/domains/ldap/check").0, 200);
    assert_eq!(
        reader
            .get(&format!("/api/v1/domains/ldap/search?query={}", uid(0)))
            .0,
        200
    );
    for (method, path) in [
        ("DELETE", "/api/v1/domains/ldap/check".to_owned()),
        ("POST", "/api/v1/domains/ldap/importUser?ID=x".to_owned()),
    ] {
        let (status, body) = reader.call(method, &path);
        assert_eq!(
            (status, &body["message"]),
            (
                403,
                &json!("Access denied: Insufficient permissions for this operation")
            ),
            "{method} {path}: {body}"
        );
    }
}
