//! Tests of applying changes: lifecycle, attributes, avatars, audit events, rollback.

use super::*;
use crate::store::sqlite::SqliteStore;
use crate::store::testing::*;
use crate::store::{AuditEvent, AuditQuery, StoredUser, UserStore};

/// An event's kind, key, added and removed values.
type Summary = (AuditKind, Option<String>, Vec<String>, Vec<String>);

/// The events of a user, oldest first.
fn events_of(store: &SqliteStore, id: UserId) -> Vec<Summary> {
    let query = AuditQuery {
        user_id: Some(id),
        ..AuditQuery::default()
    };
    let mut events = store.audit_events(T1, &query).unwrap();
    events.reverse();
    events
        .into_iter()
        .map(|event| (event.kind, event.key, event.added, event.removed))
        .collect()
}

fn all_events(store: &SqliteStore) -> Vec<AuditEvent> {
    store.audit_events(T1, &AuditQuery::default()).unwrap()
}

fn user(store: &SqliteStore, id: UserId) -> StoredUser {
    store.user(T1, id).unwrap().unwrap()
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| (*value).to_owned()).collect()
}

fn update(id: UserId, fields: UserFields) -> Change {
    Change::Update {
        id,
        fields,
        attribute_changes: Vec::new(),
        avatar: AvatarChange::Keep,
        mapped: None,
    }
}

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

fn avatar(bytes: &[u8], sha256: &str) -> Avatar {
    Avatar {
        bytes: bytes.to_vec(),
        sha256: sha256.into(),
    }
}

#[test]
fn create_records_the_user_and_one_event_with_its_values() {
    let store = SqliteStore::open_in_memory().unwrap();
    let mut carol = fields("carol");
    carol.attributes.insert("empty".into(), Default::default());
    let id = create(&store, T1, carol);
    assert_eq!(
        events_of(&store, id),
        [(AuditKind::Created, None, vec![], vec![])]
    );
    let event = &all_events(&store)[0];
    assert_eq!(event.username, "carol");
    assert_eq!(event.cause, cause());
    assert_eq!(
        event.attributes,
        Some(attrs(&[
            ("department", &["sales"]),
            ("roles", &["reader", "writer"])
        ])),
        "the values, without the empty key"
    );
    assert_eq!(
        user(&store, id).fields,
        fields("carol"),
        "an empty key stores nothing"
    );
}

#[test]
fn a_user_created_without_values_has_an_empty_object() {
    let store = SqliteStore::open_in_memory().unwrap();
    let mut dave = fields("dave");
    dave.attributes.clear();
    create(&store, T1, dave);
    assert_eq!(all_events(&store)[0].attributes, Some(attrs(&[])));
}

#[test]
fn apply_returns_ids_in_change_order() {
    let store = SqliteStore::open_in_memory().unwrap();
    let alice = create(&store, T1, fields("alice"));
    let changes = [
        Change::Create {
            fields: fields("bob"),
            avatar: None,
            mapped: None,
        },
        Change::Deactivate { id: alice },
        Change::Create {
            fields: fields("carol"),
            avatar: None,
            mapped: None,
        },
    ];
    let ids = store.apply(T1, &changes, &cause()).unwrap();
    assert_eq!(ids[1], alice);
    assert!(ids[0] > alice && ids[2] > ids[0]);
    assert!(store.apply(T1, &[], &cause()).unwrap().is_empty());
}

#[test]
fn update_records_changed_fields() {
    let store = SqliteStore::open_in_memory().unwrap();
    let id = create(&store, T1, fields("alice"));
    let mut new = fields("alice");
    new.email = Some("alice@example.com".into());
    new.display_name = None;
    new.ldap_dn = Some("uid=alice,ou=staff,dc=example,dc=org".into());
    store
        .apply(T1, &[update(id, new.clone())], &cause_at(NOW + 1))
        .unwrap();

    let stored = user(&store, id);
    assert_eq!(stored.fields, new);
    assert_eq!((stored.created_at, stored.updated_at), (NOW, NOW + 1));
    let events = events_of(&store, id);
    assert_eq!(
        events[1],
        (
            AuditKind::Updated,
            Some("email,display_name,ldap_dn".into()),
            vec![],
            vec![]
        )
    );
    assert_eq!(events.len(), 2);
}

