//! Fixtures shared by the store's tests: the conformance suite and each backend's own.

use std::collections::BTreeSet;

use crate::plugin::model::{AbacAttributes, TenantId};
use crate::store::{
    AuditEvent, AuditKind, AuditQuery, AvatarChange, Change, ChangeCause, StoredUser, UserFields,
    UserId, UserStore,
};

/// Two tenants, to prove isolation.
pub(crate) const T1: TenantId = 1;
pub(crate) const T2: TenantId = 2;

/// The fixed "now" of the tests (2025-01-01T00:00:00Z).
pub(crate) const NOW: i64 = 1_735_689_600_000;

/// A sync cause at `at`.
pub(crate) fn cause_at(at: i64) -> ChangeCause {
    ChangeCause {
        cause: "sync:full".into(),
        run_id: Some("run-1".into()),
        at,
    }
}

/// A sync cause at [`NOW`].
pub(crate) fn cause() -> ChangeCause {
    cause_at(NOW)
}

/// A set of strings.
pub(crate) fn set(values: &[&str]) -> BTreeSet<String> {
    values.iter().map(|value| (*value).to_owned()).collect()
}

/// Owned strings.
pub(crate) fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| (*value).to_owned()).collect()
}

/// ABAC attributes from (key, values) pairs.
pub(crate) fn attrs(pairs: &[(&str, &[&str])]) -> AbacAttributes {
    pairs
        .iter()
        .map(|(key, values)| ((*key).to_owned(), set(values)))
        .collect()
}

/// A directory user named `name`: ldap id `id-{name}`, a department and two roles.
pub(crate) fn fields(name: &str) -> UserFields {
    UserFields {
        username: name.into(),
        email: Some(format!("{name}@example.org")),
        display_name: Some(format!("User {name}")),
        language: Some("en".into()),
        active: true,
        ldap_id: Some(format!("id-{name}")),
        ldap_dn: Some(format!("uid={name},ou=people,dc=example,dc=org")),
        attributes: attrs(&[("department", &["sales"]), ("roles", &["reader", "writer"])]),
    }
}

/// Creates one user; returns its id.
pub(crate) fn create(store: &dyn UserStore, tenant: TenantId, fields: UserFields) -> UserId {
    create_many(store, tenant, vec![fields])[0]
}

/// Creates users in one batch; returns their ids.
pub(crate) fn create_many(
    store: &dyn UserStore,
    tenant: TenantId,
    users: Vec<UserFields>,
) -> Vec<UserId> {
    let changes: Vec<Change> = users
        .into_iter()
        .map(|fields| Change::Create {
            fields,
            avatar: None,
            mapped: None,
        })
        .collect();
    store.apply(tenant, &changes, &cause()).unwrap()
}

/// Creates alice, bob and carol in [`T1`]; returns their ids.
pub(crate) fn three(store: &dyn UserStore) -> Vec<UserId> {
    create_many(
        store,
        T1,
        vec![fields("alice"), fields("bob"), fields("carol")],
    )
}

/// A user of [`T1`] that exists.
pub(crate) fn user(store: &dyn UserStore, id: UserId) -> StoredUser {
    store.user(T1, id).unwrap().unwrap()
}

/// An update of a user's fields only: no attribute change, the avatar kept.
pub(crate) fn update(id: UserId, fields: UserFields) -> Change {
    Change::Update {
        id,
        fields,
        attribute_changes: Vec::new(),
        avatar: AvatarChange::Keep,
        mapped: None,
    }
}

/// An event's kind, key, added and removed values.
pub(crate) type Summary = (AuditKind, Option<String>, Vec<String>, Vec<String>);

/// The events of a user of [`T1`], oldest first.
pub(crate) fn events_of(store: &dyn UserStore, id: UserId) -> Vec<Summary> {
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

/// The latest events of [`T1`], newest first (one default page).
pub(crate) fn all_events(store: &dyn UserStore) -> Vec<AuditEvent> {
    store.audit_events(T1, &AuditQuery::default()).unwrap()
}
