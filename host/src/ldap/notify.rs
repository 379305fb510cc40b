//! Active Directory's change notifications (LDAP_SERVER_NOTIFICATION_OID,
//! 1.2.840.113556.1.4.528): a search that never ends, answered with an entry each time
//! an object under its base changes. AD asks for the filter `(objectClass=*)` and, for a
//! subtree, the head of a naming context as base; with the Show Deleted control, a
//! deletion (an object moving to `CN=Deleted Objects`) is announced too.
//!
//! The watch only counts the announcements: the sync that follows reads the changes by
//! its USN mark, tombstones and DirSync cookie, so nothing is lost between an
//! announcement and the read, and a burst is one sync.

use ldap3::controls::RawControl;
use ldap3::{Ldap, Scope};

use super::error::DirectoryError;
use super::search::library_error;
use super::tombstones::SHOW_DELETED_OID;

/// The change notification control.
pub const NOTIFICATION_OID: &str = "1.2.840.113556.1.4.528";

/// Keeps a notification search open on `naming_context` and adds one to `changed` once
/// it is sent (for what changed before) and for each change announced. Returns only with an error: the connection lost, or the
/// server ending the search.
pub async fn persist(
    ldap: &Ldap,
    naming_context: &str,
    changed: &tokio::sync::watch::Sender<u64>,
) -> Result<(), DirectoryError> {
    let operation = || format!("the change notification search of `{naming_context}`");
    let control = |oid: &str| RawControl {
        ctype: oid.to_owned(),
        crit: true,
        val: None,
    };
    let mut handle = ldap.clone();
    let mut search = handle
        .with_controls(vec![control(NOTIFICATION_OID), control(SHOW_DELETED_OID)])
        .streaming_search(
            naming_context,
            Scope::Subtree,
            "(objectClass=*)",
            vec!["1.1"],
        )
        .await
        .map_err(|err| library_error(err, operation(), 0, std::time::Duration::ZERO))?;
    // The first sync, for what changed while nobody watched, once the search is sent:
    // a change after the mark that sync takes is announced.
    changed.send_modify(|count| *count += 1);
    let mut announced = 0u64;
    loop {
        let item = search
            .next()
            .await
            .map_err(|err| library_error(err, operation(), announced, std::time::Duration::ZERO))?;
        match item {
            Some(item) if item.is_ref() || item.is_intermediate() => {}
            Some(_) => {
                announced += 1;
                changed.send_modify(|count| *count += 1);
            }
            None => {
                let result = search.finish().await;
                return Err(DirectoryError::Search {
                    base: naming_context.to_owned(),
                    filter: "(objectClass=*)".into(),
                    code: result.rc,
                    message: format!(
                        "the server ended the change notification search: {}",
                        result.text
                    ),
                });
            }
        }
    }
}
