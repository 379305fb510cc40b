//! Syncs from a real Active Directory domain controller: Samba's AD DC, provisioned by
//! the testkit once per test binary (each test keeps to an OU of its own). objectGUIDs
//! as bytes end to end, nested groups checked against the DC's own transitive
//! membership (the matching rule in chain), a group of 1,600 members, disabled
//! accounts, non-ASCII and escaped DNs, thumbnailPhoto, LDAPS and StartTLS with a
//! private CA, deletions through tombstones, group changes and renames seen
//! incrementally, a change made during a full read, the domain root as base, and bind
//! errors in Active Directory's words.
//!
//! Range retrieval of large groups and a DC dying mid-search stay with the protocol
//! fake (`active_directory.rs`): Samba returns every value of a large attribute at
//! once, and the DC here is shared.

use std::sync::Arc;

use abacsync::config::TenantConfig;
use abacsync::ldap::{DirectoryError, DirectorySource, LdapDirectory, ReadRequest, ReadStats};
use abacsync::plugin::TenantPlugin;
use abacsync::plugin::model::{Entry, SyncMode};
use abacsync::store::{SqliteStore, StoredUser, UserQuery, UserStore};
use abacsync::sync::{Progress, RemovalOutcome, SyncEngine, SyncError, SyncReport, SyncRequest};
use abacsync_guest::guid::format_guid;
use abacsync_testkit::samba::{ADMIN_DN, ADMIN_PASSWORD, DOMAIN_DN, SambaDc};
use abacsync_testkit::{in_ci, plugins};
use sha2::Digest as _;
use tokio::sync::mpsc;

use crate::sync::TenantParts;

/// The shared DC, or `None` (with the reason printed) where it cannot run outside CI.
fn dc() -> Option<&'static SambaDc> {
    match SambaDc::shared() {
        Ok(dc) => Some(dc),
        Err(err) if !in_ci() => {
            eprintln!("skipped: no Samba AD DC: {err}");
            None
        }
        Err(err) => panic!("no Samba AD DC: {err}"),
    }
}

fn ou(name: &str) -> String {
    format!("OU={name},{DOMAIN_DN}")
}

/// A user, enabled (`userAccountControl` 512) unless `extra` says otherwise; without a
/// password unless `extra` gives one (the domain's policy allows it).
fn person(dn: &str, sam: &str, extra: &str) -> String {
    let control = if extra.contains("userAccountControl:") {
        ""
    } else {
        "userAccountControl: 512\n"
    };
    format!(
        "dn: {dn}\nobjectClass: user\nsAMAccountName: {sam}\nuserPrincipalName: {sam}@abac.test\n\
         {control}{extra}\n"
    )
}

fn group(dn: &str, members: &[String]) -> String {
    let mut ldif = format!("dn: {dn}\nobjectClass: group\n");
    for member in members {
        ldif.push_str(&format!("member: {member}\n"));
    }
    ldif.push('\n');
    ldif
}

struct Domain {
    dc: &'static SambaDc,
    tenant: TenantConfig,
    store: Arc<SqliteStore>,
    plugin: Arc<TenantPlugin>,
    engine: SyncEngine,
    _dir: tempfile::TempDir,
}

impl Domain {
    /// A tenant reading `base` through `connection` (`servers`, `tls`, `ca_file`), with
    /// `extra` lines in `[tenant.ldap]` and `groups` as its `[tenant.ldap.groups]`.
    fn new(dc: &'static SambaDc, base: &str, connection: &str, extra: &str, groups: &str) -> Self {
        let plugin_path = plugins::component("active-directory-mapping");
        let text = format!(
            r#"
            [[tenant]]
            id = 1
            sync_avatars = true
            plugin = {{ path = "{plugin}" }}
            [tenant.ldap]
            {connection}
            bind_dn = "{ADMIN_DN}"
            bind_password = "{ADMIN_PASSWORD}"
            base_dn = "{base}"
            user_filter = "(&(objectCategory=person)(objectClass=user))"
            page_size = 500
            change_attribute = "uSNChanged"
            {extra}
            [tenant.ldap.groups]
            {groups}
            "#,
            plugin = plugin_path.display(),
        );
        let parts = TenantParts::new(&text, "active-directory-mapping", &[]);
        Self {
            dc,
            tenant: parts.tenant,
            store: parts.store,
            plugin: parts.plugin,
            engine: parts.engine,
            _dir: parts.dir,
        }
    }

