//! Real syncs: a real slapd on a loopback port, the OpenLDAP plugin compiled from
//! `plugins/openldap`, a SQLite store in a temporary folder.

use std::path::Path;
use std::sync::Arc;

use abacsync::config::{Config, TenantConfig};
use abacsync::ldap::LdapDirectory;
use abacsync::plugin::model::SyncMode;
use abacsync::plugin::{PluginEngine, PluginRegistry, SandboxConfig, TenantPlugin};
use abacsync::store::{AuditKind, AuditQuery, SqliteStore, UserIdentifiers, UserQuery, UserStore};
use abacsync::sync::{
    Action, Progress, RemovalOutcome, SyncEngine, SyncError, SyncReport, SyncRequest, code,
    system_clock,
};
use abacsync_testkit::directory::{PeopleOptions, people_ldif, uid, user_dn};
use abacsync_testkit::plugins;
use abacsync_testkit::slapd::Slapd;

/// A tenant synced from one slapd into one store.
pub struct Harness {
    pub slapd: Slapd,
    pub tenant: TenantConfig,
    pub store: Arc<SqliteStore>,
    pub plugin: Arc<TenantPlugin>,
    pub engine: SyncEngine,
    _dir: tempfile::TempDir,
}

/// The tenant's TOML for `slapd`, with `extra` lines appended to `[tenant]`'s end.
pub fn tenant_toml(slapd: &Slapd, plugin: &Path, ldap_extra: &str, tenant_extra: &str) -> String {
    format!(
        r#"
        [[tenant]]
        id = 1
        name = "example"
        default_language = "en"
        {tenant_extra}
        plugin = {{ path = "{plugin}" }}
        [tenant.ldap]
        servers = ["{url}"]
        tls = "plain"
        bind_dn = "{admin}"
        bind_password = "{password}"
        base_dn = "ou=people,{base}"
        user_filter = "(objectClass=inetOrgPerson)"
        page_size = 7
        {ldap_extra}
        "#,
        plugin = plugin.display(),
        url = slapd.url(),
        admin = slapd.admin_dn(),
        password = slapd.admin_password(),
        base = slapd.base_dn(),
    )
}

/// A tenant of a configuration text, its own store in a temp folder, its plugin (the
/// repository's `package`, with `settings`) and an engine: what each harness builds on.
pub struct TenantParts {
    pub tenant: TenantConfig,
    pub store: Arc<SqliteStore>,
    pub plugin: Arc<TenantPlugin>,
    pub engine: SyncEngine,
    pub dir: tempfile::TempDir,
}

impl TenantParts {
    /// The first tenant of `text` (a configuration file's text, whose plugin path is
    /// `plugins::component(package)`).
    pub fn new(text: &str, package: &str, settings: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::parse(text, Path::new("test.toml")).unwrap();
        let tenant = config.tenants[0].clone();
        let store = Arc::new(SqliteStore::open(&dir.path().join("store.db")).unwrap());
        let registry =
            PluginRegistry::new(PluginEngine::new(SandboxConfig::default(), None).unwrap());
        let plugin = registry
            .assign(
                tenant.id,
                package,
                &std::fs::read(plugins::component(package)).unwrap(),
                settings
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            )
            .unwrap();
        let engine = SyncEngine::new(store.clone(), system_clock());
        Self {
            tenant,
            store,
            plugin,
            engine,
            dir,
        }
    }
}

impl Harness {
    pub fn new(slapd: Slapd) -> Self {
        Self::with_config(slapd, "", "")
    }

    pub fn with_config(slapd: Slapd, ldap_extra: &str, tenant_extra: &str) -> Self {
        Self::with_plugin(slapd, "openldap-mapping", &[], ldap_extra, tenant_extra)
    }

    pub fn with_plugin(
        slapd: Slapd,
        package: &str,
        settings: &[(&str, &str)],
        ldap_extra: &str,
        tenant_extra: &str,
    ) -> Self {
        let text = tenant_toml(
            &slapd,
            &plugins::component(package),
            ldap_extra,
            tenant_extra,
        );
        let parts = TenantParts::new(&text, package, settings);
        Self {
            slapd,
            tenant: parts.tenant,
            store: parts.store,
            plugin: parts.plugin,
            engine: parts.engine,
            _dir: parts.dir,
        }
    }

