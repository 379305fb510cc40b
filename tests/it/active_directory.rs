//! Syncs from a server that answers like Active Directory (the testkit's protocol-level
//! AD server), for what a real domain controller cannot be made to show here: range
//! retrieval of a group larger than 1,500 members (Samba returns every value at once)
//! and a domain controller that dies mid-search. Everything else runs against a real
//! DC: `samba.rs`.

use std::sync::Arc;

use abacsync::config::TenantConfig;
use abacsync::ldap::LdapDirectory;
use abacsync::plugin::TenantPlugin;
use abacsync::plugin::model::SyncMode;
use abacsync::store::{SqliteStore, StoredUser, UserQuery, UserStore};
use abacsync::sync::{Progress, SyncEngine, SyncError, SyncReport, SyncRequest};
use abacsync_guest::guid::format_guid;
use abacsync_testkit::ad_server::{AdEntry, AdServer};
use abacsync_testkit::plugins;

use crate::sync::TenantParts;

const USERS: usize = 3_200;

/// A GUID whose bytes include values that are valid UTF-8, NUL and the filter
/// specials `*`, `(`, `)` and `\`: they must survive as bytes.
fn guid(i: usize) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&(i as u64).to_le_bytes());
    bytes[8..12].copy_from_slice(b"*()\\");
    bytes[12..].copy_from_slice(&(i as u32).wrapping_mul(2_654_435_761).to_le_bytes());
    bytes
}

fn sam(i: usize) -> String {
    format!("user.{i:05}")
}

fn server() -> AdServer {
    let members: Vec<String> = (0..USERS)
        .map(|i| format!("CN={},CN=Users", sam(i)))
        .collect();
    let member_refs: Vec<&str> = members.iter().map(String::as_str).collect();
    let mut builder = AdServer::builder()
        .bind("CN=sync,CN=Users,DC=corp,DC=example", "secret")
        .entry(AdEntry::group("Everyone", &member_refs))
        .entry(AdEntry::group("All Staff", &["CN=Everyone,CN=Users"]));
    for i in 0..USERS {
        // User 3 is disabled (512 + 2).
        let uac = if i == 3 { 514 } else { 512 };
        builder = builder.entry(AdEntry::user(
            &sam(i),
            &format!("{}@corp.example", sam(i)),
            guid(i),
            uac,
            &[],
            100 + i as u64,
        ));
    }
    builder.start().unwrap()
}

struct Ad {
    server: AdServer,
    tenant: TenantConfig,
    store: Arc<SqliteStore>,
    plugin: Arc<TenantPlugin>,
    engine: SyncEngine,
    _dir: tempfile::TempDir,
}

impl Ad {
    fn new(server: AdServer) -> Self {
        let plugin_path = plugins::component("active-directory-mapping");
        let text = format!(
            r#"
            [[tenant]]
            id = 1
            plugin = {{ path = "{plugin}" }}
            [tenant.ldap]
            servers = ["{url}"]
            tls = "plain"
            bind_dn = "CN=sync,CN=Users,DC=corp,DC=example"
            bind_password = "secret"
            base_dn = "DC=corp,DC=example"
            user_filter = "(&(objectCategory=person)(objectClass=user))"
            page_size = 1000
            change_attribute = "uSNChanged"
            [tenant.ldap.groups]
            mode = "search"
            base_dn = "DC=corp,DC=example"
            filter = "(objectClass=group)"
            "#,
            plugin = plugin_path.display(),
            url = server.url(),
        );
        let parts = TenantParts::new(&text, "active-directory-mapping", &[]);
        Self {
            server,
            tenant: parts.tenant,
            store: parts.store,
            plugin: parts.plugin,
            engine: parts.engine,
            _dir: parts.dir,
        }
    }

    async fn sync(&self, mode: SyncMode) -> (SyncReport, Option<SyncError>) {
        self.sync_with(SyncRequest::new(mode, "t", "test")).await
    }

