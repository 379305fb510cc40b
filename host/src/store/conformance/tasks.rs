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
            .create_task(
                T1,
                "sync",
                &serde_json::json!({}),
                None,
                None,
                Some(&lease),
                0,
            )
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

pub(crate) fn one_replica_watches_a_tenant_until_its_lease_runs_out(store: &dyn Backend) {
    assert!(store.claim_watch(T1, "a", 1_000, 100).unwrap());
    assert!(
        !store.claim_watch(T1, "b", 1_100, 200).unwrap(),
        "a second replica"
    );
    assert!(
        store.claim_watch(T2, "b", 1_100, 200).unwrap(),
        "another tenant"
    );
    // Renewed by its holder, then not renewed: taken over once the lease ran out.
    assert!(store.claim_watch(T1, "a", 2_000, 900).unwrap());
    assert!(!store.claim_watch(T1, "b", 2_100, 1_999).unwrap());
    assert!(store.claim_watch(T1, "b", 3_000, 2_001).unwrap());
    assert!(
        !store.claim_watch(T1, "a", 3_100, 2_100).unwrap(),
        "the old holder"
    );
    // Given back by its holder only.
    store.release_watch(T1, "a").unwrap();
    assert!(!store.claim_watch(T1, "c", 3_100, 2_200).unwrap());
    store.release_watch(T1, "b").unwrap();
    assert!(store.claim_watch(T1, "c", 3_100, 2_200).unwrap());
}

