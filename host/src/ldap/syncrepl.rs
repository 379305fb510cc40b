//! RFC 4533 content synchronization (syncrepl), refreshOnly: the entries changed since a
//! cookie, and which entries were deleted, in one search. The controls and the
//! intermediate messages are parsed here ([`super::ber`]), never with the client
//! library's parsers, which panic on malformed input.

use ldap3::Ldap;
use ldap3::asn1::{PL, StructureTag};
use ldap3::controls::RawControl;
use tokio::sync::mpsc;

use super::ber::{self, BerError, Reader, tag, tlv};
use super::entry::{EntryShaper, decode};
use super::error::DirectoryError;
use super::search::{
    SearchSpec, SearchStats, complete_ranges, is_partition_reference, library_error, scope,
};
use crate::plugin::model::Entry;

/// The Sync Request control.
pub const SYNC_REQUEST_OID: &str = "1.3.6.1.4.1.4203.1.9.1.1";
/// The Sync State control, on each entry.
pub const SYNC_STATE_OID: &str = "1.3.6.1.4.1.4203.1.9.1.2";
/// The Sync Done control, on the search's result.
pub const SYNC_DONE_OID: &str = "1.3.6.1.4.1.4203.1.9.1.3";
/// The Sync Info intermediate message.
pub const SYNC_INFO_OID: &str = "1.3.6.1.4.1.4203.1.9.1.4";
/// `e-syncRefreshRequired`: the server cannot bring the cookie's copy up to date.
pub const REFRESH_REQUIRED: u32 = 4096;

/// What an entry's Sync State control says of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryState {
    /// Unchanged since the cookie, still there.
    Present,
    /// New since the cookie.
    Add,
    /// Changed since the cookie.
    Modify,
    /// Deleted (or moved out of the search's scope).
    Delete,
}

/// A Sync State control.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncState {
    /// The entry's state.
    pub state: EntryState,
    /// Its `entryUUID`, in text form.
    pub uuid: String,
    /// A newer cookie, when the server sent one.
    pub cookie: Option<Vec<u8>>,
}

/// A Sync Done control.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncDone {
    /// The cookie of the copy the search brought up to date.
    pub cookie: Option<Vec<u8>>,
    /// `true`: the entries not mentioned are unchanged and only those reported deleted
    /// are gone. `false`: every entry not reported present or changed is gone.
    pub refresh_deletes: bool,
}

/// A Sync Info message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncInfo {
    /// A newer cookie.
    NewCookie(Vec<u8>),
    /// The end of a delete phase (refreshAndPersist).
    RefreshDelete {
        /// A newer cookie.
        cookie: Option<Vec<u8>>,
        /// Whether the refresh is complete.
        done: bool,
    },
    /// The end of a present phase (refreshAndPersist).
    RefreshPresent {
        /// A newer cookie.
        cookie: Option<Vec<u8>>,
        /// Whether the refresh is complete.
        done: bool,
    },
    /// Many entries' states at once.
    IdSet {
        /// A newer cookie.
        cookie: Option<Vec<u8>>,
        /// `true`: these entries were deleted; `false`: they are present.
        refresh_deletes: bool,
        /// Their `entryUUID`s, in text form.
        uuids: Vec<String>,
    },
}