    /// A full sync of `tenant` (a variant of this harness's tenant) through `plugin`.
    pub async fn full_sync_as(
        &self,
        tenant: &TenantConfig,
        plugin: Arc<TenantPlugin>,
    ) -> (SyncReport, Option<SyncError>) {
        let password = tenant.ldap.bind_password(1).unwrap();
        let directory = LdapDirectory::new(&tenant.ldap, password).unwrap();
        let request = SyncRequest::new(SyncMode::Full, "t", "test");
        self.engine
            .run(tenant, plugin, &directory, request, Progress::new())
            .await
    }

    pub async fn sync_with(&self, request: SyncRequest) -> (SyncReport, Option<SyncError>) {
        let password = self.tenant.ldap.bind_password(1).unwrap();
        let directory = LdapDirectory::new(&self.tenant.ldap, password).unwrap();
        self.engine
            .run(
                &self.tenant,
                self.plugin.clone(),
                &directory,
                request,
                Progress::new(),
            )
            .await
    }

    pub async fn sync(&self, mode: SyncMode) -> SyncReport {
        let (report, error) = self.sync_with(SyncRequest::new(mode, "test", "test")).await;
        assert!(error.is_none(), "sync failed: {error:?}\n{report:#?}");
        report
    }

    pub fn users(&self) -> Vec<abacsync::store::StoredUser> {
        let query = UserQuery {
            limit: Some(1000),
            ..UserQuery::default()
        };
        self.store.list_users(1, &query).unwrap()
    }

    pub fn user(&self, username: &str) -> abacsync::store::StoredUser {
        self.store
            .users_by_usernames(1, &[username.to_owned()])
            .unwrap()
            .pop()
            .unwrap_or_else(|| panic!("no user {username}"))
    }
}

fn people(count: usize) -> String {
    people_ldif("dc=example,dc=org", count, &PeopleOptions::default()).unwrap()
}

