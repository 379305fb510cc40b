//! The in-memory directory behind the server: entries in load order, looked up by
//! normalised DN, with `member`/`memberOf` kept consistent as AD keeps a link and its back
//! link, and the bits of schema knowledge the matching rules need.

use std::collections::{HashMap, HashSet};

use super::{AdEntry, AdServerError};

/// Attributes whose values are octet strings, compared byte for byte.
const BINARY: &[&str] = &[
    "objectguid",
    "objectsid",
    "sidhistory",
    "tokengroups",
    "thumbnailphoto",
    "jpegphoto",
    "usercertificate",
    "msexchmailboxguid",
    "ms-ds-consistencyguid",
];

/// Attributes whose values are DNs, compared after normalisation.
const DN_VALUED: &[&str] = &[
    "distinguishedname",
    "member",
    "memberof",
    "manager",
    "directreports",
    "managedby",
    "objectcategory",
];

/// Linked attributes: a range past their last value is an error in AD.
const LINKED: &[&str] = &["member", "memberof", "directreports"];

/// Whether `attribute` (lower case) holds binary values.
pub(super) fn is_binary(attribute: &str) -> bool {
    BINARY.contains(&attribute)
}

/// Whether `attribute` (lower case) holds DNs.
pub(super) fn is_dn_valued(attribute: &str) -> bool {
    DN_VALUED.contains(&attribute)
}

/// Whether `attribute` (lower case) is a forward or back link.
pub(super) fn is_linked(attribute: &str) -> bool {
    LINKED.contains(&attribute)
}

