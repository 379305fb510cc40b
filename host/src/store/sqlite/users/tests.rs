//! Tests of the user reads.

use super::*;
use crate::store::sqlite::SqliteStore;
use crate::store::testing::*;
use crate::store::{UserSource, UserStore};

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| (*value).to_owned()).collect()
}

fn names(users: &[StoredUser]) -> Vec<&str> {
    users
        .iter()
        .map(|user| user.fields.username.as_str())
        .collect()
}

/// A store with alice, bob and carol in tenant 1.
fn three() -> (SqliteStore, Vec<UserId>) {
    let store = SqliteStore::open_in_memory().unwrap();
    let ids = create_many(
        &store,
        T1,
        vec![fields("alice"), fields("bob"), fields("carol")],
    );
    (store, ids)
}

/// Adds a hand-made user, as the API will, with the given source and LDAP id.
fn insert_user(store: &SqliteStore, name: &str, source: &str, ldap_id: Option<&str>) -> UserId {
    let conn = store.writer();
    conn.execute(
        "INSERT INTO users (tenant_id, username, active, source, ldap_id, created_at, updated_at) \
         VALUES (?1, ?2, 1, ?3, ?4, ?5, ?5)",
        (tenant_key(T1), name, source, ldap_id, NOW),
    )
    .unwrap();
    UserId(conn.last_insert_rowid())
}

#[test]
fn a_created_user_reads_back_as_written() {
    let store = SqliteStore::open_in_memory().unwrap();
    let id = create(&store, T1, fields("alice"));
    let user = store.user(T1, id).unwrap().unwrap();
    assert_eq!(user.id, id);
    assert_eq!(user.fields, fields("alice"));
    assert_eq!(user.source, UserSource::Ldap);
    assert_eq!(user.avatar_sha256, None);
    assert_eq!((user.created_at, user.updated_at), (NOW, NOW));
    assert_eq!(store.user(T1, UserId(id.0 + 1)).unwrap(), None);
}

#[test]
fn lookups_by_ldap_id_and_username() {
    let (store, ids) = three();
    let found = store
        .users_by_ldap_ids(T1, &strings(&["id-carol", "id-nobody", "id-alice"]))
        .unwrap();
    assert_eq!(names(&found), ["alice", "carol"]);
    assert_eq!(found[1].id, ids[2]);
    assert_eq!(found[1].fields.attributes, fields("carol").attributes);

    let found = store
        .users_by_usernames(T1, &strings(&["bob", "Carol", "nobody"]))
        .unwrap();
    assert_eq!(names(&found), ["bob"], "usernames are case-sensitive");

    assert!(store.users_by_ldap_ids(T1, &[]).unwrap().is_empty());
    assert!(store.users_by_usernames(T1, &[]).unwrap().is_empty());
}

#[test]
fn lookups_take_any_number_of_names() {
    let store = SqliteStore::open_in_memory().unwrap();
    let users: Vec<_> = (0..1500).map(|n| fields(&format!("user{n}"))).collect();
    create_many(&store, T1, users);
    let wanted: Vec<String> = (0..1500).map(|n| format!("id-user{n}")).collect();
    let found = store.users_by_ldap_ids(T1, &wanted).unwrap();
    assert_eq!(found.len(), 1500);
    assert!(found.iter().all(|user| user.fields.attributes.len() == 2));
}

#[test]
fn find_users_matches_any_identifier_once() {
    let (store, ids) = three();
    let identifiers = UserIdentifiers {
        usernames: strings(&["alice", "nobody"]),
        ids: vec![ids[1].to_string(), "not-a-number".into(), "999999".into()],
        emails: strings(&["CAROL@Example.org", "alice@example.org"]),
        ldap_ids: strings(&["id-alice", "id-bob"]),
    };
    let found = store.find_users(T1, &identifiers).unwrap();
    assert_eq!(names(&found), ["alice", "bob", "carol"]);
    assert_eq!(found[0].fields.attributes, fields("alice").attributes);

    let only_junk = UserIdentifiers {
        ids: strings(&["x", "", "1.5"]),
        ..UserIdentifiers::default()
    };
    assert!(store.find_users(T1, &only_junk).unwrap().is_empty());
    let nothing = UserIdentifiers::default();
    assert!(store.find_users(T1, &nothing).unwrap().is_empty());
}

#[test]
fn the_ldap_index_holds_directory_users_only() {
    let (store, ids) = three();
    insert_user(&store, "local-admin", "local", None);
    insert_user(&store, "imported", "ldap", None);
    let index = store.ldap_user_index(T1).unwrap();
    let expected: Vec<LdapUserRef> = ["alice", "bob", "carol"]
        .iter()
        .zip(&ids)
        .map(|(name, id)| LdapUserRef {
            id: *id,
            ldap_id: format!("id-{name}"),
            username: (*name).into(),
            active: true,
            mapped: None,
        })
        .collect();
    assert_eq!(index, expected);
    assert_eq!(store.count_users(T1).unwrap(), 5);
    assert_eq!(store.count_users(T2).unwrap(), 0);
}

