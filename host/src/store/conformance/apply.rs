//! Checks of applying changes: lifecycle, attributes, avatars, mapped digests, audit
//! events, conflicts and rollback, and the tenant's usage kept in step.

use super::Backend;
use crate::store::testing::*;
use crate::store::*;

/// An avatar of `bytes` with the hash `sha256`.
fn avatar(bytes: &[u8], sha256: &str) -> Avatar {
    Avatar {
        bytes: bytes.to_vec(),
        sha256: sha256.into(),
    }
}

pub(crate) fn create_records_the_user_and_one_event_with_its_values(store: &dyn Backend) {
    let mut carol = fields("carol");
    carol.attributes.insert("empty".into(), Default::default());
    let id = create(store, T1, carol);
    assert_eq!(
        events_of(store, id),
        [(AuditKind::Created, None, vec![], vec![])]
    );
    let event = &all_events(store)[0];
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
        user(store, id).fields,
        fields("carol"),
        "an empty key stores nothing"
    );
}

pub(crate) fn a_user_created_without_values_has_an_empty_object(store: &dyn Backend) {
    let mut dave = fields("dave");
    dave.attributes.clear();
    create(store, T1, dave);
    assert_eq!(all_events(store)[0].attributes, Some(attrs(&[])));
}

pub(crate) fn apply_returns_ids_in_change_order(store: &dyn Backend) {
    let alice = create(store, T1, fields("alice"));
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

pub(crate) fn update_records_changed_fields(store: &dyn Backend) {
    let id = create(store, T1, fields("alice"));
    let mut new = fields("alice");
    new.email = Some("alice@example.com".into());
    new.display_name = None;
    new.ldap_dn = Some("uid=alice,ou=staff,dc=example,dc=org".into());
    store
        .apply(T1, &[update(id, new.clone())], &cause_at(NOW + 1))
        .unwrap();

    let stored = user(store, id);
    assert_eq!(stored.fields, new);
    assert_eq!((stored.created_at, stored.updated_at), (NOW, NOW + 1));
    let events = events_of(store, id);
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

pub(crate) fn an_update_without_changes_writes_nothing(store: &dyn Backend) {
    let id = create(store, T1, fields("alice"));
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
    let stored = user(store, id);
    assert_eq!(stored.updated_at, NOW);
    assert_eq!(stored.fields, fields("alice"));
    assert_eq!(events_of(store, id).len(), 1);
}

/// An update of many keys records every event once, in order, with its own values and
/// cause, after the `updated` event of its fields.
pub(crate) fn an_update_of_many_keys_records_every_event_in_order(store: &dyn Backend) {
    let alice = create(store, T1, fields("alice"));
    let mut renamed = fields("alice");
    renamed.display_name = Some("Alice A.".into());
    let changes: Vec<_> = (0..19)
        .map(|key| AttributeChange {
            key: format!("key{key:02}"),
            added: [format!("v{key}"), "shared".to_owned()].into(),
            removed: Default::default(),
        })
        .collect();
    let update = Change::Update {
        id: alice,
        fields: renamed,
        attribute_changes: changes,
        avatar: Default::default(),
        mapped: None,
    };
    store.apply(T1, &[update], &cause_at(NOW + 1)).unwrap();
    let mut events = store.audit_events(T1, &AuditQuery::default()).unwrap();
    events.reverse(); // oldest first
    assert_eq!(events.len(), 21);
    assert_eq!(events[0].kind, AuditKind::Created);
    assert_eq!(events[1].kind, AuditKind::Updated);
    assert_eq!(events[1].key.as_deref(), Some("display_name"));
    for (index, event) in events[2..].iter().enumerate() {
        assert_eq!(event.kind, AuditKind::Attribute);
        assert_eq!(
            event.key.as_deref(),
            Some(format!("key{index:02}").as_str())
        );
        assert_eq!(event.added, ["shared".to_owned(), format!("v{index}")]);
        assert!(event.removed.is_empty());
        assert_eq!(event.user_id, alice);
        assert_eq!(event.cause, cause_at(NOW + 1));
    }
    assert!(events.windows(2).all(|pair| pair[0].id < pair[1].id));
}

pub(crate) fn deactivate_and_reactivate(store: &dyn Backend) {
    let id = create(store, T1, fields("alice"));
    store
        .apply(T1, &[Change::Deactivate { id }], &cause_at(NOW + 1))
        .unwrap();
    let stored = user(store, id);
    assert!(!stored.fields.active);
    assert_eq!(stored.updated_at, NOW + 1);
    assert_eq!(stored.fields.attributes, fields("alice").attributes, "kept");

    // Inactive already: no event, no new timestamp.
    store
        .apply(T1, &[Change::Deactivate { id }], &cause_at(NOW + 2))
        .unwrap();
    assert_eq!(user(store, id).updated_at, NOW + 1);

    store
        .apply(T1, &[update(id, fields("alice"))], &cause_at(NOW + 3))
        .unwrap();
    assert!(user(store, id).fields.active);
    let mut inactive = fields("alice");
    inactive.active = false;
    store
        .apply(T1, &[update(id, inactive)], &cause_at(NOW + 4))
        .unwrap();

    let kinds: Vec<_> = events_of(store, id)
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
    let times: Vec<_> = all_events(store)
        .iter()
        .map(|event| event.cause.at)
        .collect();
    assert_eq!(times[..3], [NOW + 4, NOW + 3, NOW + 1]);
}

pub(crate) fn avatars_are_set_kept_and_cleared(store: &dyn Backend) {
    let changes = [Change::Create {
        fields: fields("alice"),
        avatar: Some(avatar(b"jpeg-1", "aa")),
        mapped: None,
    }];
    let id = store.apply(T1, &changes, &cause()).unwrap()[0];
    assert_eq!(store.avatar(T1, id).unwrap(), Some(avatar(b"jpeg-1", "aa")));
    assert_eq!(user(store, id).avatar_sha256.as_deref(), Some("aa"));

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
    assert_eq!(user(store, id).updated_at, NOW, "same picture: no change");

    with_avatar(AvatarChange::Set(avatar(b"jpeg-2", "bb")), NOW + 3);
    assert_eq!(store.avatar(T1, id).unwrap(), Some(avatar(b"jpeg-2", "bb")));
    assert_eq!(user(store, id).updated_at, NOW + 3);
    with_avatar(AvatarChange::Clear, NOW + 4);
    with_avatar(AvatarChange::Clear, NOW + 5);
    assert_eq!(store.avatar(T1, id).unwrap(), None);
    assert_eq!(user(store, id).avatar_sha256, None);
    assert_eq!(user(store, id).updated_at, NOW + 4);

    let updated: Vec<_> = events_of(store, id)
        .into_iter()
        .filter(|event| event.0 == AuditKind::Updated)
        .map(|event| event.1)
        .collect();
    assert_eq!(updated, [Some("avatar".into()), Some("avatar".into())]);
}

pub(crate) fn a_taken_ldap_id_is_a_conflict_on_create_and_update(store: &dyn Backend) {
    let alice = create(store, T1, fields("alice"));
    let bob = create(store, T1, fields("bob"));

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
    assert_eq!(user(store, bob).fields, fields("bob"));
}

pub(crate) fn a_duplicate_within_the_batch_is_a_conflict(store: &dyn Backend) {
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

pub(crate) fn an_unknown_user_rolls_the_batch_back(store: &dyn Backend) {
    let alice = create(store, T1, fields("alice"));
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
        assert_eq!(user(store, alice).fields, fields("alice"));
    }
    assert_eq!(all_events(store).len(), 1);
}

pub(crate) fn the_mapped_digest_is_stored_kept_and_forgotten(store: &dyn Backend) {
    let digest = |byte: u8| Some(MappedDigest([byte; 16]));
    let known = |store: &dyn Backend| {
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
    let found = known(store);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0].id, found[0].username.as_str(), found[0].mapped),
        (id, "alice", digest(1))
    );
    assert_eq!(user(store, id).mapped, digest(1));

    // An update that changes nothing else records the digest only: no event, and
    // updated_at stays.
    let before = user(store, id);
    let events = all_events(store).len();
    let only_digest = Change::Update {
        id,
        fields: fields("alice"),
        attribute_changes: Vec::new(),
        avatar: AvatarChange::Keep,
        mapped: digest(2),
    };
    store.apply(T1, &[only_digest], &cause_at(NOW + 5)).unwrap();
    let after = user(store, id);
    assert_eq!(after.mapped, digest(2));
    assert_eq!(after.updated_at, before.updated_at);
    assert_eq!(all_events(store).len(), events);

    // A real update stores its digest, an update without one forgets it, and so does a
    // deactivation.
    let mut renamed = fields("alice");
    renamed.display_name = Some("Alice L.".into());
    let mut change = update(id, renamed.clone());
    if let Change::Update { mapped, .. } = &mut change {
        *mapped = digest(3);
    }
    store.apply(T1, &[change], &cause_at(NOW + 6)).unwrap();
    assert_eq!(user(store, id).mapped, digest(3));
    renamed.display_name = Some("Alice Liddell".into());
    store
        .apply(T1, &[update(id, renamed)], &cause_at(NOW + 7))
        .unwrap();
    assert_eq!(user(store, id).mapped, None);
    let mut change = update(id, fields("alice"));
    if let Change::Update { mapped, .. } = &mut change {
        *mapped = digest(4);
    }
    store.apply(T1, &[change], &cause_at(NOW + 8)).unwrap();
    assert_eq!(user(store, id).mapped, digest(4));
    store
        .apply(T1, &[Change::Deactivate { id }], &cause_at(NOW + 9))
        .unwrap();
    assert_eq!(known(store)[0].mapped, None);
    assert!(
        store
            .known_by_ldap_ids(T2, &["id-alice".to_owned()])
            .unwrap()
            .is_empty(),
        "another tenant's user is not known"
    );
}

