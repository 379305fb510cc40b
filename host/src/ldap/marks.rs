//! Where the next incremental read starts, taken from the server before a read's
//! search: a change made while the read runs is then read again next time, never
//! skipped (the highest mark among the entries read would skip an entry read early and
//! changed during the read). Microsoft documents USN polling this way:
//! `highestCommittedUSN` before the search.

use std::time::Duration;

use ldap3::{Ldap, Scope};

use super::dirsync::DIRSYNC_OID;
use super::entry::{RawEntry, decode};
use super::error::DirectoryError;
use super::notify::NOTIFICATION_OID;
use super::search::library_error;
use super::syncrepl::SYNC_REQUEST_OID;
use super::tombstones::SHOW_DELETED_OID;

/// What the root DSE (and the naming context's entry) tell of a server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerFacts {
    /// The server offers RFC 4533 content synchronization (OpenLDAP's `syncprov`).
    pub content_sync: bool,
    /// The server offers the Show Deleted control (Active Directory's tombstones).
    pub show_deleted: bool,
    /// The server offers Active Directory's DirSync control.
    pub dirsync: bool,
    /// The server offers Active Directory's change notifications.
    pub notifications: bool,
    /// The naming context holding the base, when the server names one.
    pub naming_context: Option<String>,
    /// Active Directory's `highestCommittedUSN`.
    pub highest_usn: Option<String>,
    /// Active Directory's `currentTime` (generalized time).
    pub current_time: Option<String>,
    /// OpenLDAP's `contextCSN` of the naming context holding the base (one per
    /// provider).
    pub context_csns: Vec<String>,
    /// Which server the marks come from, when marks are its own (Active Directory's
    /// USNs): its `invocationId`, else its `dsServiceName`. `None` when marks are
    /// comparable across servers (times, CSNs).
    pub origin: Option<String>,
}

