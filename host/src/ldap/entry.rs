//! Decoding search result entries from their BER structure, without the panics of
//! `ldap3::SearchEntry::construct` and without its guess that any value that happens
//! to be valid UTF-8 is text: binary attributes (objectGUID, objectSid, jpegPhoto, …)
//! are kept as bytes whatever their content, so a GUID never gets mangled.

use std::collections::HashSet;

use ldap3::asn1::StructureTag;

use super::error::DirectoryError;
use crate::fixtures::is_binary_attribute;
use crate::plugin::model::Entry;

/// An attribute's values as received, with the options of its description parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawAttribute {
    /// The attribute name without options (`member` for `member;range=0-1499`).
    pub name: String,
    /// The values.
    pub values: Vec<Vec<u8>>,
    /// `Some(next)` when the server sent a partial range ending before the last value:
    /// the next range starts at `next`.
    pub more_from: Option<u64>,
}

/// An entry as received: DN and raw attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    /// Distinguished name.
    pub dn: String,
    /// Attributes in the server's order.
    pub attributes: Vec<RawAttribute>,
}

/// Parses a `SearchResultEntry` (`[APPLICATION 4] { objectName, attributes }`).
pub fn decode(tag: StructureTag) -> Result<RawEntry, DirectoryError> {
    let (dn, described) = decode_described(tag)?;
    let mut attributes = Vec::with_capacity(described.len());
    for (description, values) in described {
        // Most descriptions are plain names: kept as they are, not copied.
        let (name, more_from) = if description.contains(';') {
            parse_description(&description)
                .map_err(|reason| DirectoryError::Malformed(format!("{dn}: {reason}")))?
        } else {
            (description, None)
        };
        attributes.push(RawAttribute {
            name,
            values,
            more_from,
        });
    }
    Ok(RawEntry { dn, attributes })
}

/// A DN and its attributes by their whole description, values as bytes.
pub type DescribedEntry = (String, Vec<(String, Vec<Vec<u8>>)>);

/// A search result entry's DN and its attributes by their whole description
/// (`member;range=0-0` kept as it is), values as bytes; a clear error, never a panic,
/// when the entry is malformed.
pub fn decode_described(tag: StructureTag) -> Result<DescribedEntry, DirectoryError> {
    let malformed = |what: &str| DirectoryError::Malformed(what.to_owned());
    let mut parts = tag
        .match_id(4)
        .and_then(StructureTag::expect_constructed)
        .ok_or_else(|| malformed("not a search result entry"))?
        .into_iter();
    let dn = parts
        .next()
        .and_then(StructureTag::expect_primitive)
        .ok_or_else(|| malformed("entry without a DN"))?;
    let dn = String::from_utf8(dn).map_err(|_| malformed("DN is not UTF-8"))?;
    let list = parts
        .next()
        .and_then(StructureTag::expect_constructed)
        .ok_or_else(|| DirectoryError::Malformed(format!("{dn}: no attribute list")))?;
    let mut attributes = Vec::with_capacity(list.len());
    for partial in list {
        let mut pair = partial
            .expect_constructed()
            .ok_or_else(|| DirectoryError::Malformed(format!("{dn}: bad attribute")))?
            .into_iter();
        let description = pair
            .next()
            .and_then(StructureTag::expect_primitive)
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| DirectoryError::Malformed(format!("{dn}: bad attribute name")))?;
        let values = pair
            .next()
            .and_then(StructureTag::expect_constructed)
            .ok_or_else(|| {
                DirectoryError::Malformed(format!("{dn}: attribute {description} without values"))
            })?
            .into_iter()
            .map(StructureTag::expect_primitive)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                DirectoryError::Malformed(format!("{dn}: attribute {description}: bad value"))
            })?;
        attributes.push((description, values));
    }
    Ok((dn, attributes))
}