pub(crate) fn the_tenant_usage_follows_every_write_and_matches_a_recount(store: &dyn Backend) {
    let recount = |tenant| -> u64 {
        store
            .list_users(tenant, &UserQuery::default())
            .unwrap()
            .iter()
            .map(|user| Footprint::of(&user.fields.attributes).bytes)
            .sum()
    };
    // "department"+"sales" (15) + "roles"+"reader" (11) + "roles"+"writer" (11).
    let alice = create(store, T1, fields("alice"));
    let bob = create(store, T1, fields("bob"));
    create(store, T2, fields("carol"));
    assert_eq!(store.attribute_bytes(T1).unwrap(), 74);
    assert_eq!(store.attribute_bytes(T2).unwrap(), 37);
    let mut more = fields("alice");
    more.attributes = attrs(&[("department", &["sales", "legal"]), ("roles", &["reader"])]);
    let update = Change::Update {
        id: alice,
        fields: more,
        attribute_changes: vec![
            AttributeChange {
                key: "department".into(),
                added: set(&["legal"]),
                removed: set(&[]),
            },
            AttributeChange {
                key: "roles".into(),
                added: set(&[]),
                removed: set(&["writer"]),
            },
        ],
        avatar: AvatarChange::Keep,
        mapped: None,
    };
    store.apply(T1, &[update], &cause()).unwrap();
    assert_eq!(store.attribute_bytes(T1).unwrap(), recount(T1));
    assert_eq!(store.attribute_bytes(T1).unwrap(), 74 + 15 - 11);
    store
        .apply(T1, &[Change::Delete { id: bob }], &cause())
        .unwrap();
    assert_eq!(store.attribute_bytes(T1).unwrap(), recount(T1));
    // A batch that fails changes nothing, its usage included.
    let failing = vec![
        Change::Create {
            fields: fields("dave"),
            avatar: None,
            mapped: None,
        },
        Change::Delete { id: bob },
    ];
    assert!(store.apply(T1, &failing, &cause()).is_err());
    assert_eq!(store.attribute_bytes(T1).unwrap(), recount(T1));
    assert_eq!(store.attribute_bytes(T2).unwrap(), 37);
    store.put_tenant(T2, "{}", NOW).unwrap();
    assert!(store.delete_tenant(T2).unwrap());
    assert_eq!(store.attribute_bytes(T2).unwrap(), 0);
}