/// The text form of a 16-byte `entryUUID` (RFC 4122), as OpenLDAP writes it.
pub fn format_uuid(bytes: &[u8]) -> Result<String, BerError> {
    if bytes.len() != 16 {
        return Err(BerError(format!(
            "an entryUUID of {} octets, not 16",
            bytes.len()
        )));
    }
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

/// Parses a Sync State control's value:
/// `SEQUENCE { state ENUMERATED, entryUUID OCTET STRING (16), cookie OCTET STRING OPTIONAL }`.
pub fn parse_state(value: &[u8]) -> Result<SyncState, BerError> {
    let mut outer = Reader::new(value);
    let mut fields = Reader::new(outer.expect(tag::SEQUENCE, "syncStateValue")?);
    let state = match ber::small_integer(fields.expect(tag::ENUMERATED, "state")?, "state")? {
        0 => EntryState::Present,
        1 => EntryState::Add,
        2 => EntryState::Modify,
        3 => EntryState::Delete,
        other => return Err(BerError(format!("unknown entry state {other}"))),
    };
    let uuid = format_uuid(fields.expect(tag::OCTET_STRING, "entryUUID")?)?;
    let cookie = fields
        .optional(tag::OCTET_STRING, "cookie")?
        .map(<[u8]>::to_vec);
    if !fields.is_empty() || !outer.is_empty() {
        return Err(BerError("syncStateValue: trailing data".into()));
    }
    Ok(SyncState {
        state,
        uuid,
        cookie,
    })
}

/// Parses a Sync Done control's value (absent: all defaults):
/// `SEQUENCE { cookie OCTET STRING OPTIONAL, refreshDeletes BOOLEAN DEFAULT FALSE }`.
pub fn parse_done(value: Option<&[u8]>) -> Result<SyncDone, BerError> {
    let Some(value) = value else {
        return Ok(SyncDone::default());
    };
    let mut outer = Reader::new(value);
    let mut fields = Reader::new(outer.expect(tag::SEQUENCE, "syncDoneValue")?);
    let cookie = fields
        .optional(tag::OCTET_STRING, "cookie")?
        .map(<[u8]>::to_vec);
    let refresh_deletes = match fields.optional(tag::BOOLEAN, "refreshDeletes")? {
        Some(contents) => ber::boolean(contents, "refreshDeletes")?,
        None => false,
    };
    if !fields.is_empty() || !outer.is_empty() {
        return Err(BerError("syncDoneValue: trailing data".into()));
    }
    Ok(SyncDone {
        cookie,
        refresh_deletes,
    })
}

/// Parses a Sync Info message's value (RFC 4533 §2.5).
pub fn parse_info(value: &[u8]) -> Result<SyncInfo, BerError> {
    let mut outer = Reader::new(value);
    let choice = outer.element()?;
    if !outer.is_empty() {
        return Err(BerError("syncInfoValue: trailing data".into()));
    }
    // Context-specific tags: [0] primitive, [1] [2] [3] constructed.
    let phase = |contents: &[u8], what: &str| -> Result<(Option<Vec<u8>>, bool), BerError> {
        let mut fields = Reader::new(contents);
        let cookie = fields
            .optional(tag::OCTET_STRING, "cookie")?
            .map(<[u8]>::to_vec);
        let done = match fields.optional(tag::BOOLEAN, "refreshDone")? {
            Some(contents) => ber::boolean(contents, "refreshDone")?,
            None => true,
        };
        if !fields.is_empty() {
            return Err(BerError(format!("{what}: trailing data")));
        }
        Ok((cookie, done))
    };
    match choice.tag {
        0x80 => Ok(SyncInfo::NewCookie(choice.contents.to_vec())),
        0xa1 => {
            let (cookie, done) = phase(choice.contents, "refreshDelete")?;
            Ok(SyncInfo::RefreshDelete { cookie, done })
        }
        0xa2 => {
            let (cookie, done) = phase(choice.contents, "refreshPresent")?;
            Ok(SyncInfo::RefreshPresent { cookie, done })
        }
        0xa3 => {
            let mut fields = Reader::new(choice.contents);
            let cookie = fields
                .optional(tag::OCTET_STRING, "cookie")?
                .map(<[u8]>::to_vec);
            let refresh_deletes = match fields.optional(tag::BOOLEAN, "refreshDeletes")? {
                Some(contents) => ber::boolean(contents, "refreshDeletes")?,
                None => false,
            };
            let mut set = Reader::new(fields.expect(tag::SET, "syncUUIDs")?);
            let mut uuids = Vec::new();
            while !set.is_empty() {
                uuids.push(format_uuid(set.expect(tag::OCTET_STRING, "syncUUID")?)?);
            }
            if !fields.is_empty() {
                return Err(BerError("syncIdSet: trailing data".into()));
            }
            Ok(SyncInfo::IdSet {
                cookie,
                refresh_deletes,
                uuids,
            })
        }
        other => Err(BerError(format!(
            "unknown syncInfoValue choice {other:#04x}"
        ))),
    }
}

/// The value of an intermediate response that is a Sync Info message, or `None` for
/// another intermediate response.
fn sync_info_value(response: &StructureTag) -> Result<Option<&[u8]>, BerError> {
    let PL::C(parts) = &response.payload else {
        return Err(BerError("a primitive intermediate response".into()));
    };
    let primitive = |id: u64| {
        parts.iter().find_map(|part| match &part.payload {
            PL::P(bytes) if part.id == id => Some(bytes.as_slice()),
            _ => None,
        })
    };
    if primitive(0) != Some(SYNC_INFO_OID.as_bytes()) {
        return Ok(None);
    }
    primitive(1)
        .map(Some)
        .ok_or_else(|| BerError("a Sync Info message without a value".into()))
}

/// How long a search goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Ends once the content is up to date.
    RefreshOnly,
    /// Then stays open and sends each change as it happens.
    RefreshAndPersist,
}

