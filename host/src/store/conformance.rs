//! The store's contract, checked against every backend: each check takes a fresh,
//! empty store of the backend under test and uses nothing but the store traits, so
//! that a backend passes exactly when it behaves as the others. A backend's tests
//! instantiate the whole suite with [`suite!`] and a way to open an empty store.

use super::testing::*;
use super::*;

/// Everything a backend implements.
pub(crate) trait Backend: UserStore + TaskStore + CatalogStore + AccountStore {}
impl<T: UserStore + TaskStore + CatalogStore + AccountStore> Backend for T {}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| (*value).to_owned()).collect()
}

/// One `#[test]` per check of the suite, each on a store `$open` makes.
macro_rules! suite {
    ($open:expr) => {
        mod conformance {
            #[allow(unused_imports)]
            use super::*;
            #[test]
            fn task_leases_are_renewed_by_their_owner_and_expired_ones_interrupted() {
                $crate::store::conformance::task_leases_are_renewed_by_their_owner_and_expired_ones_interrupted(&$open);
            }
            #[test]
            fn a_tenant_runs_one_sync_across_replicas_and_a_dead_ones_run_is_taken_over() {
                $crate::store::conformance::a_tenant_runs_one_sync_across_replicas_and_a_dead_ones_run_is_taken_over(&$open);
            }
            #[test]
            fn each_schedule_period_is_claimed_once() {
                $crate::store::conformance::each_schedule_period_is_claimed_once(&$open);
            }
            #[test]
            fn a_cancel_ends_a_queued_task_and_asks_a_running_one() {
                $crate::store::conformance::a_cancel_ends_a_queued_task_and_asks_a_running_one(&$open);
            }
            #[test]
            fn the_first_shared_secret_stored_is_everyones() {
                $crate::store::conformance::the_first_shared_secret_stored_is_everyones(&$open);
            }
            #[test]
            fn a_tenant_neither_sees_nor_changes_another_tenants_users() {
                $crate::store::conformance::a_tenant_neither_sees_nor_changes_another_tenants_users(&$open);
            }
            #[test]
            fn huge_tenant_ids_are_distinct() {
                $crate::store::conformance::huge_tenant_ids_are_distinct(&$open);
            }
            #[test]
            fn attempts_are_counted_per_scope_and_key_until_they_expire() {
                $crate::store::conformance::attempts_are_counted_per_scope_and_key_until_they_expire(&$open);
            }
            #[test]
            fn an_identical_queued_task_is_found_to_join() {
                $crate::store::conformance::an_identical_queued_task_is_found_to_join(&$open);
            }
            #[test]
            fn the_catalog_generation_moves_with_every_tenant_change() {
                $crate::store::conformance::the_catalog_generation_moves_with_every_tenant_change(&$open);
            }
        }
    };
}
pub(crate) use suite;

pub(crate) fn task_leases_are_renewed_by_their_owner_and_expired_ones_interrupted(
    store: &dyn Backend,
) {
    let task = |owner: &str, until: Timestamp| {
        let lease = Lease {
            owner: owner.into(),
            until,
        };
        store
            .create_task(T1, "sync", &serde_json::json!({}), None, &lease, 0)
            .unwrap()
            .id
    };
    let state = |id| store.task(id).unwrap().unwrap().state;
    let (a, b, dead) = (task("a", 100), task("b", 100), task("c", 100));
    // b renews; c does not: at 150, only c's has run out. The caller's own (a's)
    // are never interrupted by its own sweep.
    assert_eq!(store.renew_leases("b", 200).unwrap(), 1);
    assert_eq!(store.interrupt_expired(150, Some("a")).unwrap(), 1);
    assert_eq!(
        (state(a), state(b), state(dead)),
        (TaskState::Queued, TaskState::Queued, TaskState::Interrupted)
    );
    // A task that ended keeps its end; its lease is not renewed.
    assert!(
        store
            .update_task(b, TaskState::Completed, "done", None, 160)
            .unwrap()
    );
    assert_eq!(store.renew_leases("b", 300).unwrap(), 0);
    assert_eq!(store.interrupt_expired(400, None).unwrap(), 1);
    assert_eq!(
        (state(a), state(b)),
        (TaskState::Interrupted, TaskState::Completed)
    );
    // A replica that stops hands its own back at once.
    let mine = task("a", 10_000);
    let theirs = task("b", 10_000);
    assert_eq!(store.interrupt_owned("a", 500).unwrap(), 1);
    assert_eq!(
        (state(mine), state(theirs)),
        (TaskState::Interrupted, TaskState::Queued)
    );
}

pub(crate) fn a_tenant_runs_one_sync_across_replicas_and_a_dead_ones_run_is_taken_over(
    store: &dyn Backend,
) {
    assert_eq!(store.claim_tenant(T1, "a", Some(1), 100, 0).unwrap(), None);
    // Another replica waits; the holder may claim again (renewing).
    assert_eq!(
        store.claim_tenant(T1, "b", Some(2), 100, 50).unwrap(),
        Some("a".into())
    );
    assert_eq!(store.claim_tenant(T1, "a", Some(3), 150, 50).unwrap(), None);
    // Another tenant is apart.
    assert_eq!(store.claim_tenant(T2, "b", Some(4), 100, 50).unwrap(), None);
    // Renewed with the holder's leases; once it runs out, taken over.
    store.renew_leases("a", 300).unwrap();
    assert_eq!(
        store.claim_tenant(T1, "b", Some(2), 400, 250).unwrap(),
        Some("a".into())
    );
    assert_eq!(
        store.claim_tenant(T1, "b", Some(2), 400, 301).unwrap(),
        None
    );
    // Given back only by its holder.
    store.release_tenant(T1, "a").unwrap();
    assert_eq!(
        store.claim_tenant(T1, "c", None, 500, 302).unwrap(),
        Some("b".into())
    );
    store.release_tenant(T1, "b").unwrap();
    assert_eq!(store.claim_tenant(T1, "c", None, 500, 302).unwrap(), None);
}