/// A batch of updates of several users (which a backend may write in bulk) ends as the
/// same updates applied one by one would: fields, values, their lookup, the digest,
/// updated_at, the events in order, the tenant's usage.
pub(crate) fn a_batch_of_updates_equals_the_updates_one_by_one(store: &dyn Backend) {
    let batch = |fresh: &dyn Backend, one_by_one: bool| -> Vec<(StoredUser, Vec<Summary>)> {
        let ids = three(fresh);
        let (alice, bob, carol) = (ids[0], ids[1], ids[2]);
        // alice: a new email and a role added; bob: a value removed, only; carol:
        // deactivated; a fourth, unchanged but for its digest.
        let dave = create(fresh, T1, fields("dave"));
        let mut new_alice = fields("alice");
        new_alice.email = Some("alice@new.example.org".into());
        new_alice
            .attributes
            .get_mut("roles")
            .unwrap()
            .insert("admin".into());
        let mut new_bob = fields("bob");
        new_bob.attributes.remove("department");
        let mut new_carol = fields("carol");
        new_carol.active = false;
        let changes = [
            Change::Update {
                id: alice,
                fields: new_alice,
                attribute_changes: vec![AttributeChange {
                    key: "roles".into(),
                    added: set(&["admin"]),
                    removed: set(&[]),
                }],
                avatar: AvatarChange::Keep,
                mapped: Some(MappedDigest([1; 16])),
            },
            Change::Update {
                id: bob,
                fields: new_bob,
                attribute_changes: vec![AttributeChange {
                    key: "department".into(),
                    added: set(&[]),
                    removed: set(&["sales"]),
                }],
                avatar: AvatarChange::Keep,
                mapped: Some(MappedDigest([2; 16])),
            },
            update(carol, new_carol),
            Change::Update {
                id: dave,
                fields: fields("dave"),
                attribute_changes: Vec::new(),
                avatar: AvatarChange::Keep,
                mapped: Some(MappedDigest([4; 16])),
            },
        ];
        let later = cause_at(NOW + 1_000);
        if one_by_one {
            for change in &changes {
                assert_eq!(
                    fresh
                        .apply(T1, std::slice::from_ref(change), &later)
                        .unwrap()
                        .len(),
                    1
                );
            }
        } else {
            let written = fresh.apply(T1, &changes, &later).unwrap();
            assert_eq!(written, [alice, bob, carol, dave]);
        }
        [alice, bob, carol, dave]
            .into_iter()
            .map(|id| (user(fresh, id), events_of(fresh, id)))
            .collect()
    };
    let together = batch(store, false);
    let (alice, bob, carol, dave) = (
        &together[0].0,
        &together[1].0,
        &together[2].0,
        &together[3].0,
    );
    assert_eq!(alice.fields.email.as_deref(), Some("alice@new.example.org"));
    assert_eq!(
        alice.fields.attributes["roles"],
        set(&["admin", "reader", "writer"])
    );
    assert_eq!(alice.mapped, Some(MappedDigest([1; 16])));
    assert_eq!(alice.updated_at, NOW + 1_000);
    assert!(!bob.fields.attributes.contains_key("department"));
    assert_eq!(bob.updated_at, NOW + 1_000);
    assert!(!carol.fields.active);
    assert_eq!(dave.updated_at, NOW, "nothing but the digest changed");
    assert_eq!(dave.mapped, Some(MappedDigest([4; 16])));
    // The lookup rows moved with the values.
    let having = |key: &str, value: &str| -> Vec<String> {
        let query = UserQuery {
            attribute_key: Some(key.into()),
            attribute_value: Some(value.into()),
            ..UserQuery::default()
        };
        store
            .list_users(T1, &query)
            .unwrap()
            .into_iter()
            .map(|user| user.fields.username)
            .collect()
    };
    assert_eq!(having("roles", "admin"), ["alice"]);
    assert_eq!(having("department", "sales"), ["alice", "carol", "dave"]);
    let recount: u64 = store
        .list_users(T1, &UserQuery::default())
        .unwrap()
        .iter()
        .map(|user| Footprint::of(&user.fields.attributes).bytes)
        .sum();
    assert_eq!(store.attribute_bytes(T1).unwrap(), recount);
    // And the same as the updates applied one by one, on the reference backend (an
    // in-memory SQLite store): fields, ids, digests, times, events.
    let reference = crate::store::SqliteStore::open_in_memory().unwrap();
    let one_by_one = batch(&reference, true);
    for ((got, got_events), (want, want_events)) in together.iter().zip(&one_by_one) {
        assert_eq!(got.fields, want.fields);
        assert_eq!(
            (got.updated_at, got.mapped, got.id),
            (want.updated_at, want.mapped, want.id)
        );
        assert_eq!(got_events, want_events, "{}", got.fields.username);
    }
}
