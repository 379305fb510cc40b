//! Contract `abacsync:mapping@0.2.0`: bindings generated from `wit/v0.2.0`, and the
//! JSON documents in which a batch's entries and decisions cross the boundary (their
//! format is specified on `mapper.map-batch` in `wit/v0.2.0/mapper.wit`).

use super::error::BatchError;
use super::model::{Decision, DecisionIds, Entry, EntryOutcome, MappingError, MappingErrorKind};
use super::output;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use std::fmt;

wasmtime::component::bindgen!({
    path: "../wit/v0.2.0",
    world: "mapping-plugin",
    imports: { "abacsync:mapping/host.log": trappable },
});

use self::abacsync::mapping::{host, types};

super::contract_glue!();

/// The `entries` document of `map-batch`: the batch's attribute names once, as
/// columns, then one row per entry (see `wit/v0.2.0/mapper.wit`). A name is spelled as
/// in `declared` (the plugin's `required-attributes`) wherever it matches one
/// case-insensitively.
pub(crate) fn encode_entries(
    entries: &[Entry],
    declared: &[String],
) -> Result<String, serde_json::Error> {
    let layout = Layout::new(entries, declared);
    let size: usize = entries.iter().map(|entry| entry.data_size() + 32).sum();
    let mut out = Vec::with_capacity(size + size / 4);
    serde_json::to_writer(&mut out, &Batch { entries, layout })?;
    // serde_json writes UTF-8 only; this check cannot fail.
    String::from_utf8(out).map_err(|err| serde::ser::Error::custom(err.to_string()))
}

/// The columns of a batch and each text attribute's column.
struct Layout<'a> {
    /// The declared names, then any other name an entry carries, each once.
    columns: Vec<&'a str>,
    /// The column of every text attribute of every entry, entry after entry.
    attribute_columns: Vec<usize>,
    declared: &'a [String],
}

impl<'a> Layout<'a> {
    fn new(entries: &'a [Entry], declared: &'a [String]) -> Self {
        let mut columns: Vec<&'a str> = Vec::with_capacity(declared.len() + 2);
        for name in declared {
            if !columns.iter().any(|known| known.eq_ignore_ascii_case(name)) {
                columns.push(name);
            }
        }
        let mut attribute_columns = Vec::with_capacity(entries.len() * columns.len());
        for entry in entries {
            for (name, _) in &entry.attributes {
                let column = match columns.iter().position(|known| *known == name) {
                    Some(column) => column,
                    None => match columns
                        .iter()
                        .position(|known| known.eq_ignore_ascii_case(name))
                    {
                        Some(column) => column,
                        None => {
                            columns.push(name);
                            columns.len() - 1
                        }
                    },
                };
                attribute_columns.push(column);
            }
        }
        Self {
            columns,
            attribute_columns,
            declared,
        }
    }
}

struct Batch<'a> {
    entries: &'a [Entry],
    layout: Layout<'a>,
}

impl Serialize for Batch<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("attributes", &self.layout.columns)?;
        map.serialize_entry("entries", &Rows(self))?;
        map.end()
    }
}

struct Rows<'b, 'a>(&'b Batch<'a>);

impl Serialize for Rows<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Batch { entries, layout } = self.0;
        let mut seq = serializer.serialize_seq(Some(entries.len()))?;
        let mut start = 0;
        for entry in entries.iter() {
            let end = start + entry.attributes.len();
            seq.serialize_element(&Row {
                entry,
                columns: &layout.attribute_columns[start..end],
                width: layout.columns.len(),
                declared: layout.declared,
            })?;
            start = end;
        }
        seq.end()
    }
}

/// `[dn, groups, binary attributes, cell…]`: a cell is `null` (absent), a string (one
/// value) or an array of strings (more).
struct Row<'a> {
    entry: &'a Entry,
    /// The column of each of the entry's text attributes.
    columns: &'a [usize],
    width: usize,
    declared: &'a [String],
}