/// A critical Sync Request control for a search in `mode` from `cookie` (every entry
/// without one).
pub fn request_control(mode: Mode, cookie: Option<&[u8]>) -> RawControl {
    let mode = match mode {
        Mode::RefreshOnly => 1,
        Mode::RefreshAndPersist => 3,
    };
    let mut fields = tlv(tag::ENUMERATED, &[mode]);
    if let Some(cookie) = cookie {
        fields.extend(tlv(tag::OCTET_STRING, cookie));
    }
    RawControl {
        ctype: SYNC_REQUEST_OID.to_owned(),
        crit: true,
        val: Some(tlv(tag::SEQUENCE, &fields)),
    }
}

/// Which entries a refresh says are gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gone {
    /// Exactly these (a delete phase).
    Listed(Vec<String>),
    /// Every entry neither changed nor in this list of present ones (a present phase,
    /// or a refresh without a cookie, which sends every entry).
    AllBut(Vec<String>),
}

/// What a finished refresh read.
#[derive(Debug, Clone)]
pub struct Refresh {
    /// The search's counts (entries: the changed ones sent on).
    pub stats: SearchStats,
    /// Which entries are gone.
    pub gone: Gone,
    /// The cookie to ask from next time.
    pub cookie: Option<Vec<u8>>,
    /// Entries reported present or deleted one by one, or in id sets.
    pub states: u64,
}

