//! Incremental syncs that see every change, deletions included: RFC 4533 content
//! synchronization against a real slapd with the `syncprov` overlay, the timestamp
//! fallback without it, and marks taken before the read so that a change made while a
//! sync reads is never skipped.

use std::sync::Arc;

use abacsync::ldap::{DirectoryError, DirectorySource, LdapDirectory, ReadRequest, ReadStats};
use abacsync::plugin::model::{Entry, SyncMode};
use abacsync::store::{AuditQuery, SyncState, UserStore};
use abacsync::sync::{Action, Progress, RemovalOutcome, SyncRequest, code};
use abacsync_testkit::directory::{PeopleOptions, group_dn, people_ldif, uid, user_dn};
use abacsync_testkit::slapd::Slapd;
use tokio::sync::mpsc;

use crate::sync::Harness;

const BASE: &str = "dc=example,dc=org";

fn with_syncprov(count: usize, session_log: usize) -> Slapd {
    Slapd::builder()
        .syncprov(Some(session_log))
        .ldif(people_ldif(BASE, count, &PeopleOptions::default()).unwrap())
        .start()
        .unwrap()
}

fn set_city(slapd: &Slapd, index: usize, city: &str) {
    let dn = user_dn(BASE, index);
    slapd
        .modify(&format!(
            "dn: {dn}\nchangetype: modify\nreplace: l\nl: {city}\n"
        ))
        .unwrap();
}

fn city(h: &Harness, index: usize) -> Vec<String> {
    h.user(&uid(index)).fields.attributes["location"]
        .iter()
        .cloned()
        .collect()
}

