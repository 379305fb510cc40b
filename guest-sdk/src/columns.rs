//! The columns of contract 0.3.0's `map-batch` (specified on `entry-batch` and
//! `decision-batch` in `wit/types.wit`): reading a batch of entries and writing the
//! decisions, with no document to parse or write.

use crate::bindings::abacsync::mapping::types::{DecisionBatch, EntryBatch};
use crate::{BinaryAttribute, Decision, Entry, MappingError, TextAttribute, User};

/// The flag of a row's first cell: the host knows the entry's groups.
const GROUPS_KNOWN: u32 = 1;

/// The `fields` bits of an upsert.
const EMAIL: u32 = 1;
const DISPLAY_NAME: u32 = 2;
const LANGUAGE: u32 = 4;
const INACTIVE: u32 = 8;

/// The entries of a `map-batch` call.
pub fn read_entries(batch: EntryBatch) -> Result<Vec<Entry>, String> {
    let EntryBatch {
        text_columns,
        binary_columns,
        texts,
        mut binaries,
        cells,
    } = batch;
    let (text_width, binary_width) = (text_columns.len(), binary_columns.len());
    let width = 4 + text_width + binary_width;
    if cells.len() % width != 0 {
        return Err(format!(
            "{} cells are not rows of {width} (4 + {text_width} text + {binary_width} binary columns)",
            cells.len()
        ));
    }
    let pieces: Vec<&str> = texts.split_terminator('\0').collect();
    let mut entries = Vec::with_capacity(cells.len() / width);
    for (number, row) in cells.chunks_exact(width).enumerate() {
        let bad = |what: &str| format!("entry {number} (from 0): {what}");
        let texts_in = |start: u32, end: u32| -> Result<&[&str], String> {
            pieces
                .get(start as usize..end as usize)
                .ok_or_else(|| bad(&format!("texts {start}..{end} of {}", pieces.len())))
        };
        let dn = row[1];
        let dn_text = texts_in(dn, dn.saturating_add(1))?[0];
        let groups = texts_in(dn + 1, row[2])?;
        let mut start = row[2];
        let mut attributes = Vec::with_capacity(text_width);
        for (name, &end) in text_columns.iter().zip(&row[3..3 + text_width]) {
            let values = texts_in(start, end)?;
            if !values.is_empty() {
                attributes.push(TextAttribute {
                    name: name.clone(),
                    values: values.iter().map(|&value| value.to_owned()).collect(),
                });
            }
            start = end;
        }
        let mut start = row[3 + text_width] as usize;
        let mut binary_attributes = Vec::new();
        for (name, &end) in binary_columns.iter().zip(&row[4 + text_width..]) {
            let end = end as usize;
            let values = binaries
                .get_mut(start..end)
                .ok_or_else(|| bad(&format!("binary values {start}..{end}")))?;
            if !values.is_empty() {
                binary_attributes.push(BinaryAttribute {
                    name: name.clone(),
                    values: values.iter_mut().map(std::mem::take).collect(),
                });
            }
            start = end;
        }
        entries.push(Entry {
            dn: dn_text.to_owned(),
            attributes,
            binary_attributes,
            groups: (row[0] & GROUPS_KNOWN != 0)
                .then(|| groups.iter().map(|&group| group.to_owned()).collect()),
        });
    }
    Ok(entries)
}

/// The `map-batch` result for `results`, one decision per entry. A decision with a text
/// that holds a NUL (which ends texts) becomes that entry's error instead.
pub fn write_decisions(results: &[Result<Decision, MappingError>]) -> DecisionBatch {
    let mut out = Writer {
        texts: String::with_capacity(results.len() * 128),
        shapes: Vec::with_capacity(results.len() * 8),
    };
    for result in results {
        let (texts, shapes) = (out.texts.len(), out.shapes.len());
        if let Err(field) = out.decision(result) {
            out.texts.truncate(texts);
            out.shapes.truncate(shapes);
            let error = MappingError::Other(format!(
                "the decision's {field} holds a NUL character, which no text may hold"
            ));
            // The message holds no NUL.
            let _ = out.decision(&Err(error));
        }
    }
    DecisionBatch {
        texts: out.texts,
        shapes: out.shapes,
    }
}

struct Writer {
    texts: String,
    shapes: Vec<u32>,
}