    fn plain(dc: &'static SambaDc, base: &str, extra: &str, groups: &str) -> Self {
        let connection = format!("servers = [\"{}\"]\ntls = \"plain\"", dc.url());
        Self::new(dc, base, &connection, extra, groups)
    }

    fn directory(&self) -> LdapDirectory {
        let password = self.tenant.ldap.bind_password(1).unwrap();
        LdapDirectory::new(&self.tenant.ldap, password).unwrap()
    }

    async fn sync_with(
        &self,
        directory: &(impl DirectorySource + Clone + 'static),
        request: SyncRequest,
    ) -> (SyncReport, Option<SyncError>) {
        self.engine
            .run(
                &self.tenant,
                self.plugin.clone(),
                directory,
                request,
                Progress::new(),
            )
            .await
    }

    async fn sync(&self, mode: SyncMode) -> SyncReport {
        let (report, error) = self
            .sync_with(&self.directory(), SyncRequest::new(mode, "t", "test"))
            .await;
        assert!(error.is_none(), "{error:?}\n{report:#?}");
        report
    }

    fn user(&self, name: &str) -> StoredUser {
        self.store
            .users_by_usernames(1, &[name.to_owned()])
            .unwrap()
            .pop()
            .unwrap_or_else(|| panic!("no user {name}"))
    }

    fn groups(&self, name: &str) -> Vec<String> {
        self.user(name)
            .fields
            .attributes
            .get("groups")
            .map(|groups| groups.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn active_users(&self) -> Vec<StoredUser> {
        let mut query = UserQuery {
            active: Some(true),
            limit: Some(1000),
            ..UserQuery::default()
        };
        let mut users = Vec::new();
        loop {
            let page = self.store.list_users(1, &query).unwrap();
            let full = page.len() == 1000;
            query.after = page.last().map(|user| user.id);
            users.extend(page);
            if !full {
                return users;
            }
        }
    }

    fn guid_id(&self, dn: &str) -> String {
        format_guid(&self.dc.guid(dn).unwrap()).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_domain_controller_over_ldaps_gives_guids_nested_groups_names_and_photos() {
    const STAFF: usize = 1_600;
    let Some(dc) = dc() else { return };
    let base = ou("Big Staff");
    let mut ldif = format!("dn: {base}\nobjectClass: organizationalUnit\n\n");
    let mut members = Vec::new();
    for i in 0..STAFF {
        let dn = format!("CN=staff.{i:04},{base}");
        // Staff 3 is disabled (512 + 2).
        let extra = if i == 3 {
            "userAccountControl: 514\n".to_owned()
        } else {
            format!("department: Dept {}\n", i % 7)
        };
        ldif.push_str(&person(&dn, &format!("bs{i:04}"), &extra));
        members.push(dn);
    }
    // Non-ASCII, an escaped comma, and a photo with bytes that are no UTF-8.
    let photo: Vec<u8> = (0..=255u8).rev().chain(0..=255u8).collect();
    let mueller = format!("CN=Müller\\, Jörg,{base}");
    ldif.push_str(&person(
        &mueller,
        "jmueller",
        &format!(
            "displayName: Jörg Müller\ngivenName: Jörg\nmail: jörg@abac.test\nthumbnailPhoto:: {}\n",
            base64(&photo)
        ),
    ));
    // A leading `#` and a `+`, escaped.
    let hash = format!("CN=\\#1 Ops\\+Dev,{base}");
    ldif.push_str(&person(&hash, "opsdev", ""));
    members.push(mueller.clone());
    members.push(hash.clone());
    let everyone = format!("CN=Everyone,{base}");
    let all_staff = format!("CN=All Staff,{base}");
    ldif.push_str(&group(&everyone, &members));
    ldif.push_str(&group(&all_staff, std::slice::from_ref(&everyone)));
    dc.add(&ldif).unwrap();

    let connection = format!(
        "servers = [\"{}\"]\ntls = \"ldaps\"\nca_file = \"{}\"",
        dc.ldaps_url(),
        dc.ca_file().display()
    );
    let groups =
        format!("mode = \"search\"\nbase_dn = \"{base}\"\nfilter = \"(objectClass=group)\"");
    let d = Domain::new(dc, &base, &connection, "", &groups);
    let report = d.sync(SyncMode::Full).await;
    let users = STAFF as u64 + 2;
    assert_eq!(report.counts.read, users, "{:?}", report.counts);
    // The disabled account never existed here: nothing to deactivate.
    assert_eq!(report.counts.created, users - 1, "{:?}", report.counts);
    assert_eq!(report.counts.skipped, 1);
    assert!(report.searches <= 4, "{} searches", report.searches);
    assert!(
        matches!(report.removal, RemovalOutcome::Done { .. }),
        "{:?}",
        report.removal
    );

    // The GUID, byte-exact from the DC, is the stable id; the DN keeps its escapes.
    let user = d.user("jmueller");
    assert_eq!(user.fields.ldap_id, Some(d.guid_id(&mueller)));
    assert_eq!(user.fields.ldap_dn.as_deref(), Some(mueller.as_str()));
    assert_eq!(user.fields.display_name.as_deref(), Some("Jörg Müller"));
    assert_eq!(user.fields.email.as_deref(), Some("jörg@abac.test"));
    let sha = sha2::Sha256::digest(&photo);
    let sha: String = sha.iter().map(|byte| format!("{byte:02x}")).collect();
    assert_eq!(user.avatar_sha256.as_deref(), Some(sha.as_str()));
    assert_eq!(
        d.user("opsdev").fields.ldap_dn.as_deref(),
        Some(hash.as_str())
    );
    assert_eq!(d.user("opsdev").fields.ldap_id, Some(d.guid_id(&hash)));
    assert_eq!(d.groups("bs0042"), ["All Staff", "Everyone"]);
    assert_eq!(
        d.user("bs0042").fields.attributes["department"]
            .iter()
            .collect::<Vec<_>>(),
        ["Dept 0"]
    );

    // Nesting resolved here agrees with the DC's own transitive membership.
    let chain = dc
        .search(
            &base,
            "sub",
            &format!(
                "(&(objectCategory=person)(objectClass=user)(!(userAccountControl:1.2.840.113556.1.4.803:=2))(memberOf:1.2.840.113556.1.4.1941:={all_staff}))"
            ),
            &["sAMAccountName"],
        )
        .unwrap();
    let mut in_chain: Vec<String> = chain
        .lines()
        .filter_map(|line| line.strip_prefix("sAMAccountName: "))
        .map(str::to_owned)
        .collect();
    in_chain.sort();
    let mut ours: Vec<String> = d
        .active_users()
        .into_iter()
        .filter(|user| {
            user.fields
                .attributes
                .get("groups")
                .is_some_and(|groups| groups.contains("All Staff"))
        })
        .map(|user| user.fields.username)
        .collect();
    ours.sort();
    assert_eq!(ours.len(), STAFF + 1);
    assert_eq!(ours, in_chain);

    // memberOf mode: the DC's back-link holds direct memberships only.
    let direct = Domain::new(dc, &base, &connection, "", "mode = \"memberof\"");
    let report = direct.sync(SyncMode::Full).await;
    assert_eq!(report.counts.created, users - 1);
    assert_eq!(direct.groups("bs0042"), ["Everyone"]);
}

/// Standard base64, for LDIF.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, byte)| n | (u32::from(*byte) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn changes_ou(dc: &SambaDc, name: &str, count: usize, prefix: &str) -> String {
    let base = ou(name);
    let mut ldif = format!("dn: {base}\nobjectClass: organizationalUnit\n\n");
    for i in 0..count {
        ldif.push_str(&person(
            &format!("CN={prefix}.{i:04},{base}"),
            &format!("{prefix}{i:04}"),
            "department: Start\n",
        ));
    }
    dc.add(&ldif).unwrap();
    base
}

#[tokio::test(flavor = "multi_thread")]
async fn incremental_syncs_see_deletions_group_changes_renames_and_disabled_accounts() {
    let Some(dc) = dc() else { return };
    let base = changes_ou(dc, "Changes", 20, "ch");
    let dn = |i: usize| format!("CN=ch.{i:04},{base}");
    let team = format!("CN=Team,{base}");
    dc.add(&group(&team, &(0..5).map(dn).collect::<Vec<_>>()))
        .unwrap();
    let groups =
        format!("mode = \"search\"\nbase_dn = \"{base}\"\nfilter = \"(objectClass=group)\"");
    let d = Domain::plain(dc, &base, "", &groups);
    let report = d.sync(SyncMode::Full).await;
    assert_eq!(report.counts.created, 20);
    assert_eq!(d.groups("ch0000"), ["Team"]);
    let renamed_id = d.user("ch0009").fields.ldap_id;

    // A change, a disabled account, a deletion, a member added to a group, a group
    // nested into a new one, and a rename.
    dc.modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: department\ndepartment: Sales\n",
        dn(5)
    ))
    .unwrap();
    dc.modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: 514\n",
        dn(6)
    ))
    .unwrap();
    dc.delete(&dn(7)).unwrap();
    dc.modify(&format!(
        "dn: {team}\nchangetype: modify\nadd: member\nmember: {}\n",
        dn(8)
    ))
    .unwrap();
    dc.add(&group(
        &format!("CN=Division,{base}"),
        std::slice::from_ref(&team),
    ))
    .unwrap();
    dc.modify(&format!(
        "dn: {}\nchangetype: modrdn\nnewrdn: CN=ch.0009 Renamed\ndeleteoldrdn: 1\n",
        dn(9)
    ))
    .unwrap();

