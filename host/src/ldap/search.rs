//! Paged searches (RFC 2696) streamed in batches, with Active Directory range
//! retrieval for large multi-valued attributes. A search either ends with the server's
//! success result or fails: an interrupted, limited or referred search is an error,
//! never a short list.

use std::time::Duration;

use ldap3::adapters::PagedResults;
use ldap3::{Ldap, LdapError, Scope};
use tokio::sync::mpsc;

use super::entry::{EntryShaper, RawEntry, ShapeNotes, decode};
use super::error::DirectoryError;
use crate::config::SearchScope;
use crate::plugin::model::Entry;

/// One search.
#[derive(Debug, Clone)]
pub struct SearchSpec {
    /// Search base.
    pub base: String,
    /// Scope.
    pub scope: SearchScope,
    /// Filter (RFC 4515 string).
    pub filter: String,
    /// Attributes to return; the server's default set when empty.
    pub attributes: Vec<String>,
    /// Entries per page.
    pub page_size: u32,
    /// Timeout for each answer.
    pub timeout: Duration,
}

/// What a finished search read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SearchStats {
    /// Entries received.
    pub entries: u64,
    /// Search continuation references received (never followed).
    pub references: u64,
    /// Of the references, those to Active Directory's own partitions beside the
    /// domain (`CN=Configuration`, `DC=DomainDnsZones`, `DC=ForestDnsZones`), which
    /// hold no users: a search from the domain root always gets them.
    pub partition_references: u64,
    /// Follow-up searches for ranged attribute values.
    pub range_searches: u64,
    /// What shaping noticed.
    pub notes: ShapeNotes,
}

pub(super) fn scope(scope: SearchScope) -> Scope {
    match scope {
        SearchScope::Base => Scope::Base,
        SearchScope::One => Scope::OneLevel,
        SearchScope::Sub => Scope::Subtree,
    }
}

/// Runs `spec` on `ldap` and sends the entries in batches of `batch_size` to `sink`.
/// Returns when the server has confirmed the end of the result set; the last batch is
/// sent before that. Fails with [`DirectoryError::Cancelled`] when `sink` is closed.
pub async fn stream(
    ldap: &Ldap,
    spec: &SearchSpec,
    shaper: &EntryShaper,
    batch_size: usize,
    sink: &mpsc::Sender<Vec<Entry>>,
) -> Result<SearchStats, DirectoryError> {
    let mut stats = SearchStats::default();
    let mut batch = Vec::with_capacity(batch_size);
    let mut handle = ldap.clone();
    let mut follow_up = ldap.clone();
    let operation = || format!("the search of `{}`", spec.base);
    let mut search = handle
        .with_timeout(spec.timeout)
        .streaming_search_with(
            PagedResults::new(i32::try_from(spec.page_size).unwrap_or(i32::MAX)),
            &spec.base,
            scope(spec.scope),
            &spec.filter,
            spec.attributes.clone(),
        )
        .await
        .map_err(|err| library_error(err, operation(), 0, spec.timeout))?;
    loop {
        let item = search
            .next()
            .await
            .map_err(|err| library_error(err, operation(), stats.entries, spec.timeout))?;
        let Some(item) = item else { break };
        if item.is_ref() {
            if is_partition_reference(&item.0) {
                stats.partition_references += 1;
            } else {
                stats.references += 1;
            }
            continue;
        }
        if item.is_intermediate() {
            continue;
        }
        let mut raw = decode(item.0)?;
        stats.range_searches += complete_ranges(&mut follow_up, &mut raw, spec).await?;
        stats.entries += 1;
        batch.push(shaper.shape(raw, &mut stats.notes));
        if batch.len() >= batch_size {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_size));
            if sink.send(full).await.is_err() {
                let _ = search.finish().await;
                return Err(DirectoryError::Cancelled);
            }
        }
    }
    let result = search.finish().await;
    if result.rc != 0 {
        let mut message = result.text.clone();
        if !result.refs.is_empty() {
            message.push_str(&format!(" (referrals: {})", result.refs.join(", ")));
        }
        return Err(DirectoryError::Search {
            base: spec.base.clone(),
            filter: spec.filter.clone(),
            code: result.rc,
            message,
        });
    }
    if !batch.is_empty() && sink.send(batch).await.is_err() {
        return Err(DirectoryError::Cancelled);
    }
    Ok(stats)
}

