//! Contract `abacsync:mapping@0.3.0`: bindings generated from `wit/v0.3.0`, and the
//! columns in which a batch's entries and decisions cross the boundary (their layout is
//! specified on `entry-batch` and `decision-batch` in `wit/v0.3.0/types.wit`).

use super::error::BatchError;
use super::model::{Decision, DecisionIds, Entry, EntryOutcome, MappingError, MappingErrorKind};
use super::output;
use std::ops::Range;

wasmtime::component::bindgen!({
    path: "../wit/v0.3.0",
    world: "mapping-plugin",
    imports: { "abacsync:mapping/host.log": trappable },
});

use self::abacsync::mapping::{host, types};

pub(crate) use self::abacsync::mapping::types::{DecisionBatch, EntryBatch};

super::contract_glue!();

/// The flag of a row's first cell: the host knows the entry's groups.
const GROUPS_KNOWN: u32 = 1;

/// The `fields` bits of an upsert.
const EMAIL: u32 = 1;
const DISPLAY_NAME: u32 = 2;
const LANGUAGE: u32 = 4;
const INACTIVE: u32 = 8;

/// The decision kinds.
const SKIP: u32 = 0;
const UPSERT: u32 = 1;
const DEACTIVATE: u32 = 2;
const ERROR: u32 = 3;

/// The `entry-batch` of `entries`: a text column per text attribute name, spelled as
/// in `declared` (the plugin's `required-attributes`) wherever it matches one
/// case-insensitively, the declared names first; a binary column per binary attribute
/// name, spelled the same way; every text in one string. Binary values are moved, not
/// copied.
pub(crate) fn encode_entries(entries: Vec<Entry>, declared: &[String]) -> EntryBatch {
    let mut text_columns = Columns::default();
    for name in declared {
        text_columns.of(name, declared, None);
    }
    let mut binary_columns = Columns::default();
    // Every attribute's column, entry after entry: text attributes, then binary ones.
    let mut slots: Vec<Slot> = Vec::with_capacity(entries.len() * (declared.len() + 2));
    // The previous entry's columns: entries of a directory mostly carry their
    // attributes in the same order, so the column is usually the one at the same place.
    let mut previous: Vec<Slot> = Vec::new();
    for entry in &entries {
        let first = slots.len();
        for (index, (name, values)) in entry.attributes.iter().enumerate() {
            let hint = previous.get(index).copied();
            // A NUL would end the text early: such an attribute crosses as binary.
            slots.push(
                if values.iter().any(|value| value.as_bytes().contains(&0)) {
                    Slot::binary(binary_columns.of(name, declared, None))
                } else {
                    let hint = hint
                        .filter(|slot| !slot.binary)
                        .map(|slot| slot.column as usize);
                    Slot::text(text_columns.of(name, declared, hint))
                },
            );
        }
        for (name, _) in &entry.binary_attributes {
            slots.push(Slot::binary(binary_columns.of(name, declared, None)));
        }
        previous.clear();
        previous.extend_from_slice(&slots[first..]);
    }
    let (text_width, binary_width) = (text_columns.names.len(), binary_columns.names.len());
    let size: usize = entries.iter().map(|entry| entry.data_size() + 8).sum();
    let mut texts = Texts {
        text: String::with_capacity(size),
        count: 0,
    };
    let mut cells: Vec<u32> = Vec::with_capacity(entries.len() * (4 + text_width + binary_width));
    let mut binaries: Vec<Vec<u8>> = Vec::new();
    // One entry's attributes ordered by kind, column and place in the entry.
    let mut order: Vec<(Slot, usize)> = Vec::new();
    let mut start = 0;
    for mut entry in entries {
        let texts_of = entry.attributes.len();
        let end = start + texts_of + entry.binary_attributes.len();
        order.clear();
        order.extend(slots[start..end].iter().copied().zip(0..));
        order.sort_unstable();
        start = end;
        cells.push(if entry.groups.is_some() {
            GROUPS_KNOWN
        } else {
            0
        });
        cells.push(texts.count);
        texts.push_dn(&entry.dn);
        for group in entry.groups.iter().flatten() {
            texts.push_dn(group);
        }
        cells.push(texts.count);
        let mut ordered = order.iter().peekable();
        for column in 0..text_width {
            while let Some((_, index)) = ordered.next_if(|(slot, _)| *slot == Slot::text(column)) {
                for value in &entry.attributes[*index].1 {
                    texts.push(value);
                }
            }
            cells.push(texts.count);
        }
        cells.push(u32::try_from(binaries.len()).unwrap_or(u32::MAX));
        for column in 0..binary_width {
            while let Some((_, index)) = ordered.next_if(|(slot, _)| *slot == Slot::binary(column))
            {
                match index.checked_sub(texts_of) {
                    Some(binary) => {
                        binaries.extend(std::mem::take(&mut entry.binary_attributes[binary].1));
                    }
                    None => binaries.extend(
                        entry.attributes[*index]
                            .1
                            .iter()
                            .map(|value| value.as_bytes().to_vec()),
                    ),
                }
            }
            cells.push(u32::try_from(binaries.len()).unwrap_or(u32::MAX));
        }
    }
    EntryBatch {
        text_columns: text_columns.names,
        binary_columns: binary_columns.names,
        texts: texts.text,
        binaries,
        cells,
    }
}

