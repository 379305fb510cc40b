//! Checks of what the store remembers of past work: audit queries, sync state and
//! runs, and the pruning of both.

use super::Backend;
use crate::store::testing::*;
use crate::store::*;

/// A succeeded full run started at `started_at`.
fn run(run_id: &str, started_at: i64) -> SyncRunRecord {
    SyncRunRecord {
        run_id: run_id.into(),
        mode: "full".into(),
        dry_run: false,
        started_at,
        finished_at: started_at + 1_000,
        outcome: "succeeded".into(),
        summary: r#"{"created":3}"#.into(),
    }
}

pub(crate) fn events_filter_and_page_newest_first(store: &dyn Backend) {
    let alice = create(store, T1, fields("alice"));
    let bob = create(store, T1, fields("bob"));
    let mut carol = fields("carol");
    carol.attributes.remove("roles");
    create(store, T1, carol);
    // alice: a new role and a new email (an `updated` event listing `email`).
    let mut new_alice = fields("alice");
    new_alice.email = Some("alice@example.com".into());
    let update = Change::Update {
        id: alice,
        fields: new_alice,
        attribute_changes: vec![AttributeChange {
            key: "roles".into(),
            added: set(&["admin"]),
            removed: set(&[]),
        }],
        avatar: Default::default(),
        mapped: None,
    };
    store.apply(T1, &[update], &cause()).unwrap();
    // Three creations, then alice's update and role.
    let all = store.audit_events(T1, &AuditQuery::default()).unwrap();
    let kinds: Vec<_> = all.iter().map(|event| event.kind).collect();
    assert_eq!(
        kinds,
        [
            AuditKind::Attribute,
            AuditKind::Updated,
            AuditKind::Created,
            AuditKind::Created,
            AuditKind::Created
        ]
    );
    assert!(all.windows(2).all(|pair| pair[0].id > pair[1].id));
    assert_eq!(all[3].user_id, bob);

    let of_alice = AuditQuery {
        user_id: Some(alice),
        ..AuditQuery::default()
    };
    let events = store.audit_events(T1, &of_alice).unwrap();
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|event| event.username == "alice"));

    // A key's events: its attribute events and the creations that set it (not
    // carol's), never an `updated` event listing a field of that name.
    let of_key = |key: &str| {
        let query = AuditQuery {
            key: Some(key.into()),
            ..AuditQuery::default()
        };
        store.audit_events(T1, &query).unwrap()
    };
    let roles: Vec<_> = of_key("roles")
        .iter()
        .map(|event| (event.kind, event.username.clone()))
        .collect();
    assert_eq!(
        roles,
        [
            (AuditKind::Attribute, "alice".to_owned()),
            (AuditKind::Created, "bob".to_owned()),
            (AuditKind::Created, "alice".to_owned()),
        ]
    );
    assert_eq!(of_key("department").len(), 3);
    assert!(of_key("email").is_empty());
    assert!(of_key("role").is_empty());

    let first_page = AuditQuery {
        limit: Some(3),
        ..AuditQuery::default()
    };
    let page = store.audit_events(T1, &first_page).unwrap();
    assert_eq!(page.len(), 3);
    let next = AuditQuery {
        before: Some(page[2].id),
        ..AuditQuery::default()
    };
    let rest = store.audit_events(T1, &next).unwrap();
    assert_eq!(rest.len(), 2);
    assert_eq!([page, rest].concat(), all);
}

pub(crate) fn the_limit_is_capped(store: &dyn Backend) {
    let users: Vec<_> = (0..1200).map(|n| fields(&format!("user{n}"))).collect();
    create_many(store, T1, users);
    let huge = AuditQuery {
        limit: Some(5000),
        ..AuditQuery::default()
    };
    assert_eq!(store.audit_events(T1, &huge).unwrap().len(), 1000);
    let default = store.audit_events(T1, &AuditQuery::default()).unwrap();
    assert_eq!(default.len(), 100);
}