/// Runs a refreshOnly search of `spec` from `cookie` and sends the changed entries in
/// batches to `sink`. Fails with [`DirectoryError::StaleMark`] when the server asks
/// for a full reload (`e-syncRefreshRequired`).
pub async fn refresh(
    ldap: &Ldap,
    spec: &SearchSpec,
    shaper: &EntryShaper,
    cookie: Option<&[u8]>,
    batch_size: usize,
    sink: &mpsc::Sender<Vec<Entry>>,
) -> Result<Refresh, DirectoryError> {
    let operation = || format!("the content synchronization of `{}`", spec.base);
    let protocol =
        |reason: BerError| DirectoryError::Malformed(format!("{}: {reason}", operation()));
    let mut stats = SearchStats::default();
    let mut batch = Vec::with_capacity(batch_size);
    let mut present = Vec::new();
    let mut deleted = Vec::new();
    let mut states = 0u64;
    let mut latest_cookie: Option<Vec<u8>> = None;
    let mut handle = ldap.clone();
    let mut follow_up = ldap.clone();
    let mut search = handle
        .with_timeout(spec.timeout)
        .with_controls(vec![request_control(Mode::RefreshOnly, cookie)])
        .streaming_search(
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
            let Some(value) = sync_info_value(&item.0).map_err(protocol)? else {
                continue;
            };
            match parse_info(value).map_err(protocol)? {
                SyncInfo::NewCookie(cookie) => latest_cookie = Some(cookie),
                SyncInfo::RefreshDelete { cookie, .. }
                | SyncInfo::RefreshPresent { cookie, .. } => {
                    latest_cookie = cookie.or(latest_cookie);
                }
                SyncInfo::IdSet {
                    cookie,
                    refresh_deletes,
                    uuids,
                } => {
                    latest_cookie = cookie.or(latest_cookie);
                    states += uuids.len() as u64;
                    if refresh_deletes {
                        deleted.extend(uuids);
                    } else {
                        present.extend(uuids);
                    }
                }
            }
            continue;
        }
        let state = item
            .1
            .iter()
            .find(|control| control.1.ctype == SYNC_STATE_OID)
            .ok_or_else(|| protocol(BerError("an entry without a Sync State control".into())))?;
        let state = parse_state(state.1.val.as_deref().unwrap_or_default()).map_err(protocol)?;
        if state.cookie.is_some() {
            latest_cookie = state.cookie.clone();
        }
        match state.state {
            EntryState::Present => {
                states += 1;
                present.push(state.uuid);
            }
            EntryState::Delete => {
                states += 1;
                deleted.push(state.uuid);
            }
            EntryState::Add | EntryState::Modify => {
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
        }
    }
    let result = search.finish().await;
    if result.rc == REFRESH_REQUIRED {
        return Err(DirectoryError::StaleMark {
            reason: format!(
                "the directory cannot bring the stored sync cookie up to date ({})",
                if result.text.is_empty() {
                    "e-syncRefreshRequired"
                } else {
                    result.text.as_str()
                }
            ),
        });
    }
    if result.rc != 0 {
        return Err(DirectoryError::Search {
            base: spec.base.clone(),
            filter: spec.filter.clone(),
            code: result.rc,
            message: result.text.clone(),
        });
    }
    let done = result
        .ctrls
        .iter()
        .find(|control| control.1.ctype == SYNC_DONE_OID)
        .ok_or_else(|| protocol(BerError("the result has no Sync Done control".into())))?;
    let done = parse_done(done.1.val.as_deref()).map_err(protocol)?;
    if !batch.is_empty() && sink.send(batch).await.is_err() {
        return Err(DirectoryError::Cancelled);
    }
    // Without a cookie the server sends its whole content, whatever the flag says
    // (OpenLDAP sets refreshDeletes): every entry not sent is gone.
    let gone = if done.refresh_deletes && cookie.is_some() {
        Gone::Listed(deleted)
    } else {
        Gone::AllBut(present)
    };
    Ok(Refresh {
        stats,
        gone,
        // A server with nothing new may send no cookie: the one sent still holds.
        cookie: done
            .cookie
            .or(latest_cookie)
            .or_else(|| cookie.map(<[u8]>::to_vec)),
        states,
    })
}

/// Keeps a refreshAndPersist search of `spec` open from `cookie` and counts on
/// `changed` each entry or id set the server sends (a watch channel: a burst of changes
/// is one wake-up). Returns only when the search ends: the connection broke, or the
/// server ended it (a refresh required, a server shutting down).
pub async fn persist(
    ldap: &Ldap,
    spec: &SearchSpec,
    cookie: Option<&[u8]>,
    changed: &tokio::sync::watch::Sender<u64>,
) -> Result<(), DirectoryError> {
    let operation = || format!("the watch of `{}`", spec.base);
    let protocol =
        |reason: BerError| DirectoryError::Malformed(format!("{}: {reason}", operation()));
    let mut handle = ldap.clone();
    // No timeout: a quiet directory sends nothing for hours. The watcher checks the
    // connection with reads of its own.
    let mut search = handle
        .with_controls(vec![request_control(Mode::RefreshAndPersist, cookie)])
        .streaming_search(
            &spec.base,
            scope(spec.scope),
            &spec.filter,
            vec!["1.1".to_owned()],
        )
        .await
        .map_err(|err| library_error(err, operation(), 0, spec.timeout))?;
    let mut seen = 0u64;
    loop {
        let item = search
            .next()
            .await
            .map_err(|err| library_error(err, operation(), seen, spec.timeout))?;
        let Some(item) = item else { break };
        if item.is_ref() {
            continue;
        }
        let change = if item.is_intermediate() {
            match sync_info_value(&item.0).map_err(protocol)? {
                Some(value) => {
                    matches!(parse_info(value).map_err(protocol)?, SyncInfo::IdSet { .. })
                }
                None => false,
            }
        } else {
            let state = item
                .1
                .iter()
                .find(|control| control.1.ctype == SYNC_STATE_OID)
                .ok_or_else(|| {
                    protocol(BerError("an entry without a Sync State control".into()))
                })?;
            parse_state(state.1.val.as_deref().unwrap_or_default()).map_err(protocol)?;
            true
        };
        if change {
            seen += 1;
            changed.send_modify(|count| *count += 1);
        }
    }
    let result = search.finish().await;
    if result.rc == REFRESH_REQUIRED {
        return Err(DirectoryError::StaleMark {
            reason: "the directory asks for a full reload (e-syncRefreshRequired)".into(),
        });
    }
    Err(DirectoryError::Search {
        base: spec.base.clone(),
        filter: spec.filter.clone(),
        code: result.rc,
        message: if result.text.is_empty() {
            "the server ended the watch".into()
        } else {
            result.text
        },
    })
}

