//! Active Directory's DirSync control (1.2.840.113556.1.4.841), for group memberships.
//!
//! Adding a member to a group, or removing one, changes the group, not the member
//! (`memberOf` is a back-link): an incremental read by `uSNChanged` finds the group and
//! can read its members again, but a member removed is no longer among them. DirSync
//! with incremental values answers exactly that: from a cookie, the groups changed and,
//! per group, the member values added (`member;range=1-1`) and removed
//! (`member;range=0-0`). The cookie is taken on every read of a tenant with groups
//! (before its user search, like every mark) and kept in the store beside the USN mark.
//!
//! Flags: incremental values, and object security, so that an account without the
//! "Replicating Directory Changes" right gets what it may read rather than a refusal.
//! The control's values are built and parsed here, with the bounds-checked BER reader.

use std::time::Duration;

use ldap3::controls::RawControl;
use ldap3::{Ldap, Scope};

use super::ber::{self, BerError, Reader, integer, tag, tlv};
use super::entry::decode_described;
use super::error::DirectoryError;
use super::search::library_error;

/// The DirSync control.
pub const DIRSYNC_OID: &str = "1.2.840.113556.1.4.841";

/// `LDAP_DIRSYNC_OBJECT_SECURITY`: check access on each object instead of requiring the
/// replication right.
const OBJECT_SECURITY: u32 = 0x0000_0001;
/// `LDAP_DIRSYNC_INCREMENTAL_VALUES`: send the linked values added and removed, not the
/// whole attribute.
const INCREMENTAL_VALUES: u32 = 0x8000_0000;

/// How many rounds (`moreResults`) one read may take before it is refused: a server
/// that keeps saying "more" must not hold a sync for ever.
const MAX_ROUNDS: usize = 10_000;

/// The most bytes one answer may bring (AD cuts an answer there and says "more"), so
/// that a full read's DirSync of every group does not come back in one piece.
pub const MAX_BYTES: i32 = 1 << 20;

/// The request control: flags, the most bytes per answer, the cookie (empty the first
/// time).
pub fn request_control(cookie: &[u8]) -> RawControl {
    // The flags are an unsigned 32-bit mask, sent as the signed INTEGER AD decodes.
    let flags = (OBJECT_SECURITY | INCREMENTAL_VALUES) as i32;
    let mut fields = tlv(tag::INTEGER, &integer(i64::from(flags)));
    fields.extend(tlv(tag::INTEGER, &integer(i64::from(MAX_BYTES))));
    fields.extend(tlv(tag::OCTET_STRING, cookie));
    RawControl {
        ctype: DIRSYNC_OID.to_owned(),
        crit: true,
        val: Some(tlv(tag::SEQUENCE, &fields)),
    }
}

/// The response control's value: whether more changes wait, and the cookie to ask
/// from next.
pub fn parse_response(value: &[u8]) -> Result<(bool, Vec<u8>), BerError> {
    let mut outer = Reader::new(value);
    let mut fields = Reader::new(outer.expect(tag::SEQUENCE, "DirSync response")?);
    let more = ber::small_integer(fields.expect(tag::INTEGER, "moreResults")?, "moreResults")?;
    fields.expect(tag::INTEGER, "unused")?;
    let cookie = fields.expect(tag::OCTET_STRING, "cookie")?.to_vec();
    Ok((more != 0, cookie))
}

/// What changed in the groups since a cookie.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupChanges {
    /// The groups whose members changed (or that were created), by DN.
    pub groups: Vec<String>,
    /// Member values removed from those groups, by DN.
    pub removed: Vec<String>,
    /// Groups deleted, by where they were (`lastKnownParent`; empty when the
    /// tombstone does not say): a tombstone keeps no members, so who was in them is
    /// not told.
    pub deleted_under: Vec<String>,
    /// Where the next read starts.
    pub cookie: Vec<u8>,
}