pub(crate) fn a_cancel_ends_a_queued_task_and_asks_a_running_one(store: &dyn Backend) {
    let lease = Lease {
        owner: "a".into(),
        until: 1_000,
    };
    let new = || {
        store
            .create_task(
                T1,
                "sync",
                &serde_json::json!({}),
                None,
                None,
                Some(&lease),
                0,
            )
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
        .create_task(T1, "ldap.downsync", &params, None, None, Some(&lease), NOW)
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

pub(crate) fn a_dead_replicas_tasks_are_taken_over_once_and_a_bounded_number_of_times(
    store: &dyn Backend,
) {
    let lease = |owner: &str, until: Timestamp| Lease {
        owner: owner.into(),
        until,
    };
    let request = serde_json::json!({"mode": "full"});
    let task = |owner: &str, request: Option<&serde_json::Value>| {
        let until = if owner == "alive" { 10_000 } else { 100 };
        store
            .create_task(
                T1,
                "ldap.downsync",
                &serde_json::json!({}),
                request,
                None,
                Some(&lease(owner, until)),
                0,
            )
            .unwrap()
    };
    let running = task("dead", Some(&request));
    store
        .update_task(running.id, TaskState::Running, "syncing", None, 10)
        .unwrap();
    assert_eq!(
        store.request_cancel(running.id, 20).unwrap(),
        CancelRequest::Requested
    );
    let queued = task("dead", Some(&request));
    let without_request = task("dead", None);
    let alive = task("alive", Some(&request));
    let ended = task("dead", Some(&request));
    store
        .update_task(ended.id, TaskState::Completed, "done", None, 10)
        .unwrap();

    // Before the lease ran out, nothing is taken; after, the dead replica's tasks with
    // a request, once, whoever asks.
    assert!(
        store
            .take_over_expired(&lease("b", 1_000), 50, 3)
            .unwrap()
            .is_empty()
    );
    let mut taken = store.take_over_expired(&lease("b", 1_000), 150, 3).unwrap();
    taken.sort_by_key(|taken| taken.task.id);
    let ids: Vec<TaskId> = taken.iter().map(|taken| taken.task.id).collect();
    assert_eq!(ids, [running.id, queued.id]);
    for taken in &taken {
        assert_eq!(taken.task.state, TaskState::Queued);
        assert_eq!(taken.request, request);
        assert_eq!(taken.attempts, 1);
        assert!(
            taken.task.message.contains("dead"),
            "{}",
            taken.task.message
        );
    }
    // The dead run's cancel went with it.
    assert!(!store.cancel_requested(running.id).unwrap());
    assert!(
        store
            .take_over_expired(&lease("c", 1_000), 150, 3)
            .unwrap()
            .is_empty()
    );
    // The rest: the task without a request is left to be marked interrupted; the live
    // replica's and the ended one untouched.
    assert_eq!(store.interrupt_expired(150, Some("b")).unwrap(), 1);
    assert_eq!(
        store.task(without_request.id).unwrap().unwrap().state,
        TaskState::Interrupted
    );
    assert_eq!(
        store.task(alive.id).unwrap().unwrap().state,
        TaskState::Queued
    );
    assert_eq!(
        store.task(ended.id).unwrap().unwrap().state,
        TaskState::Completed
    );

    // Taken over again when b dies too, until the bound.
    let again = store
        .take_over_expired(&lease("c", 3_000), 2_000, 2)
        .unwrap();
    assert_eq!(again.len(), 2);
    assert!(again.iter().all(|taken| taken.attempts == 2));
    assert!(
        store
            .take_over_expired(&lease("d", 5_000), 4_000, 2)
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.interrupt_expired(4_000, Some("d")).unwrap(), 2);
}

pub(crate) fn a_task_handed_back_is_taken_over_at_once_by_another_replica(store: &dyn Backend) {
    let lease = |owner: &str| Lease {
        owner: owner.into(),
        until: 10_000,
    };
    let request = serde_json::json!({"mode": "full"});
    let create = |request: Option<&serde_json::Value>| {
        store
            .create_task(
                T1,
                "ldap.downsync",
                &serde_json::json!({}),
                request,
                None,
                Some(&lease("a")),
                0,
            )
            .unwrap()
    };
    let running = create(Some(&request));
    store
        .update_task(running.id, TaskState::Running, "syncing", None, 1)
        .unwrap();
    let without_request = create(None);
    // Only the owner hands back, only what can be run again.
    assert!(!store.hand_back(running.id, "b", 2).unwrap());
    assert!(!store.hand_back(without_request.id, "a", 2).unwrap());
    assert!(store.hand_back(running.id, "a", 2).unwrap());
    assert!(
        !store.hand_back(running.id, "a", 2).unwrap(),
        "no longer a's"
    );
    // a's stop marks what it did not hand back; the handed-back one waits for b,
    // which takes it at once, long before a's leases would have run out.
    assert_eq!(store.interrupt_owned("a", 3).unwrap(), 1);
    let taken = store.take_over_expired(&lease("b"), 4, 2).unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].task.id, running.id);
    assert_eq!(taken[0].task.state, TaskState::Queued);
    assert!(
        taken[0].task.message.contains("handed back"),
        "{}",
        taken[0].task.message
    );

    // Everything a replica holds, at once; what cannot run again is left to mark.
    let queued = create(Some(&request));
    let other = store
        .create_task(
            T1,
            "ldap.downsync",
            &serde_json::json!({}),
            Some(&request),
            None,
            Some(&lease("z")),
            0,
        )
        .unwrap();
    let bare = create(None);
    assert_eq!(store.hand_back_owned("a", 5).unwrap(), 1);
    assert_eq!(store.interrupt_owned("a", 5).unwrap(), 1);
    assert_eq!(
        store.task(bare.id).unwrap().unwrap().state,
        TaskState::Interrupted
    );
    let taken = store.take_over_expired(&lease("b"), 6, 2).unwrap();
    assert_eq!(
        taken.iter().map(|taken| taken.task.id).collect::<Vec<_>>(),
        [queued.id]
    );
    assert_eq!(
        store.task(other.id).unwrap().unwrap().state,
        TaskState::Queued
    );
}