pub(crate) fn runs_beyond_the_number_kept_are_pruned(store: &dyn Backend) {
    for at in 1..=5 {
        store
            .record_sync_run(T1, &run(&format!("r{at}"), at))
            .unwrap();
    }
    store.record_sync_run(T2, &run("other", 1)).unwrap();
    let limits = HistoryLimits {
        events_before: None,
        max_events: 1000,
        max_runs: 2,
    };
    // Once, the SQLite store locked its writer twice here and waited for ever: a
    // deadlock ends the test binary rather than hanging it.
    std::thread::scope(|scope| {
        let (done, finished) = std::sync::mpsc::channel();
        scope.spawn(move || {
            let pruned = store.prune_history(T1, &limits);
            let _ = done.send(pruned);
        });
        match finished.recv_timeout(std::time::Duration::from_secs(30)) {
            Ok(pruned) => assert_eq!(pruned.unwrap(), 0, "no audit events were due"),
            Err(_) => {
                eprintln!("pruning the runs did not end within 30 s: a deadlock");
                std::process::abort();
            }
        }
    });
    let kept: Vec<String> = store
        .sync_runs(T1, 10)
        .unwrap()
        .into_iter()
        .map(|run| run.run_id)
        .collect();
    assert_eq!(kept, ["r5", "r4"]);
    assert_eq!(store.sync_runs(T2, 10).unwrap().len(), 1);
}

pub(crate) fn history_is_pruned_by_count_and_by_age_oldest_first(store: &dyn Backend) {
    // 30 users created at times 1..=30: one event each.
    for at in 1..=30 {
        let change = Change::Create {
            fields: fields(&format!("user{at}")),
            avatar: None,
            mapped: None,
        };
        store.apply(T1, &[change], &cause_at(at)).unwrap();
    }
    create(store, T2, fields("other"));
    let events = |tenant| {
        store
            .audit_events(
                tenant,
                &AuditQuery {
                    limit: Some(1000),
                    ..AuditQuery::default()
                },
            )
            .unwrap()
    };
    let limits = HistoryLimits {
        events_before: None,
        max_events: 20,
        max_runs: 1000,
    };
    assert_eq!(store.prune_history(T1, &limits).unwrap(), 10);
    let kept = events(T1);
    assert_eq!(kept.len(), 20);
    assert_eq!(kept.last().unwrap().cause.at, 11, "the oldest went");
    // By age: everything before time 16.
    let limits = HistoryLimits {
        events_before: Some(16),
        ..limits
    };
    assert_eq!(store.prune_history(T1, &limits).unwrap(), 5);
    assert_eq!(events(T1).last().unwrap().cause.at, 16);
    assert_eq!(store.prune_history(T1, &limits).unwrap(), 0);
    // The other tenant's history is its own.
    assert_eq!(events(T2).len(), 1);
}

pub(crate) fn state_defaults_then_upserts(store: &dyn Backend) {
    assert_eq!(store.sync_state(T1).unwrap(), SyncState::default());

    let first = SyncState {
        high_water_mark: Some("20250101000000Z".into()),
        mark_origin: Some("invocationId 0f1e".into()),
        sync_cookie: None,
        last_full_sync_at: Some(NOW),
        last_success_at: Some(NOW),
    };
    store.set_sync_state(T1, &first).unwrap();
    assert_eq!(store.sync_state(T1).unwrap(), first);

    // A cookie is bytes, any bytes.
    let second = SyncState {
        high_water_mark: None,
        mark_origin: None,
        sync_cookie: Some(b"rid=000,csn=20261207115000.123456Z#000000#000#000000\0\xff".to_vec()),
        last_full_sync_at: None,
        last_success_at: Some(NOW + 5),
    };
    store.set_sync_state(T1, &second).unwrap();
    assert_eq!(store.sync_state(T1).unwrap(), second);
    assert_eq!(store.sync_state(T2).unwrap(), SyncState::default());
}

pub(crate) fn runs_are_listed_newest_first_per_tenant(store: &dyn Backend) {
    let first = store.record_sync_run(T1, &run("a", NOW)).unwrap();
    let mut dry = run("b", NOW + 10);
    dry.dry_run = true;
    dry.outcome = "failed".into();
    let second = store.record_sync_run(T1, &dry).unwrap();
    store.record_sync_run(T2, &run("other", NOW)).unwrap();
    assert!(second > first);

    assert_eq!(
        store.sync_runs(T1, 10).unwrap(),
        [dry.clone(), run("a", NOW)]
    );
    assert_eq!(store.sync_runs(T1, 1).unwrap(), [dry]);
    assert_eq!(store.sync_runs(T2, 10).unwrap(), [run("other", NOW)]);
    assert!(store.sync_runs(3, 10).unwrap().is_empty());
}
