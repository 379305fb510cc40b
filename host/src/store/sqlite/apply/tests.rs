//! SQLite's own tests of applying changes: the `user_attributes` lookup table kept in
//! step with each user's stored set. What every backend does is checked in
//! [`crate::store::conformance::apply`].

use super::*;
use crate::store::UserStore;
use crate::store::sqlite::SqliteStore;
use crate::store::testing::*;

fn attribute_count(store: &SqliteStore) -> i64 {
    store
        .writer()
        .query_row("SELECT count(*) FROM user_attributes", [], |row| row.get(0))
        .unwrap()
}

/// The lookup table holds exactly the pairs of every user's stored set.
fn assert_lookup_matches_sets(store: &SqliteStore) {
    let conn = store.writer();
    let mut stmt = conn
        .prepare("SELECT id, attributes FROM users WHERE tenant_id = ?1 ORDER BY id")
        .unwrap();
    let mut from_sets: Vec<(i64, String, String)> = Vec::new();
    let sets: Vec<(i64, String)> = stmt
        .query_map([T1 as i64], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (id, json) in sets {
        let set: crate::plugin::model::AbacAttributes = serde_json::from_str(&json).unwrap();
        for (key, values) in set {
            assert!(
                !values.is_empty(),
                "user {id}: {key} without values: {json}"
            );
            from_sets.extend(values.into_iter().map(|value| (id, key.clone(), value)));
        }
    }
    from_sets.sort();
    let mut stmt = conn
        .prepare(
            "SELECT user_id, key, value FROM user_attributes WHERE tenant_id = ?1 \
             ORDER BY user_id, key, value",
        )
        .unwrap();
    let rows: Vec<(i64, String, String)> = stmt
        .query_map([T1 as i64], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows, from_sets);
}

#[test]
fn attribute_changes_add_and_remove_values() {
    let store = SqliteStore::open_in_memory().unwrap();
    let id = create(&store, T1, fields("alice"));
    let change = Change::Update {
        id,
        fields: fields("alice"),
        attribute_changes: vec![
            AttributeChange {
                key: "roles".into(),
                added: set(&["admin"]),
                removed: set(&["reader"]),
            },
            AttributeChange {
                key: "department".into(),
                added: set(&[]),
                removed: set(&["sales"]),
            },
            AttributeChange {
                key: "site".into(),
                added: set(&["paris", "oslo"]),
                removed: set(&[]),
            },
        ],
        avatar: AvatarChange::Keep,
        mapped: None,
    };
    store.apply(T1, &[change], &cause_at(NOW + 1)).unwrap();

    let stored = user(&store, id);
    assert_eq!(
        stored.fields.attributes,
        attrs(&[
            ("roles", &["admin", "writer"]),
            ("site", &["oslo", "paris"])
        ])
    );
    assert_eq!(stored.updated_at, NOW + 1);
    assert_lookup_matches_sets(&store);
    assert_eq!(
        events_of(&store, id)[1..],
        [
            (
                AuditKind::Attribute,
                Some("roles".into()),
                strings(&["admin"]),
                strings(&["reader"])
            ),
            (
                AuditKind::Attribute,
                Some("department".into()),
                vec![],
                strings(&["sales"])
            ),
            (
                AuditKind::Attribute,
                Some("site".into()),
                strings(&["oslo", "paris"]),
                vec![]
            ),
        ]
    );
}

#[test]
fn delete_removes_the_user_and_keeps_its_events() {
    let store = SqliteStore::open_in_memory().unwrap();
    let alice = create(&store, T1, fields("alice"));
    let bob = create(&store, T1, fields("bob"));
    assert_eq!(attribute_count(&store), 6);
    store
        .apply(T1, &[Change::Delete { id: alice }], &cause())
        .unwrap();

    assert_eq!(store.user(T1, alice).unwrap(), None);
    assert_eq!(attribute_count(&store), 3, "the user's values go with it");
    assert_lookup_matches_sets(&store);
    assert_eq!(user(&store, bob).fields, fields("bob"));
    let events = events_of(&store, alice);
    assert_eq!(events.len(), 2);
    assert_eq!(events[1], (AuditKind::Deleted, None, vec![], vec![]));
    assert_eq!(all_events(&store)[0].username, "alice");

    // The name is free again.
    let again = create(&store, T1, fields("alice"));
    assert_ne!(again, alice);
}

#[test]
fn a_taken_username_rolls_the_batch_back() {
    let store = SqliteStore::open_in_memory().unwrap();
    let bob = create(&store, T1, fields("bob"));
    let before = all_events(&store);
    let mut impostor = fields("eve");
    impostor.username = "bob".into();
    let changes = [
        Change::Create {
            fields: fields("dave"),
            avatar: None,
            mapped: None,
        },
        Change::Deactivate { id: bob },
        Change::Create {
            fields: impostor,
            avatar: None,
            mapped: None,
        },
    ];
    let err = store.apply(T1, &changes, &cause_at(NOW + 1)).unwrap_err();
    match err {
        StoreError::Conflict {
            tenant,
            field,
            value,
            existing,
        } => assert_eq!(
            (tenant, field, value.as_str(), existing),
            (T1, "username", "bob", bob)
        ),
        other => panic!("{other}"),
    }
    assert_eq!(store.count_users(T1).unwrap(), 1, "dave is rolled back");
    assert!(user(&store, bob).fields.active, "the deactivation too");
    assert_eq!(all_events(&store), before);
    assert_eq!(attribute_count(&store), 3);
}