#[test]
fn an_update_without_changes_writes_nothing() {
    let store = SqliteStore::open_in_memory().unwrap();
    let id = create(&store, T1, fields("alice"));
    let mut unchanged = fields("alice");
    // Attributes are written from `attribute_changes` only.
    unchanged.attributes.clear();
    let empty_change = AttributeChange {
        key: "roles".into(),
        added: Default::default(),
        removed: Default::default(),
    };
    let change = Change::Update {
        id,
        fields: unchanged,
        attribute_changes: vec![empty_change],
        avatar: AvatarChange::Keep,
        mapped: None,
    };
    store.apply(T1, &[change], &cause_at(NOW + 1)).unwrap();
    let stored = user(&store, id);
    assert_eq!(stored.updated_at, NOW);
    assert_eq!(stored.fields, fields("alice"));
    assert_eq!(events_of(&store, id).len(), 1);
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
fn deactivate_and_reactivate() {
    let store = SqliteStore::open_in_memory().unwrap();
    let id = create(&store, T1, fields("alice"));
    store
        .apply(T1, &[Change::Deactivate { id }], &cause_at(NOW + 1))
        .unwrap();
    let stored = user(&store, id);
    assert!(!stored.fields.active);
    assert_eq!(stored.updated_at, NOW + 1);
    assert_eq!(stored.fields.attributes, fields("alice").attributes, "kept");

    // Inactive already: no event, no new timestamp.
    store
        .apply(T1, &[Change::Deactivate { id }], &cause_at(NOW + 2))
        .unwrap();
    assert_eq!(user(&store, id).updated_at, NOW + 1);

    store
        .apply(T1, &[update(id, fields("alice"))], &cause_at(NOW + 3))
        .unwrap();
    assert!(user(&store, id).fields.active);
    let mut inactive = fields("alice");
    inactive.active = false;
    store
        .apply(T1, &[update(id, inactive)], &cause_at(NOW + 4))
        .unwrap();

    let kinds: Vec<_> = events_of(&store, id)
        .into_iter()
        .map(|event| event.0)
        .collect();
    assert_eq!(
        kinds[1..],
        [
            AuditKind::Deactivated,
            AuditKind::Reactivated,
            AuditKind::Deactivated
        ]
    );
    let times: Vec<_> = all_events(&store)
        .iter()
        .map(|event| event.cause.at)
        .collect();
    assert_eq!(times[..3], [NOW + 4, NOW + 3, NOW + 1]);
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
fn avatars_are_set_kept_and_cleared() {
    let store = SqliteStore::open_in_memory().unwrap();
    let changes = [Change::Create {
        fields: fields("alice"),
        avatar: Some(avatar(b"jpeg-1", "aa")),
        mapped: None,
    }];
    let id = store.apply(T1, &changes, &cause()).unwrap()[0];
    assert_eq!(store.avatar(T1, id).unwrap(), Some(avatar(b"jpeg-1", "aa")));
    assert_eq!(user(&store, id).avatar_sha256.as_deref(), Some("aa"));

    let with_avatar = |change: AvatarChange, at: i64| {
        let change = Change::Update {
            id,
            fields: fields("alice"),
            attribute_changes: Vec::new(),
            avatar: change,
            mapped: None,
        };
        store.apply(T1, &[change], &cause_at(at)).unwrap();
    };
    with_avatar(AvatarChange::Set(avatar(b"jpeg-1", "aa")), NOW + 1);
    with_avatar(AvatarChange::Keep, NOW + 2);
    assert_eq!(user(&store, id).updated_at, NOW, "same picture: no change");

    with_avatar(AvatarChange::Set(avatar(b"jpeg-2", "bb")), NOW + 3);
    assert_eq!(store.avatar(T1, id).unwrap(), Some(avatar(b"jpeg-2", "bb")));
    assert_eq!(user(&store, id).updated_at, NOW + 3);
    with_avatar(AvatarChange::Clear, NOW + 4);
    with_avatar(AvatarChange::Clear, NOW + 5);
    assert_eq!(store.avatar(T1, id).unwrap(), None);
    assert_eq!(user(&store, id).avatar_sha256, None);
    assert_eq!(user(&store, id).updated_at, NOW + 4);

    let updated: Vec<_> = events_of(&store, id)
        .into_iter()
        .filter(|event| event.0 == AuditKind::Updated)
        .map(|event| event.1)
        .collect();
    assert_eq!(updated, [Some("avatar".into()), Some("avatar".into())]);
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

#[test]
fn a_taken_ldap_id_is_a_conflict_on_create_and_update() {
    let store = SqliteStore::open_in_memory().unwrap();
    let alice = create(&store, T1, fields("alice"));
    let bob = create(&store, T1, fields("bob"));

    let mut twin = fields("alice2");
    twin.ldap_id = Some("id-alice".into());
    let create_twin = Change::Create {
        fields: twin,
        avatar: None,
        mapped: None,
    };
    let err = store.apply(T1, &[create_twin], &cause()).unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict { field: "ldap_id", existing, .. } if *existing == alice),
        "{err}"
    );

    let mut renamed = fields("bob");
    renamed.username = "alice".into();
    let err = store
        .apply(T1, &[update(bob, renamed)], &cause())
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict { field: "username", existing, .. } if *existing == alice),
        "{err}"
    );
    assert_eq!(user(&store, bob).fields, fields("bob"));
}

