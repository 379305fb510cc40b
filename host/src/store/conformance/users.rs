//! Checks of reading a tenant's users: by id, LDAP id, username, any identifier, and
//! filtered pages; and of tenants kept apart.

use super::Backend;
use crate::store::testing::*;
use crate::store::*;

/// The usernames of `users`, in order.
fn names(users: &[StoredUser]) -> Vec<&str> {
    users
        .iter()
        .map(|user| user.fields.username.as_str())
        .collect()
}

pub(crate) fn a_created_user_reads_back_as_written(store: &dyn Backend) {
    let id = create(store, T1, fields("alice"));
    let user = store.user(T1, id).unwrap().unwrap();
    assert_eq!(user.id, id);
    assert_eq!(user.fields, fields("alice"));
    assert_eq!(user.source, UserSource::Ldap);
    assert_eq!(user.avatar_sha256, None);
    assert_eq!((user.created_at, user.updated_at), (NOW, NOW));
    assert_eq!(store.user(T1, UserId(id.0 + 1)).unwrap(), None);
}

pub(crate) fn lookups_by_ldap_id_and_username(store: &dyn Backend) {
    let ids = three(store);
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

    // Counted without being read: the users of the index, and only those.
    let mut no_id = fields("dave");
    no_id.ldap_id = None;
    create(store, T1, no_id);
    assert_eq!(store.ldap_user_index(T1).unwrap().len(), 3);
    // Page by page, in the order of the ids, the user without a directory id left out.
    let first = store.ldap_user_page(T1, UserId(i64::MIN), 2).unwrap();
    assert_eq!(first.len(), 2);
    assert!(first[0].id < first[1].id);
    let rest = store.ldap_user_page(T1, first[1].id, 2).unwrap();
    assert_eq!(rest.len(), 1);
    assert!(rest[0].id > first[1].id);
    assert!(store.ldap_user_page(T1, rest[0].id, 2).unwrap().is_empty());
    assert!(
        store
            .ldap_user_page(T2, UserId(i64::MIN), 2)
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.count_ldap_users(T1).unwrap(), 3);
    assert_eq!(store.count_users(T1).unwrap(), 4);
    assert_eq!(store.count_ldap_users(T2).unwrap(), 0);
}

pub(crate) fn lookups_take_any_number_of_names(store: &dyn Backend) {
    let users: Vec<_> = (0..1500).map(|n| fields(&format!("user{n}"))).collect();
    create_many(store, T1, users);
    let wanted: Vec<String> = (0..1500).map(|n| format!("id-user{n}")).collect();
    let found = store.users_by_ldap_ids(T1, &wanted).unwrap();
    assert_eq!(found.len(), 1500);
    assert!(found.iter().all(|user| user.fields.attributes.len() == 2));
}

pub(crate) fn find_users_matches_any_identifier_once(store: &dyn Backend) {
    let ids = three(store);
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

pub(crate) fn list_users_filters_by_attribute_activity_and_text(store: &dyn Backend) {
    let mut admin = fields("ad_min");
    admin.attributes = attrs(&[("department", &["it"]), ("roles", &["admin"])]);
    let mut percent = fields("100%");
    percent.display_name = Some("Percy".into());
    percent.active = false;
    percent.attributes = attrs(&[
        ("clearance", &["sales"]),
        ("motto", &[r#"say "hi" \ $.* == 1"#]),
    ]);
    create_many(
        store,
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
    // Quotes, backslashes and what a query language would read as syntax are data.
    let motto = r#"say "hi" \ $.* == 1"#;
    let odd_value = UserQuery {
        attribute_value: Some(motto.into()),
        ..UserQuery::default()
    };
    assert_eq!(list(odd_value), "100%");
    let odd_pair = UserQuery {
        attribute_key: Some("motto".into()),
        attribute_value: Some(motto.into()),
        ..UserQuery::default()
    };
    assert_eq!(list(odd_pair), "100%");
    let prefix_only = UserQuery {
        attribute_value: Some("say".into()),
        ..UserQuery::default()
    };
    assert_eq!(list(prefix_only), "", "values match whole");
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

pub(crate) fn list_users_pages_by_id(store: &dyn Backend) {
    let users: Vec<_> = (0..1100).map(|n| fields(&format!("user{n}"))).collect();
    let ids = create_many(store, T1, users);

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

pub(crate) fn a_tenant_neither_sees_nor_changes_another_tenants_users(store: &dyn Backend) {
    let alice = create(store, T1, fields("alice"));
    let before = store.user(T1, alice).unwrap();
    let t1_events = store.audit_events(T1, &AuditQuery::default()).unwrap();

    // Reads.
    assert_eq!(store.user(T2, alice).unwrap(), None);
    assert!(
        store
            .users_by_ldap_ids(T2, &strings(&["id-alice"]))
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .users_by_usernames(T2, &strings(&["alice"]))
            .unwrap()
            .is_empty()
    );
    let everything = UserIdentifiers {
        usernames: strings(&["alice"]),
        ids: vec![alice.to_string()],
        emails: strings(&["alice@example.org"]),
        ldap_ids: strings(&["id-alice"]),
    };
    assert!(store.find_users(T2, &everything).unwrap().is_empty());
    assert!(store.ldap_user_index(T2).unwrap().is_empty());
    let by_attribute = UserQuery {
        attribute_key: Some("roles".into()),
        ..UserQuery::default()
    };
    assert!(store.list_users(T2, &by_attribute).unwrap().is_empty());
    assert!(
        store
            .list_users(T2, &UserQuery::default())
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.count_users(T2).unwrap(), 0);
    let alices_events = AuditQuery {
        user_id: Some(alice),
        ..AuditQuery::default()
    };
    assert!(store.audit_events(T2, &alices_events).unwrap().is_empty());
    assert_eq!(store.avatar(T2, alice).unwrap(), None);

    // Writes.
    let mut renamed = fields("mallory");
    renamed.active = false;
    let update = Change::Update {
        id: alice,
        fields: renamed,
        attribute_changes: Vec::new(),
        avatar: AvatarChange::Clear,
        mapped: None,
    };
    for change in [
        update,
        Change::Deactivate { id: alice },
        Change::Delete { id: alice },
    ] {
        let err = store.apply(T2, &[change], &cause()).unwrap_err();
        assert!(
            matches!(err, StoreError::NoSuchUser { tenant: T2, id } if id == alice),
            "{err}"
        );
    }
    assert_eq!(store.user(T1, alice).unwrap(), before);
    assert_eq!(
        store.audit_events(T1, &AuditQuery::default()).unwrap(),
        t1_events
    );
    assert!(
        store
            .audit_events(T2, &AuditQuery::default())
            .unwrap()
            .is_empty()
    );

    // The same username and LDAP id are free in another tenant.
    let other = create(store, T2, fields("alice"));
    assert_ne!(other, alice);
    assert_eq!(store.count_users(T1).unwrap(), 1);
    assert_eq!(
        store.user(T2, other).unwrap().unwrap().fields,
        fields("alice")
    );
}

pub(crate) fn huge_tenant_ids_are_distinct(store: &dyn Backend) {
    create(store, u64::MAX, fields("alice"));
    create(store, i64::MAX as u64, fields("alice"));
    assert_eq!(store.count_users(u64::MAX).unwrap(), 1);
    assert_eq!(store.count_users(i64::MAX as u64).unwrap(), 1);
    assert_eq!(store.count_users(0).unwrap(), 0);
}