/// The server's cookie for its copy as it is now, without reading any entry: a
/// refresh without a cookie whose filter matches nothing. Taken before a full read, it
/// is where the next incremental read starts.
pub async fn current_cookie(ldap: &Ldap, spec: &SearchSpec) -> Result<Vec<u8>, DirectoryError> {
    // The base entry alone, and a filter it cannot match: the server evaluates one
    // entry (a subtree search would test every entry of the base against the filter).
    let nothing = SearchSpec {
        scope: crate::config::SearchScope::Base,
        filter: "(!(objectClass=*))".into(),
        attributes: vec!["1.1".into()],
        ..spec.clone()
    };
    let shaper = EntryShaper::new(&[], None);
    let (sink, _receiver) = mpsc::channel(1);
    let refresh = refresh(ldap, &nothing, &shaper, None, 1, &sink).await?;
    refresh.cookie.ok_or_else(|| {
        DirectoryError::Malformed(format!(
            "the content synchronization of `{}` returned no cookie",
            spec.base
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: [u8; 16] = [
        0x0b, 0x9a, 0x3c, 0x6e, 0x6a, 0x55, 0x4d, 0x7c, 0x9d, 0x0e, 0x1f, 0x1d, 0x5a, 0x1e, 0x9a,
        0x01,
    ];

    fn state_value(state: u8, cookie: Option<&[u8]>) -> Vec<u8> {
        let mut fields = tlv(tag::ENUMERATED, &[state]);
        fields.extend(tlv(tag::OCTET_STRING, &UUID));
        if let Some(cookie) = cookie {
            fields.extend(tlv(tag::OCTET_STRING, cookie));
        }
        tlv(tag::SEQUENCE, &fields)
    }

    fn id_set(deletes: bool, count: usize) -> Vec<u8> {
        let mut fields = tlv(tag::OCTET_STRING, b"rid=000,csn=1");
        fields.extend(tlv(tag::BOOLEAN, &[u8::from(deletes) * 0xff]));
        let uuids: Vec<u8> = (0..count)
            .flat_map(|_| tlv(tag::OCTET_STRING, &UUID))
            .collect();
        fields.extend(tlv(tag::SET, &uuids));
        tlv(0xa3, &fields)
    }

    #[test]
    fn reads_the_controls_of_rfc_4533() {
        let state = parse_state(&state_value(3, Some(b"c1"))).unwrap();
        assert_eq!(state.state, EntryState::Delete);
        assert_eq!(state.uuid, "0b9a3c6e-6a55-4d7c-9d0e-1f1d5a1e9a01");
        assert_eq!(state.cookie.as_deref(), Some(&b"c1"[..]));
        assert_eq!(parse_state(&state_value(1, None)).unwrap().cookie, None);

        let done = tlv(
            tag::SEQUENCE,
            &[tlv(tag::OCTET_STRING, b"c2"), tlv(tag::BOOLEAN, &[0xff])].concat(),
        );
        assert_eq!(
            parse_done(Some(&done)).unwrap(),
            SyncDone {
                cookie: Some(b"c2".to_vec()),
                refresh_deletes: true
            }
        );
        assert_eq!(parse_done(None).unwrap(), SyncDone::default());
        assert_eq!(
            parse_done(Some(&tlv(tag::SEQUENCE, &[]))).unwrap(),
            SyncDone::default()
        );

        match parse_info(&id_set(true, 300)).unwrap() {
            SyncInfo::IdSet {
                cookie,
                refresh_deletes,
                uuids,
            } => {
                assert_eq!(cookie.as_deref(), Some(&b"rid=000,csn=1"[..]));
                assert!(refresh_deletes);
                assert_eq!(uuids.len(), 300);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse_info(&tlv(0x80, b"c3")).unwrap(),
            SyncInfo::NewCookie(b"c3".to_vec())
        );
        assert_eq!(
            parse_info(&tlv(0xa2, &tlv(tag::BOOLEAN, &[0]))).unwrap(),
            SyncInfo::RefreshPresent {
                cookie: None,
                done: false
            }
        );
    }

    #[test]
    fn the_request_control_is_what_the_rfc_asks() {
        let control = request_control(Mode::RefreshOnly, Some(b"rid=000,csn=x"));
        assert_eq!(control.ctype, SYNC_REQUEST_OID);
        let value = control.val.unwrap();
        let mut outer = Reader::new(&value);
        let mut fields = Reader::new(outer.expect(tag::SEQUENCE, "request").unwrap());
        assert_eq!(fields.expect(tag::ENUMERATED, "mode").unwrap(), [1]);
        assert_eq!(
            fields.expect(tag::OCTET_STRING, "cookie").unwrap(),
            b"rid=000,csn=x"
        );
        assert!(fields.is_empty() && outer.is_empty());
        let long = vec![b'x'; 300];
        let value = request_control(Mode::RefreshAndPersist, Some(&long))
            .val
            .unwrap();
        assert_eq!(&value[..4], &[0x30, 0x82, 0x01, 0x33]);
        assert_eq!(&value[4..7], &[0x0a, 0x01, 0x03]);
    }

    #[test]
    fn malformed_values_are_errors() {
        assert!(parse_state(&state_value(7, None)).is_err());
        assert!(parse_state(&tlv(tag::SEQUENCE, &tlv(tag::ENUMERATED, &[1]))).is_err());
        let short_uuid = tlv(
            tag::SEQUENCE,
            &[tlv(tag::ENUMERATED, &[1]), tlv(tag::OCTET_STRING, &[1, 2])].concat(),
        );
        assert!(parse_state(&short_uuid).is_err());
        assert!(parse_done(Some(&[0x30, 0x03, 0x01, 0x02, 0x00])).is_err());
        assert!(parse_info(&tlv(0xa4, &[])).is_err());
        assert!(parse_info(&[]).is_err());
    }

    /// A small deterministic fuzzer: every truncation and many random mutations of
    /// valid values, and random bytes, must parse or fail, never panic.
    #[test]
    fn parsers_never_panic_on_mutated_input() {
        let seeds = [
            state_value(1, Some(b"rid=000,csn=20261207")),
            state_value(3, None),
            tlv(
                tag::SEQUENCE,
                &[tlv(tag::OCTET_STRING, b"c"), tlv(tag::BOOLEAN, &[1])].concat(),
            ),
            id_set(false, 3),
            id_set(true, 1),
            tlv(0x80, b"cookie"),
            tlv(0xa1, &tlv(tag::OCTET_STRING, b"c")),
        ];
        let mut random = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            random ^= random << 13;
            random ^= random >> 7;
            random ^= random << 17;
            random
        };
        let parse_all = |input: &[u8]| {
            let _ = parse_state(input);
            let _ = parse_done(Some(input));
            let _ = parse_info(input);
        };
        for seed in &seeds {
            for end in 0..=seed.len() {
                parse_all(&seed[..end]);
            }
            for _ in 0..20_000 {
                let mut input = seed.clone();
                for _ in 0..=(next() % 4) {
                    let at = (next() as usize) % input.len();
                    match next() % 3 {
                        0 => input[at] = next() as u8,
                        1 => input[at] ^= 1 << (next() % 8),
                        _ => input.insert(at, next() as u8),
                    }
                }
                parse_all(&input);
            }
        }
        for _ in 0..50_000 {
            let length = (next() % 40) as usize;
            let input: Vec<u8> = (0..length).map(|_| next() as u8).collect();
            parse_all(&input);
        }
    }
}