/// Where an attribute of an entry goes: a text or a binary column (text columns sort
/// first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Slot {
    binary: bool,
    column: u32,
}

impl Slot {
    fn text(column: usize) -> Self {
        Self {
            column: u32::try_from(column).unwrap_or(u32::MAX),
            binary: false,
        }
    }

    fn binary(column: usize) -> Self {
        Self {
            column: u32::try_from(column).unwrap_or(u32::MAX),
            binary: true,
        }
    }
}

/// The texts of a batch, each followed by a NUL, and how many there are.
struct Texts {
    text: String,
    count: u32,
}

impl Texts {
    fn push(&mut self, text: &str) {
        self.text.push_str(text);
        self.text.push('\0');
        self.count += 1;
    }

    /// A DN, whose NULs (which would end the text early) are written `\00`, as RFC
    /// 4514 escapes them.
    fn push_dn(&mut self, dn: &str) {
        if dn.contains('\0') {
            self.push(&dn.replace('\0', "\\00"));
        } else {
            self.push(dn);
        }
    }
}

/// The columns of one kind: each name once, matched case-insensitively, spelled as
/// declared where a declared name matches.
#[derive(Default)]
struct Columns {
    names: Vec<String>,
}

impl Columns {
    /// The column of `name`, added when new; `hint` is where it probably is.
    fn of(&mut self, name: &str, declared: &[String], hint: Option<usize>) -> usize {
        if let Some(column) =
            hint.filter(|&column| self.names.get(column).is_some_and(|known| known == name))
        {
            return column;
        }
        if let Some(column) = self.names.iter().position(|known| known == name) {
            return column;
        }
        if let Some(column) = self
            .names
            .iter()
            .position(|known| known.eq_ignore_ascii_case(name))
        {
            return column;
        }
        let spelled = declared
            .iter()
            .find(|wanted| wanted.eq_ignore_ascii_case(name))
            .map_or(name, String::as_str);
        self.names.push(spelled.to_owned());
        self.names.len() - 1
    }
}

/// Where one decision is in a `decision-batch`: its numbers, and its texts (each with
/// its NUL) as a byte range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Span {
    pub shapes: Range<usize>,
    pub texts: Range<usize>,
}