fn add_person(slapd: &Slapd, name: &str) {
    slapd
        .add(&format!(
            "dn: uid={name},ou=people,{BASE}\nobjectClass: inetOrgPerson\nuid: {name}\ncn: {name}\nsn: {name}\nmail: {name}@example.org\nl: Oslo\n"
        ))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn syncrepl_brings_changes_additions_and_deletions() {
    let h = Harness::new(with_syncprov(20, 1000));
    let first = h.sync(SyncMode::Full).await;
    assert_eq!(first.counts.created, 20);
    let state = h.store.sync_state(1).unwrap();
    let cookie = state
        .sync_cookie
        .expect("a full read keeps the server's cookie");
    assert!(
        String::from_utf8_lossy(&cookie).contains("csn="),
        "{cookie:?}"
    );

    set_city(&h.slapd, 3, "Tokyo");
    h.slapd.delete(&user_dn(BASE, 5)).unwrap();
    add_person(&h.slapd, "newcomer");
    let report = h.sync(SyncMode::Incremental).await;
    assert_eq!(report.mode, "incremental");
    assert_eq!(report.tracking.as_deref(), Some("syncrepl"));
    // Only what changed was read.
    assert_eq!(report.counts.read, 2, "{report:#?}");
    assert_eq!(
        (
            report.counts.created,
            report.counts.updated,
            report.counts.deactivated
        ),
        (1, 1, 1),
        "{report:#?}"
    );
    assert_eq!(
        report.removal,
        RemovalOutcome::Done {
            missing: 1,
            removed: 1
        }
    );
    let gone = report
        .results
        .iter()
        .find(|result| result.username == uid(5))
        .unwrap();
    assert_eq!(
        (gone.code, gone.action),
        (code::REMOVED, Action::Deactivated)
    );
    assert!(
        gone.message.contains("content synchronization"),
        "{}",
        gone.message
    );
    assert!(!h.user(&uid(5)).fields.active);
    assert_eq!(city(&h, 3), ["Tokyo"]);
    assert!(h.user("newcomer").fields.active);
    // The audit trail names the stream.
    let events = h
        .store
        .audit_events(
            1,
            &AuditQuery {
                user_id: Some(h.user(&uid(5)).id),
                ..AuditQuery::default()
            },
        )
        .unwrap();
    assert_eq!(events[0].cause.cause, "sync:incremental/syncrepl:test");

    // Nothing more changed: nothing is read.
    let again = h.sync(SyncMode::Incremental).await;
    assert_eq!(
        (again.counts.read, again.counts.writes()),
        (0, 0),
        "{again:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cookie_older_than_the_session_log_still_finds_every_deletion() {
    // A log of two changes: six changes later, the server cannot replay them and
    // lists the entries still present instead.
    let h = Harness::new(with_syncprov(30, 2));
    h.sync(SyncMode::Full).await;
    for index in [4, 9, 16] {
        h.slapd.delete(&user_dn(BASE, index)).unwrap();
    }
    for index in [1, 2, 3] {
        set_city(&h.slapd, index, "Lima");
    }
    let report = h.sync(SyncMode::Incremental).await;
    assert_eq!(report.tracking.as_deref(), Some("syncrepl"));
    assert_eq!(
        (report.counts.updated, report.counts.deactivated),
        (3, 3),
        "{report:#?}"
    );
    for index in [4, 9, 16] {
        assert!(!h.user(&uid(index)).fields.active);
    }
    assert_eq!(h.users().iter().filter(|u| u.fields.active).count(), 27);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_deletions_over_the_threshold_is_held() {
    let h = Harness::with_config(
        with_syncprov(20, 1000),
        "[tenant.removal]\nmax_count = 2",
        "",
    );
    h.sync(SyncMode::Full).await;
    for index in [1, 2, 3] {
        h.slapd.delete(&user_dn(BASE, index)).unwrap();
    }
    let (report, error) = h
        .sync_with(SyncRequest::new(SyncMode::Incremental, "t", "test"))
        .await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(report.outcome, "refused", "{report:#?}");
    assert!(matches!(
        report.removal,
        RemovalOutcome::Refused { missing: 3, .. }
    ));
    assert!(report.notes.iter().any(|note| note.contains("refused")));
    assert!(h.users().iter().all(|user| user.fields.active));

    // Held, not lost: the cookie stayed, so the next incremental sync sees the same
    // deletions, and a forced one applies them.
    let report = h.sync(SyncMode::Incremental).await;
    assert!(
        matches!(report.removal, RemovalOutcome::Refused { missing: 3, .. }),
        "{report:#?}"
    );
    let mut forced = SyncRequest::new(SyncMode::Incremental, "t", "test");
    forced.force = true;
    let (report, error) = h.sync_with(forced).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(report.mode, "incremental");
    assert_eq!(report.counts.deactivated, 3, "{report:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_syncprov_deletions_wait_for_a_full_sync_and_the_report_says_so() {
    let slapd = Slapd::builder()
        .ldif(people_ldif(BASE, 20, &PeopleOptions::default()).unwrap())
        .start()
        .unwrap();
    let h = Harness::with_config(slapd, "change_attribute = \"entryCSN\"", "");
    h.sync(SyncMode::Full).await;
    assert_eq!(h.store.sync_state(1).unwrap().sync_cookie, None);
    h.slapd.delete(&user_dn(BASE, 2)).unwrap();
    let report = h.sync(SyncMode::Incremental).await;
    assert_eq!(report.tracking.as_deref(), Some("timestamps"));
    assert_eq!(report.removal, RemovalOutcome::NotApplicable);
    assert!(
        report.notes.iter().any(
            |note| note.starts_with("deletions wait for the next full sync")
                && note.contains("syncprov")
        ),
        "{:#?}",
        report.notes
    );
    assert!(h.user(&uid(2)).fields.active);
    let full = h.sync(SyncMode::Full).await;
    assert_eq!(full.counts.deactivated, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mark_from_another_server_runs_a_full_sync_and_says_why() {
    let h = Harness::with_config(
        with_syncprov(5, 1000),
        "change_attribute = \"entryCSN\"\ncontent_sync = false",
        "",
    );
    h.sync(SyncMode::Full).await;
    let state = h.store.sync_state(1).unwrap();
    // OpenLDAP's CSNs are comparable across providers: no origin.
    assert_eq!(state.mark_origin, None);
    assert!(state.high_water_mark.is_some());
    h.store
        .set_sync_state(
            1,
            &SyncState {
                mark_origin: Some("invocationId 00ff".into()),
                ..state
            },
        )
        .unwrap();
    let report = h.sync(SyncMode::Incremental).await;
    assert_eq!(
        (report.requested_mode.as_str(), report.mode.as_str()),
        ("incremental", "full")
    );
    assert!(
        report.notes[0].starts_with("ran as a full sync: the incremental mark cannot be used")
            && report.notes[0].contains("invocationId 00ff"),
        "{:#?}",
        report.notes
    );
    assert_eq!(report.counts.unchanged, 5);
    assert_eq!(h.store.sync_state(1).unwrap().mark_origin, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cookie_the_server_cannot_bring_up_to_date_runs_a_full_sync() {
    // A cookie older than every entry (a directory restored from an older backup,
    // say): the server cannot say what changed since, and as it honours the reload
    // hint, it answers e-syncRefreshRequired rather than sending everything.
    let slapd = Slapd::builder()
        .syncprov(Some(100))
        .syncprov_reload_hint(true)
        .ldif(people_ldif(BASE, 40, &PeopleOptions::default()).unwrap())
        .start()
        .unwrap();
    let h = Harness::new(slapd);
    h.sync(SyncMode::Full).await;
    for index in 0..3 {
        h.slapd.delete(&user_dn(BASE, index)).unwrap();
    }
    let state = h.store.sync_state(1).unwrap();
    let ancient = b"rid=000,csn=19700101000000.000000Z#000000#000#000000".to_vec();
    h.store
        .set_sync_state(
            1,
            &SyncState {
                sync_cookie: Some(ancient.clone()),
                ..state
            },
        )
        .unwrap();
    let report = h.sync(SyncMode::Incremental).await;
    assert_eq!(report.mode, "full", "{report:#?}");
    assert!(
        report.notes[0].starts_with("ran as a full sync: the incremental mark cannot be used")
            && report.notes[0].contains("cookie"),
        "{:#?}",
        report.notes
    );
    assert_eq!(report.counts.deactivated, 3);
    let after = h.store.sync_state(1).unwrap().sync_cookie;
    assert!(after.is_some() && after != Some(ancient));
    // And the next incremental continues from the new cookie.
    h.slapd.delete(&user_dn(BASE, 3)).unwrap();
    let next = h.sync(SyncMode::Incremental).await;
    assert_eq!(
        (next.mode.as_str(), next.counts.deactivated),
        ("incremental", 1)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_with_nothing_new_keeps_the_cookie() {
    let h = Harness::new(with_syncprov(5, 1000));
    h.sync(SyncMode::Full).await;
    for _ in 0..2 {
        let report = h.sync(SyncMode::Incremental).await;
        assert_eq!(report.tracking.as_deref(), Some("syncrepl"));
        assert!(h.store.sync_state(1).unwrap().sync_cookie.is_some());
    }
}

/// Reads through an LDAP directory, and after the first batch of entries reached the
/// sync, changes the first entry (already read) and the last (not read yet).
#[derive(Clone)]
struct ChangesWhileReading {
    inner: LdapDirectory,
    /// The server's URL, admin DN and password.
    admin: Arc<(String, String, String)>,
    last: usize,
}

/// Sets `l` of user `index` over a connection of its own.
async fn set_city_now(admin: &(String, String, String), index: usize, city: &str) {
    let (url, dn, password) = admin;
    let (connection, mut ldap) = ldap3::LdapConnAsync::new(url).await.unwrap();
    ldap3::drive!(connection);
    ldap.simple_bind(dn, password)
        .await
        .unwrap()
        .success()
        .unwrap();
    ldap.modify(
        &user_dn(BASE, index),
        vec![ldap3::Mod::Replace(
            "l",
            std::collections::HashSet::from([city]),
        )],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    ldap.unbind().await.unwrap();
}

impl DirectorySource for ChangesWhileReading {
    async fn read(
        &self,
        request: ReadRequest,
        sink: mpsc::Sender<Vec<Entry>>,
    ) -> Result<ReadStats, DirectoryError> {
        let (sender, mut receiver) = mpsc::channel::<Vec<Entry>>(1);
        let admin = self.admin.clone();
        let last = self.last;
        let forward = async move {
            let mut first = true;
            while let Some(batch) = receiver.recv().await {
                if first {
                    first = false;
                    assert!(batch.iter().any(|entry| entry.dn == user_dn(BASE, 0)));
                    set_city_now(&admin, 0, "Changed early").await;
                    set_city_now(&admin, last, "Changed late").await;
                }
                if sink.send(batch).await.is_err() {
                    break;
                }
            }
        };
        let (stats, ()) = tokio::join!(self.inner.read(request, sender), forward);
        stats
    }
}

async fn a_change_during_a_full_read_is_read_next_time(ldap_extra: &str, tracking: &str) {
    const USERS: usize = 5000;
    let h = Harness::with_config(with_syncprov(USERS, 100_000), ldap_extra, "");
    let password = h.tenant.ldap.bind_password(1).unwrap();
    let directory = ChangesWhileReading {
        inner: LdapDirectory::new(&h.tenant.ldap, password).unwrap(),
        admin: Arc::new((
            h.slapd.url(),
            h.slapd.admin_dn().to_owned(),
            h.slapd.admin_password().to_owned(),
        )),
        last: USERS - 1,
    };
    let (report, error) = h
        .engine
        .run(
            &h.tenant,
            h.plugin.clone(),
            &directory,
            SyncRequest::new(SyncMode::Full, "t", "test"),
            Progress::new(),
        )
        .await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(report.counts.created, USERS as u64);
    // The last entry was read after its change; the first before.
    assert_eq!(city(&h, USERS - 1), ["Changed late"]);
    assert_ne!(city(&h, 0), ["Changed early"]);

    let next = h.sync(SyncMode::Incremental).await;
    assert_eq!(next.tracking.as_deref(), Some(tracking));
    assert_eq!(city(&h, 0), ["Changed early"], "{next:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_during_a_full_read_is_seen_by_the_next_syncrepl_read() {
    a_change_during_a_full_read_is_read_next_time("", "syncrepl").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_during_a_full_read_is_seen_by_the_next_timestamp_read() {
    a_change_during_a_full_read_is_read_next_time(
        "change_attribute = \"entryCSN\"\ncontent_sync = false",
        "timestamps",
    )
    .await;
}

/// A tenant mapping its users' groups (group mode `search`, nested groups) through the
/// settings-map plugin: ABAC attribute `g` holds the CNs of every group a user is in.
fn grouped(ldap_extra: &str) -> Harness {
    let slapd = Slapd::builder()
        .syncprov(Some(1000))
        .ldif(
            people_ldif(
                BASE,
                20,
                &PeopleOptions {
                    groups: 4,
                    nested_groups: true,
                    ..PeopleOptions::default()
                },
            )
            .unwrap(),
        )
        .start()
        .unwrap();
    Harness::with_plugin(
        slapd,
        "settings-map-mapping",
        &[("abac.g", "groups:cn")],
        &format!(
            "{ldap_extra}\n[tenant.ldap.groups]\nmode = \"search\"\nbase_dn = \"ou=groups,{BASE}\""
        ),
        "",
    )
}

fn groups_of(h: &Harness, index: usize) -> Vec<String> {
    h.user(&uid(index)).fields.attributes["g"]
        .iter()
        .cloned()
        .collect()
}

fn add_member(slapd: &Slapd, group: usize, member: &str) {
    slapd
        .modify(&format!(
            "dn: {}\nchangetype: modify\nadd: member\nmember: {member}\n",
            group_dn(BASE, group)
        ))
        .unwrap();
}

/// Groups 1 and 2 are in group 0, group 3 in group 1; user `i` is in group `i % 4`.
async fn a_group_change_reaches_its_members_incrementally(ldap_extra: &str, tracking: &str) {
    let h = grouped(ldap_extra);
    h.sync(SyncMode::Full).await;
    assert_eq!(groups_of(&h, 2), ["group0000", "group0002"]);

    // A user added to a group: the user's entry does not change, the group's does.
    add_member(&h.slapd, 3, &user_dn(BASE, 2));
    let report = h.sync(SyncMode::Incremental).await;
    assert_eq!(report.tracking.as_deref(), Some(tracking));
    assert_eq!(report.counts.updated, 1, "{report:#?}");
    assert_eq!(
        groups_of(&h, 2),
        ["group0000", "group0001", "group0002", "group0003"]
    );

    // A group nested into another: its members gain the other and its parents.
    add_member(&h.slapd, 3, &group_dn(BASE, 2));
    let report = h.sync(SyncMode::Incremental).await;
    assert_eq!(report.counts.updated, 4, "{report:#?}");
    assert_eq!(
        groups_of(&h, 6),
        ["group0000", "group0001", "group0002", "group0003"]
    );
    // The others were not read.
    assert!(report.counts.read < 20, "{report:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_change_reaches_its_members_through_syncrepl() {
    // entryCSN for the groups' check: with modifyTimestamp's whole seconds, every group
    // loaded in the second of the mark would count as changed (read again, harmless,
    // but not what this test looks at).
    a_group_change_reaches_its_members_incrementally("change_attribute = \"entryCSN\"", "syncrepl")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_change_reaches_its_members_through_timestamps() {
    a_group_change_reaches_its_members_incrementally(
        "change_attribute = \"entryCSN\"\ncontent_sync = false",
        "timestamps",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deletions_one_after_another_are_each_seen() {
    let h = Harness::new(with_syncprov(50, 1000));
    h.sync(SyncMode::Full).await;
    for index in 0..20 {
        set_city(&h.slapd, index, "Bern");
        assert_eq!(h.sync(SyncMode::Incremental).await.counts.updated, 1);
    }
    for index in 30..34 {
        h.slapd.delete(&user_dn(BASE, index)).unwrap();
        let report = h.sync(SyncMode::Incremental).await;
        assert_eq!(
            report.counts.deactivated, 1,
            "deleting {index}: {report:#?}"
        );
    }
}