impl Serialize for Row<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let entry = self.entry;
        let mut seq = serializer.serialize_seq(Some(3 + self.width))?;
        seq.serialize_element(&entry.dn)?;
        seq.serialize_element(&entry.groups)?;
        if entry.binary_attributes.is_empty() {
            seq.serialize_element(&())?;
        } else {
            seq.serialize_element(&Binary {
                attributes: &entry.binary_attributes,
                declared: self.declared,
            })?;
        }
        for column in 0..self.width {
            let mut cell = entry
                .attributes
                .iter()
                .zip(self.columns)
                .filter(|(_, of)| **of == column)
                .map(|((_, values), _)| values);
            match (cell.next(), cell.next()) {
                (None, _) => seq.serialize_element(&())?,
                (Some(values), None) => match values.as_slice() {
                    [] => seq.serialize_element(&())?,
                    [one] => seq.serialize_element(one)?,
                    many => seq.serialize_element(many)?,
                },
                // Two attributes in one column (`ou` and `OU`): one cell, both values.
                (Some(first), Some(second)) => {
                    let mut all: Vec<&String> = first.iter().chain(second).collect();
                    all.extend(cell.flatten());
                    match all.as_slice() {
                        [one] => seq.serialize_element(one)?,
                        many => seq.serialize_element(many)?,
                    }
                }
            }
        }
        seq.end()
    }
}

/// An entry's binary attributes as an object of base64 values, names spelled as
/// declared; two attributes whose names become one are one key with both values.
struct Binary<'a> {
    attributes: &'a [(String, Vec<Vec<u8>>)],
    declared: &'a [String],
}

impl Serialize for Binary<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let names: Vec<&str> = self
            .attributes
            .iter()
            .map(|(name, _)| {
                self.declared
                    .iter()
                    .find(|wanted| wanted.eq_ignore_ascii_case(name))
                    .map_or(name.as_str(), String::as_str)
            })
            .collect();
        let mut map = serializer.serialize_map(None)?;
        for (index, name) in names.iter().enumerate() {
            if names[..index].contains(name) {
                continue; // merged into its first occurrence
            }
            let values: Vec<Base64<'_>> = self.attributes[index..]
                .iter()
                .zip(&names[index..])
                .filter(|(_, other)| *other == name)
                .flat_map(|((_, values), _)| values.iter().map(|value| Base64(value)))
                .collect();
            map.serialize_entry(name, &values)?;
        }
        map.end()
    }
}

struct Base64<'a>(&'a [u8]);

impl Serialize for Base64<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&base64::display::Base64Display::new(
            self.0,
            &base64::engine::general_purpose::STANDARD,
        ))
    }
}

/// Where each element of a `map-batch` result is in `json`: the result is checked to
/// be a JSON array of `expected` elements, which are decoded one by one later
/// ([`decode_result`]).
pub(crate) fn split_results(
    json: &str,
    expected: usize,
) -> Result<Vec<std::ops::Range<usize>>, BatchError> {
    let elements: Vec<&serde_json::value::RawValue> = serde_json::from_str(json)
        .map_err(|err| BatchError::Malformed(format!("not a JSON array of decisions: {err}")))?;
    if elements.len() != expected {
        return Err(BatchError::Count(elements.len()));
    }
    let base = json.as_ptr() as usize;
    Ok(elements
        .into_iter()
        .map(|element| {
            let start = element.get().as_ptr() as usize - base;
            start..start + element.get().len()
        })
        .collect())
}

/// One element of a `map-batch` result: the entry's outcome, or why the element does
/// not fit the contract, with the path of the wrong value.
pub(crate) fn decode_result(text: &str) -> EntryOutcome {
    match serde_json::from_str::<JsonResult>(text) {
        Ok(result) => result.into_outcome(),
        Err(_) => {
            let mut deserializer = serde_json::Deserializer::from_str(text);
            let err = match serde_path_to_error::deserialize::<_, JsonResult>(&mut deserializer) {
                Ok(result) => return result.into_outcome(),
                Err(err) => err,
            };
            Err(MappingError::invalid_output(format!(
                "the result does not fit contract 0.2.0: {}",
                described(&err)
            )))
        }
    }
}

