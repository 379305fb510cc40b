//! The diff of a sync, held compactly until it is written: each change is encoded
//! with postcard (a compact binary serde format: lengths as varints, no field names)
//! into segments of 1 MiB. A planned change with its ABAC sets costs a couple of hundred
//! bytes this way instead of kilobytes of tree nodes, which keeps a first sync of
//! 100,000 users well inside its memory budget; the segments fill in place, so the log
//! never copies itself to grow.

use crate::store::Change;

/// Bytes per segment (a change larger than that gets a segment of its own).
const SEGMENT: usize = 1 << 20;

/// Changes in the order they were planned.
#[derive(Debug, Default)]
pub(super) struct ChangeLog {
    segments: Vec<Vec<u8>>,
    /// Per change: its segment, and where it starts and ends there.
    spans: Vec<Span>,
    /// The encoding of the change being pushed, reused.
    scratch: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
struct Span {
    segment: u32,
    start: u32,
    end: u32,
}

impl ChangeLog {
    /// Appends `change`.
    pub(super) fn push(&mut self, change: &Change) -> Result<(), postcard::Error> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let encoded = postcard::to_extend(change, scratch)?;
        let fits = self
            .segments
            .last()
            .is_some_and(|last| last.capacity() - last.len() >= encoded.len());
        if !fits {
            self.segments
                .push(Vec::with_capacity(SEGMENT.max(encoded.len())));
        }
        let segment = self.segments.len() - 1;
        let bytes = &mut self.segments[segment];
        let start = bytes.len();
        bytes.extend_from_slice(&encoded);
        self.spans.push(Span {
            segment: index(segment),
            start: index(start),
            end: index(bytes.len()),
        });
        self.scratch = encoded;
        Ok(())
    }

    /// Number of changes.
    pub(super) fn len(&self) -> usize {
        self.spans.len()
    }

    /// Changes `range`, decoded.
    pub(super) fn decode(
        &self,
        range: std::ops::Range<usize>,
    ) -> Result<Vec<Change>, postcard::Error> {
        self.spans[range]
            .iter()
            .map(|span| {
                let bytes = &self.segments[span.segment as usize];
                postcard::from_bytes(&bytes[span.start as usize..span.end as usize])
            })
            .collect()
    }
}

/// A segment number or an offset in one: segments are at most a change long beyond
/// 1 MiB, and a change at most an avatar and a few fields, far below 4 GiB.
fn index(value: usize) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AttributeChange, AvatarChange, UserFields, UserId};

    #[test]
    fn changes_round_trip() {
        let fields = UserFields {
            username: "ann".into(),
            email: None,
            display_name: Some("Ann \"A\" Ü".into()),
            language: None,
            active: true,
            ldap_id: Some("id".into()),
            ldap_dn: Some("uid=ann".into()),
            attributes: [("dept".to_owned(), ["a".to_owned(), "b".to_owned()].into())].into(),
        };
        let changes = vec![
            Change::Create {
                fields: fields.clone(),
                avatar: None,
                mapped: None,
            },
            Change::Update {
                id: UserId(3),
                fields,
                attribute_changes: vec![AttributeChange {
                    key: "dept".into(),
                    added: ["b".to_owned()].into(),
                    removed: Default::default(),
                }],
                avatar: AvatarChange::Clear,
                mapped: None,
            },
            Change::Delete { id: UserId(4) },
        ];
        let mut log = ChangeLog::default();
        for change in &changes {
            log.push(change).unwrap();
        }
        assert_eq!(log.len(), 3);
        assert_eq!(log.decode(0..3).unwrap(), changes);
        assert_eq!(log.decode(2..3).unwrap(), changes[2..]);
    }

    #[test]
    fn changes_span_segments_and_one_larger_than_a_segment_fits() {
        let mut log = ChangeLog::default();
        let change = |i: usize, picture: usize| Change::Create {
            fields: UserFields {
                username: format!("user{i}"),
                email: None,
                display_name: None,
                language: None,
                active: true,
                ldap_id: Some(format!("id-{i}")),
                ldap_dn: None,
                attributes: Default::default(),
            },
            avatar: (picture > 0).then(|| crate::store::Avatar {
                bytes: vec![7; picture],
                sha256: "ab".into(),
            }),
            mapped: Some(crate::store::MappedDigest([i as u8; 16])),
        };
        let all: Vec<_> = (0..30_000)
            .map(|i| change(i, if i == 12_345 { 3 << 20 } else { i % 100 }))
            .collect();
        for one in &all {
            log.push(one).unwrap();
        }
        assert!(log.segments.len() > 3, "{} segments", log.segments.len());
        assert!(log.segments.iter().all(|segment| segment.capacity() == SEGMENT
            || segment.len() == segment.capacity()));
        assert_eq!(log.len(), all.len());
        assert_eq!(log.decode(0..all.len()).unwrap(), all);
        assert_eq!(log.decode(12_345..12_346).unwrap(), all[12_345..12_346]);
    }
}