    let report = d.sync(SyncMode::Incremental).await;
    assert_eq!(report.mode, "incremental");
    assert_eq!(report.tracking.as_deref(), Some("tombstones"));
    assert!(
        !report
            .notes
            .iter()
            .any(|note| note.contains("deletions wait")),
        "{:?}",
        report.notes
    );
    // Not the whole OU: the changed entries and the members of changed groups.
    assert!(report.counts.read < 15, "{:?}", report.counts);
    assert_eq!(report.counts.deactivated, 2, "{:?}", report.results);
    let deleted = report
        .results
        .iter()
        .find(|result| result.username == "ch0007")
        .expect("the deleted user's result");
    assert_eq!(deleted.code, 410);
    assert!(deleted.message.contains("tombstone"), "{}", deleted.message);
    assert!(!d.user("ch0007").fields.active);
    assert!(!d.user("ch0006").fields.active);
    assert!(
        d.user("ch0005").fields.attributes["department"].contains("Sales"),
        "{report:#?}"
    );
    assert_eq!(d.groups("ch0008"), ["Division", "Team"]);
    assert_eq!(d.groups("ch0000"), ["Division", "Team"]);
    let renamed = d.user("ch0009");
    assert_eq!(renamed.fields.ldap_id, renamed_id);
    assert_eq!(
        renamed.fields.ldap_dn.as_deref(),
        Some(format!("CN=ch.0009 Renamed,{base}").as_str())
    );
    assert_eq!(d.active_users().len(), 18);

