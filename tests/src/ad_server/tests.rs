//! Tests of the AD emulation, driven by the `ldap3` client the host uses.

use std::collections::HashSet;

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{Ldap, LdapConnAsync, LdapError, Scope, SearchEntry};

use super::codec::{escape, unescape};
use super::{AdEntry, AdServer, SearchScope, generalized_time};

const BASE: &str = "DC=corp,DC=example";
const SYNC_DN: &str = "CN=sync,CN=Users,DC=corp,DC=example";
const SECRET: &str = "secret";
const NORMAL_ACCOUNT: u32 = 0x200;
const DISABLED_ACCOUNT: u32 = 0x202;

/// A GUID that is not valid UTF-8, so it must travel as bytes.
fn guid(number: u32) -> [u8; 16] {
    let mut guid = [
        0xff, 0x00, 0xfe, 0x80, 0, 0, 0, 0, 0x5c, 0x2a, 0x28, 0x29, 0, 0, 0, 0,
    ];
    guid[4..8].copy_from_slice(&number.to_be_bytes());
    guid
}

fn user(number: u32) -> AdEntry {
    let sam = format!("user{number:05}");
    AdEntry::user(
        &sam,
        &format!("{sam}@corp.example"),
        guid(number),
        NORMAL_ACCOUNT,
        &[],
        u64::from(number) + 100,
    )
}

fn users(count: u32) -> Vec<AdEntry> {
    (1..=count).map(user).collect()
}

fn server(entries: Vec<AdEntry>) -> AdServer {
    AdServer::builder()
        .base_dn(BASE)
        .bind(SYNC_DN, SECRET)
        .max_val_range(1500)
        .max_page_size(1000)
        .entries(entries)
        .start()
        .unwrap()
}

async fn connect(server: &AdServer) -> Ldap {
    let (connection, ldap) = LdapConnAsync::new(&server.url()).await.unwrap();
    ldap3::drive!(connection);
    ldap
}

async fn bound(server: &AdServer) -> Ldap {
    let mut ldap = connect(server).await;
    ldap.simple_bind(SYNC_DN, SECRET)
        .await
        .unwrap()
        .success()
        .unwrap();
    ldap
}

async fn search(
    ldap: &mut Ldap,
    base: &str,
    scope: Scope,
    filter: &str,
    attrs: &[&str],
) -> Vec<SearchEntry> {
    let (entries, _) = ldap
        .search(base, scope, filter, attrs)
        .await
        .unwrap()
        .success()
        .unwrap();
    entries.into_iter().map(SearchEntry::construct).collect()
}

#[tokio::test]
async fn bind_checks_the_password_and_anonymous_searches_are_refused() {
    let server = server(users(3));
    let mut ldap = connect(&server).await;

    let wrong = ldap.simple_bind(SYNC_DN, "wrong").await.unwrap();
    assert_eq!(wrong.rc, 49);
    assert!(wrong.text.contains("data 52e"), "{}", wrong.text);

    // An empty password binds anonymously, as on AD, and searching then fails.
    assert_eq!(ldap.simple_bind(SYNC_DN, "").await.unwrap().rc, 0);
    let refused = ldap
        .search(BASE, Scope::Subtree, "(objectClass=user)", vec!["cn"])
        .await
        .unwrap();
    assert_eq!(refused.1.rc, 1);
    assert!(refused.0.is_empty());

    // The root DSE stays readable without a bind.
    let root = search(
        &mut ldap,
        "",
        Scope::Base,
        "(objectClass=*)",
        &["defaultNamingContext", "highestCommittedUSN"],
    )
    .await;
    assert_eq!(root[0].attrs["defaultNamingContext"], [BASE]);
    assert_eq!(root[0].attrs["highestCommittedUSN"], ["103"]);

    ldap.simple_bind("cn=SYNC, cn=users, dc=CORP, dc=example", SECRET)
        .await
        .unwrap()
        .success()
        .unwrap();
    let found = search(
        &mut ldap,
        BASE,
        Scope::Subtree,
        "(objectClass=user)",
        &["cn"],
    )
    .await;
    assert_eq!(found.len(), 3);
    ldap.unbind().await.unwrap();
}