/// The values of `name` in `entry`, as text.
fn values(entry: &RawEntry, name: &str) -> Vec<String> {
    entry
        .attributes
        .iter()
        .find(|attribute| attribute.name.eq_ignore_ascii_case(name))
        .map(|attribute| {
            attribute
                .values
                .iter()
                .map(|value| String::from_utf8_lossy(value).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn first(entry: &RawEntry, name: &str) -> Option<String> {
    values(entry, name).into_iter().next()
}

async fn base_entry(
    ldap: &Ldap,
    dn: &str,
    attributes: &[&str],
    timeout: Duration,
) -> Result<Option<RawEntry>, DirectoryError> {
    let mut handle = ldap.clone();
    let (entries, result) = handle
        .with_timeout(timeout)
        .search(dn, Scope::Base, "(objectClass=*)", attributes.to_vec())
        .await
        .map_err(|err| library_error(err, format!("the read of `{dn}`"), 0, timeout))?
        .non_error()
        .map_err(|err| library_error(err, format!("the read of `{dn}`"), 0, timeout))?;
    if result.rc != 0 {
        return Ok(None);
    }
    entries
        .into_iter()
        .find(|entry| !entry.is_ref() && !entry.is_intermediate())
        .map(|entry| decode(entry.0))
        .transpose()
}

/// Reads the root DSE and, for a base under one of its naming contexts, that context's
/// `contextCSN`. Attributes the server does not publish are left out.
pub async fn server_facts(
    ldap: &Ldap,
    base: &str,
    timeout: Duration,
) -> Result<ServerFacts, DirectoryError> {
    let root = base_entry(
        ldap,
        "",
        &[
            "supportedControl",
            "highestCommittedUSN",
            "currentTime",
            "dsServiceName",
            "namingContexts",
        ],
        timeout,
    )
    .await?;
    let Some(root) = root else {
        return Ok(ServerFacts::default());
    };
    let controls = values(&root, "supportedControl");
    let offers = |wanted: &str| controls.iter().any(|oid| oid == wanted);
    let mut facts = ServerFacts {
        content_sync: offers(SYNC_REQUEST_OID),
        show_deleted: offers(SHOW_DELETED_OID),
        dirsync: offers(DIRSYNC_OID),
        notifications: offers(NOTIFICATION_OID),
        highest_usn: first(&root, "highestCommittedUSN"),
        current_time: first(&root, "currentTime"),
        ..ServerFacts::default()
    };
    let base_lower = base.to_ascii_lowercase();
    let context = values(&root, "namingContexts")
        .into_iter()
        .filter(|context| {
            let context = context.to_ascii_lowercase();
            !context.is_empty()
                && (base_lower == context || base_lower.ends_with(&format!(",{context}")))
        })
        .max_by_key(String::len);
    if let Some(context) = &context
        && facts.highest_usn.is_none()
        && let Some(entry) = base_entry(ldap, context, &["contextCSN"], timeout).await?
    {
        facts.context_csns = values(&entry, "contextCSN");
    }
    facts.naming_context = context;
    if let Some(service) = first(&root, "dsServiceName") {
        let invocation = base_entry(ldap, &service, &["invocationId"], timeout)
            .await
            .ok()
            .flatten()
            .and_then(|entry| {
                entry
                    .attributes
                    .iter()
                    .find(|attribute| attribute.name.eq_ignore_ascii_case("invocationId"))
                    .and_then(|attribute| attribute.values.first())
                    .map(|bytes| {
                        bytes
                            .iter()
                            .map(|byte| format!("{byte:02x}"))
                            .collect::<String>()
                    })
            });
        facts.origin = Some(match invocation {
            Some(id) => format!("invocationId {id}"),
            None => format!("dsServiceName {service}"),
        });
    }
    Ok(facts)
}

impl ServerFacts {
    /// The value of `change_attribute` at which the next incremental read starts,
    /// taken now; `None` when the server publishes nothing to take it from.
    pub fn mark_for(&self, change_attribute: &str) -> Option<String> {
        let oldest_csn = self.context_csns.iter().min();
        match change_attribute.to_ascii_lowercase().as_str() {
            "usnchanged" | "usncreated" => self.highest_usn.clone(),
            "entrycsn" => oldest_csn.cloned(),
            "modifytimestamp" | "whenchanged" => oldest_csn
                .and_then(|csn| csn_time(csn))
                .or_else(|| self.current_time.clone()),
            _ => None,
        }
    }
}

/// The generalized time of a CSN (`20261207115000.123456Z#000000#000#000000` →
/// `20261207115000Z`), at whole seconds as `modifyTimestamp` is.
fn csn_time(csn: &str) -> Option<String> {
    let seconds = csn.get(..14)?;
    seconds
        .bytes()
        .all(|byte| byte.is_ascii_digit())
        .then(|| format!("{seconds}Z"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_come_from_the_attribute_the_server_keeps() {
        let ad = ServerFacts {
            highest_usn: Some("5744".into()),
            current_time: Some("20261207115000.0Z".into()),
            ..ServerFacts::default()
        };
        assert_eq!(ad.mark_for("uSNChanged").as_deref(), Some("5744"));
        assert_eq!(
            ad.mark_for("whenChanged").as_deref(),
            Some("20261207115000.0Z")
        );
        let openldap = ServerFacts {
            context_csns: vec![
                "20261207115001.000002Z#000000#001#000000".into(),
                "20261207115000.123456Z#000000#000#000000".into(),
            ],
            ..ServerFacts::default()
        };
        assert_eq!(
            openldap.mark_for("modifyTimestamp").as_deref(),
            Some("20261207115000Z")
        );
        assert_eq!(
            openldap.mark_for("entryCSN").as_deref(),
            Some("20261207115000.123456Z#000000#000#000000")
        );
        assert_eq!(ServerFacts::default().mark_for("modifyTimestamp"), None);
        assert_eq!(openldap.mark_for("customStamp"), None);
        assert_eq!(csn_time("2026"), None);
    }
}
