//! Search: scope, filter, AD's paging and MaxPageSize limit, range retrieval, continuation
//! references, the root DSE, and the fault injected after N entries.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use ldap3_proto::control::LdapControl;
use ldap3_proto::proto::{
    LdapMsg, LdapOp, LdapPartialAttribute, LdapResultCode, LdapSearchRequest,
    LdapSearchResultEntry, LdapSearchResultReference, LdapSearchScope,
};

use super::attributes::Selection;
use super::directory::{Directory, normalize_dn};
use super::filter::{Matcher, render};
use super::session::{Flow, Session, done, message, result};
use super::{AdEntry, RecordedSearch, SearchScope};

const PAGED_RESULTS: &str = "1.2.840.113556.1.4.319";
const RANGE_NO_ERROR: &str = "1.2.840.113556.1.4.1948";
/// Controls a client may mark critical without being refused.
const SUPPORTED_CONTROLS: &[&str] = &[
    PAGED_RESULTS,
    RANGE_NO_ERROR,
    "1.2.840.113556.1.4.801",
    "1.2.840.113556.1.4.529",
    "1.2.840.113556.1.4.417",
    "1.2.840.113556.1.4.1338",
    "1.2.840.113556.1.4.802",
    "2.16.840.1.113730.3.4.2",
];

// AD's diagnostic messages, so logs from the tests read like logs from the field.
const NOT_BOUND: &str = "000004DC: LdapErr: DSID-0C090A5C, comment: In order to perform this \
     operation a successful bind must be completed on the connection., data 0, v4563";
const BAD_COOKIE: &str =
    "00002024: SvcErr: DSID-03100884, problem 5012 (DIR_ERROR), data 0 (paged search cookie)";
const RANGE_PAST_END: &str = "000020EF: SvcErr: DSID-03100884, problem 5012 (DIR_ERROR), data 0";

/// The server side of a paged search between pages.
pub(super) struct PagedSearch {
    /// Base, scope, filter and attributes: a continuation must repeat them.
    fingerprint: String,
    /// Normalised DNs still to send.
    remaining: Vec<String>,
}

