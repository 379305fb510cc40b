//! The diff of a sync, held compactly until it is written: each change is encoded
//! (JSON) into one growing buffer. A planned change with its ABAC sets costs a few
//! hundred bytes this way instead of kilobytes of tree nodes, which keeps a first sync
//! of 100,000 users well inside its memory budget.

use crate::store::Change;

/// Changes in the order they were planned.
#[derive(Debug, Default)]
pub(super) struct ChangeLog {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl ChangeLog {
    /// Appends `change`.
    pub(super) fn push(&mut self, change: &Change) -> Result<(), serde_json::Error> {
        serde_json::to_writer(&mut self.bytes, change)?;
        self.ends.push(self.bytes.len());
        Ok(())
    }

    /// Number of changes.
    pub(super) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Changes `range`, decoded.
    pub(super) fn decode(
        &self,
        range: std::ops::Range<usize>,
    ) -> Result<Vec<Change>, serde_json::Error> {
        range
            .map(|index| {
                let start = if index == 0 { 0 } else { self.ends[index - 1] };
                serde_json::from_slice(&self.bytes[start..self.ends[index]])
            })
            .collect()
    }
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
}