impl Writer {
    /// Writes one decision; `Err` names the field whose text holds a NUL.
    fn decision(&mut self, result: &Result<Decision, MappingError>) -> Result<(), &'static str> {
        match result {
            Ok(Decision::Skip(reason)) => {
                self.shapes.push(0);
                self.text(reason, "skip reason")
            }
            Ok(Decision::Upsert(user)) => self.user(user),
            Ok(Decision::Deactivate(it)) => {
                self.shapes.push(2);
                self.text(&it.ldap_id, "ldap_id")?;
                self.text(&it.reason, "deactivation reason")
            }
            Err(error) => {
                self.shapes.push(3);
                match error {
                    MappingError::MissingAttribute(name) => {
                        self.shapes.push(0);
                        self.text(name, "missing attribute's name")
                    }
                    MappingError::InvalidAttribute(attr) => {
                        self.shapes.push(1);
                        self.text(&attr.name, "invalid attribute's name")?;
                        self.text(&attr.reason, "invalid attribute's reason")
                    }
                    MappingError::InvalidSettings(reason) => {
                        self.shapes.push(2);
                        self.text(reason, "error")
                    }
                    MappingError::Other(reason) => {
                        self.shapes.push(3);
                        self.text(reason, "error")
                    }
                }
            }
        }
    }

    fn user(&mut self, user: &User) -> Result<(), &'static str> {
        let mut fields = 0;
        for (bit, value) in [
            (EMAIL, &user.email),
            (DISPLAY_NAME, &user.display_name),
            (LANGUAGE, &user.language),
        ] {
            if value.is_some() {
                fields |= bit;
            }
        }
        if !user.active {
            fields |= INACTIVE;
        }
        self.shapes
            .extend([1, fields, user.attributes.len() as u32]);
        self.shapes
            .extend(user.attributes.iter().map(|attr| attr.values.len() as u32));
        self.text(&user.username, "username")?;
        self.text(&user.ldap_id, "ldap_id")?;
        for (value, field) in [
            (&user.email, "email"),
            (&user.display_name, "display_name"),
            (&user.language, "language"),
        ] {
            if let Some(value) = value {
                self.text(value, field)?;
            }
        }
        for attribute in &user.attributes {
            self.text(&attribute.key, "ABAC attribute key")?;
            for value in &attribute.values {
                self.text(value, "ABAC attribute value")?;
            }
        }
        Ok(())
    }

    fn text(&mut self, text: &str, field: &'static str) -> Result<(), &'static str> {
        if text.as_bytes().contains(&0) {
            return Err(field);
        }
        self.texts.push_str(text);
        self.texts.push('\0');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InvalidAttribute;

    /// texts `uid=a,dc=x`, `cn=g`, then `a`, `s`, `t` / `uid=b,dc=x`, `b`.
    fn batch() -> EntryBatch {
        EntryBatch {
            text_columns: vec!["uid".into(), "ou".into(), "mail".into()],
            binary_columns: vec!["objectGUID".into()],
            texts: "uid=a,dc=x\0cn=g\0a\0s\0t\0uid=b,dc=x\0b\0".into(),
            binaries: vec![vec![0xde, 0xad, 0xbe, 0xef]],
            cells: vec![
                1, 0, 2, 3, 5, 5, 0, 1, // a: groups known, uid, two ou, no mail, a GUID
                0, 5, 6, 7, 7, 7, 1, 1, // b: groups unknown, uid only
            ],
        }
    }

    #[test]
    fn reads_rows_under_their_column_names() {
        let entries = read_entries(batch()).expect("reads");
        assert_eq!(
            entries,
            [
                Entry::new("uid=a,dc=x")
                    .with("uid", ["a"])
                    .with("ou", ["s", "t"])
                    .with_binary("objectGUID", [vec![0xde, 0xad, 0xbe, 0xef]])
                    .with_groups(["cn=g"]),
                Entry::new("uid=b,dc=x").with("uid", ["b"]),
            ]
        );
    }

    #[test]
    fn a_row_pointing_past_the_texts_is_an_error() {
        let mut bad = batch();
        bad.cells[11] = 9;
        let err = read_entries(bad).expect_err("refused");
        assert!(err.starts_with("entry 1 (from 0): texts 6..9"), "{err}");
        let mut short = batch();
        short.cells.pop();
        let err = read_entries(short).expect_err("refused");
        assert!(err.contains("not rows of 8"), "{err}");
    }

    #[test]
    fn writes_each_kind_of_decision() {
        let user = User::new("alice", "id-1")
            .email("a@x")
            .attribute("dept", ["4711", "4712"]);
        let batch = write_decisions(&[
            Ok(Decision::Upsert(user)),
            Ok(Decision::Upsert(
                User::new("bob", "id-2").language("de").active(false),
            )),
            Ok(Decision::skip("no mail")),
            Ok(Decision::deactivate("id-3", "disabled")),
            Err(MappingError::missing("uid")),
            Err(MappingError::InvalidAttribute(InvalidAttribute {
                name: "mail".into(),
                reason: "bad".into(),
            })),
        ]);
        assert_eq!(batch.shapes, [1, 1, 1, 2, 1, 12, 0, 0, 2, 3, 0, 3, 1]);
        assert_eq!(
            batch.texts,
            "alice\0id-1\0a@x\0dept\x004711\x004712\0bob\0id-2\0de\0no mail\0id-3\0disabled\0uid\0mail\0bad\0"
        );
    }

    #[test]
    fn a_text_with_a_nul_fails_only_its_entry() {
        let batch = write_decisions(&[
            Ok(Decision::Upsert(User::new("al\0ice", "id-1"))),
            Ok(Decision::skip("fine")),
        ]);
        assert_eq!(batch.shapes, [3, 3, 0]);
        assert_eq!(
            batch.texts,
            "the decision's username holds a NUL character, which no text may hold\0fine\0"
        );
    }
}
