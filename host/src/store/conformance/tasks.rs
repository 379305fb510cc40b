//! Checks of tasks: leases, per-tenant claims, schedule periods, cancelling and joining.

use super::Backend;
use crate::store::testing::*;
use crate::store::*;

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