/// The first RDNs of Active Directory's application and configuration partitions.
const AD_PARTITIONS: &[&str] = &["cn=configuration", "dc=domaindnszones", "dc=forestdnszones"];

/// Whether a search continuation reference (`[APPLICATION 19] SEQUENCE OF URI`) points
/// only at Active Directory's partitions beside the domain, which hold no users.
pub(super) fn is_partition_reference(reference: &ldap3::asn1::StructureTag) -> bool {
    let ldap3::asn1::PL::C(uris) = &reference.payload else {
        return false;
    };
    !uris.is_empty()
        && uris.iter().all(|uri| {
            let ldap3::asn1::PL::P(bytes) = &uri.payload else {
                return false;
            };
            let uri = String::from_utf8_lossy(bytes).to_ascii_lowercase();
            // ldap://host[:port]/DN[?attributes…]: the DN, percent-decoded enough for
            // its first RDN (which has no special characters here).
            let dn = uri
                .split_once("://")
                .and_then(|(_, rest)| rest.split_once('/'))
                .map(|(_, dn)| dn.split('?').next().unwrap_or_default())
                .unwrap_or_default()
                .replace("%3d", "=")
                .replace("%2c", ",")
                .replace("%20", " ");
            let first = dn.split(',').next().unwrap_or_default().trim();
            AD_PARTITIONS.contains(&first)
        })
}

/// Fetches the remaining values of every ranged attribute of `raw` (Active
/// Directory's `member;range=0-1499`), one base search per chunk. Returns the number of
/// searches made.
pub(super) async fn complete_ranges(
    ldap: &mut Ldap,
    raw: &mut RawEntry,
    spec: &SearchSpec,
) -> Result<u64, DirectoryError> {
    let mut searches = 0;
    for index in 0..raw.attributes.len() {
        while let Some(start) = raw.attributes[index].more_from {
            let name = raw.attributes[index].name.clone();
            let range_error = |reason: String| DirectoryError::Range {
                dn: raw.dn.clone(),
                attribute: name.clone(),
                reason,
            };
            if searches > 100_000 {
                return Err(range_error("more than 100,000 range searches".into()));
            }
            let wanted = format!("{name};range={start}-*");
            searches += 1;
            let (entries, _) = ldap
                .with_timeout(spec.timeout)
                .search(
                    &raw.dn,
                    Scope::Base,
                    "(objectClass=*)",
                    vec![wanted.as_str()],
                )
                .await
                .map_err(|err| {
                    library_error(err, format!("range retrieval of {wanted}"), 0, spec.timeout)
                })?
                .success()
                .map_err(|err| range_error(err.to_string()))?;
            let chunk = entries
                .into_iter()
                .filter(|entry| !entry.is_ref())
                .map(|entry| decode(entry.0))
                .next()
                .ok_or_else(|| range_error("the entry is gone".into()))??
                .attributes
                .into_iter()
                .find(|attribute| attribute.name.eq_ignore_ascii_case(&name))
                .ok_or_else(|| range_error(format!("no values returned for {wanted}")))?;
            let attribute = &mut raw.attributes[index];
            if chunk.values.is_empty() && chunk.more_from.is_some() {
                return Err(range_error(format!("empty chunk at {start}")));
            }
            attribute.values.extend(chunk.values);
            attribute.more_from = chunk.more_from;
        }
    }
    Ok(searches)
}

/// Maps a client-library error to what it means for the sync.
pub(super) fn library_error(
    err: LdapError,
    operation: String,
    entries: u64,
    timeout: Duration,
) -> DirectoryError {
    match err {
        LdapError::Timeout { .. } => DirectoryError::Timeout {
            operation,
            after: timeout,
        },
        LdapError::LdapResult { result } => DirectoryError::Search {
            base: operation,
            filter: String::new(),
            code: result.rc,
            message: result.text,
        },
        other => DirectoryError::Connection {
            operation,
            entries,
            cause: other.to_string(),
        },
    }
}