    // Nothing new: nothing read but the entry at the mark, nobody removed.
    let report = d.sync(SyncMode::Incremental).await;
    assert_eq!(report.counts.deactivated, 0, "{:?}", report.counts);
    assert_eq!(report.counts.writes(), 0, "{:?}", report.counts);
}

/// A member removed from a group, and a group removed from another, reach the members
/// through DirSync's incremental values: their entries did not change.
async fn members_removed_from_groups_lose_them_incrementally(name: &str, prefix: &str, mode: &str) {
    let Some(dc) = dc() else { return };
    let base = changes_ou(dc, name, 6, prefix);
    let dn = |i: usize| format!("CN={prefix}.{i:04},{base}");
    let team = format!("CN=Team,{base}");
    let division = format!("CN=Division,{base}");
    // The administrator, a member from outside the tenant's base, is never read.
    let mut members: Vec<String> = (0..3).map(dn).collect();
    members.push(ADMIN_DN.to_owned());
    dc.add(&group(&team, &members)).unwrap();
    dc.add(&group(&division, &[team.clone(), dn(5)])).unwrap();
    let groups =
        format!("mode = \"{mode}\"\nbase_dn = \"{base}\"\nfilter = \"(objectClass=group)\"");
    let d = Domain::plain(dc, &base, "", &groups);
    d.sync(SyncMode::Full).await;
    let user = |i: usize| format!("{prefix}{i:04}");
    let nested = if mode == "search" {
        vec!["Division", "Team"]
    } else {
        vec!["Team"]
    };
    assert_eq!(d.groups(&user(0)), nested);
    assert_eq!(d.groups(&user(1)), nested);
    assert_eq!(d.groups(&user(5)), ["Division"]);

    dc.modify(&format!(
        "dn: {team}\nchangetype: modify\ndelete: member\nmember: {}\n",
        dn(1)
    ))
    .unwrap();
    dc.modify(&format!(
        "dn: {division}\nchangetype: modify\ndelete: member\nmember: {team}\n"
    ))
    .unwrap();
    let report = d.sync(SyncMode::Incremental).await;
    assert_eq!(report.mode, "incremental");
    assert!(report.notes.is_empty(), "{:?}", report.notes);
    assert_eq!(d.groups(&user(1)), Vec::<String>::new(), "{report:#?}");
    assert_eq!(d.groups(&user(0)), ["Team"]);
    assert_eq!(d.groups(&user(5)), ["Division"]);
    // Members of untouched groups are not read again, nor members from elsewhere.
    assert!(report.counts.read <= 4, "{:?}", report.counts);
    assert_eq!(report.counts.created, 0, "{:#?}", report.results);

    // A group renamed: no member value changed, its change attribute did.
    dc.modify(&format!(
        "dn: {team}\nchangetype: modrdn\nnewrdn: CN=Crew\ndeleteoldrdn: 1\n"
    ))
    .unwrap();
    let report = d.sync(SyncMode::Incremental).await;
    assert_eq!(d.groups(&user(0)), ["Crew"], "{report:#?}");

    // A group deleted: its tombstone keeps no members, so who was in it takes a full
    // read, which the sync becomes, and says why.
    dc.delete(&division).unwrap();
    let report = d.sync(SyncMode::Incremental).await;
    assert_eq!(report.mode, "full");
    assert!(
        report.notes[0].contains("was deleted, and a deleted group keeps no members"),
        "{:?}",
        report.notes
    );
    assert_eq!(d.groups(&user(5)), Vec::<String>::new(), "{report:#?}");
    assert_eq!(d.groups(&user(0)), ["Crew"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn members_removed_from_groups_lose_them_incrementally_in_search_mode() {
    members_removed_from_groups_lose_them_incrementally("Removals S", "rs", "search").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn members_removed_from_groups_lose_them_incrementally_in_memberof_mode() {
    members_removed_from_groups_lose_them_incrementally("Removals M", "rm", "memberof").await;
}

/// Reads through an LDAP directory in small batches, and once the first batch reached
/// the sync, changes an entry of that batch (already read) and the entry the DC returns
/// last (not read yet: the read is held back by the batches waiting).
#[derive(Clone)]
struct ChangesWhileReading {
    inner: LdapDirectory,
    dc: &'static SambaDc,
    /// The DN the DC returns last.
    last: String,
    /// The entries changed: read early, read late.
    changed: Arc<std::sync::Mutex<Option<(String, String)>>>,
}

impl DirectorySource for ChangesWhileReading {
    async fn read(
        &self,
        mut request: ReadRequest,
        sink: mpsc::Sender<Vec<Entry>>,
    ) -> Result<ReadStats, DirectoryError> {
        request.batch_size = 50;
        let (sender, mut receiver) = mpsc::channel::<Vec<Entry>>(1);
        let forward = async move {
            while let Some(batch) = receiver.recv().await {
                let first = self.changed.lock().unwrap().is_none();
                if first {
                    let early = batch[0].dn.clone();
                    let late = self.last.clone();
                    assert!(!batch.iter().any(|entry| entry.dn == late));
                    for (dn, value) in [(&early, "Changed early"), (&late, "Changed late")] {
                        let dc = self.dc;
                        let ldif = format!(
                            "dn: {dn}\nchangetype: modify\nreplace: department\ndepartment: {value}\n"
                        );
                        tokio::task::spawn_blocking(move || dc.modify(&ldif))
                            .await
                            .unwrap()
                            .unwrap();
                    }
                    *self.changed.lock().unwrap() = Some((early, late));
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

#[tokio::test(flavor = "multi_thread")]
async fn a_change_during_a_full_read_is_read_by_the_next_incremental() {
    const USERS: usize = 1_000;
    let Some(dc) = dc() else { return };
    let base = changes_ou(dc, "Race", USERS, "rc");
    let mut d = Domain::plain(dc, &base, "", "mode = \"none\"");
    d.tenant.ldap.page_size = 50;
    // The DC's order (its index's, not the order of creation).
    let order = dc
        .search(&base, "sub", &d.tenant.ldap.user_filter, &["1.1"])
        .unwrap();
    let last = order
        .lines()
        .filter_map(|line| line.strip_prefix("dn: "))
        .next_back()
        .unwrap()
        .to_owned();
    let directory = ChangesWhileReading {
        inner: d.directory(),
        dc,
        last,
        changed: Arc::default(),
    };
    let (report, error) = d
        .sync_with(&directory, SyncRequest::new(SyncMode::Full, "t", "test"))
        .await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(report.counts.created, USERS as u64);
    let (early, late) = directory.changed.lock().unwrap().clone().unwrap();
    let name = |dn: &str| {
        let cn = dn.split(',').next().unwrap().trim_start_matches("CN=");
        cn.replace('.', "")
    };
    let department = |dn: &str| -> Vec<String> {
        d.user(&name(dn)).fields.attributes["department"]
            .iter()
            .cloned()
            .collect()
    };
    assert_eq!(department(&late), ["Changed late"]);
    assert_eq!(department(&early), ["Start"]);

    // The mark was taken before the search: the entry changed after it was read is
    // read again (the highest uSNChanged read would have skipped it).
    let report = d.sync(SyncMode::Incremental).await;
    assert_eq!(report.mode, "incremental");
    assert_eq!(department(&early), ["Changed early"], "{report:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_domain_root_as_base_still_removes_and_says_what_it_did() {
    let Some(dc) = dc() else { return };
    let base = ou("Root Base");
    let mut ldif = format!("dn: {base}\nobjectClass: organizationalUnit\n\n");
    for i in 0..3 {
        ldif.push_str(&person(
            &format!("CN=rb.{i},{base}"),
            &format!("rb{i}"),
            "department: Root Base\n",
        ));
    }
    dc.add(&ldif).unwrap();
    // The whole domain, narrowed by the filter: the search meets the DC's references
    // to its Configuration (and DNS) partitions.
    let mut d = Domain::plain(dc, DOMAIN_DN, "", "mode = \"none\"");
    d.tenant.ldap.user_filter =
        "(&(objectCategory=person)(objectClass=user)(department=Root Base))".into();
    d.tenant.removal.max_percent = None;
    let report = d.sync(SyncMode::Full).await;
    assert_eq!(report.counts.created, 3);
    assert!(report.partition_references >= 1, "{report:#?}");
    assert_eq!(report.references, 0);
    dc.delete(&format!("CN=rb.1,{base}")).unwrap();
    let report = d.sync(SyncMode::Full).await;
    assert_eq!(
        report.removal,
        RemovalOutcome::Done {
            missing: 1,
            removed: 1
        }
    );
    assert!(!d.user("rb1").fields.active);
}

#[tokio::test(flavor = "multi_thread")]
async fn bind_errors_from_a_real_dc_are_told_in_active_directorys_words() {
    let Some(dc) = dc() else { return };
    let base = ou("Binds");
    // unicodePwd: the password in quotes, UTF-16LE, set over LDAPS.
    let password: Vec<u8> = "\"Sync-Pass-1\""
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let mut ldif = format!("dn: {base}\nobjectClass: organizationalUnit\n\n");
    for (name, extra) in [
        ("svc-ok", String::new()),
        ("svc-off", "userAccountControl: 514\n".into()),
        // Expired in 1601 (one 100-ns interval after AD's epoch).
        ("svc-old", "accountExpires: 1\n".into()),
    ] {
        ldif.push_str(&person(
            &format!("CN={name},{base}"),
            name,
            &format!("unicodePwd:: {}\n{extra}", base64(&password)),
        ));
    }
    dc.add(&ldif).unwrap();
    let bind = |name: &str, password: &str| {
        let connection = format!(
            "servers = [\"{}\"]\ntls = \"starttls\"\nca_file = \"{}\"",
            dc.url(),
            dc.ca_file().display()
        );
        let d = Domain::new(dc, &base, &connection, "", "mode = \"none\"");
        let mut ldap = d.tenant.ldap.clone();
        ldap.bind_dn = Some(format!("CN={name},{base}"));
        LdapDirectory::new(&ldap, Some(password.to_owned())).unwrap()
    };
    let server = bind("svc-ok", "Sync-Pass-1").test_connection().await;
    assert!(server.is_ok(), "{server:?}");
    for (name, password, code, words) in [
        ("svc-ok", "wrong", "52e", "invalid credentials"),
        ("svc-off", "Sync-Pass-1", "533", "account disabled"),
        ("svc-old", "Sync-Pass-1", "701", "account expired"),
    ] {
        let err = bind(name, password)
            .test_connection()
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!(": {words}: ")) && err.contains(&format!("data {code}")),
            "{name}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_on_a_real_dc_applies_changes_and_deletions_as_they_happen() {
    let Some(dc) = dc() else { return };
    let base = changes_ou(dc, "Watched", 5, "wt");
    let mut d = Domain::plain(dc, &base, "watch = true", "mode = \"none\"");
    // One of five users deleted is over the default threshold (10%).
    d.tenant.removal.max_percent = None;
    let d = Arc::new(d);
    d.sync(SyncMode::Full).await;
    let (reports, mut received) = mpsc::unbounded_channel::<SyncReport>();
    let directory = d.directory();
    let watcher = {
        let d = d.clone();
        tokio::spawn(async move {
            abacsync::sync::watch_session(
                &directory,
                || async { true },
                || {
                    let d = d.clone();
                    let reports = reports.clone();
                    async move {
                        let report = d.sync(SyncMode::Incremental).await;
                        let found = abacsync::sync::found_changes(&report);
                        let _ = reports.send(report);
                        found
                    }
                },
            )
            .await
        })
    };
    let next = async |received: &mut mpsc::UnboundedReceiver<SyncReport>| {
        tokio::time::timeout(std::time::Duration::from_secs(60), received.recv())
            .await
            .expect("a sync within a minute")
            .expect("the watch goes on")
    };
    // The first sync: what changed while nobody watched (nothing).
    let first = next(&mut received).await;
    assert_eq!(first.tracking.as_deref(), Some("tombstones"));

    // A change, then a deletion: each announced by the DC and synced.
    let started = std::time::Instant::now();
    dc.modify(&format!(
        "dn: CN=wt.0001,{base}\nchangetype: modify\nreplace: department\ndepartment: Watched\n"
    ))
    .unwrap();
    while !d.user("wt0001").fields.attributes["department"].contains("Watched") {
        next(&mut received).await;
    }
    let changed_after = started.elapsed();
    let started = std::time::Instant::now();
    dc.delete(&format!("CN=wt.0002,{base}")).unwrap();
    while d.user("wt0002").fields.active {
        next(&mut received).await;
    }
    let deleted_after = started.elapsed();
    eprintln!(
        "watched on Samba: a change synced after {changed_after:?}, a deletion after {deleted_after:?}"
    );
    assert!(!watcher.is_finished(), "{:?}", watcher.await);
    watcher.abort();
}