pub(crate) fn each_schedule_period_is_claimed_once(store: &dyn Backend) {
    assert!(store.claim_schedule(T1, 60_000).unwrap());
    assert!(
        !store.claim_schedule(T1, 60_000).unwrap(),
        "a second replica"
    );
    assert!(!store.claim_schedule(T1, 0).unwrap(), "an earlier period");
    assert!(store.claim_schedule(T2, 60_000).unwrap());
    assert!(store.claim_schedule(T1, 120_000).unwrap());
}

pub(crate) fn a_cancel_ends_a_queued_task_and_asks_a_running_one(store: &dyn Backend) {
    let lease = Lease {
        owner: "a".into(),
        until: 1_000,
    };
    let new = || {
        store
            .create_task(T1, "sync", &serde_json::json!({}), None, &lease, 0)
            .unwrap()
            .id
    };
    let (queued, running) = (new(), new());
    store
        .update_task(running, TaskState::Running, "", None, 1)
        .unwrap();
    assert_eq!(
        store.request_cancel(queued, 2).unwrap(),
        CancelRequest::Cancelled
    );
    assert_eq!(
        store.task(queued).unwrap().unwrap().state,
        TaskState::Cancelled
    );
    assert!(!store.cancel_requested(queued).unwrap());
    assert_eq!(
        store.request_cancel(running, 2).unwrap(),
        CancelRequest::Requested
    );
    assert_eq!(
        store.task(running).unwrap().unwrap().state,
        TaskState::Running
    );
    assert!(store.cancel_requested(running).unwrap());
    assert_eq!(
        store.request_cancel(queued, 3).unwrap(),
        CancelRequest::Ended
    );
}

pub(crate) fn the_first_shared_secret_stored_is_everyones(store: &dyn Backend) {
    assert_eq!(store.shared_secret("jwt", b"first", 1).unwrap(), b"first");
    assert_eq!(store.shared_secret("jwt", b"second", 2).unwrap(), b"first");
    assert_eq!(
        store.shared_secret("other", b"second", 2).unwrap(),
        b"second"
    );
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

pub(crate) fn attempts_are_counted_per_scope_and_key_until_they_expire(store: &dyn Backend) {
    let count = |scope: &str, key: &str, now: i64| {
        store
            .count_attempt(scope, key, 2, now + 1_000, now)
            .unwrap()
    };
    let first = count("login", "alice", 0).unwrap();
    count("login", "alice", 10).unwrap();
    // The third within the window is refused, with the wait until the oldest expires.
    assert_eq!(count("login", "alice", 400), Err(600));
    assert!(count("two-factor", "alice", 400).is_ok());
    assert!(count("login", "bob", 400).is_ok());
    // A forgiven attempt frees its place; a cleared key all of them.
    store.forgive_attempt(first).unwrap();
    assert!(count("login", "alice", 500).is_ok());
    assert!(count("login", "alice", 500).is_err());
    store.clear_attempts("login", "alice").unwrap();
    assert!(count("login", "alice", 500).is_ok());
    // Once expired, they count no more.
    assert!(count("login", "alice", 1_500).is_ok());
    assert!(count("login", "alice", 1_500).is_ok());
}

pub(crate) fn the_catalog_generation_moves_with_every_tenant_change(store: &dyn Backend) {
    let before = store.catalog_generation().unwrap();
    let mut schedules = store.schedules().unwrap();
    assert!(schedules.is_empty());
    store.set_schedule(T1, Some(3_600), NOW).unwrap();
    let after = store.catalog_generation().unwrap();
    assert!(after > before, "{before} → {after}");
    schedules = store.schedules().unwrap();
    assert_eq!(schedules.get(&T1), Some(&Some(3_600)));
    // Reading moves nothing.
    assert_eq!(store.catalog_generation().unwrap(), after);
}

pub(crate) fn an_identical_queued_task_is_found_to_join(store: &dyn Backend) {
    let lease = Lease {
        owner: "a".into(),
        until: NOW,
    };
    let params = serde_json::json!({"domainID": 1, "import": false});
    let queued = store
        .create_task(T1, "ldap.downsync", &params, None, &lease, NOW)
        .unwrap();
    let find = |tenant, command, params: &serde_json::Value| {
        store
            .queued_task(tenant, command, params)
            .unwrap()
            .map(|task| task.id)
    };
    assert_eq!(find(T1, "ldap.downsync", &params), Some(queued.id));
    assert_eq!(find(T2, "ldap.downsync", &params), None);
    assert_eq!(find(T1, "ldap.syncNow", &params), None);
    assert_eq!(
        find(
            T1,
            "ldap.downsync",
            &serde_json::json!({"domainID": 1, "import": true})
        ),
        None
    );
    // Once it runs, it is no longer joined.
    store
        .update_task(queued.id, TaskState::Running, "", None, NOW)
        .unwrap();
    assert_eq!(find(T1, "ldap.downsync", &params), None);
}
