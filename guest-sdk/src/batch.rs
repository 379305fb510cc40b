//! The JSON documents of contract 0.2.0's `map-batch` (specified in
//! `wit/v0.2.0/mapper.wit`): reading a batch of entries and writing the decisions.

use crate::{AbacAttribute, BinaryAttribute, Decision, Entry, MappingError, TextAttribute, User};
use base64::Engine as _;
use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The entries of a `map-batch` call.
pub fn read_entries(json: &str) -> Result<Vec<Entry>, serde_json::Error> {
    let batch: Batch = serde_json::from_str(json)?;
    let names = batch.attributes;
    batch
        .entries
        .into_iter()
        .map(|row| row.into_entry(&names).map_err(de::Error::custom))
        .collect()
}

/// The `map-batch` result for `results`, one element per entry.
pub fn write_results(results: &[Result<Decision, MappingError>]) -> String {
    let mut out = Vec::with_capacity(results.len() * 256);
    // Strings, booleans, lists and maps with string keys always serialize.
    let _ = serde_json::to_writer(&mut out, &Results(results));
    String::from_utf8(out).unwrap_or_default()
}

#[derive(Deserialize)]
struct Batch {
    attributes: Vec<String>,
    entries: Vec<Row>,
}

/// `[dn, groups, binary attributes, cell…]`.
struct Row {
    dn: String,
    groups: Option<Vec<String>>,
    binary: Option<Vec<(String, Vec<String>)>>,
    cells: Vec<Cell>,
}

/// One attribute of one entry: absent, one value, or several.
enum Cell {
    Absent,
    One(String),
    Many(Vec<String>),
}

impl Row {
    fn into_entry(self, names: &[String]) -> Result<Entry, String> {
        if self.cells.len() > names.len() {
            return Err(format!(
                "entry `{}` has {} attribute cells for {} attribute names",
                self.dn,
                self.cells.len(),
                names.len()
            ));
        }
        let attributes = self
            .cells
            .into_iter()
            .zip(names)
            .filter_map(|(cell, name)| {
                let values = match cell {
                    Cell::Absent => return None,
                    Cell::One(value) => vec![value],
                    Cell::Many(values) => values,
                };
                Some(TextAttribute {
                    name: name.clone(),
                    values,
                })
            })
            .collect();
        let binary_attributes = self
            .binary
            .unwrap_or_default()
            .into_iter()
            .map(|(name, values)| {
                let values = values
                    .iter()
                    .map(|value| base64::engine::general_purpose::STANDARD.decode(value))
                    .collect::<Result<_, _>>()
                    .map_err(|err| format!("binary attribute `{name}`: {err}"))?;
                Ok(BinaryAttribute { name, values })
            })
            .collect::<Result<_, String>>()?;
        Ok(Entry {
            dn: self.dn,
            attributes,
            binary_attributes,
            groups: self.groups,
        })
    }
}

impl<'de> Deserialize<'de> for Row {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RowVisitor;
        impl<'de> Visitor<'de> for RowVisitor {
            type Value = Row;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an entry row: [dn, groups, binary attributes, cells…]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Row, A::Error> {
                let missing =
                    |what| de::Error::custom(format_args!("an entry row lacks its {what}"));
                let dn: String = seq.next_element()?.ok_or_else(|| missing("dn"))?;
                let groups = seq.next_element()?.ok_or_else(|| missing("groups"))?;
                let binary = seq
                    .next_element::<Option<Pairs>>()?
                    .ok_or_else(|| missing("binary attributes"))?
                    .map(|pairs| pairs.0);
                let mut cells = Vec::with_capacity(seq.size_hint().unwrap_or(8));
                while let Some(cell) = seq.next_element_seed(CellSeed)? {
                    cells.push(cell);
                }
                Ok(Row {
                    dn,
                    groups,
                    binary,
                    cells,
                })
            }
        }
        deserializer.deserialize_seq(RowVisitor)
    }
}

struct CellSeed;

impl<'de> DeserializeSeed<'de> for CellSeed {
    type Value = Cell;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Cell, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for CellSeed {
    type Value = Cell;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("null, a string or an array of strings")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Cell, E> {
        Ok(Cell::Absent)
    }
    fn visit_none<E: de::Error>(self) -> Result<Cell, E> {
        Ok(Cell::Absent)
    }
    fn visit_str<E: de::Error>(self, value: &str) -> Result<Cell, E> {
        Ok(Cell::One(value.to_owned()))
    }
    fn visit_string<E: de::Error>(self, value: String) -> Result<Cell, E> {
        Ok(Cell::One(value))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Cell, A::Error> {
        let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(2));
        while let Some(value) = seq.next_element()? {
            values.push(value);
        }
        Ok(if values.is_empty() {
            Cell::Absent
        } else {
            Cell::Many(values)
        })
    }
}

/// A JSON object as its pairs, in order.
struct Pairs(Vec<(String, Vec<String>)>);

impl<'de> Deserialize<'de> for Pairs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PairsVisitor;
        impl<'de> Visitor<'de> for PairsVisitor {
            type Value = Pairs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of attribute names to lists of base64 values")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Pairs, A::Error> {
                let mut pairs = Vec::new();
                while let Some(pair) = map.next_entry()? {
                    pairs.push(pair);
                }
                Ok(Pairs(pairs))
            }
        }
        deserializer.deserialize_map(PairsVisitor)
    }
}