/// Where each decision of `batch` is: the numbers and texts are checked to add up to
/// `expected` decisions, which are decoded one by one later ([`decode_decision`]).
pub(crate) fn split_decisions(
    batch: &DecisionBatch,
    expected: usize,
) -> Result<Vec<Span>, BatchError> {
    let (shapes, texts) = (&batch.shapes, batch.texts.as_bytes());
    let malformed = |index: usize, what: String| {
        BatchError::Malformed(format!("decision {index} (from 0): {what}"))
    };
    let mut spans = Vec::with_capacity(expected);
    // Decisions past `expected` are counted for the error, not kept.
    let mut found = 0;
    let (mut word, mut byte) = (0, 0);
    while word < shapes.len() {
        let index = found;
        let at = |offset: usize| {
            shapes.get(word + offset).copied().ok_or_else(|| {
                malformed(
                    index,
                    format!("its numbers end after {} of them", shapes.len() - word),
                )
            })
        };
        let (words, count) = match at(0)? {
            SKIP => (1, 1),
            DEACTIVATE => (1, 2),
            ERROR => (2, if at(1)? == 1 { 2 } else { 1 }),
            UPSERT => {
                let fields = at(1)?;
                let keys = at(2)? as usize;
                if keys > shapes.len() - word {
                    return Err(malformed(
                        index,
                        format!("{keys} ABAC attributes, but fewer numbers follow"),
                    ));
                }
                let mut count =
                    2 + (fields & (EMAIL | DISPLAY_NAME | LANGUAGE)).count_ones() as usize;
                for key in 0..keys {
                    count = count
                        .saturating_add(1)
                        .saturating_add(at(3 + key)? as usize);
                }
                (3 + keys, count)
            }
            kind => return Err(malformed(index, format!("kind {kind} is not one of 0–3"))),
        };
        let first = byte;
        for _ in 0..count {
            match memchr::memchr(0, &texts[byte..]) {
                Some(end) => byte += end + 1,
                None => {
                    return Err(malformed(
                        index,
                        format!("it takes {count} texts, but the texts end before"),
                    ));
                }
            }
        }
        if found < expected {
            spans.push(Span {
                shapes: word..word + words,
                texts: first..byte,
            });
        }
        found += 1;
        word += words;
    }
    if byte != texts.len() {
        return Err(BatchError::Malformed(format!(
            "{} bytes of texts are left over after the last decision",
            texts.len() - byte
        )));
    }
    if found != expected {
        return Err(BatchError::Count(found));
    }
    Ok(spans)
}

/// The texts of one decision (each followed by a NUL), in order.
fn texts(text: &str) -> impl Iterator<Item = &str> {
    text.split_terminator('\0')
}

/// The ids one decision names, read without decoding the rest of it; `None` for
/// anything but an upsert or a deactivation.
pub(crate) fn peek_decision(shapes: &[u32], text: &str) -> Option<DecisionIds> {
    let mut texts = texts(text);
    match *shapes.first()? {
        UPSERT => {
            let username = texts.next()?.to_owned();
            let ldap_id = texts.next()?.to_owned();
            Some(DecisionIds::Upsert { username, ldap_id })
        }
        DEACTIVATE => Some(DecisionIds::Deactivate {
            ldap_id: texts.next()?.to_owned(),
        }),
        _ => None,
    }
}