/// Splits `member;range=0-1499` into `member` and the start of the next range
/// (`Some(1500)`), `member;range=1500-*` into `member` and `None`. Other options
/// (`;binary`, language tags) are dropped from the name.
pub fn parse_description(description: &str) -> Result<(String, Option<u64>), String> {
    let mut parts = description.split(';');
    let name = parts.next().unwrap_or_default().to_owned();
    let mut more_from = None;
    for option in parts {
        let Some(range) = option
            .strip_prefix("range=")
            .or_else(|| option.strip_prefix("Range="))
        else {
            continue;
        };
        let (start, end) = range
            .split_once('-')
            .ok_or_else(|| format!("bad range option in {description}"))?;
        start
            .parse::<u64>()
            .map_err(|_| format!("bad range start in {description}"))?;
        if end != "*" {
            let end: u64 = end
                .parse()
                .map_err(|_| format!("bad range end in {description}"))?;
            more_from = Some(end + 1);
        }
    }
    Ok((name, more_from))
}

/// How many text attributes with values that are not UTF-8 a sync names in its log.
const LOGGED_INVALID_UTF8: u64 = 10;

/// Turns raw entries into the plugin model: which attributes are binary is decided by
/// name, never by content.
#[derive(Debug, Clone)]
pub struct EntryShaper {
    /// Binary attributes beyond the built-in ones, lower-cased.
    extra_binary: HashSet<String>,
    /// Attribute holding group DNs (`memberOf`), copied into `Entry::groups`.
    groups_attribute: Option<String>,
}

/// What shaping noticed that an administrator may want to know.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShapeNotes {
    /// Text-attribute values that were not UTF-8 and were kept as bytes instead.
    pub invalid_utf8_values: u64,
}

impl EntryShaper {
    /// A shaper treating the built-in binary attributes and `extra_binary` as bytes.
    pub fn new(extra_binary: &[String], groups_attribute: Option<String>) -> Self {
        Self {
            extra_binary: extra_binary
                .iter()
                .map(|name| name.to_ascii_lowercase())
                .collect(),
            groups_attribute,
        }
    }

    /// Whether `name` is read as bytes.
    pub fn is_binary(&self, name: &str) -> bool {
        is_binary_attribute(name) || self.extra_binary.contains(&name.to_ascii_lowercase())
    }

    /// The model entry for `raw`. A value of a text attribute that is not UTF-8 moves
    /// the attribute's values to the binary attributes (nothing is lost or replaced by
    /// U+FFFD), and is counted in `notes`.
    pub fn shape(&self, raw: RawEntry, notes: &mut ShapeNotes) -> Entry {
        let mut entry = Entry::new(raw.dn);
        for attribute in raw.attributes {
            if let Some(groups) = &self.groups_attribute
                && attribute.name.eq_ignore_ascii_case(groups)
            {
                let dns: Vec<String> = attribute
                    .values
                    .iter()
                    .filter_map(|value| String::from_utf8(value.clone()).ok())
                    .collect();
                entry.groups.get_or_insert_with(Vec::new).extend(dns);
            }
            if self.is_binary(&attribute.name) {
                push_values(
                    &mut entry.binary_attributes,
                    attribute.name,
                    attribute.values,
                );
                continue;
            }
            match into_texts(attribute.values) {
                Ok(texts) => push_values(&mut entry.attributes, attribute.name, texts),
                Err(values) => {
                    notes.invalid_utf8_values += 1;
                    if notes.invalid_utf8_values <= LOGGED_INVALID_UTF8 {
                        tracing::warn!(
                            dn = %entry.dn,
                            attribute = %attribute.name,
                            "a text attribute holds a value that is not UTF-8; the plugin gets its values as bytes"
                        );
                    } else if notes.invalid_utf8_values == LOGGED_INVALID_UTF8 + 1 {
                        tracing::warn!(
                            "more text attributes hold values that are not UTF-8; the sync's summary counts them"
                        );
                    }
                    push_values(&mut entry.binary_attributes, attribute.name, values);
                }
            }
        }
        entry
    }
}