    async fn sync_with(&self, request: SyncRequest) -> (SyncReport, Option<SyncError>) {
        let directory = LdapDirectory::new(&self.tenant.ldap, Some("secret".into())).unwrap();
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

    fn user(&self, name: &str) -> StoredUser {
        self.store
            .users_by_usernames(1, &[name.to_owned()])
            .unwrap()
            .pop()
            .unwrap()
    }

    fn active_users(&self) -> usize {
        let query = UserQuery {
            active: Some(true),
            limit: Some(1000),
            ..UserQuery::default()
        };
        let mut count = 0;
        let mut query = query;
        loop {
            let page = self.store.list_users(1, &query).unwrap();
            count += page.len();
            match page.last() {
                Some(last) if page.len() == 1000 => query.after = Some(last.id),
                _ => return count,
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn active_directory_sync_with_ranges_nested_groups_and_binary_guids() {
    let ad = Ad::new(server());
    let (report, error) = ad.sync(SyncMode::Full).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(report.counts.read, USERS as u64);
    assert_eq!(
        report.counts.created,
        USERS as u64 - 1,
        "{:?}",
        report.counts
    );
    // The disabled account never existed here: nothing to deactivate.
    assert_eq!(report.counts.skipped, 1);

    // Never one query per user: one group search plus its two range follow-ups, one
    // paged user search (4 pages).
    let searches = ad.server.searches();
    assert!(
        searches.len() <= 10,
        "{} searches: {searches:#?}",
        searches.len()
    );
    assert!(
        searches
            .iter()
            .any(|s| s.attributes.iter().any(|a| a == "member;range=1500-*"))
    );
    assert_eq!(report.searches, 1 + 2 + 1);

    // The GUID is the stable id, byte-exact.
    let user = ad.user(&sam(42));
    assert_eq!(user.fields.ldap_id, format_guid(&guid(42)));
    // Groups from the 3,200-member group (range retrieval) and its parent (nesting).
    let groups: Vec<_> = user.fields.attributes["groups"].iter().cloned().collect();
    assert_eq!(groups, ["All Staff", "Everyone"]);
    assert_eq!(ad.active_users(), USERS - 1);

    // Disable a user on the DC: the next sync deactivates it.
    let mut entry = ad
        .server
        .entry(&format!("CN={},CN=Users,DC=corp,DC=example", sam(7)))
        .unwrap();
    entry.set("userAccountControl", ["514"]);
    ad.server.upsert_entry(entry.with_usn(10_000)).unwrap();
    let (report, error) = ad.sync(SyncMode::Incremental).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(report.mode, "incremental");
    assert!(report.counts.read <= 2, "{:?}", report.counts);
    assert_eq!(report.counts.deactivated, 1);
    assert!(!ad.user(&sam(7)).fields.active);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_domain_controller_dying_mid_sync_changes_nothing() {
    let ad = Ad::new(server());
    let (_, error) = ad.sync(SyncMode::Full).await;
    assert!(error.is_none());
    let before = ad.user(&sam(5));

    // Change a user, delete a third of them, then let the connection die after 700
    // entries: the sync fails, nothing is updated, nobody is removed.
    let mut entry = ad
        .server
        .entry(&format!("CN={},CN=Users,DC=corp,DC=example", sam(5)))
        .unwrap();
    entry.set("department", ["Sales"]);
    ad.server.upsert_entry(entry).unwrap();
    let gone: Vec<String> = (2_000..USERS)
        .map(|i| format!("CN={},CN=Users", sam(i)))
        .collect();
    let gone: Vec<&str> = gone.iter().map(String::as_str).collect();
    assert_eq!(ad.server.remove_entries(&gone), USERS - 2_000);
    ad.server.set_fail_after_entries(Some(700));
    let (report, error) = ad.sync(SyncMode::Full).await;
    let error = error.expect("a dead connection fails the sync");
    assert!(error.to_string().contains("connection"), "{error}");
    assert_eq!(report.outcome, "failed");
    assert_eq!(report.counts.writes(), 0);
    assert_eq!(ad.user(&sam(5)), before);
    assert_eq!(ad.active_users(), USERS - 1);

    // The next sync, on a healthy DC, applies it all (forced: a third is removed).
    ad.server.set_fail_after_entries(None);
    let mut request = SyncRequest::new(SyncMode::Full, "t", "test");
    request.force = true;
    let (report, error) = ad.sync_with(request).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(report.counts.updated, 1);
    assert_eq!(report.counts.deactivated, (USERS - 2_000) as u64);
}