/// One decision of a `decision-batch` (at a span [`split_decisions`] found): the
/// entry's outcome, or why the decision does not fit the contract.
pub(crate) fn decode_decision(shapes: &[u32], text: &str) -> EntryOutcome {
    // The span was checked: every number and text this reads is there.
    let mut texts = texts(text).map(str::to_owned);
    match shapes.first().copied().unwrap_or(u32::MAX) {
        SKIP => Ok(Decision::Skip {
            reason: next(&mut texts),
        }),
        DEACTIVATE => {
            let ldap_id = next(&mut texts);
            output::deactivation(ldap_id, next(&mut texts))
        }
        UPSERT => {
            let fields = shapes.get(1).copied().unwrap_or(0);
            if fields & !(EMAIL | DISPLAY_NAME | LANGUAGE | INACTIVE) != 0 {
                return Err(MappingError::invalid_output(format!(
                    "the decision's fields {fields:#x} set bits contract 0.3.0 does not define"
                )));
            }
            let username = next(&mut texts);
            let ldap_id = next(&mut texts);
            let mut optional = |bit: u32| (fields & bit != 0).then(|| next(&mut texts));
            let email = optional(EMAIL);
            let display_name = optional(DISPLAY_NAME);
            let language = optional(LANGUAGE);
            let counts = shapes.get(3..).unwrap_or_default();
            let mut attributes = Vec::with_capacity(counts.len());
            for &count in counts {
                let key = next(&mut texts);
                // At most the texts there are, whatever the count says.
                let values = (0..count).map_while(|_| texts.next()).collect();
                attributes.push((key, values));
            }
            output::user(output::GuestUser {
                username,
                email,
                display_name,
                language,
                active: fields & INACTIVE == 0,
                ldap_id,
                attributes,
            })
            .map(Decision::Upsert)
        }
        ERROR => Err(match shapes.get(1).copied().unwrap_or(u32::MAX) {
            0 => MappingError::missing_attribute(next(&mut texts)),
            1 => {
                let name = next(&mut texts);
                MappingError::invalid_attribute(name, &next(&mut texts))
            }
            2 => MappingError::reported(MappingErrorKind::InvalidSettings, next(&mut texts)),
            3 => MappingError::reported(MappingErrorKind::Other, next(&mut texts)),
            case => MappingError::invalid_output(format!(
                "error case {case} is not one of 0–3 (its text: {})",
                next(&mut texts)
            )),
        }),
        // `split_decisions` let through only the kinds above.
        kind => Err(MappingError::invalid_output(format!(
            "kind {kind} is not one of 0–3"
        ))),
    }
}