#[test]
fn an_unknown_source_is_reported_as_corrupt() {
    let store = SqliteStore::open_in_memory().unwrap();
    let id = insert_user(&store, "odd", "carrier-pigeon", None);
    let err = store.user(T1, id).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Corrupt {
                column: "source",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn list_users_filters_by_attribute_activity_and_text() {
    let store = SqliteStore::open_in_memory().unwrap();
    let mut admin = fields("ad_min");
    admin.attributes = attrs(&[("department", &["it"]), ("roles", &["admin"])]);
    let mut percent = fields("100%");
    percent.display_name = Some("Percy".into());
    percent.active = false;
    percent.attributes = attrs(&[("clearance", &["sales"])]);
    create_many(
        &store,
        T1,
        vec![fields("alice"), fields("admin"), admin, percent],
    );
    let list = |query: UserQuery| names(&store.list_users(T1, &query).unwrap()).join(" ");

    let everyone = list(UserQuery::default());
    assert_eq!(everyone, "alice admin ad_min 100%");
    let with_key = UserQuery {
        attribute_key: Some("department".into()),
        ..UserQuery::default()
    };
    assert_eq!(list(with_key), "alice admin ad_min");
    let with_value = UserQuery {
        attribute_key: Some("department".into()),
        attribute_value: Some("it".into()),
        ..UserQuery::default()
    };
    assert_eq!(list(with_value), "ad_min");
    let value_under_any_key = UserQuery {
        attribute_value: Some("sales".into()),
        ..UserQuery::default()
    };
    assert_eq!(list(value_under_any_key), "alice admin 100%");
    let inactive = UserQuery {
        active: Some(false),
        ..UserQuery::default()
    };
    assert_eq!(list(inactive), "100%");
    let active = UserQuery {
        active: Some(true),
        ..UserQuery::default()
    };
    assert_eq!(list(active), "alice admin ad_min");

    let search = |text: &str| {
        list(UserQuery {
            search: Some(text.into()),
            ..UserQuery::default()
        })
    };
    assert_eq!(search("AD_"), "ad_min", "`_` is not a wildcard");
    assert_eq!(search("0%"), "100%", "`%` is not a wildcard");
    assert_eq!(search("percy"), "100%", "display names are searched");
    assert_eq!(search("alice@EXAMPLE"), "alice", "emails are searched");
    assert_eq!(search("\\"), "");
    let combined = UserQuery {
        attribute_key: Some("roles".into()),
        search: Some("ad".into()),
        active: Some(true),
        ..UserQuery::default()
    };
    assert_eq!(list(combined), "admin ad_min");
}

#[test]
fn list_users_pages_by_id() {
    let store = SqliteStore::open_in_memory().unwrap();
    let users: Vec<_> = (0..1100).map(|n| fields(&format!("user{n}"))).collect();
    let ids = create_many(&store, T1, users);

    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let query = UserQuery {
            after,
            limit: Some(300),
            ..UserQuery::default()
        };
        let page = store.list_users(T1, &query).unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        seen.extend(page.iter().map(|user| user.id));
    }
    assert_eq!(seen, ids);

    let default = store.list_users(T1, &UserQuery::default()).unwrap();
    assert_eq!(default.len(), 100);
    let huge = UserQuery {
        limit: Some(100_000),
        ..UserQuery::default()
    };
    assert_eq!(store.list_users(T1, &huge).unwrap().len(), 1000);
}

#[test]
fn lookups_use_indexes() {
    let store = SqliteStore::open_in_memory().unwrap();
    let conn = store.writer();
    let plan = |sql: &str| -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let params = vec!["[]"; stmt.parameter_count()];
        let details: Vec<String> = stmt
            .query_map(rusqlite::params_from_iter(params), |row| row.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        details.join("\n")
    };
    for sql in [BY_LDAP_IDS, BY_USERNAMES, FIND] {
        let plan = plan(sql);
        for line in plan.lines() {
            // A table scan, or a walk over all of the tenant's rows.
            let scan = line.starts_with("SCAN ") && !line.starts_with("SCAN w");
            let whole_tenant = line.contains("(tenant_id=?)");
            assert!(!scan && !whole_tenant, "{sql}\n{plan}");
        }
    }
    let find = plan(FIND);
    assert!(find.contains("users_tenant_email"), "{find}");
    // Finding users by key and value, and removing one user's value: a range and a
    // point of the lookup table's primary key.
    let by_value = plan(
        "SELECT user_id FROM user_attributes WHERE tenant_id = ?1 AND key = ?2 AND value = ?3",
    );
    assert!(
        by_value.contains("PRIMARY KEY (tenant_id=? AND key=? AND value=?)"),
        "{by_value}"
    );
    let one = plan(
        "DELETE FROM user_attributes WHERE tenant_id = ?1 AND key = ?2 AND value = ?3 AND user_id = ?4",
    );
    assert!(
        one.contains("PRIMARY KEY (tenant_id=? AND key=? AND value=? AND user_id=?)"),
        "{one}"
    );
}

#[test]
fn like_patterns_escape_wildcards() {
    assert_eq!(like_pattern("a%b_c\\d"), "%a\\%b\\_c\\\\d%");
    assert_eq!(like_pattern(""), "%%");
}
