//! SQLite's own tests of the user reads: rows written by hand, query plans and LIKE
//! patterns. What every backend does is checked in [`crate::store::conformance::users`].

use super::*;
use crate::store::UserStore;
use crate::store::sqlite::SqliteStore;
use crate::store::testing::*;

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
fn the_ldap_index_holds_directory_users_only() {
    let store = SqliteStore::open_in_memory().unwrap();
    let ids = three(&store);
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