/// `values` as text, each moved into its `String` without a copy; when one is not
/// UTF-8, all of them as they came, in their order.
fn into_texts(values: Vec<Vec<u8>>) -> Result<Vec<String>, Vec<Vec<u8>>> {
    let mut texts = Vec::with_capacity(values.len());
    let mut rest = values.into_iter();
    while let Some(value) = rest.next() {
        match String::from_utf8(value) {
            Ok(text) => texts.push(text),
            Err(err) => {
                let bytes = texts
                    .into_iter()
                    .map(String::into_bytes)
                    .chain(std::iter::once(err.into_bytes()))
                    .chain(rest)
                    .collect();
                return Err(bytes);
            }
        }
    }
    Ok(texts)
}

fn push_values<T>(list: &mut Vec<(String, Vec<T>)>, name: String, values: Vec<T>) {
    match list
        .iter_mut()
        .find(|(existing, _)| existing.eq_ignore_ascii_case(&name))
    {
        Some((_, existing)) => existing.extend(values),
        None => list.push((name, values)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_become_texts_or_all_stay_bytes_in_order() {
        let texts = into_texts(vec![b"a".to_vec(), "é".as_bytes().to_vec()]).unwrap();
        assert_eq!(texts, ["a", "é"]);
        let mixed = vec![b"a".to_vec(), vec![0xff], b"c".to_vec()];
        assert_eq!(into_texts(mixed.clone()).unwrap_err(), mixed);
        assert_eq!(into_texts(Vec::new()).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn range_options_are_parsed() {
        assert_eq!(
            parse_description("member;range=0-1499").unwrap(),
            ("member".to_owned(), Some(1500))
        );
        assert_eq!(
            parse_description("member;range=1500-*").unwrap(),
            ("member".to_owned(), None)
        );
        assert_eq!(
            parse_description("userCertificate;binary").unwrap(),
            ("userCertificate".to_owned(), None)
        );
        assert!(parse_description("member;range=x-2").is_err());
    }

    #[test]
    fn binary_attributes_stay_bytes_even_when_valid_utf8() {
        let shaper = EntryShaper::new(&[], None);
        let guid = b"ABCDEFGHIJKLMNOP".to_vec();
        let raw = RawEntry {
            dn: "cn=a".into(),
            attributes: vec![
                RawAttribute {
                    name: "objectGUID".into(),
                    values: vec![guid.clone()],
                    more_from: None,
                },
                RawAttribute {
                    name: "cn".into(),
                    values: vec![b"a".to_vec()],
                    more_from: None,
                },
            ],
        };
        let mut notes = ShapeNotes::default();
        let entry = shaper.shape(raw, &mut notes);
        assert_eq!(entry.binary_values("objectguid"), &[guid]);
        assert_eq!(entry.values("cn"), &["a".to_owned()]);
        assert_eq!(notes.invalid_utf8_values, 0);
    }

    #[test]
    fn invalid_utf8_moves_to_binary_and_is_counted() {
        let shaper = EntryShaper::new(&[], Some("memberOf".into()));
        let raw = RawEntry {
            dn: "cn=a".into(),
            attributes: vec![
                RawAttribute {
                    name: "description".into(),
                    values: vec![b"ok".to_vec(), vec![0xff, 0xfe]],
                    more_from: None,
                },
                RawAttribute {
                    name: "memberOf".into(),
                    values: vec![b"cn=g1".to_vec()],
                    more_from: None,
                },
            ],
        };
        let mut notes = ShapeNotes::default();
        let entry = shaper.shape(raw, &mut notes);
        assert_eq!(notes.invalid_utf8_values, 1);
        assert_eq!(entry.binary_values("description").len(), 2);
        assert!(entry.values("description").is_empty());
        assert_eq!(entry.groups, Some(vec!["cn=g1".to_owned()]));
    }
}