#[tokio::test]
async fn paged_subtree_search_returns_every_user_in_capped_pages() {
    let server = server(users(3_500));
    let mut ldap = bound(&server).await;
    let adapters: Vec<Box<dyn Adapter<_, _>>> = vec![
        Box::new(EntriesOnly::new()),
        Box::new(PagedResults::new(500)),
    ];
    let mut stream = ldap
        .streaming_search_with(
            adapters,
            BASE,
            Scope::Subtree,
            "(&(objectCategory=person)(objectClass=user))",
            vec!["sAMAccountName", "objectGUID"],
        )
        .await
        .unwrap();
    let mut names = HashSet::new();
    while let Some(entry) = stream.next().await.unwrap() {
        let entry = SearchEntry::construct(entry);
        assert_eq!(entry.bin_attrs["objectGUID"].len(), 1);
        names.insert(entry.attrs["sAMAccountName"][0].clone());
    }
    assert_eq!(stream.finish().await.rc, 0);
    assert_eq!(names.len(), 3_500);
    let searches = server.searches();
    assert_eq!(searches.len(), 7, "3,500 users in pages of 500");
    assert!(
        searches
            .iter()
            .all(|search| search.page_size == Some(500) && search.scope == SearchScope::Subtree)
    );

    // A client asking for more than MaxPageSize gets pages of MaxPageSize.
    let mut stream = ldap
        .streaming_search_with(
            PagedResults::new(5_000),
            BASE,
            Scope::Subtree,
            "(objectClass=user)",
            vec!["1.1"],
        )
        .await
        .unwrap();
    let mut count = 0;
    while stream.next().await.unwrap().is_some() {
        count += 1;
    }
    assert_eq!(count, 3_500);
    assert_eq!(server.search_count(), 7 + 4, "pages of 1,000");

    // Without paging, AD stops at MaxPageSize with sizeLimitExceeded.
    let unpaged = ldap
        .search(BASE, Scope::Subtree, "(objectClass=user)", vec!["cn"])
        .await
        .unwrap();
    assert_eq!(unpaged.1.rc, 4);
    assert_eq!(unpaged.0.len(), 1_000);
}

#[tokio::test]
async fn range_retrieval_hands_out_a_large_group_in_chunks() {
    let mut entries = users(4_000);
    let members: Vec<String> = entries
        .iter()
        .map(|entry| format!("{},{BASE}", entry.dn))
        .collect();
    let member_refs: Vec<&str> = members.iter().map(String::as_str).collect();
    entries.push(AdEntry::group("Everyone", &member_refs));
    entries.push(AdEntry::group("Small", &member_refs[..3]));
    let server = server(entries);
    let mut ldap = bound(&server).await;
    let group = format!("CN=Everyone,CN=Users,{BASE}");

    let first = search(
        &mut ldap,
        &group,
        Scope::Base,
        "(objectClass=group)",
        &["member", "cn"],
    )
    .await;
    assert!(!first[0].attrs.contains_key("member"));
    let mut collected = first[0].attrs["member;range=0-1499"].clone();
    let mut next = format!("member;range={}-*", collected.len());
    loop {
        let page = search(
            &mut ldap,
            &group,
            Scope::Base,
            "(objectClass=*)",
            &[next.as_str()],
        )
        .await;
        let (name, values) = page[0]
            .attrs
            .iter()
            .find(|(name, _)| name.starts_with("member;range="))
            .unwrap();
        collected.extend(values.iter().cloned());
        if name.ends_with("-*") {
            assert_eq!(name, "member;range=3000-*");
            break;
        }
        assert_eq!(name, "member;range=1500-2999");
        next = format!("member;range={}-*", collected.len());
    }
    assert_eq!(collected, members);

    // `*` ranges too; an explicit high bound is honoured and capped.
    let star = search(&mut ldap, &group, Scope::Base, "(objectClass=*)", &["*"]).await;
    assert_eq!(star[0].attrs["member;range=0-1499"].len(), 1_500);
    let bounded = search(
        &mut ldap,
        &group,
        Scope::Base,
        "(objectClass=*)",
        &["member;range=10-19"],
    )
    .await;
    assert_eq!(bounded[0].attrs["member;range=10-19"], members[10..20]);
    let small = search(
        &mut ldap,
        &format!("CN=Small,CN=Users,{BASE}"),
        Scope::Base,
        "(objectClass=*)",
        &["member;range=0-*"],
    )
    .await;
    assert_eq!(small[0].attrs["member;range=0-*"].len(), 3);

    // Past the last value of a linked attribute AD answers operationsError.
    let past = ldap
        .search(
            &group,
            Scope::Base,
            "(objectClass=*)",
            vec!["member;range=4000-*"],
        )
        .await
        .unwrap();
    assert_eq!(past.1.rc, 1);

    // memberOf is the back link of member.
    let alice = search(
        &mut ldap,
        BASE,
        Scope::Subtree,
        "(sAMAccountName=USER00002)",
        &["memberOf"],
    )
    .await;
    assert_eq!(alice[0].attrs["memberOf"].len(), 2);
}