/// Reads the changes since `cookie` (everything, when `None`) of the groups matching
/// `filter` under `naming_context` (DirSync searches start at a naming context's
/// head). With `collect` false only the cookie is kept (a full read takes it for the
/// next incremental one, and needs none of the changes): the entries are streamed and
/// dropped, each answer bounded to [`MAX_BYTES`].
pub async fn group_changes(
    ldap: &Ldap,
    naming_context: &str,
    filter: &str,
    member_attribute: &str,
    cookie: Option<&[u8]>,
    collect: bool,
    timeout: Duration,
) -> Result<GroupChanges, DirectoryError> {
    let mut changes = GroupChanges {
        cookie: cookie.map(<[u8]>::to_vec).unwrap_or_default(),
        ..GroupChanges::default()
    };
    let removed_name = format!("{member_attribute};range=0-0").to_ascii_lowercase();
    let failed = |code: u32, message: String| DirectoryError::Search {
        base: naming_context.to_owned(),
        filter: filter.to_owned(),
        code,
        message,
    };
    let operation = || format!("the DirSync read of the groups under `{naming_context}`");
    for _ in 0..MAX_ROUNDS {
        let mut handle = ldap.clone();
        let mut search = handle
            .with_controls(vec![request_control(&changes.cookie)])
            .with_timeout(timeout)
            .streaming_search(
                naming_context,
                Scope::Subtree,
                filter,
                vec![member_attribute, "isDeleted", "lastKnownParent"],
            )
            .await
            .map_err(|err| library_error(err, operation(), 0, timeout))?;
        let mut entries = 0;
        while let Some(entry) = search
            .next()
            .await
            .map_err(|err| library_error(err, operation(), entries, timeout))?
        {
            entries += 1;
            if !collect || entry.is_ref() || entry.is_intermediate() {
                continue;
            }
            let (dn, attributes) = decode_described(entry.0)?;
            let mut deleted = false;
            let mut parent = String::new();
            for (description, values) in attributes {
                let text = |values: Vec<Vec<u8>>| {
                    values
                        .into_iter()
                        .map(|value| String::from_utf8_lossy(&value).into_owned())
                };
                match description.to_ascii_lowercase().as_str() {
                    name if name == removed_name => changes.removed.extend(text(values)),
                    "isdeleted" => deleted = text(values).any(|value| value == "TRUE"),
                    "lastknownparent" => parent = text(values).next().unwrap_or_default(),
                    _ => {}
                }
            }
            if deleted {
                // `<GUID=…>;OU=Groups,DC=…` (an extended DN) or the DN alone.
                let dn = parent
                    .rsplit_once(">;")
                    .map_or(parent.as_str(), |(_, dn)| dn);
                changes.deleted_under.push(dn.to_owned());
            } else {
                changes.groups.push(dn);
            }
        }
        let outcome = search.finish().await;
        if outcome.rc != 0 {
            return Err(failed(outcome.rc, outcome.text));
        }
        let response = outcome
            .ctrls
            .iter()
            .find(|control| control.1.ctype == DIRSYNC_OID)
            .and_then(|control| control.1.val.as_deref())
            .ok_or_else(|| {
                failed(
                    0,
                    "the server answered a DirSync search without a DirSync control".into(),
                )
            })?;
        let (more, cookie) = parse_response(response)
            .map_err(|err| failed(0, format!("a malformed DirSync response control: {err}")))?;
        if more && cookie == changes.cookie {
            return Err(failed(
                0,
                "the server says more changes wait but gives the same DirSync cookie again".into(),
            ));
        }
        changes.cookie = cookie;
        if !more {
            return Ok(changes);
        }
    }
    Err(failed(
        0,
        format!("the DirSync read did not end after {MAX_ROUNDS} rounds"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(more: i64, cookie: &[u8]) -> Vec<u8> {
        let mut fields = tlv(tag::INTEGER, &integer(more));
        fields.extend(tlv(tag::INTEGER, &integer(0)));
        fields.extend(tlv(tag::OCTET_STRING, cookie));
        tlv(tag::SEQUENCE, &fields)
    }

    #[test]
    fn the_request_carries_the_flags_as_ad_decodes_them() {
        let control = request_control(b"MSDS");
        assert!(control.crit);
        let value = control.val.unwrap();
        let mut outer = Reader::new(&value);
        let mut fields = Reader::new(outer.expect(tag::SEQUENCE, "s").unwrap());
        let flags = fields.expect(tag::INTEGER, "flags").unwrap();
        assert_eq!(flags, [0x80, 0, 0, 1]);
        let max = fields.expect(tag::INTEGER, "max").unwrap();
        assert_eq!(ber::small_integer(max, "m").unwrap(), i64::from(MAX_BYTES));
        assert_eq!(fields.expect(tag::OCTET_STRING, "c").unwrap(), b"MSDS");
        assert!(fields.is_empty() && outer.is_empty());
    }

    #[test]
    fn responses_parse_and_malformed_ones_are_refused() {
        assert_eq!(
            parse_response(&response(1, b"abc")).unwrap(),
            (true, b"abc".to_vec())
        );
        assert_eq!(
            parse_response(&response(0, b"")).unwrap(),
            (false, Vec::new())
        );
        let good = response(0, &[7; 300]);
        for end in 0..good.len() {
            assert!(parse_response(&good[..end]).is_err(), "{end}");
        }
        // Every single-byte change is parsed or refused, never a panic.
        for index in 0..good.len() {
            for byte in [0x00, 0x02, 0x04, 0x30, 0x7f, 0x80, 0x84, 0xff] {
                let mut changed = good.clone();
                changed[index] = byte;
                let _ = parse_response(&changed);
            }
        }
    }
}
