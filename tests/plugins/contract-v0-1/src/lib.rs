//! A plugin of the first contract, `abacsync:mapping@0.1.0`, built with wit-bindgen
//! alone (the guest SDK now targets 0.3.0). It maps the way the OpenLDAP example does,
//! in part: `uid` → username, `entryUUID` → id, `mail` → email (entries without one are
//! skipped), `displayName` or `cn` → display name, `departmentNumber` → ABAC
//! `department`, `pwdAccountLockedTime` → inactive.
#![allow(missing_docs)]

wit_bindgen::generate!({ path: "../../../wit/v0.1.0", world: "mapping-plugin" });

use abacsync::mapping::types::{
    AbacAttribute, Decision, Entry, MappingContext, MappingError, PluginInfo, User,
};

struct FirstContract;

fn values<'a>(entry: &'a Entry, name: &str) -> &'a [String] {
    entry
        .attributes
        .iter()
        .find(|attr| attr.name.eq_ignore_ascii_case(name))
        .map_or(&[], |attr| attr.values.as_slice())
}

fn first(entry: &Entry, name: &str) -> Option<String> {
    values(entry, name).first().cloned()
}

fn map(entry: &Entry) -> Result<Decision, MappingError> {
    let Some(mail) = first(entry, "mail") else {
        return Ok(Decision::Skip("no mail attribute".into()));
    };
    let require =
        |name: &str| first(entry, name).ok_or_else(|| MappingError::MissingAttribute(name.into()));
    let department = values(entry, "departmentNumber").to_vec();
    Ok(Decision::Upsert(User {
        username: require("uid")?,
        email: Some(mail),
        display_name: first(entry, "displayName").or_else(|| first(entry, "cn")),
        language: None,
        active: values(entry, "pwdAccountLockedTime").is_empty(),
        ldap_id: require("entryUUID")?,
        attributes: if department.is_empty() {
            Vec::new()
        } else {
            vec![AbacAttribute {
                key: "department".into(),
                values: department,
            }]
        },
    }))
}

impl exports::abacsync::mapping::mapper::Guest for FirstContract {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "first-contract".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    fn required_attributes(_context: MappingContext) -> Result<Vec<String>, MappingError> {
        Ok([
            "uid",
            "mail",
            "cn",
            "displayName",
            "entryUUID",
            "departmentNumber",
            "pwdAccountLockedTime",
        ]
        .map(String::from)
        .to_vec())
    }

    fn map_entries(
        _context: MappingContext,
        entries: Vec<Entry>,
    ) -> Result<Vec<Result<Decision, MappingError>>, MappingError> {
        Ok(entries.iter().map(map).collect())
    }
}

export!(FirstContract);