#[tokio::test]
async fn binary_object_guid_round_trips_and_filters_byte_for_byte() {
    let server = server(users(50));
    let mut ldap = bound(&server).await;
    let wanted = guid(42);
    let escaped: String = wanted.iter().map(|byte| format!("\\{byte:02x}")).collect();
    let filter = format!("(objectGUID={escaped})");

    let found = search(
        &mut ldap,
        BASE,
        Scope::Subtree,
        &filter,
        &["objectGUID", "objectSid", "sAMAccountName"],
    )
    .await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].attrs["sAMAccountName"], ["user00042"]);
    assert_eq!(found[0].bin_attrs["objectGUID"], [wanted.to_vec()]);
    assert_eq!(found[0].bin_attrs["objectSid"][0].len(), 28);
    assert_eq!(server.searches().last().unwrap().filter, filter);
}

#[tokio::test]
async fn filters_compare_usn_and_time_by_value_and_text_case_insensitively() {
    let mut entries = users(20);
    entries[3] = AdEntry::user(
        "disabled.user",
        "disabled@corp.example",
        guid(999),
        DISABLED_ACCOUNT,
        &[],
        5,
    );
    entries.push(
        AdEntry::new("CN=Users")
            .with("objectClass", ["top", "container"])
            .with("cn", ["Users"]),
    );
    let server = server(entries);
    let mut ldap = bound(&server).await;
    let changed = search(
        &mut ldap,
        BASE,
        Scope::Subtree,
        "(&(objectClass=user)(uSNChanged>=115))",
        &["uSNChanged"],
    )
    .await;
    assert_eq!(changed.len(), 6, "USNs 115..=120");
    let since = generalized_time(1_704_067_200 + 118);
    let recent = search(
        &mut ldap,
        BASE,
        Scope::Subtree,
        &format!("(whenChanged>={since})"),
        &["cn"],
    )
    .await;
    assert_eq!(recent.len(), 3);
    let upper = search(
        &mut ldap,
        BASE,
        Scope::Subtree,
        "(SAMACCOUNTNAME=USER00007)",
        &["SAMAccountName"],
    )
    .await;
    assert_eq!(upper[0].attrs["sAMAccountName"], ["user00007"]);
    let enabled = "(&(objectClass=user)(!(userAccountControl:1.2.840.113556.1.4.803:=2)))";
    assert_eq!(
        search(&mut ldap, BASE, Scope::Subtree, enabled, &["1.1"])
            .await
            .len(),
        19
    );
    let substring = search(
        &mut ldap,
        BASE,
        Scope::Subtree,
        "(|(mail=user0001*@*.example)(cn=*abled.us*))",
        &["cn"],
    )
    .await;
    assert_eq!(
        substring.len(),
        11,
        "user00010..=user00019 and disabled.user"
    );
    let one_level = search(
        &mut ldap,
        &format!("CN=Users,{BASE}"),
        Scope::OneLevel,
        "(objectClass=*)",
        &["cn"],
    )
    .await;
    assert_eq!(one_level.len(), 20);
    let top = search(&mut ldap, BASE, Scope::OneLevel, "(objectClass=*)", &["cn"]).await;
    assert_eq!(top.len(), 1, "only the CN=Users container");
    let missing = ldap
        .search(
            &format!("OU=Gone,{BASE}"),
            Scope::Subtree,
            "(cn=*)",
            vec!["cn"],
        )
        .await
        .unwrap();
    assert_eq!((missing.1.rc, missing.1.matched.as_str()), (32, BASE));
}

#[tokio::test]
async fn nested_groups_match_the_in_chain_rule() {
    let server = server(vec![
        AdEntry::user(
            "alice",
            "alice@corp.example",
            guid(1),
            NORMAL_ACCOUNT,
            &["CN=Developers,CN=Users"],
            10,
        ),
        AdEntry::group("Developers", &[]),
        AdEntry::group("Staff", &["CN=Developers,CN=Users"]),
    ]);
    let mut ldap = bound(&server).await;
    let chain = format!("(memberOf:1.2.840.113556.1.4.1941:=CN=Staff,CN=Users,{BASE})");
    let found = search(&mut ldap, BASE, Scope::Subtree, &chain, &["cn"]).await;
    let names: HashSet<_> = found
        .iter()
        .map(|entry| entry.attrs["cn"][0].as_str())
        .collect();
    assert_eq!(names, HashSet::from(["alice", "Developers"]));
    let developers = server
        .entry(&format!("CN=Developers,CN=Users,{BASE}"))
        .unwrap();
    assert_eq!(
        developers.first_str("member"),
        Some(format!("CN=alice,CN=Users,{BASE}").as_str())
    );
}