pub(crate) fn the_queue_gives_each_task_to_one_replica_one_task_of_a_tenant_at_a_time(
    store: &dyn Backend,
) {
    let request = serde_json::json!({"mode": "full"});
    let queue = |tenant: TenantId, command: &str| {
        store
            .create_task(
                tenant,
                command,
                &serde_json::json!({}),
                Some(&request),
                None,
                None,
                NOW,
            )
            .unwrap()
            .id
    };
    let lease = |owner: &str| Lease {
        owner: owner.into(),
        until: NOW + 60_000,
    };
    let ids = |taken: Vec<TakenTask>| -> Vec<TaskId> {
        taken.into_iter().map(|taken| taken.task.id).collect()
    };
    let (first, second, other) = (queue(T1, "sync"), queue(T1, "dry-run"), queue(T2, "sync"));
    // Nobody owns a queued task: no sweep takes it for a dead replica's.
    assert_eq!(store.interrupt_expired(NOW + 1, None).unwrap(), 0);
    assert!(
        store
            .take_over_expired(&lease("a"), NOW + 1, 2)
            .unwrap()
            .is_empty()
    );
    // T1's second task waits for its first; room for one takes the oldest.
    assert_eq!(
        ids(store.claim_queued(&lease("a"), NOW, 1).unwrap()),
        [first]
    );
    assert_eq!(
        ids(store.claim_queued(&lease("b"), NOW, 5).unwrap()),
        [other]
    );
    assert!(store.claim_queued(&lease("c"), NOW, 5).unwrap().is_empty());
    let claimed = store.task(first).unwrap().unwrap();
    assert_eq!(claimed.state, TaskState::Queued, "claimed, not yet running");
    // Its owner renews it, and its end lets T1's next task go.
    assert_eq!(store.renew_leases("a", NOW + 120_000).unwrap(), 1);
    assert!(
        store
            .update_task(first, TaskState::Completed, "done", None, NOW)
            .unwrap()
    );
    let taken = store.claim_queued(&lease("c"), NOW, 5).unwrap();
    assert_eq!(ids(taken.clone()), [second]);
    assert_eq!(taken[0].request, request, "what to run comes with it");
    assert_eq!(taken[0].attempts, 0);
    // A cancelled queued task is no longer in the queue.
    let cancelled = queue(T2, "sync");
    assert_eq!(
        store.request_cancel(cancelled, NOW).unwrap(),
        CancelRequest::Cancelled
    );
    assert!(store.claim_queued(&lease("a"), NOW, 5).unwrap().is_empty());
}

pub(crate) fn a_tasks_results_are_kept_in_pages_and_go_with_it(store: &dyn Backend) {
    let lease = Lease {
        owner: "a".into(),
        until: 1_000,
    };
    let task = || {
        let id = store
            .create_task(
                T1,
                "sync",
                &serde_json::json!({}),
                None,
                None,
                Some(&lease),
                0,
            )
            .unwrap()
            .id;
        assert!(
            store
                .update_task(id, TaskState::Running, "", None, 1)
                .unwrap()
        );
        id
    };
    let (id, other) = (task(), task());
    let page = |first: u64, count: u32| ResultPage {
        first,
        count,
        items: format!("[{first}]"),
    };
    for written in [page(0, 3), page(3, 3), page(6, 2)] {
        assert!(
            store
                .add_task_results(id, "a", written.first, written.count, &written.items)
                .unwrap()
        );
    }
    assert!(
        store
            .add_task_results(other, "a", 0, 1, "[\"other\"]")
            .unwrap()
    );
    assert_eq!(
        store.task_results(id, 0, u64::MAX).unwrap(),
        [page(0, 3), page(3, 3), page(6, 2)]
    );
    // The pages holding results 2..4, and 5 alone; none past the end.
    assert_eq!(
        store.task_results(id, 2, 4).unwrap(),
        [page(0, 3), page(3, 3)]
    );
    assert_eq!(store.task_results(id, 5, 6).unwrap(), [page(3, 3)]);
    assert!(store.task_results(id, 8, 100).unwrap().is_empty());
    // Written again (a retried write): replaced, not doubled.
    assert!(
        store
            .add_task_results(id, "a", 3, 3, "[\"again\"]")
            .unwrap()
    );
    assert_eq!(
        store.task_results(id, 3, 4).unwrap()[0].items,
        "[\"again\"]"
    );
    assert_eq!(store.task_results(id, 0, u64::MAX).unwrap().len(), 3);
    // Only by the replica running it: not another's, not once it has ended, not once
    // it is gone (and no error for that).
    assert!(!store.add_task_results(id, "b", 0, 1, "[\"b\"]").unwrap());
    assert_eq!(store.task_results(id, 0, 1).unwrap()[0].items, "[0]");
    assert!(
        store
            .update_task(other, TaskState::Completed, "", None, 2)
            .unwrap()
    );
    assert!(
        !store
            .add_task_results(other, "a", 1, 1, "[\"late\"]")
            .unwrap()
    );
    // Deleted with the task, and only that task's.
    assert!(store.delete_task(id).unwrap());
    assert!(store.task_results(id, 0, u64::MAX).unwrap().is_empty());
    assert!(!store.add_task_results(id, "a", 0, 1, "[\"gone\"]").unwrap());
    assert!(store.task_results(id, 0, u64::MAX).unwrap().is_empty());
    assert_eq!(store.task_results(other, 0, u64::MAX).unwrap().len(), 1);
}