struct Results<'a>(&'a [Result<Decision, MappingError>]);

impl Serialize for Results<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for result in self.0 {
            seq.serialize_element(&ResultJson(result))?;
        }
        seq.end()
    }
}

struct ResultJson<'a>(&'a Result<Decision, MappingError>);

impl Serialize for ResultJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        match self.0 {
            Ok(Decision::Skip(reason)) => map.serialize_entry("skip", reason)?,
            Ok(Decision::Upsert(user)) => map.serialize_entry("upsert", &UserJson(user))?,
            Ok(Decision::Deactivate(it)) => map.serialize_entry(
                "deactivate",
                &Fields(&[("ldap_id", &it.ldap_id), ("reason", &it.reason)]),
            )?,
            Err(error) => map.serialize_entry("error", &ErrorJson(error))?,
        }
        map.end()
    }
}

struct UserJson<'a>(&'a User);

impl Serialize for UserJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let user = self.0;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("username", &user.username)?;
        map.serialize_entry("ldap_id", &user.ldap_id)?;
        for (key, value) in [
            ("email", &user.email),
            ("display_name", &user.display_name),
            ("language", &user.language),
        ] {
            if let Some(value) = value {
                map.serialize_entry(key, value)?;
            }
        }
        if !user.active {
            map.serialize_entry("active", &false)?;
        }
        if !user.attributes.is_empty() {
            map.serialize_entry("attributes", &AbacJson(&user.attributes))?;
        }
        map.end()
    }
}

/// A key given twice stays twice: the host merges the values.
struct AbacJson<'a>(&'a [AbacAttribute]);

impl Serialize for AbacJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for attribute in self.0 {
            map.serialize_entry(&attribute.key, &attribute.values)?;
        }
        map.end()
    }
}

struct ErrorJson<'a>(&'a MappingError);

impl Serialize for ErrorJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        match self.0 {
            MappingError::MissingAttribute(name) => {
                map.serialize_entry("missing_attribute", name)?
            }
            MappingError::InvalidAttribute(attr) => map.serialize_entry(
                "invalid_attribute",
                &Fields(&[("name", &attr.name), ("reason", &attr.reason)]),
            )?,
            MappingError::InvalidSettings(reason) => {
                map.serialize_entry("invalid_settings", reason)?
            }
            MappingError::Other(reason) => map.serialize_entry("other", reason)?,
        }
        map.end()
    }
}

struct Fields<'a>(&'a [(&'a str, &'a String)]);

impl Serialize for Fields<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InvalidAttribute;

    #[test]
    fn reads_rows_under_their_column_names() {
        let json = r#"{"attributes": ["uid", "ou", "mail"], "entries": [
            ["uid=a,dc=x", null, {"objectGUID": ["3q2+7w=="]}, "a", ["s", "t"], null],
            ["uid=b,dc=x", ["cn=g"], null, "b"]
        ]}"#;
        let entries = read_entries(json).expect("reads");
        assert_eq!(
            entries[0],
            Entry::new("uid=a,dc=x")
                .with("uid", ["a"])
                .with("ou", ["s", "t"])
                .with_binary("objectGUID", [vec![0xde, 0xad, 0xbe, 0xef]])
        );
        assert_eq!(
            entries[1],
            Entry::new("uid=b,dc=x")
                .with("uid", ["b"])
                .with_groups(["cn=g"])
        );
    }

    #[test]
    fn a_row_with_more_cells_than_names_is_an_error() {
        let err = read_entries(r#"{"attributes": [], "entries": [["dn", null, null, "x"]]}"#)
            .expect_err("refused");
        assert!(err.to_string().contains("1 attribute cells for 0"), "{err}");
    }

    #[test]
    fn writes_each_kind_of_result() {
        let user = User::new("alice", "id-1")
            .email("a@x")
            .attribute("dept", ["4711"]);
        let json = write_results(&[
            Ok(Decision::Upsert(user)),
            Ok(Decision::Upsert(User::new("bob", "id-2").active(false))),
            Ok(Decision::skip("no mail")),
            Ok(Decision::deactivate("id-3", "disabled")),
            Err(MappingError::missing("uid")),
            Err(MappingError::InvalidAttribute(InvalidAttribute {
                name: "mail".into(),
                reason: "bad".into(),
            })),
        ]);
        assert_eq!(
            json,
            concat!(
                r#"[{"upsert":{"username":"alice","ldap_id":"id-1","email":"a@x","attributes":{"dept":["4711"]}}},"#,
                r#"{"upsert":{"username":"bob","ldap_id":"id-2","active":false}},"#,
                r#"{"skip":"no mail"},"#,
                r#"{"deactivate":{"ldap_id":"id-3","reason":"disabled"}},"#,
                r#"{"error":{"missing_attribute":"uid"}},"#,
                r#"{"error":{"invalid_attribute":{"name":"mail","reason":"bad"}}}]"#
            )
        );
    }
}
