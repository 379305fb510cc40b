//! A plugin of the second contract, `abacsync:mapping@0.2.0`, built with wit-bindgen
//! and serde_json alone (the guest SDK now targets 0.3.0): entries arrive as one JSON
//! document and decisions leave as one. It maps as the contract 0.1.0 test plugin does:
//! `uid` → username, `entryUUID` → id, `mail` → email (entries without one are
//! skipped), `displayName` or `cn` → display name, `departmentNumber` → ABAC
//! `department`, `pwdAccountLockedTime` → inactive.
#![allow(missing_docs)]

wit_bindgen::generate!({ path: "../../../wit/v0.2.0", world: "mapping-plugin" });

use abacsync::mapping::types::{MappingContext, MappingError, PluginInfo};
use serde_json::{Value, json};

struct SecondContract;

/// The values of a row's cell: `null`, a string, or an array of strings.
fn values(cell: Option<&Value>) -> Vec<String> {
    match cell {
        Some(Value::String(one)) => vec![one.clone()],
        Some(Value::Array(many)) => many
            .iter()
            .filter_map(|value| value.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

fn decide(columns: &[String], row: &[Value]) -> Value {
    let cell = |name: &str| {
        columns
            .iter()
            .position(|column| column.eq_ignore_ascii_case(name))
            .and_then(|index| row.get(3 + index))
    };
    let first = |name: &str| values(cell(name)).into_iter().next();
    let Some(mail) = first("mail") else {
        return json!({"skip": "no mail attribute"});
    };
    let (Some(uid), Some(id)) = (first("uid"), first("entryUUID")) else {
        let missing = if first("uid").is_none() {
            "uid"
        } else {
            "entryUUID"
        };
        return json!({"error": {"missing_attribute": missing}});
    };
    let mut user = json!({
        "username": uid,
        "ldap_id": id,
        "email": mail,
        "display_name": first("displayName").or_else(|| first("cn")),
        "active": values(cell("pwdAccountLockedTime")).is_empty(),
    });
    let department = values(cell("departmentNumber"));
    if !department.is_empty() {
        user["attributes"] = json!({"department": department});
    }
    json!({"upsert": user})
}

impl exports::abacsync::mapping::mapper::Guest for SecondContract {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "second-contract".into(),
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

    fn map_batch(_context: MappingContext, entries: String) -> Result<String, MappingError> {
        let batch: Value = serde_json::from_str(&entries)
            .map_err(|err| MappingError::Other(format!("reading the batch: {err}")))?;
        let columns: Vec<String> = batch["attributes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|name| name.as_str().map(str::to_owned))
            .collect();
        let decisions: Vec<Value> = batch["entries"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|row| decide(&columns, row.as_array().map_or(&[], Vec::as_slice)))
            .collect();
        Ok(Value::Array(decisions).to_string())
    }
}

export!(SecondContract);
