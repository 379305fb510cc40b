//! Which attributes of an entry a search returns, and AD's range retrieval
//! (MS-ADTS 3.1.1.3.1.3.3): an attribute with more values than MaxValRange comes back as
//! `member;range=0-1499`, a client pages on with `member;range=1500-*`, and the chunk
//! holding the last value is named `…;range=<low>-*`.

use ldap3_proto::proto::LdapPartialAttribute;

use super::AdEntry;
use super::directory::is_linked;

/// A parsed attribute list of a SearchRequest.
#[derive(Debug, Default)]
pub(super) struct Selection {
    /// `*` or an empty list: every attribute.
    all: bool,
    /// Attributes asked for by name, lower case.
    names: Vec<String>,
    /// Attributes asked for with a range option: name (lower case), low, high (`None` for `*`).
    ranges: Vec<(String, usize, Option<usize>)>,
    /// Return attribute names only.
    types_only: bool,
}

/// A range retrieval AD refuses: `low` past the last value of a linked attribute.
#[derive(Debug)]
pub(super) struct RangeError {
    /// The attribute as the client named it.
    pub(super) attribute: String,
}

impl Selection {
    /// Parses a request's attribute list; `1.1` asks for no attributes, options other
    /// than `range=` are ignored.
    pub(super) fn parse(requested: &[String], types_only: bool) -> Self {
        let mut selection = Self {
            all: requested.is_empty(),
            types_only,
            ..Self::default()
        };
        for description in requested {
            let mut parts = description.split(';');
            let name = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let range = parts.find_map(|option| {
                let (key, bounds) = option.split_once('=')?;
                key.trim().eq_ignore_ascii_case("range").then_some(bounds)?;
                let (low, high) = bounds.split_once('-')?;
                let low = low.trim().parse().ok()?;
                match high.trim() {
                    "*" => Some((low, None)),
                    high => Some((low, Some(high.parse().ok()?))),
                }
            });
            match (name.as_str(), range) {
                ("*", _) => selection.all = true,
                ("1.1", _) => {}
                (_, Some((low, high))) => selection.ranges.push((name, low, high)),
                (_, None) => selection.names.push(name),
            }
        }
        selection
    }

    /// The attributes of `entry` this selection returns, each capped at `max_val_range`
    /// values. A range past the last value of a linked attribute is an error unless
    /// `range_no_error` (LDAP_SERVER_RANGE_RETRIEVAL_NOERR_OID) was sent.
    pub(super) fn apply(
        &self,
        entry: &AdEntry,
        max_val_range: usize,
        range_no_error: bool,
    ) -> Result<Vec<LdapPartialAttribute>, RangeError> {
        let mut returned = Vec::new();
        for (name, values) in &entry.attributes {
            let key = name.to_ascii_lowercase();
            if values.is_empty() {
                continue;
            }
            let range = self.ranges.iter().find(|(wanted, _, _)| *wanted == key);
            let (low, high) = match range {
                Some(&(_, low, high)) => (low, high),
                None if self.all || self.names.contains(&key) => {
                    if values.len() <= max_val_range {
                        returned.push(self.attribute(name.clone(), values));
                        continue;
                    }
                    (0, None)
                }
                None => continue,
            };
            if low >= values.len() {
                if is_linked(&key) && !range_no_error {
                    return Err(RangeError {
                        attribute: format!("{name};range={low}-*"),
                    });
                }
                continue;
            }
            let last = values.len() - 1;
            let end = high
                .unwrap_or(usize::MAX)
                .min(low.saturating_add(max_val_range - 1))
                .min(last);
            if end < low {
                continue;
            }
            let label = if end == last {
                format!("{name};range={low}-*")
            } else {
                format!("{name};range={low}-{end}")
            };
            returned.push(self.attribute(label, &values[low..=end]));
        }
        Ok(returned)
    }

    fn attribute(&self, atype: String, values: &[Vec<u8>]) -> LdapPartialAttribute {
        LdapPartialAttribute {
            atype,
            vals: if self.types_only {
                Vec::new()
            } else {
                values.to_vec()
            },
        }
    }
}