/// The next text of a decision; its span was checked to hold them all.
fn next(texts: &mut impl Iterator<Item = String>) -> String {
    texts.next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::model::MappedUser;

    fn pieces(batch: &EntryBatch) -> Vec<&str> {
        batch.texts.split_terminator('\0').collect()
    }

    #[test]
    fn entries_are_columns_under_the_declared_names() {
        let mut alice = Entry::new("uid=alice,dc=x");
        alice.attributes = vec![
            ("uid".into(), vec!["alice".into()]),
            ("ou".into(), vec!["s".into()]),
            ("OU".into(), vec!["t".into()]),
            ("displayname".into(), vec!["Alice".into()]),
            ("entryUUID".into(), vec!["id-1".into()]),
            ("note".into(), vec!["a\0b".into()]),
        ];
        alice.binary_attributes = vec![("objectguid".into(), vec![vec![1, 2], vec![3]])];
        alice.groups = Some(vec!["cn=g1".into(), "cn=g2".into()]);
        let mut bob = Entry::new("uid=bob,dc=x");
        bob.attributes = vec![("uid".into(), vec!["bob".into()])];
        bob.groups = Some(Vec::new());
        let declared = ["uid", "displayName", "objectGUID", "ou"].map(String::from);
        let batch = encode_entries(vec![alice, bob, Entry::new("uid=carol,dc=x")], &declared);
        assert_eq!(
            batch.text_columns,
            ["uid", "displayName", "objectGUID", "ou", "entryUUID"]
        );
        assert_eq!(batch.binary_columns, ["note", "objectGUID"]);
        assert_eq!(
            pieces(&batch),
            [
                "uid=alice,dc=x",
                "cn=g1",
                "cn=g2",
                "alice",
                "Alice",
                "s",
                "t",
                "id-1",
                "uid=bob,dc=x",
                "bob",
                "uid=carol,dc=x",
            ]
        );
        assert_eq!(batch.binaries, [b"a\0b".to_vec(), vec![1, 2], vec![3]]);
        #[rustfmt::skip]
        let cells = [
            // flags, dn, groups end, 5 text column ends, binary start, 2 binary column ends
            1, 0, 3, 4, 5, 5, 7, 8, 0, 1, 3,
            1, 8, 9, 10, 10, 10, 10, 10, 3, 3, 3,
            0, 10, 11, 11, 11, 11, 11, 11, 3, 3, 3,
        ];
        assert_eq!(batch.cells, cells);
    }

    fn decisions(shapes: &[u32], texts: &str) -> DecisionBatch {
        DecisionBatch {
            texts: texts.to_owned(),
            shapes: shapes.to_vec(),
        }
    }

    fn decode_all(batch: &DecisionBatch, expected: usize) -> Result<Vec<EntryOutcome>, BatchError> {
        Ok(split_decisions(batch, expected)?
            .into_iter()
            .map(|span| decode_decision(&batch.shapes[span.shapes], &batch.texts[span.texts]))
            .collect())
    }

    #[test]
    fn decodes_every_kind_of_decision() {
        let batch = decisions(
            &[1, 1 | 4, 2, 2, 1, 1, 8, 0, 0, 2, 3, 0, 3, 1, 3, 2, 3, 3],
            concat!(
                "alice\0id-1\0a@x\0de\0dept\x004711\x004712\0unit\0s\0",
                "bob\0id-2\0",
                "no mail\0",
                "id-3\0disabled\0",
                "uid\0",
                "mail\0bad\0",
                "too many\0",
                "broken\0"
            ),
        );
        let outcomes = decode_all(&batch, 8).expect("well formed");
        let Ok(Decision::Upsert(alice)) = &outcomes[0] else {
            panic!("{:?}", outcomes[0]);
        };
        assert_eq!(
            alice,
            &MappedUser {
                username: "alice".into(),
                email: Some("a@x".into()),
                display_name: None,
                language: Some("de".into()),
                active: true,
                ldap_id: "id-1".into(),
                attributes: [
                    ("dept".to_owned(), ["4711", "4712"].map(String::from).into()),
                    ("unit".to_owned(), ["s"].map(String::from).into()),
                ]
                .into(),
            }
        );
        let Ok(Decision::Upsert(bob)) = &outcomes[1] else {
            panic!("{:?}", outcomes[1]);
        };
        assert!(!bob.active && bob.attributes.is_empty() && bob.email.is_none());
        assert!(matches!(&outcomes[2], Ok(Decision::Skip { reason }) if reason == "no mail"));
        assert!(matches!(
            &outcomes[3],
            Ok(Decision::Deactivate { ldap_id, reason }) if ldap_id == "id-3" && reason == "disabled"
        ));
        let errors: Vec<String> = outcomes[4..]
            .iter()
            .map(|outcome| outcome.as_ref().expect_err("an error").to_string())
            .collect();
        assert!(errors[0].contains("uid"), "{errors:?}");
        assert!(
            errors[1].contains("mail") && errors[1].contains("bad"),
            "{errors:?}"
        );
        assert!(errors[2].contains("too many"), "{errors:?}");
        assert!(errors[3].contains("broken"), "{errors:?}");
        // What the sync reads without decoding.
        let spans = split_decisions(&batch, 8).expect("well formed");
        let ids: Vec<Option<DecisionIds>> = spans
            .iter()
            .map(|span| {
                peek_decision(
                    &batch.shapes[span.shapes.clone()],
                    &batch.texts[span.texts.clone()],
                )
            })
            .collect();
        assert_eq!(
            ids[..4],
            [
                Some(DecisionIds::Upsert {
                    username: "alice".into(),
                    ldap_id: "id-1".into()
                }),
                Some(DecisionIds::Upsert {
                    username: "bob".into(),
                    ldap_id: "id-2".into()
                }),
                None,
                Some(DecisionIds::Deactivate {
                    ldap_id: "id-3".into()
                }),
            ]
        );
    }

    #[test]
    fn a_decision_the_host_refuses_fails_only_its_entry() {
        let batch = decisions(&[1, 16, 0, 1, 0, 0, 3, 7, 0], "a\0id\0\0id\0what\0fine\0");
        let outcomes = decode_all(&batch, 4).expect("well formed");
        let errors: Vec<String> = outcomes[..3]
            .iter()
            .map(|outcome| outcome.as_ref().expect_err("refused").to_string())
            .collect();
        assert!(errors[0].contains("0x10"), "{errors:?}");
        assert!(errors[1].contains("username"), "{errors:?}");
        assert!(
            errors[2].contains("error case 7") && errors[2].contains("what"),
            "{errors:?}"
        );
        assert!(matches!(&outcomes[3], Ok(Decision::Skip { .. })));
    }

    #[test]
    fn a_nul_in_a_dn_is_escaped_and_moves_no_other_text() {
        let mut odd = Entry::new("cn=a\0b,dc=x");
        odd.groups = Some(vec!["cn=g\0,dc=x".into()]);
        let mut next = Entry::new("uid=n,dc=x");
        next.attributes = vec![("uid".into(), vec!["n".into()])];
        let batch = encode_entries(vec![odd, next], &["uid".to_owned()]);
        assert_eq!(
            pieces(&batch),
            ["cn=a\\00b,dc=x", "cn=g\\00,dc=x", "uid=n,dc=x", "n"]
        );
        assert_eq!(batch.cells, [1, 0, 2, 2, 0, 0, 2, 3, 4, 0]);
    }

    #[test]
    fn more_decisions_than_entries_are_counted_not_kept() {
        let many = decisions(&vec![SKIP; 100_000], &"\0".repeat(100_000));
        assert!(matches!(
            split_decisions(&many, 3),
            Err(BatchError::Count(100_000))
        ));
    }

    /// Whatever numbers and texts a plugin returns, reading them fails or succeeds,
    /// and never panics; a decision decoded from any span found is bounded by it.
    #[test]
    fn no_input_makes_the_reader_panic() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut random = move |below: u32| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % u64::from(below)) as u32
        };
        for _ in 0..20_000 {
            let shapes: Vec<u32> = (0..random(12))
                .map(|_| match random(4) {
                    0 => u32::MAX - random(3),
                    _ => random(20),
                })
                .collect();
            let texts: String = (0..random(12))
                .map(|_| ["a", "\0", "é", "", "\0\0"][random(5) as usize])
                .collect();
            let batch = decisions(&shapes, &texts);
            let expected = random(4) as usize;
            if let Ok(spans) = split_decisions(&batch, expected) {
                for span in spans {
                    let (shapes, texts) = (&batch.shapes[span.shapes], &batch.texts[span.texts]);
                    let _ = decode_decision(shapes, texts);
                    let _ = peek_decision(shapes, texts);
                }
            }
        }
        // An error case the host does not know takes one text; case 1 takes two.
        let outcomes =
            decode_all(&decisions(&[3, 9, 3, 1], "new\0name\0why\0"), 2).expect("well formed");
        assert!(
            outcomes[0]
                .as_ref()
                .is_err_and(|err| err.to_string().contains("new"))
        );
        assert!(
            outcomes[1]
                .as_ref()
                .is_err_and(|err| err.to_string().contains("why"))
        );
        assert!(matches!(
            split_decisions(&decisions(&[3, 1], "name\0"), 1),
            Err(BatchError::Malformed(_))
        ));
    }

    #[test]
    fn numbers_and_texts_that_do_not_add_up_fail_the_batch() {
        let malformed = |shapes: &[u32], texts: &str, expected| match split_decisions(
            &decisions(shapes, texts),
            expected,
        ) {
            Err(BatchError::Malformed(reason)) => reason,
            other => panic!("{other:?}"),
        };
        assert!(malformed(&[9], "x\0", 1).contains("kind 9"));
        assert!(malformed(&[0], "x", 1).contains("texts end"));
        assert!(malformed(&[0], "x\0y\0", 1).contains("left over"));
        assert!(malformed(&[1, 0, 5, 1], "a\0b\0k\0v\0", 1).contains("5 ABAC attributes"));
        assert!(malformed(&[1, 0], "a\0b\0", 1).contains("numbers end"));
        assert!(malformed(&[1, 0, 1, u32::MAX], "a\0b\0k\0", 1).contains("texts end"));
        assert!(matches!(
            split_decisions(&decisions(&[0, 0], "a\0b\0"), 3),
            Err(BatchError::Count(2))
        ));
        assert!(matches!(
            split_decisions(&decisions(&[], ""), 0),
            Ok(spans) if spans.is_empty()
        ));
    }
}
