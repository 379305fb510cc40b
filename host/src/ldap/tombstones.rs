//! Active Directory's deletions. Deleting an entry leaves a tombstone: `isDeleted`
//! set, moved to the naming context's `CN=Deleted Objects`, most attributes stripped
//! but `objectGUID` kept, and `uSNChanged` (and `whenChanged`) moved on. A search with
//! the Show Deleted control finds the tombstones changed since an incremental read's
//! mark, and so the users deleted since: by their objectGUID, the id the Active
//! Directory mapping gives its users.

use ldap3::adapters::PagedResults;
use ldap3::controls::RawControl;
use ldap3::{Ldap, Scope};

use super::entry::decode;
use super::error::DirectoryError;
use super::filter;
use super::search::{SearchSpec, library_error};

/// The Show Deleted control (LDAP_SERVER_SHOW_DELETED_OID).
pub const SHOW_DELETED_OID: &str = "1.2.840.113556.1.4.417";

/// The directory ids of the users deleted since `mark`: tombstones of user objects under
/// `naming_context` whose `change_attribute` is at or after it. Each tombstone gives the
/// values it kept of the tenant's `identifiers`: `objectGUID` in its text form
/// (`3f2504e0-4f89-11d3-9a0c-0305e82c3301`), others (`sAMAccountName`…) as text, so that
/// a user is found whichever of them its mapping took as id. Paged like every search;
/// `spec` gives the page size and the timeout.
pub async fn deleted_since(
    ldap: &Ldap,
    naming_context: &str,
    change_attribute: &str,
    mark: &str,
    identifiers: &[String],
    spec: &SearchSpec,
) -> Result<Vec<String>, DirectoryError> {
    let mut attributes: Vec<&str> = identifiers.iter().map(String::as_str).collect();
    if !attributes
        .iter()
        .any(|name| name.eq_ignore_ascii_case("objectGUID"))
    {
        attributes.push("objectGUID");
    }
    let filter = format!(
        "(&(isDeleted=TRUE)(objectClass=user)({change_attribute}>={}))",
        filter::escape(mark)
    );
    let operation = || format!("the search of the tombstones under `{naming_context}`");
    let mut handle = ldap.clone();
    let mut search = handle
        .with_controls(RawControl {
            ctype: SHOW_DELETED_OID.into(),
            crit: true,
            val: None,
        })
        .with_timeout(spec.timeout)
        .streaming_search_with(
            PagedResults::new(i32::try_from(spec.page_size).unwrap_or(i32::MAX)),
            naming_context,
            Scope::Subtree,
            &filter,
            attributes,
        )
        .await
        .map_err(|err| library_error(err, operation(), 0, spec.timeout))?;
    let mut ids = Vec::new();
    loop {
        let item = search
            .next()
            .await
            .map_err(|err| library_error(err, operation(), ids.len() as u64, spec.timeout))?;
        let Some(item) = item else { break };
        if item.is_ref() || item.is_intermediate() {
            continue;
        }
        let raw = decode(item.0)?;
        let before = ids.len();
        for attribute in &raw.attributes {
            if attribute.name.eq_ignore_ascii_case("objectGUID") {
                ids.extend(
                    attribute
                        .values
                        .iter()
                        .filter_map(|bytes| filter::guid_text(bytes)),
                );
            } else {
                ids.extend(
                    attribute
                        .values
                        .iter()
                        .filter_map(|bytes| String::from_utf8(bytes.clone()).ok()),
                );
            }
        }
        if ids.len() == before {
            tracing::warn!(dn = %raw.dn, "a tombstone without an identifier is ignored");
        }
    }
    let result = search.finish().await;
    if result.rc != 0 {
        return Err(DirectoryError::Search {
            base: naming_context.to_owned(),
            filter,
            code: result.rc,
            message: result.text,
        });
    }
    Ok(ids)
}