fn started(count: usize) -> Slapd {
    Slapd::builder().ldif(people(count)).start().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn first_sync_creates_then_nothing_changes() {
    let h = Harness::new(started(20));
    let report = h.sync(SyncMode::Full).await;
    assert_eq!(report.counts.read, 20);
    assert_eq!(report.counts.created, 20, "{report:#?}");
    assert_eq!(report.outcome, "succeeded");
    // Paged: 20 entries in pages of 7, yet one search.
    assert_eq!(report.searches, 1);
    let users = h.users();
    assert_eq!(users.len(), 20);
    let first = h.user(&uid(0));
    assert_eq!(
        first.fields.ldap_dn.as_deref(),
        Some(user_dn("dc=example,dc=org", 0).as_str())
    );
    assert_eq!(
        first.fields.attributes["department"]
            .iter()
            .next()
            .map(String::as_str),
        Some("100")
    );
    assert!(first.fields.active);
    // Every created result carries the new id.
    assert!(
        report
            .results
            .iter()
            .all(|r| r.code == code::CREATED && r.id.is_some())
    );

    let again = h.sync(SyncMode::Full).await;
    assert_eq!(again.counts.unchanged, 20, "{again:#?}");
    assert_eq!(again.counts.writes(), 0);
    assert_eq!(
        again.removal,
        RemovalOutcome::Done {
            missing: 0,
            removed: 0
        }
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn attribute_change_is_updated_and_audited() {
    let h = Harness::new(started(5));
    h.sync(SyncMode::Full).await;
    let dn = user_dn("dc=example,dc=org", 1);
    h.slapd
        .modify(&format!("dn: {dn}\nchangetype: modify\nreplace: departmentNumber\ndepartmentNumber: 999\ndepartmentNumber: 998\n"))
        .unwrap();
    let report = h.sync(SyncMode::Full).await;
    assert_eq!(
        (report.counts.updated, report.counts.unchanged),
        (1, 4),
        "{report:#?}"
    );
    assert!(report.changed_keys.contains("department"));
    let user = h.user(&uid(1));
    let department: Vec<_> = user.fields.attributes["department"]
        .iter()
        .cloned()
        .collect();
    assert_eq!(department, ["998", "999"]);
    let events = h
        .store
        .audit_events(
            1,
            &AuditQuery {
                user_id: Some(user.id),
                key: Some("department".into()),
                ..AuditQuery::default()
            },
        )
        .unwrap();
    let latest = &events[0];
    assert_eq!(latest.kind, AuditKind::Attribute);
    assert_eq!(latest.added, ["998", "999"]);
    assert_eq!(latest.removed, ["200"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn renamed_entry_keeps_its_user_and_leaving_the_base_deactivates() {
    let h = Harness::new(started(30));
    h.sync(SyncMode::Full).await;
    let before = h.user(&uid(2));
    // Rename within the base: same entryUUID, same user, new DN.
    h.slapd
        .modify(&format!(
            "dn: {}\nchangetype: modrdn\nnewrdn: uid={}\ndeleteoldrdn: 0\n",
            user_dn("dc=example,dc=org", 2),
            "renamed"
        ))
        .unwrap();
    // Move another user out of the searched base: gone from the directory's view.
    h.slapd
        .add("dn: ou=former,dc=example,dc=org\nobjectClass: organizationalUnit\nou: former\n")
        .unwrap();
    h.slapd
        .modify(&format!(
            "dn: {}\nchangetype: modrdn\nnewrdn: uid={}\ndeleteoldrdn: 1\nnewsuperior: ou=former,dc=example,dc=org\n",
            user_dn("dc=example,dc=org", 3),
            uid(3)
        ))
        .unwrap();
    let report = h.sync(SyncMode::Full).await;
    assert_eq!(report.counts.deactivated, 1, "{report:#?}");
    let after = h.user(&uid(2));
    assert_eq!(after.id, before.id);
    assert_eq!(
        after.fields.ldap_dn.as_deref(),
        Some("uid=renamed,ou=people,dc=example,dc=org")
    );
    assert!(!h.user(&uid(3)).fields.active);
    let removed = report
        .results
        .iter()
        .find(|r| r.code == code::REMOVED)
        .unwrap();
    assert_eq!(removed.username, uid(3));

    // Back in the base: reactivated, same user.
    h.slapd
        .modify(&format!(
            "dn: uid={},ou=former,dc=example,dc=org\nchangetype: modrdn\nnewrdn: uid={}\ndeleteoldrdn: 1\nnewsuperior: ou=people,dc=example,dc=org\n",
            uid(3),
            uid(3)
        ))
        .unwrap();
    let report = h.sync(SyncMode::Full).await;
    assert_eq!(report.counts.reactivated, 1, "{report:#?}");
    assert!(h.user(&uid(3)).fields.active);
}

#[tokio::test(flavor = "multi_thread")]
async fn import_off_creates_nobody() {
    let h = Harness::with_config(started(4), "", "import_new_users = false");
    let report = h.sync(SyncMode::Full).await;
    assert_eq!(report.counts.not_imported, 4);
    assert!(h.users().is_empty());
    // A request may turn it on (grommunio's import=true).
    let mut request = SyncRequest::new(SyncMode::Full, "t", "test");
    request.import_new_users = Some(true);
    request.default_language = Some("fr".into());
    let (report, error) = h.sync_with(request).await;
    assert!(error.is_none());
    assert_eq!(report.counts.created, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn removal_threshold_refuses_mass_removal_unless_forced() {
    let h = Harness::new(started(20));
    h.sync(SyncMode::Full).await;
    for i in 0..5 {
        h.slapd.delete(&user_dn("dc=example,dc=org", i)).unwrap();
    }
    // 5 of 20 is 25%, over the default 10%.
    let (report, _) = h
        .sync_with(SyncRequest::new(SyncMode::Full, "t", "test"))
        .await;
    assert_eq!(report.outcome, "refused", "{report:#?}");
    assert!(matches!(
        report.removal,
        RemovalOutcome::Refused {
            missing: 5,
            total: 20,
            ..
        }
    ));
    assert_eq!(h.users().iter().filter(|u| u.fields.active).count(), 20);
    assert!(report.error.as_deref().unwrap().contains("--force"));

    let mut forced = SyncRequest::new(SyncMode::Full, "t", "test");
    forced.force = true;
    let (report, error) = h.sync_with(forced).await;
    assert!(error.is_none());
    assert_eq!(report.counts.deactivated, 5);
    assert_eq!(h.users().iter().filter(|u| u.fields.active).count(), 15);
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_reports_the_diff_and_writes_nothing() {
    let h = Harness::new(started(6));
    let mut request = SyncRequest::new(SyncMode::Full, "t", "test");
    request.dry_run = true;
    let (report, error) = h.sync_with(request).await;
    assert!(error.is_none());
    assert_eq!(report.counts.created, 6);
    assert!(report.dry_run);
    assert!(h.users().is_empty());
    assert_eq!(h.store.sync_state(1).unwrap().high_water_mark, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn incremental_reads_only_changed_entries() {
    // entryCSN has microseconds; modifyTimestamp's one-second resolution would re-read
    // every entry loaded in the same second as the mark.
    let h = Harness::with_config(started(25), "change_attribute = \"entryCSN\"", "");
    // No mark yet: runs full.
    let first = h.sync(SyncMode::Incremental).await;
    assert_eq!((first.mode.as_str(), first.counts.created), ("full", 25));
    assert!(h.store.sync_state(1).unwrap().high_water_mark.is_some());
    // modifyTimestamp has a one-second resolution: make the change land later.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let dn = user_dn("dc=example,dc=org", 7);
    h.slapd
        .modify(&format!(
            "dn: {dn}\nchangetype: modify\nreplace: l\nl: Tokyo\n"
        ))
        .unwrap();
    let report = h.sync(SyncMode::Incremental).await;
    assert_eq!(report.mode, "incremental");
    // The changed entry, and the one that set the mark (read again: `>=`).
    assert!(report.counts.read <= 2, "{report:#?}");
    assert_eq!(report.counts.updated, 1);
    assert!(report.filter.contains("entryCSN>="), "{}", report.filter);
    let location: Vec<_> = h.user(&uid(7)).fields.attributes["location"]
        .iter()
        .cloned()
        .collect();
    assert_eq!(location, ["Tokyo"]);
    // Incremental syncs never remove anyone.
    assert_eq!(report.removal, RemovalOutcome::NotApplicable);
}

#[tokio::test(flavor = "multi_thread")]
async fn non_ascii_and_escaped_dns_sync() {
    let slapd = started(1);
    slapd
        .add(concat!(
            "dn: uid=j\\C3\\BCrgen\\2C jr,ou=people,dc=example,dc=org\n",
            "objectClass: inetOrgPerson\n",
            "uid: jürgen, jr\n",
            "cn: Jürgen Groß\n",
            "sn: Groß\n",
            "mail: juergen@example.org\n",
            "departmentNumber: Straße\n",
            "ou: Zürich\n",
        ))
        .unwrap();
    let h = Harness::new(slapd);
    let report = h.sync(SyncMode::Full).await;
    assert_eq!(report.counts.created, 2, "{report:#?}");
    let user = h.user("jürgen, jr");
    assert_eq!(user.fields.display_name.as_deref(), Some("Jürgen Groß"));
    assert!(user.fields.ldap_dn.as_deref().unwrap().contains("rgen"));
    assert!(user.fields.attributes["department"].contains("Straße"));
    assert_eq!(h.sync(SyncMode::Full).await.counts.unchanged, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn targeted_sync_refreshes_named_users_and_escapes_hostile_ids() {
    let h = Harness::new(started(10));
    h.sync(SyncMode::Full).await;
    for i in [1, 2] {
        let dn = user_dn("dc=example,dc=org", i);
        h.slapd
            .modify(&format!(
                "dn: {dn}\nchangetype: modify\nreplace: employeeType\nemployeeType: boss\n"
            ))
            .unwrap();
    }
    let mut request = SyncRequest::new(SyncMode::Targeted, "t", "test");
    let ann = h.user(&uid(1));
    request.targets = UserIdentifiers {
        usernames: vec![
            uid(1),
            "*".into(),
            ")(uid=*".into(),
            "a\\b".into(),
            "nul\0".into(),
        ],
        ldap_ids: vec!["*".into(), ann.fields.ldap_id.clone().unwrap()],
        ..UserIdentifiers::default()
    };
    let (report, error) = h.sync_with(request).await;
    assert!(error.is_none(), "{error:?}");
    // Only user 1 was read: the hostile values matched nobody.
    assert_eq!(report.counts.read, 1, "{report:#?}");
    assert_eq!(report.counts.updated, 1);
    assert_eq!(report.counts.not_found, 5);
    assert!(h.user(&uid(1)).fields.attributes["employeeType"].contains("boss"));
    assert!(!h.user(&uid(2)).fields.attributes["employeeType"].contains("boss"));
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_directory_and_wrong_password_change_nothing() {
    let mut h = Harness::new(started(8));
    h.sync(SyncMode::Full).await;
    h.slapd.stop().unwrap();
    let (report, error) = h
        .sync_with(SyncRequest::new(SyncMode::Full, "t", "test"))
        .await;
    let error = error.expect("a dead directory fails the sync");
    assert!(error.is_directory_unreachable(), "{error}");
    assert_eq!(report.outcome, "failed");
    assert_eq!(h.users().iter().filter(|u| u.fields.active).count(), 8);
    h.slapd.restart().unwrap();

    let mut wrong = h.tenant.clone();
    wrong.ldap.bind_password = Some("wrong".into());
    let (_, error) = h.full_sync_as(&wrong, h.plugin.clone()).await;
    let text = error.unwrap().to_string();
    assert!(text.contains("LDAP result 49"), "{text}");
    assert_eq!(h.users().iter().filter(|u| u.fields.active).count(), 8);
    // And the next good sync works.
    assert_eq!(h.sync(SyncMode::Full).await.counts.unchanged, 8);
}

#[tokio::test(flavor = "multi_thread")]
async fn starttls_required_but_unavailable_never_binds_in_plaintext() {
    let slapd = started(2);
    let h = Harness::with_config(slapd, "", "");
    let mut tls = h.tenant.clone();
    tls.ldap.tls = abacsync::config::TlsMode::StartTls;
    let (report, error) = h.full_sync_as(&tls, h.plugin.clone()).await;
    let text = error.unwrap().to_string();
    assert!(text.contains("TLS"), "{text}");
    assert_eq!(report.counts.read, 0);
    assert!(h.users().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn starttls_and_ldaps_with_a_ca_file() {
    let slapd = Slapd::builder()
        .tls(true)
        .require_tls(true)
        .ldif(people(3))
        .start()
        .unwrap();
    let ca = slapd.ca_file().unwrap().display().to_string();
    let ldaps = slapd.ldaps_url().unwrap();
    let h = Harness::with_config(slapd, &format!("ca_file = \"{ca}\""), "");
    let mut starttls = h.tenant.clone();
    starttls.ldap.tls = abacsync::config::TlsMode::StartTls;
    let (report, error) = h.full_sync_as(&starttls, h.plugin.clone()).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(report.counts.created, 3);

    let mut over_ldaps = h.tenant.clone();
    over_ldaps.ldap.tls = abacsync::config::TlsMode::Ldaps;
    over_ldaps.ldap.servers = vec![ldaps];
    let (report, error) = h.full_sync_as(&over_ldaps, h.plugin.clone()).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(report.counts.unchanged, 3);

    // A CA the tenant does not name (the system's roots), or another directory's:
    // the certificate is refused, nothing is read.
    let other = Slapd::builder().tls(true).start().unwrap();
    let other_ca = other.ca_file().unwrap().to_owned();
    for ca_file in [None, Some(other_ca)] {
        for tls in [
            abacsync::config::TlsMode::StartTls,
            abacsync::config::TlsMode::Ldaps,
        ] {
            let mut unknown = if tls == abacsync::config::TlsMode::Ldaps {
                over_ldaps.clone()
            } else {
                starttls.clone()
            };
            unknown.ldap.ca_file = ca_file.clone();
            let (report, error) = h.full_sync_as(&unknown, h.plugin.clone()).await;
            let text = error.expect("an unknown CA is refused").to_string();
            assert!(
                text.to_lowercase().contains("certificate"),
                "{tls:?} {ca_file:?}: {text}"
            );
            assert_eq!(report.counts.read, 0);
        }
    }

    // The plain tenant: the server requires TLS, and abacsync does not fall back.
    let (_, error) = h
        .sync_with(SyncRequest::new(SyncMode::Full, "t", "test"))
        .await;
    assert!(error.is_some());
    assert!(report.results.iter().all(|r| r.action == Action::Unchanged));
}

#[tokio::test(flavor = "multi_thread")]
async fn groups_from_the_memberof_overlay_and_from_nested_group_search() {
    let options = PeopleOptions {
        groups: 3,
        nested_groups: true,
        member_of: true,
        ..PeopleOptions::default()
    };
    let ldif = people_ldif("dc=example,dc=org", 6, &options).unwrap();
    let slapd = Slapd::builder().memberof(true).ldif(ldif).start().unwrap();
    let settings = [
        ("abac.groups", "groups:cn"),
        ("abac.department", "departmentNumber"),
    ];
    let h = Harness::with_plugin(slapd, "settings-map-mapping", &settings, "", "");
    let report = h.sync(SyncMode::Full).await;
    assert_eq!(report.counts.created, 6, "{report:#?}");
    // memberOf holds direct groups only: user 4 is in group 1.
    let groups: Vec<_> = h.user(&uid(4)).fields.attributes["groups"]
        .iter()
        .cloned()
        .collect();
    assert_eq!(groups, ["group0001"]);

    // Group mode "search": groups read once, nesting resolved in memory.
    let plain = PeopleOptions {
        member_of: false,
        ..options.clone()
    };
    let slapd = Slapd::builder()
        .ldif(people_ldif("dc=example,dc=org", 6, &plain).unwrap())
        .start()
        .unwrap();
    let searched = Harness::with_plugin(
        slapd,
        "settings-map-mapping",
        &settings,
        "[tenant.ldap.groups]\nmode = \"search\"\nbase_dn = \"ou=groups,dc=example,dc=org\"",
        "",
    );
    let report = searched.sync(SyncMode::Full).await;
    assert_eq!(report.counts.created, 6);
    assert_eq!(report.searches, 2, "one search for groups, one for users");
    // Group 1 is nested in group 0: user 4 is in both.
    let groups: Vec<_> = searched.user(&uid(4)).fields.attributes["groups"]
        .iter()
        .cloned()
        .collect();
    assert_eq!(groups, ["group0000", "group0001"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_plugin_aborts_the_sync_and_changes_nothing() {
    let h = Harness::new(started(12));
    h.sync(SyncMode::Full).await;
    let before = h.users();
    for behaviour in ["panic", "loop"] {
        let engine_config = SandboxConfig {
            deadline: std::time::Duration::from_millis(300),
            ..SandboxConfig::default()
        };
        let registry = PluginRegistry::new(PluginEngine::new(engine_config, None).unwrap());
        let hostile = registry
            .assign(
                1,
                "hostile",
                &plugins::bytes("hostile-mapping"),
                vec![("behaviour".into(), behaviour.into())],
            )
            .unwrap();
        let (report, error) = h.full_sync_as(&h.tenant, hostile).await;
        let error = error.unwrap_or_else(|| panic!("{behaviour}: the sync must fail"));
        assert!(
            matches!(error, SyncError::Plugin { .. }),
            "{behaviour}: {error}"
        );
        assert_eq!(report.outcome, "failed");
        assert_eq!(report.removal, RemovalOutcome::NotApplicable);
        assert_eq!(h.users(), before, "{behaviour}");
    }
    // The tenant's own plugin still syncs.
    assert_eq!(h.sync(SyncMode::Full).await.counts.unchanged, 12);
}