#[test]
fn a_duplicate_within_the_batch_is_a_conflict() {
    let store = SqliteStore::open_in_memory().unwrap();
    let create_alice = Change::Create {
        fields: fields("alice"),
        avatar: None,
        mapped: None,
    };
    let err = store
        .apply(T1, &[create_alice.clone(), create_alice], &cause())
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                field: "username",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(store.count_users(T1).unwrap(), 0);
}

#[test]
fn an_unknown_user_rolls_the_batch_back() {
    let store = SqliteStore::open_in_memory().unwrap();
    let alice = create(&store, T1, fields("alice"));
    let ghost = UserId(alice.0 + 100);
    for change in [
        update(ghost, fields("ghost")),
        Change::Deactivate { id: ghost },
        Change::Delete { id: ghost },
    ] {
        let changes = [Change::Delete { id: alice }, change];
        let err = store.apply(T1, &changes, &cause()).unwrap_err();
        assert!(
            matches!(err, StoreError::NoSuchUser { tenant: T1, id } if id == ghost),
            "{err}"
        );
        assert_eq!(user(&store, alice).fields, fields("alice"));
    }
    assert_eq!(all_events(&store).len(), 1);
}

#[test]
fn the_mapped_digest_is_stored_kept_and_forgotten() {
    let store = SqliteStore::open_in_memory().unwrap();
    let digest = |byte: u8| Some(MappedDigest([byte; 16]));
    let known = |store: &SqliteStore| {
        let ids = vec!["id-alice".to_owned(), "nobody".to_owned()];
        store.known_by_ldap_ids(T1, &ids).unwrap()
    };
    let ids = store
        .apply(
            T1,
            &[Change::Create {
                fields: fields("alice"),
                avatar: None,
                mapped: digest(1),
            }],
            &cause(),
        )
        .unwrap();
    let id = ids[0];
    let found = known(&store);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0].id, found[0].username.as_str(), found[0].mapped),
        (id, "alice", digest(1))
    );
    assert_eq!(user(&store, id).mapped, digest(1));

    // An update that changes nothing else records the digest only: no event, and
    // updated_at stays.
    let before = user(&store, id);
    let events = all_events(&store).len();
    let only_digest = Change::Update {
        id,
        fields: fields("alice"),
        attribute_changes: Vec::new(),
        avatar: AvatarChange::Keep,
        mapped: digest(2),
    };
    store.apply(T1, &[only_digest], &cause_at(NOW + 5)).unwrap();
    let after = user(&store, id);
    assert_eq!(after.mapped, digest(2));
    assert_eq!(after.updated_at, before.updated_at);
    assert_eq!(all_events(&store).len(), events);

    // A real update stores its digest, an update without one forgets it, and so does a
    // deactivation.
    let mut renamed = fields("alice");
    renamed.display_name = Some("Alice L.".into());
    let mut change = update(id, renamed.clone());
    if let Change::Update { mapped, .. } = &mut change {
        *mapped = digest(3);
    }
    store.apply(T1, &[change], &cause_at(NOW + 6)).unwrap();
    assert_eq!(user(&store, id).mapped, digest(3));
    renamed.display_name = Some("Alice Liddell".into());
    store
        .apply(T1, &[update(id, renamed)], &cause_at(NOW + 7))
        .unwrap();
    assert_eq!(user(&store, id).mapped, None);
    let mut change = update(id, fields("alice"));
    if let Change::Update { mapped, .. } = &mut change {
        *mapped = digest(4);
    }
    store.apply(T1, &[change], &cause_at(NOW + 8)).unwrap();
    assert_eq!(user(&store, id).mapped, digest(4));
    store
        .apply(T1, &[Change::Deactivate { id }], &cause_at(NOW + 9))
        .unwrap();
    assert_eq!(known(&store)[0].mapped, None);
    assert!(
        store
            .known_by_ldap_ids(T2, &["id-alice".to_owned()])
            .unwrap()
            .is_empty(),
        "another tenant's user is not known"
    );
}