/// A DN's RDNs, split on commas that are not escaped.
fn split_rdns(dn: &str) -> Vec<&str> {
    let mut rdns = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (index, character) in dn.char_indices() {
        match character {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            ',' => {
                rdns.push(&dn[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    rdns.push(&dn[start..]);
    rdns.into_iter()
        .map(str::trim)
        .filter(|rdn| !rdn.is_empty())
        .collect()
}

/// A DN in a form fit for comparison: RDNs trimmed, attribute types and values lower case.
pub(super) fn normalize_dn(dn: &str) -> String {
    split_rdns(dn)
        .into_iter()
        .map(|rdn| match rdn.split_once('=') {
            Some((kind, value)) => format!(
                "{}={}",
                kind.trim().to_ascii_lowercase(),
                value.trim().to_lowercase()
            ),
            None => rdn.to_lowercase(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The normalised DN of a normalised DN's parent, `None` for a single RDN.
fn parent_norm(norm: &str) -> Option<String> {
    let rdns = split_rdns(norm);
    (rdns.len() > 1).then(|| rdns[1..].join(","))
}

/// The value of a DN's first RDN (`Person` for `CN=Person,CN=Schema,…`).
pub(super) fn first_rdn_value(dn: &str) -> Option<&str> {
    split_rdns(dn)
        .first()
        .and_then(|rdn| rdn.split_once('='))
        .map(|(_, value)| value.trim())
}

/// `dn` completed with `base` unless it already names a domain component.
fn absolute(dn: &str, base: &str) -> String {
    let names_domain = split_rdns(dn).iter().any(|rdn| {
        rdn.split_once('=')
            .is_some_and(|(kind, _)| kind.trim().eq_ignore_ascii_case("dc"))
    });
    match (names_domain, dn.trim().is_empty()) {
        (true, _) => dn.to_owned(),
        (false, true) => base.to_owned(),
        (false, false) => format!("{dn},{base}"),
    }
}

/// A loaded entry with its normalised DN and its parent's.
pub(super) struct Stored {
    /// The entry, links resolved and `distinguishedName` set.
    pub(super) entry: AdEntry,
    /// Normalised DN.
    pub(super) norm: String,
    /// Normalised DN of the parent.
    pub(super) parent: String,
}

/// The emulated directory partition.
pub(super) struct Directory {
    base_dn: String,
    base_norm: String,
    /// Entries as loaded (DNs made absolute), before link resolution.
    declared: Vec<AdEntry>,
    entries: Vec<Stored>,
    index: HashMap<String, usize>,
}

impl Directory {
    /// Loads `entries` under `base_dn`, adding the domain object if it is missing.
    pub(super) fn new(base_dn: &str, entries: Vec<AdEntry>) -> Result<Self, AdServerError> {
        let mut directory = Self {
            base_dn: base_dn.to_owned(),
            base_norm: normalize_dn(base_dn),
            declared: Vec::new(),
            entries: Vec::new(),
            index: HashMap::new(),
        };
        let mut seen = HashSet::new();
        for entry in entries {
            let entry = directory.absolute_entry(entry)?;
            if !seen.insert(normalize_dn(&entry.dn)) {
                return Err(AdServerError::DuplicateDn { dn: entry.dn });
            }
            directory.declared.push(entry);
        }
        if !seen.contains(&directory.base_norm) {
            let domain = directory.domain_object();
            directory.declared.insert(0, domain);
        }
        directory.resolve_links();
        Ok(directory)
    }

    /// The base DN as configured.
    pub(super) fn base_dn(&self) -> &str {
        &self.base_dn
    }

    /// The normalised base DN.
    pub(super) fn base_norm(&self) -> &str {
        &self.base_norm
    }

    /// Adds `entry`, or replaces the entry with its DN.
    pub(super) fn upsert(&mut self, entry: AdEntry) -> Result<(), AdServerError> {
        let entry = self.absolute_entry(entry)?;
        let norm = normalize_dn(&entry.dn);
        match self
            .declared
            .iter()
            .position(|existing| normalize_dn(&existing.dn) == norm)
        {
            Some(index) => self.declared[index] = entry,
            None => self.declared.push(entry),
        }
        self.resolve_links();
        Ok(())
    }

    /// Removes the entry with this DN (relative or absolute); whether there was one.
    pub(super) fn remove(&mut self, dn: &str) -> bool {
        self.remove_many(&[dn]) == 1
    }

    /// Removes every entry named in `dns` and resolves the links once; returns how
    /// many were removed.
    pub(super) fn remove_many(&mut self, dns: &[&str]) -> usize {
        let norms: std::collections::HashSet<String> = dns
            .iter()
            .map(|dn| normalize_dn(&absolute(dn, &self.base_dn)))
            .collect();
        let before = self.declared.len();
        self.declared
            .retain(|existing| !norms.contains(&normalize_dn(&existing.dn)));
        let removed = before - self.declared.len();
        if removed > 0 {
            self.resolve_links();
        }
        removed
    }

    /// The entry with this normalised DN.
    pub(super) fn get(&self, norm: &str) -> Option<&Stored> {
        self.index.get(norm).map(|&index| &self.entries[index])
    }

    /// The entry with this DN, relative or absolute.
    pub(super) fn find(&self, dn: &str) -> Option<&Stored> {
        self.get(&normalize_dn(&absolute(dn, &self.base_dn)))
    }

    /// Every entry, in load order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Stored> {
        self.entries.iter()
    }

    /// The DN of the nearest existing ancestor of `norm` (AD's `matchedDN`).
    pub(super) fn best_match(&self, norm: &str) -> String {
        let mut rest = norm.to_owned();
        while let Some(parent) = parent_norm(&rest) {
            if let Some(stored) = self.get(&parent) {
                return stored.entry.dn.clone();
            }
            rest = parent;
        }
        String::new()
    }

    /// The highest `uSNChanged` in the directory (the root DSE's `highestCommittedUSN`).
    pub(super) fn highest_usn(&self) -> u64 {
        self.entries
            .iter()
            .filter_map(|stored| stored.entry.first_str("uSNChanged")?.parse().ok())
            .max()
            .unwrap_or(1)
    }

    fn absolute_entry(&self, mut entry: AdEntry) -> Result<AdEntry, AdServerError> {
        entry.dn = absolute(&entry.dn, &self.base_dn);
        let norm = normalize_dn(&entry.dn);
        if norm != self.base_norm && !norm.ends_with(&format!(",{}", self.base_norm)) {
            return Err(AdServerError::OutsideBase {
                dn: entry.dn,
                base: self.base_dn.clone(),
            });
        }
        for (name, values) in &mut entry.attributes {
            if is_dn_valued(&name.to_ascii_lowercase()) {
                for value in values.iter_mut() {
                    let text = String::from_utf8_lossy(value).into_owned();
                    *value = absolute(&text, &self.base_dn).into_bytes();
                }
            }
        }
        Ok(entry)
    }

    fn domain_object(&self) -> AdEntry {
        let dc = first_rdn_value(&self.base_dn)
            .unwrap_or_default()
            .to_owned();
        AdEntry::new(self.base_dn.clone())
            .with("objectClass", ["top", "domain", "domainDNS"])
            .with("dc", [dc.as_str()])
            .with("name", [dc.as_str()])
            .with(
                "objectCategory",
                [format!(
                    "CN=Domain-DNS,CN=Schema,CN=Configuration,{}",
                    self.base_dn
                )],
            )
            .with_usn(1)
    }

    /// Rebuilds the loaded entries: `distinguishedName` set, every `memberOf` naming an
    /// existing group reflected in that group's `member`, and `memberOf` completed with
    /// the back links of every `member`.
    fn resolve_links(&mut self) {
        let mut entries: Vec<AdEntry> = self.declared.clone();
        let norms: Vec<String> = entries
            .iter()
            .map(|entry| normalize_dn(&entry.dn))
            .collect();
        let index: HashMap<String, usize> = norms
            .iter()
            .enumerate()
            .map(|(position, norm)| (norm.clone(), position))
            .collect();
        let dn_set = |entry: &AdEntry, attribute: &str| -> HashSet<String> {
            entry
                .get(attribute)
                .unwrap_or_default()
                .iter()
                .map(|value| normalize_dn(&String::from_utf8_lossy(value)))
                .collect()
        };
        let mut members: Vec<HashSet<String>> = entries
            .iter()
            .map(|entry| dn_set(entry, "member"))
            .collect();
        for member in 0..entries.len() {
            let groups: Vec<Vec<u8>> = entries[member].get("memberOf").unwrap_or_default().to_vec();
            for group in groups {
                let Some(&group) = index.get(&normalize_dn(&String::from_utf8_lossy(&group)))
                else {
                    continue;
                };
                if members[group].insert(norms[member].clone()) {
                    let mut values = entries[group].get("member").unwrap_or_default().to_vec();
                    values.push(entries[member].dn.clone().into_bytes());
                    entries[group].set("member", values);
                }
            }
        }
        let mut back_links: Vec<Vec<Vec<u8>>> = vec![Vec::new(); entries.len()];
        for (group, group_members) in members.iter().enumerate() {
            for member in group_members {
                if let Some(&member) = index.get(member) {
                    back_links[member].push(entries[group].dn.clone().into_bytes());
                }
            }
        }
        for (entry, links) in entries.iter_mut().zip(back_links) {
            let mut seen = dn_set(entry, "memberOf");
            let mut values = entry.get("memberOf").unwrap_or_default().to_vec();
            for link in links {
                if seen.insert(normalize_dn(&String::from_utf8_lossy(&link))) {
                    values.push(link);
                }
            }
            entry.set("memberOf", values);
            let dn = entry.dn.clone();
            entry.set("distinguishedName", [dn]);
        }
        self.entries = entries
            .into_iter()
            .zip(norms)
            .map(|(entry, norm)| {
                let parent = parent_norm(&norm).unwrap_or_default();
                Stored {
                    entry,
                    norm,
                    parent,
                }
            })
            .collect();
        self.index = index;
    }
}