impl Session {
    /// Answers a SearchRequest; `Flow::Close` when an injected fault ends the connection.
    pub(super) fn search(
        &mut self,
        msgid: i32,
        request: &LdapSearchRequest,
        controls: &[LdapControl],
    ) -> (Vec<LdapMsg>, Flow) {
        let filter = render(&request.filter);
        let scope = match request.scope {
            LdapSearchScope::Base => SearchScope::Base,
            LdapSearchScope::OneLevel => SearchScope::OneLevel,
            _ => SearchScope::Subtree,
        };
        let paged = controls.iter().find_map(|control| match control {
            LdapControl::SimplePagedResults { size, cookie } => Some((*size, cookie.clone())),
            _ => None,
        });
        self.shared.record(RecordedSearch {
            base: request.base.clone(),
            scope,
            filter: filter.clone(),
            attributes: request.attrs.clone(),
            page_size: paged.as_ref().map(|(size, _)| *size),
        });
        if let Some(oid) = controls.iter().find_map(unsupported_critical) {
            let text = format!("critical control {oid} is not supported");
            return (
                vec![done(
                    msgid,
                    LdapResultCode::UnavailableCriticalExtension,
                    &text,
                )],
                Flow::Continue,
            );
        }
        let selection = Selection::parse(&request.attrs, request.typesonly);
        let range_no_error = controls.iter().any(
            |control| matches!(control, LdapControl::Unknown { oid, .. } if oid == RANGE_NO_ERROR),
        );
        let shared = Arc::clone(&self.shared);
        let directory = shared.directory();
        if request.base.trim().is_empty() && scope == SearchScope::Base {
            let root = root_dse(&directory);
            let attributes = selection.apply(&root, usize::MAX, true).unwrap_or_default();
            let entry = search_entry(msgid, String::new(), attributes);
            return (
                vec![entry, done(msgid, LdapResultCode::Success, "")],
                Flow::Continue,
            );
        }
        if self.bound.is_none() {
            return (
                vec![done(msgid, LdapResultCode::OperationsError, NOT_BOUND)],
                Flow::Continue,
            );
        }
        let base = normalize_dn(&request.base);
        if directory.get(&base).is_none() {
            let text = format!(
                "0000208D: NameErr: DSID-03100241, problem 2001 (NO_OBJECT), data 0, best match of:\n\t'{}'\n",
                directory.best_match(&base)
            );
            let res = result(
                LdapResultCode::NoSuchObject,
                directory.best_match(&base),
                &text,
            );
            return (
                vec![message(msgid, LdapOp::SearchResultDone(res))],
                Flow::Continue,
            );
        }
        let matcher = Matcher::compile(&request.filter);
        let matching = || -> Vec<String> {
            directory
                .iter()
                .filter(|stored| in_scope(&stored.norm, &stored.parent, &base, scope))
                .filter(|stored| matcher.matches(&stored.entry, &directory))
                .map(|stored| stored.norm.clone())
                .collect()
        };
        let max_page = self.shared.config.max_page_size;
        let (batch, code, response_control, first) = match paged {
            Some((size, cookie)) => {
                let fingerprint = format!("{base}\n{scope:?}\n{filter}\n{:?}", request.attrs);
                let first = cookie.is_empty();
                let Some((page, cookie)) = self.next_page(size, &cookie, fingerprint, matching)
                else {
                    let reply = done(msgid, LdapResultCode::OperationsError, BAD_COOKIE);
                    return (vec![reply], Flow::Continue);
                };
                let control = LdapControl::SimplePagedResults { size: 0, cookie };
                (page, LdapResultCode::Success, Some(control), first)
            }
            None => {
                let (entries, code) = size_limited(matching(), request.sizelimit, max_page);
                (entries, code, None, true)
            }
        };
        let fail_after = self.shared.fail_after_entries.load(Ordering::SeqCst);
        let mut replies = Vec::with_capacity(batch.len() + 4);
        for norm in batch {
            let Some(stored) = directory.get(&norm) else {
                continue;
            };
            match selection.apply(
                &stored.entry,
                self.shared.config.max_val_range,
                range_no_error,
            ) {
                Ok(attributes) => {
                    replies.push(search_entry(msgid, stored.entry.dn.clone(), attributes))
                }
                Err(error) => {
                    let text = format!("{RANGE_PAST_END} ({})", error.attribute);
                    replies.push(done(msgid, LdapResultCode::OperationsError, &text));
                    return (replies, Flow::Continue);
                }
            }
            self.entries_sent += 1;
            if self.entries_sent >= fail_after {
                return (replies, Flow::Close);
            }
        }
        if first
            && self.shared.config.referrals
            && scope == SearchScope::Subtree
            && base == directory.base_norm()
        {
            // One SearchResultReference per subordinate naming context, as a DC sends them.
            for uri in referrals(directory.base_dn()) {
                let reference = LdapSearchResultReference { uris: vec![uri] };
                replies.push(message(msgid, LdapOp::SearchResultReference(reference)));
            }
        }
        let mut last = done(msgid, code, "");
        last.ctrl.extend(response_control);
        replies.push(last);
        (replies, Flow::Continue)
    }
}

impl Session {
    /// The next page of a paged search and the cookie for the one after (empty when this
    /// is the last); `None` for a cookie this connection did not hand out for this search.
    fn next_page(
        &mut self,
        size: i64,
        cookie: &[u8],
        fingerprint: String,
        matching: impl FnOnce() -> Vec<String>,
    ) -> Option<(Vec<String>, Vec<u8>)> {
        let mut pending = if cookie.is_empty() {
            matching()
        } else {
            let state = self.pages.remove(cookie)?;
            if state.fingerprint != fingerprint {
                return None;
            }
            state.remaining
        };
        if size <= 0 && !cookie.is_empty() {
            // A zero page size with a cookie abandons the paged search (RFC 2696).
            pending.clear();
        }
        let max_page = self.shared.config.max_page_size;
        let page = usize::try_from(size)
            .ok()
            .filter(|&size| size > 0)
            .map_or(max_page, |size| size.min(max_page));
        let remaining = pending.split_off(page.min(pending.len()));
        if remaining.is_empty() {
            return Some((pending, Vec::new()));
        }
        let next = self.next_cookie.to_be_bytes().to_vec();
        self.next_cookie += 1;
        let state = PagedSearch {
            fingerprint,
            remaining,
        };
        self.pages.insert(next.clone(), state);
        Some((pending, next))
    }
}

