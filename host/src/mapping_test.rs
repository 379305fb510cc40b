//! Run a plugin over fixture entries with no directory, render its decisions as JSON
//! (one object per entry, with its DN), and compare them with expected output.

use crate::plugin::model::{Decision, Entry, EntryOutcome, GuestLog, MappingContext};
use crate::plugin::{CallError, CallStats, Plugin};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// The decision for one fixture entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryResult {
    /// The entry's DN.
    pub dn: String,
    /// What the plugin decided, or its error.
    pub outcome: EntryOutcome,
}

/// What running a plugin over fixtures cost, summed over its batches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Entries mapped.
    pub entries: usize,
    /// Calls made.
    pub calls: usize,
    /// Total wall-clock time of the calls.
    pub duration: Duration,
    /// Total time spent instantiating.
    pub instantiate: Duration,
    /// Highest peak memory of any call, in bytes.
    pub peak_memory: usize,
    /// Bytes logged.
    pub log_bytes: usize,
    /// Bytes written to stdout/stderr.
    pub console_bytes: usize,
}

impl RunStats {
    fn add(&mut self, entries: usize, stats: &CallStats) {
        self.entries += entries;
        self.calls += 1;
        self.duration += stats.duration;
        self.instantiate += stats.instantiate;
        self.peak_memory = self.peak_memory.max(stats.peak_memory);
        self.log_bytes += stats.log_bytes;
        self.console_bytes += stats.console_bytes;
    }

    /// Average time per entry.
    pub fn per_entry(&self) -> Duration {
        self.duration / u32::try_from(self.entries.max(1)).unwrap_or(u32::MAX)
    }
}

/// A whole run: the decisions, the cost, and what the plugin logged.
#[derive(Debug, Clone)]
pub struct MappingRun {
    /// One result per entry, in fixture order.
    pub results: Vec<EntryResult>,
    /// The cost.
    pub stats: RunStats,
    /// The plugin's log lines.
    pub logs: Vec<GuestLog>,
}

/// Map `entries` through `plugin` in batches of `batch_size`. Blocks until done.
pub fn run(
    plugin: &Plugin,
    context: &MappingContext,
    entries: Vec<Entry>,
    batch_size: usize,
) -> Result<MappingRun, CallError> {
    futures_executor::block_on(run_async(plugin, context, entries, batch_size))
}

/// [`run`], awaited without holding a thread.
pub async fn run_async(
    plugin: &Plugin,
    context: &MappingContext,
    entries: Vec<Entry>,
    batch_size: usize,
) -> Result<MappingRun, CallError> {
    let mut run = MappingRun {
        results: Vec::with_capacity(entries.len()),
        stats: RunStats::default(),
        logs: Vec::new(),
    };
    let mut entries = entries.into_iter().peekable();
    while entries.peek().is_some() {
        let batch: Vec<Entry> = entries.by_ref().take(batch_size.max(1)).collect();
        let dns: Vec<String> = batch.iter().map(|entry| entry.dn.clone()).collect();
        let output = plugin.map_entries_raw_async(context, batch).await?.decode();
        run.stats.add(dns.len(), &output.stats);
        run.logs.extend(output.logs);
        run.results.extend(
            dns.into_iter()
                .zip(output.outcomes)
                .map(|(dn, outcome)| EntryResult { dn, outcome }),
        );
    }
    Ok(run)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UserJson<'a> {
    username: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    display_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    language: Option<&'a str>,
    active: bool,
    ldap_id: &'a str,
    attributes: BTreeMap<&'a str, Vec<&'a str>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorJson<'a> {
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    attribute: Option<&'a str>,
    message: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase", tag = "decision")]
enum ResultJson<'a> {
    Skip {
        dn: &'a str,
        reason: &'a str,
    },
    Upsert {
        dn: &'a str,
        user: UserJson<'a>,
    },
    Deactivate {
        dn: &'a str,
        #[serde(rename = "ldapId")]
        ldap_id: &'a str,
        reason: &'a str,
    },
    Error {
        dn: &'a str,
        error: ErrorJson<'a>,
    },
}

impl<'a> From<&'a EntryResult> for ResultJson<'a> {
    fn from(result: &'a EntryResult) -> Self {
        let dn = result.dn.as_str();
        match &result.outcome {
            Ok(Decision::Skip { reason }) => ResultJson::Skip { dn, reason },
            Ok(Decision::Deactivate { ldap_id, reason }) => ResultJson::Deactivate {
                dn,
                ldap_id,
                reason,
            },
            Ok(Decision::Upsert(user)) => ResultJson::Upsert {
                dn,
                user: UserJson {
                    username: &user.username,
                    email: user.email.as_deref(),
                    display_name: user.display_name.as_deref(),
                    language: user.language.as_deref(),
                    active: user.active,
                    ldap_id: &user.ldap_id,
                    attributes: user
                        .attributes
                        .iter()
                        .map(|(key, values)| {
                            (key.as_str(), values.iter().map(String::as_str).collect())
                        })
                        .collect(),
                },
            },
            Err(error) => ResultJson::Error {
                dn,
                error: ErrorJson {
                    kind: error.kind.as_str(),
                    attribute: error.attribute.as_deref(),
                    message: &error.message,
                },
            },
        }
    }
}

/// The results as a JSON array, one object per entry:
/// `{"decision": "upsert", "dn": …, "user": {…}}`, `{"decision": "skip", "dn": …,
/// "reason": …}`, `{"decision": "deactivate", "dn": …, "ldapId": …, "reason": …}` or
/// `{"decision": "error", "dn": …, "error": {"kind", "attribute", "message"}}`.
pub fn to_json(results: &[EntryResult]) -> Value {
    Value::Array(
        results
            .iter()
            .map(|result| serde_json::to_value(ResultJson::from(result)).unwrap_or(Value::Null))
            .collect(),
    )
}