#[tokio::test]
async fn fail_after_entries_drops_the_connection_mid_search() {
    let server = AdServer::builder()
        .bind(SYNC_DN, SECRET)
        .entries(users(1_000))
        .fail_after_entries(700)
        .start()
        .unwrap();
    let mut ldap = bound(&server).await;
    let mut stream = ldap
        .streaming_search_with(
            PagedResults::new(500),
            BASE,
            Scope::Subtree,
            "(objectClass=user)",
            vec!["cn"],
        )
        .await
        .unwrap();
    let mut received = 0;
    let error = loop {
        match stream.next().await {
            Ok(Some(_)) => received += 1,
            Ok(None) => panic!("the search finished after {received} entries"),
            Err(error) => break error,
        }
    };
    assert_eq!(received, 700);
    assert!(matches!(error, LdapError::EndOfStream), "{error:?}");

    server.set_fail_after_entries(None);
    let mut ldap = bound(&server).await;
    let all = search(
        &mut ldap,
        BASE,
        Scope::Subtree,
        "(objectClass=user)",
        &["1.1"],
    )
    .await;
    assert_eq!(all.len(), 1_000);
}

#[tokio::test]
async fn referrals_and_unknown_critical_controls_behave_like_a_dc() {
    let server = AdServer::builder()
        .bind(SYNC_DN, SECRET)
        .entries(users(2))
        .referrals(true)
        .start()
        .unwrap();
    let mut ldap = bound(&server).await;
    let (entries, result) = ldap
        .search(BASE, Scope::Subtree, "(objectClass=user)", vec!["cn"])
        .await
        .unwrap()
        .success()
        .unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(result.refs.len(), 3);
    assert!(result.refs[0].starts_with("ldap://ForestDnsZones.corp.example/"));
    let critical = ldap
        .with_controls(ldap3::controls::RawControl {
            ctype: "1.2.3.4".to_owned(),
            crit: true,
            val: None,
        })
        .search(BASE, Scope::Subtree, "(objectClass=user)", vec!["cn"])
        .await
        .unwrap();
    assert_eq!(critical.1.rc, 12);
}

#[tokio::test]
async fn changes_show_in_later_searches_and_stale_cookies_are_refused() {
    let server = server(users(10));
    let mut ldap = bound(&server).await;
    server
        .upsert_entry(user(5).with("department", ["Sales"]).with_usn(500))
        .unwrap();
    server.upsert_entry(user(11).with_usn(501)).unwrap();
    assert!(server.remove_entry("CN=user00001,CN=Users"));
    let changed = search(
        &mut ldap,
        BASE,
        Scope::Subtree,
        "(uSNChanged>=500)",
        &["department"],
    )
    .await;
    assert_eq!(changed.len(), 2);
    let total = search(
        &mut ldap,
        BASE,
        Scope::Subtree,
        "(objectClass=user)",
        &["1.1"],
    )
    .await;
    assert_eq!(total.len(), 10);
    assert!(
        total
            .iter()
            .all(|entry| entry.attrs.is_empty() && entry.bin_attrs.is_empty())
    );

    let stale = ldap
        .with_controls(ldap3::controls::PagedResults {
            size: 5,
            cookie: vec![0, 0, 0, 9],
        })
        .search(BASE, Scope::Subtree, "(objectClass=user)", vec!["cn"])
        .await
        .unwrap();
    assert_eq!(stale.1.rc, 1);
    let types_only = ldap
        .with_search_options(ldap3::SearchOptions::new().typesonly(true))
        .search(
            BASE,
            Scope::Subtree,
            "(sAMAccountName=user00005)",
            vec!["department"],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
    let entry = SearchEntry::construct(types_only.0.into_iter().next().unwrap());
    assert_eq!(entry.attrs["department"], Vec::<String>::new());
}

#[test]
fn a_sync_test_can_start_and_stop_the_server() {
    let server = server(users(1));
    let url = server.url();
    assert!(url.starts_with("ldap://127.0.0.1:"));
    assert!(std::net::TcpStream::connect(server.addr()).is_ok());
    drop(server);
    assert!(
        AdServer::builder()
            .entry(AdEntry::new("CN=x,DC=other,DC=example"))
            .start()
            .is_err()
    );
}

#[test]
fn escaping_round_trips_binary_and_special_characters() {
    let raw = [0xff, b'(', b'*', b')', b'\\', 0, b'a', 0xc3, 0xa9];
    assert_eq!(escape(&raw), "\\ff\\28\\2a\\29\\5c\\00a\u{e9}");
    assert_eq!(unescape(&escape(&raw)), raw);
    assert_eq!(unescape("\\+f\\4"), b"\\+f\\4");
}

#[test]
fn generalized_time_formats_utc_instants() {
    assert_eq!(generalized_time(0), "19700101000000.0Z");
    assert_eq!(
        generalized_time(1_704_067_200 + 86_399),
        "20240101235959.0Z"
    );
    assert_eq!(generalized_time(951_782_400), "20000229000000.0Z");
}