/// An unpaged search's entries: AD sends at most MaxPageSize (or the client's smaller
/// size limit), then sizeLimitExceeded.
fn size_limited(
    mut entries: Vec<String>,
    client_limit: i32,
    max_page: usize,
) -> (Vec<String>, LdapResultCode) {
    let limit = usize::try_from(client_limit)
        .ok()
        .filter(|&limit| limit > 0)
        .map_or(max_page, |limit| limit.min(max_page));
    if entries.len() > limit {
        entries.truncate(limit);
        (entries, LdapResultCode::SizeLimitExceeded)
    } else {
        (entries, LdapResultCode::Success)
    }
}

fn search_entry(msgid: i32, dn: String, attributes: Vec<LdapPartialAttribute>) -> LdapMsg {
    message(
        msgid,
        LdapOp::SearchResultEntry(LdapSearchResultEntry { dn, attributes }),
    )
}

/// The OID of a control marked critical that this server does not implement.
fn unsupported_critical(control: &LdapControl) -> Option<String> {
    match control {
        LdapControl::Unknown {
            oid,
            criticality: true,
            ..
        } if !SUPPORTED_CONTROLS.contains(&oid.as_str()) => Some(oid.clone()),
        LdapControl::SyncRequest {
            criticality: true, ..
        } => Some("1.3.6.1.4.1.4203.1.9.1.1".to_owned()),
        LdapControl::AdDirsync { .. } => Some("1.2.840.113556.1.4.841".to_owned()),
        _ => None,
    }
}

fn in_scope(norm: &str, parent: &str, base: &str, scope: SearchScope) -> bool {
    match scope {
        SearchScope::Base => norm == base,
        SearchScope::OneLevel => parent == base,
        SearchScope::Subtree => {
            norm == base
                || norm
                    .strip_suffix(base)
                    .is_some_and(|head| head.ends_with(',') && !head.ends_with("\\,"))
        }
    }
}

/// The DNS name of a domain from its DN (`DC=corp,DC=example` → `corp.example`).
fn dns_name(base_dn: &str) -> String {
    base_dn
        .split(',')
        .filter_map(|rdn| rdn.split_once('='))
        .filter(|(kind, _)| kind.trim().eq_ignore_ascii_case("dc"))
        .map(|(_, value)| value.trim())
        .collect::<Vec<_>>()
        .join(".")
}

/// The continuation references a DC sends for a subtree search from the domain root.
fn referrals(base_dn: &str) -> Vec<String> {
    let domain = dns_name(base_dn);
    vec![
        format!("ldap://ForestDnsZones.{domain}/DC=ForestDnsZones,{base_dn}"),
        format!("ldap://DomainDnsZones.{domain}/DC=DomainDnsZones,{base_dn}"),
        format!("ldap://{domain}/CN=Configuration,{base_dn}"),
    ]
}

/// The root DSE, readable without a bind as on AD.
fn root_dse(directory: &Directory) -> AdEntry {
    let base = directory.base_dn();
    let configuration = format!("CN=Configuration,{base}");
    AdEntry::new("")
        .with("defaultNamingContext", [base])
        .with("rootDomainNamingContext", [base])
        .with("configurationNamingContext", [configuration.as_str()])
        .with(
            "schemaNamingContext",
            [format!("CN=Schema,{configuration}")],
        )
        .with("namingContexts", [base, configuration.as_str()])
        .with("dnsHostName", [format!("dc01.{}", dns_name(base))])
        .with("highestCommittedUSN", [directory.highest_usn().to_string()])
        .with("supportedLDAPVersion", ["3", "2"])
        .with("supportedControl", SUPPORTED_CONTROLS.iter().copied())
        .with("supportedCapabilities", ["1.2.840.113556.1.4.800"])
        .with("isSynchronized", ["TRUE"])
}