/// One way the actual output differs from the expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// The expected file is not a JSON array of objects with a `dn`.
    BadExpectation(String),
    /// An expected entry has no result.
    Missing {
        /// Its DN.
        dn: String,
    },
    /// A result for an entry that was not expected.
    Unexpected {
        /// Its DN.
        dn: String,
    },
    /// A value differs.
    Changed {
        /// The entry's DN.
        dn: String,
        /// Where in the entry's object (`user.attributes.department`).
        path: String,
        /// What was expected (JSON), `None` when absent.
        expected: Option<String>,
        /// What was produced (JSON), `None` when absent.
        actual: Option<String>,
    },
}

impl Difference {
    /// The entry it is about (none for an unusable expectation).
    pub fn dn(&self) -> Option<&str> {
        match self {
            Difference::BadExpectation(_) => None,
            Difference::Missing { dn }
            | Difference::Unexpected { dn }
            | Difference::Changed { dn, .. } => Some(dn),
        }
    }
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::BadExpectation(reason) => {
                write!(f, "expected output is unusable: {reason}")
            }
            Difference::Missing { dn } => write!(f, "{dn}: expected, but no such entry was mapped"),
            Difference::Unexpected { dn } => {
                write!(f, "{dn}: mapped, but not in the expected output")
            }
            Difference::Changed {
                dn,
                path,
                expected,
                actual,
            } => {
                let show =
                    |value: &Option<String>| value.clone().unwrap_or_else(|| "(absent)".to_owned());
                write!(
                    f,
                    "{dn}: {path}\n    expected: {}\n    actual:   {}",
                    show(expected),
                    show(actual)
                )
            }
        }
    }
}

/// Compare actual output with the expected, entry by entry (matched by DN).
/// Arrays of ABAC values compare as sets: order does not matter.
pub fn compare(expected: &Value, actual: &Value) -> Vec<Difference> {
    let index = |value: &Value| -> Result<BTreeMap<String, Value>, String> {
        let items = value.as_array().ok_or("not a JSON array")?;
        let mut by_dn = BTreeMap::new();
        for (position, item) in items.iter().enumerate() {
            let dn = item
                .get("dn")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("item {position} has no \"dn\" string"))?;
            if by_dn.insert(dn.to_owned(), item.clone()).is_some() {
                return Err(format!("DN `{dn}` appears twice"));
            }
        }
        Ok(by_dn)
    };
    let (expected, actual) = match (index(expected), index(actual)) {
        (Ok(expected), Ok(actual)) => (expected, actual),
        (Err(reason), _) | (_, Err(reason)) => return vec![Difference::BadExpectation(reason)],
    };
    let mut differences = Vec::new();
    for (dn, want) in &expected {
        match actual.get(dn) {
            None => differences.push(Difference::Missing { dn: dn.clone() }),
            Some(got) => diff_values(dn, String::new(), Some(want), Some(got), &mut differences),
        }
    }
    for dn in actual.keys().filter(|dn| !expected.contains_key(*dn)) {
        differences.push(Difference::Unexpected { dn: dn.clone() });
    }
    differences
}

fn diff_values(
    dn: &str,
    path: String,
    want: Option<&Value>,
    got: Option<&Value>,
    out: &mut Vec<Difference>,
) {
    match (want, got) {
        (Some(Value::Object(want)), Some(Value::Object(got))) => {
            let keys: std::collections::BTreeSet<&String> = want.keys().chain(got.keys()).collect();
            for key in keys {
                let sub = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                diff_values(dn, sub, want.get(key), got.get(key), out);
            }
        }
        (Some(Value::Array(want)), Some(Value::Array(got))) if as_set(want) == as_set(got) => {}
        (want, got) if want == got => {}
        (want, got) => out.push(Difference::Changed {
            dn: dn.to_owned(),
            path: if path.is_empty() {
                "(entry)".to_owned()
            } else {
                path
            },
            expected: want.map(Value::to_string),
            actual: got.map(Value::to_string),
        }),
    }
}

fn as_set(values: &[Value]) -> std::collections::BTreeSet<String> {
    values.iter().map(Value::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compares_by_dn_with_paths_and_set_semantics() {
        let expected = json!([
            {"dn": "a", "decision": "upsert", "user": {"username": "a", "attributes": {"d": ["1", "2"]}}},
            {"dn": "b", "decision": "skip", "reason": "x"},
            {"dn": "c", "decision": "skip", "reason": "x"},
        ]);
        let actual = json!([
            {"dn": "a", "decision": "upsert", "user": {"username": "a", "attributes": {"d": ["2", "1"]}, "email": "e"}},
            {"dn": "b", "decision": "skip", "reason": "y"},
            {"dn": "d", "decision": "skip", "reason": "x"},
        ]);
        let differences = compare(&expected, &actual);
        let text: Vec<String> = differences.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "a: user.email\n    expected: (absent)\n    actual:   \"e\"",
                "b: reason\n    expected: \"x\"\n    actual:   \"y\"",
                "c: expected, but no such entry was mapped",
                "d: mapped, but not in the expected output",
            ]
        );
        assert!(compare(&expected, &expected).is_empty());
        assert!(matches!(
            compare(&json!({}), &expected)[0],
            Difference::BadExpectation(_)
        ));
    }
}