/// The ids one element of a `map-batch` result names, read without decoding the rest
/// of it; `None` for anything but an upsert or a deactivation, and for an element
/// that does not parse (decoding it reports why).
pub(crate) fn peek_result(text: &str) -> Option<DecisionIds> {
    #[derive(Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Peek<'a> {
        Upsert(#[serde(borrow)] PeekIds<'a>),
        Deactivate(#[serde(borrow)] PeekIds<'a>),
        Skip(serde::de::IgnoredAny),
        Error(serde::de::IgnoredAny),
    }
    #[derive(Deserialize)]
    struct PeekIds<'a> {
        #[serde(borrow)]
        ldap_id: std::borrow::Cow<'a, str>,
        #[serde(borrow, default)]
        username: Option<std::borrow::Cow<'a, str>>,
    }
    match serde_json::from_str::<Peek<'_>>(text).ok()? {
        Peek::Upsert(ids) => Some(DecisionIds::Upsert {
            username: ids.username?.into_owned(),
            ldap_id: ids.ldap_id.into_owned(),
        }),
        Peek::Deactivate(ids) => Some(DecisionIds::Deactivate {
            ldap_id: ids.ldap_id.into_owned(),
        }),
        Peek::Skip(_) | Peek::Error(_) => None,
    }
}

/// `upsert.attributes.unit[0]: invalid type: …`, or the error alone at the top.
fn described(err: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let path = err.path().to_string();
    if path == "." {
        err.inner().to_string()
    } else {
        format!("{path}: {}", err.inner())
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum JsonResult {
    Upsert(JsonUser),
    Skip(String),
    Deactivate(JsonDeactivation),
    Error(JsonError),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonUser {
    username: String,
    ldap_id: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    language: Option<String>,
    #[serde(default = "active_by_default")]
    active: bool,
    #[serde(default, deserialize_with = "pairs")]
    attributes: Vec<(String, Vec<String>)>,
}

fn active_by_default() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonDeactivation {
    ldap_id: String,
    reason: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum JsonError {
    MissingAttribute(String),
    InvalidAttribute(JsonInvalidAttribute),
    InvalidSettings(String),
    Other(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonInvalidAttribute {
    name: String,
    reason: String,
}

impl JsonResult {
    fn into_outcome(self) -> EntryOutcome {
        match self {
            JsonResult::Skip(reason) => Ok(Decision::Skip { reason }),
            JsonResult::Deactivate(it) => output::deactivation(it.ldap_id, it.reason),
            JsonResult::Upsert(user) => output::user(output::GuestUser {
                username: user.username,
                email: user.email,
                display_name: user.display_name,
                language: user.language,
                active: user.active,
                ldap_id: user.ldap_id,
                attributes: user.attributes,
            })
            .map(Decision::Upsert),
            JsonResult::Error(error) => Err(match error {
                JsonError::MissingAttribute(name) => MappingError::missing_attribute(name),
                JsonError::InvalidAttribute(attr) => {
                    MappingError::invalid_attribute(attr.name, &attr.reason)
                }
                JsonError::InvalidSettings(reason) => {
                    MappingError::reported(MappingErrorKind::InvalidSettings, reason)
                }
                JsonError::Other(reason) => MappingError::reported(MappingErrorKind::Other, reason),
            }),
        }
    }
}

/// A JSON object as its key–value pairs in order, a key given twice kept twice (the
/// validation merges them), rather than the last one silently winning.
fn pairs<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<(String, Vec<String>)>, D::Error> {
    struct Pairs;
    impl<'de> Visitor<'de> for Pairs {
        type Value = Vec<(String, Vec<String>)>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object of ABAC keys to lists of string values")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(4).min(64));
            while let Some(pair) = map.next_entry()? {
                pairs.push(pair);
            }
            Ok(pairs)
        }
    }
    deserializer.deserialize_map(Pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decisions of a `map-batch` result, as the host splits and decodes them: one
    /// outcome per entry; an element that does not fit the contract fails its own entry.
    fn decode_results(json: &str, expected: usize) -> Result<Vec<EntryOutcome>, BatchError> {
        let spans = split_results(json, expected)?;
        Ok(spans
            .into_iter()
            .map(|span| decode_result(&json[span]))
            .collect())
    }

    fn entry() -> Entry {
        Entry {
            dn: "uid=ä\"q,dc=example".into(),
            attributes: vec![
                ("uid".into(), vec!["alice".into()]),
                ("DISPLAYNAME".into(), vec!["Alice \"A\"".into()]),
                ("ou".into(), vec!["a".into()]),
                ("OU".into(), vec!["b".into()]),
                ("entryUUID".into(), vec!["id-1".into()]),
            ],
            binary_attributes: vec![("objectGUID".into(), vec![vec![0xde, 0xad, 0xbe, 0xef]])],
            groups: None,
        }
    }

    /// The JSON examples in the comments of `wit/v0.2.0/mapper.wit`, in their order.
    fn documented_examples() -> Vec<serde_json::Value> {
        let wit = include_str!("../../../wit/v0.2.0/mapper.wit");
        let mut examples = Vec::new();
        let mut open: Option<String> = None;
        for line in wit.lines() {
            let Some(text) = line.trim_start().strip_prefix("///") else {
                continue;
            };
            let text = text.strip_prefix(' ').unwrap_or(text);
            match (text.trim(), open.as_mut()) {
                ("```json", None) => open = Some(String::new()),
                ("```", Some(body)) => {
                    examples
                        .push(serde_json::from_str(body).expect("a documented example is JSON"));
                    open = None;
                }
                (_, Some(body)) => {
                    body.push_str(text);
                    body.push('\n');
                }
                _ => {}
            }
        }
        examples
    }

    #[test]
    fn the_contracts_documented_examples_are_what_the_host_sends_and_reads() {
        let examples = documented_examples();
        assert_eq!(examples.len(), 2, "an entries example and a result example");

        // The entries: what the host sends for these two entries.
        let mut alice = Entry::new("uid=alice,ou=people,dc=example,dc=org");
        alice.groups = Some(vec!["cn=staff,ou=groups,dc=example,dc=org".into()]);
        // The directory's spelling; the plugin's wins.
        alice.attributes = vec![
            ("uid".into(), vec!["alice".into()]),
            (
                "departmentnumber".into(),
                vec!["4711".into(), "4712".into()],
            ),
        ];
        let mut guid = vec![0xde, 0xad, 0xbe, 0xef];
        guid.resize(16, 0);
        alice.binary_attributes = vec![("objectGUID".into(), vec![guid])];
        let mut bob = Entry::new("uid=bob,ou=people,dc=example,dc=org");
        bob.attributes = vec![
            ("uid".into(), vec!["bob".into()]),
            ("mail".into(), vec!["bob@example.org".into()]),
        ];
        let declared = ["uid", "mail", "departmentNumber"].map(str::to_owned);
        let json = encode_entries(&[alice, bob], &declared).expect("encodes");
        let sent: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(sent, examples[0]);

        // The result: what the host reads from it.
        let outcomes = decode_results(&examples[1].to_string(), 2).expect("decodes");
        let Ok(Decision::Upsert(user)) = &outcomes[0] else {
            panic!("expected an upsert, got {:?}", outcomes[0]);
        };
        assert_eq!(user.username, "alice");
        assert_eq!(user.ldap_id, "ef2bad3e-0000-0000-0000-000000000000");
        assert_eq!(user.attributes["department"].len(), 2);
        assert_eq!(
            outcomes[1],
            Ok(Decision::Skip {
                reason: "no mail address".into()
            })
        );
    }

    #[test]
    fn entries_are_rows_under_the_declared_names() {
        let declared = [
            "uid".to_owned(),
            "displayName".to_owned(),
            "ou".to_owned(),
            "mail".to_owned(),
        ];
        let mut grouped = Entry::new("cn=x");
        grouped.groups = Some(vec!["cn=staff".into()]);
        grouped.attributes = vec![("ou".into(), vec!["c".into(), "d".into()])];
        let json = encode_entries(&[entry(), grouped], &declared).expect("encodes");
        let value: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(
            value,
            serde_json::json!({
                "attributes": ["uid", "displayName", "ou", "mail", "entryUUID"],
                "entries": [
                    ["uid=ä\"q,dc=example", null, {"objectGUID": ["3q2+7w=="]},
                     "alice", "Alice \"A\"", ["a", "b"], null, "id-1"],
                    ["cn=x", ["cn=staff"], null, null, null, ["c", "d"], null, null],
                ],
            })
        );
    }

    #[test]
    fn decodes_every_kind_of_result() {
        let json = r#"[
            {"upsert": {"username": "alice", "ldap_id": "id-1", "display_name": null,
                        "attributes": {"dept": ["b", "a"], "dept": ["c"]}}},
            {"skip": "no mail"},
            {"deactivate": {"ldap_id": "id-2", "reason": "disabled"}},
            {"error": {"missing_attribute": "uid"}},
            {"error": {"invalid_attribute": {"name": "mail", "reason": "not an address"}}},
            {"error": {"other": "boom"}}
        ]"#;
        let outcomes = decode_results(json, 6).expect("decodes");
        let Ok(Decision::Upsert(user)) = &outcomes[0] else {
            panic!("expected an upsert, got {:?}", outcomes[0]);
        };
        assert!(user.active, "active by default");
        let dept: Vec<_> = user.attributes["dept"].iter().map(String::as_str).collect();
        assert_eq!(
            dept,
            ["a", "b", "c"],
            "a repeated key is merged, not overwritten"
        );
        assert_eq!(
            outcomes[1],
            Ok(Decision::Skip {
                reason: "no mail".into()
            })
        );
        assert!(
            matches!(&outcomes[2], Ok(Decision::Deactivate { ldap_id, .. }) if ldap_id == "id-2")
        );
        assert_eq!(
            outcomes[3].as_ref().unwrap_err().message,
            "missing attribute `uid`"
        );
        assert_eq!(
            outcomes[4].as_ref().unwrap_err().message,
            "invalid attribute `mail`: not an address"
        );
        assert_eq!(
            outcomes[5].as_ref().unwrap_err().kind,
            MappingErrorKind::Other
        );
    }

    #[test]
    fn a_bad_element_fails_only_its_entry() {
        let json = r#"[
            {"upsert": {"username": "alice", "ldap_id": "id-1", "displayName": "Alice"}},
            {"skip": "fine"},
            {"upsert": {"username": 7, "ldap_id": "id-3"}},
            {"skip": "x", "upsert": {}},
            "skip",
            {"upsert": {"username": "u", "ldap_id": "i", "attributes": {"unit": [null]}}}
        ]"#;
        let outcomes = decode_results(json, 6).expect("decodes");
        let message = |index: usize| outcomes[index].as_ref().unwrap_err().message.clone();
        assert!(
            message(0).contains("unknown field `displayName`"),
            "{}",
            message(0)
        );
        assert!(outcomes[1].is_ok());
        assert!(
            message(2).contains("invalid type: integer `7`"),
            "{}",
            message(2)
        );
        assert!(outcomes[3].is_err() && outcomes[4].is_err());
        assert!(
            message(5).contains("upsert.attributes.unit[0]: invalid type: null"),
            "{}",
            message(5)
        );
        assert_eq!(
            outcomes[0].as_ref().unwrap_err().kind,
            MappingErrorKind::InvalidOutput
        );
    }

    #[test]
    fn a_result_that_is_not_an_array_of_the_right_length_fails_the_batch() {
        assert!(matches!(
            decode_results(r#"{"skip": "x"}"#, 1),
            Err(BatchError::Malformed(_))
        ));
        assert!(matches!(
            decode_results("[{\"skip\": \"x\"}", 1),
            Err(BatchError::Malformed(_))
        ));
        assert!(matches!(decode_results("[]", 1), Err(BatchError::Count(0))));
    }
}
