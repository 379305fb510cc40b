//! Group memberships for directories without `memberOf`, or when nesting matters:
//! the groups are read once per sync (one paged search, ranged member lists
//! completed), and each user's groups, nested ones included, are resolved in memory.

use std::collections::{HashMap, HashSet};

/// Whether the entry `dn` is within a search of `base` with `scope`; both normalised
/// ([`normalize_dn`]). An escaped comma (`cn=a\\,b`) does not end an RDN.
pub fn is_within(dn: &str, base: &str, scope: crate::config::SearchScope) -> bool {
    use crate::config::SearchScope;
    if dn == base {
        return scope != SearchScope::One;
    }
    let Some(prefix) = dn
        .strip_suffix(base)
        .and_then(|rest| rest.strip_suffix(','))
    else {
        return false;
    };
    // The comma before the base must not be escaped (an odd run of backslashes).
    let escapes = prefix.chars().rev().take_while(|c| *c == '\\').count();
    if escapes % 2 == 1 || prefix.is_empty() {
        return false;
    }
    match scope {
        SearchScope::Base => false,
        SearchScope::Sub => true,
        SearchScope::One => {
            // One RDN: no unescaped comma in the prefix.
            let mut escaped = false;
            for c in prefix.chars() {
                match c {
                    '\\' if !escaped => escaped = true,
                    ',' if !escaped => return false,
                    _ => escaped = false,
                }
            }
            true
        }
    }
}

/// Normalises a DN for comparisons: ASCII case folded and spaces around separators
/// removed (`CN=Admins, DC=corp` equals `cn=admins,dc=corp`). Escaped characters are
/// kept as they are.
pub fn normalize_dn(dn: &str) -> String {
    let mut out = String::with_capacity(dn.len());
    let mut chars = dn.trim().chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                out.push('\\');
                if let Some(next) = chars.next() {
                    out.push(next.to_ascii_lowercase());
                }
            }
            ',' | '=' | '+' => {
                while out.ends_with(' ') && !out.ends_with("\\ ") {
                    out.pop();
                }
                out.push(c);
                while chars.peek() == Some(&' ') {
                    chars.next();
                }
            }
            other => out.push(other.to_ascii_lowercase()),
        }
    }
    out
}

/// Who is a member of which group, as read from the directory.
#[derive(Debug, Default, Clone)]
pub struct GroupIndex {
    /// Normalised member DN → the DNs (as read) of the groups listing it directly.
    parents: HashMap<String, Vec<String>>,
    /// Number of groups read.
    groups: usize,
    /// The groups' normalised DNs.
    group_dns: HashSet<String>,
}

impl GroupIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that group `group` lists `members` (DNs).
    pub fn add_group(&mut self, group: &str, members: impl IntoIterator<Item = String>) {
        self.groups += 1;
        self.group_dns.insert(normalize_dn(group));
        for member in members {
            self.parents
                .entry(normalize_dn(&member))
                .or_default()
                .push(group.to_owned());
        }
    }

    /// Number of groups recorded.
    pub fn group_count(&self) -> usize {
        self.groups
    }

    /// Every group `dn` belongs to, directly or through nested groups, each once, in
    /// breadth-first order. Cycles are harmless.
    pub fn groups_of(&self, dn: &str) -> Vec<String> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let mut queue = std::collections::VecDeque::from([normalize_dn(dn)]);
        while let Some(member) = queue.pop_front() {
            for group in self.parents.get(&member).into_iter().flatten() {
                let key = normalize_dn(group);
                if seen.insert(key.clone()) {
                    out.push(group.clone());
                    queue.push_back(key);
                }
            }
        }
        out
    }

    /// The members that are not groups, directly or through nested groups, of any of
    /// `groups`: the users whose groups change when those groups do. Normalised DNs,
    /// sorted.
    pub fn members_under(&self, groups: &[String]) -> Vec<String> {
        let changed: HashSet<String> = groups.iter().map(|dn| normalize_dn(dn)).collect();
        let mut members: Vec<String> = self
            .parents
            .keys()
            .filter(|member| !self.group_dns.contains(*member))
            .filter(|member| {
                self.groups_of(member)
                    .iter()
                    .any(|group| changed.contains(&normalize_dn(group)))
            })
            .cloned()
            .collect();
        members.sort();
        members
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_follows_the_scope_and_escaped_commas() {
        use crate::config::SearchScope::{Base, One, Sub};
        let base = "ou=people,dc=x";
        assert!(is_within("uid=a,ou=people,dc=x", base, Sub));
        assert!(is_within("uid=a,ou=sub,ou=people,dc=x", base, Sub));
        assert!(is_within(base, base, Sub));
        assert!(is_within(base, base, Base));
        assert!(!is_within(base, base, One));
        assert!(is_within("uid=a,ou=people,dc=x", base, One));
        assert!(!is_within("uid=a,ou=sub,ou=people,dc=x", base, One));
        assert!(is_within("cn=a\\,b,ou=people,dc=x", base, One));
        assert!(!is_within("uid=a,ou=people,dc=x", base, Base));
        assert!(!is_within("uid=a,ou=others,dc=x", base, Sub));
        assert!(!is_within("uid=a,xou=people,dc=x", base, Sub));
        // `cn=a\,ou=people,dc=x` is one RDN `cn=a,ou=people` under `dc=x`.
        assert!(!is_within("cn=a\\,ou=people,dc=x", base, Sub));
    }

    #[test]
    fn members_under_changed_groups_include_those_of_nested_groups() {
        let mut index = GroupIndex::new();
        index.add_group(
            "cn=top,dc=x",
            ["cn=middle,dc=x".to_owned(), "uid=a,dc=x".to_owned()],
        );
        index.add_group("cn=middle,dc=x", ["uid=b,dc=x".to_owned()]);
        index.add_group("cn=other,dc=x", ["uid=c,dc=x".to_owned()]);
        assert_eq!(
            index.members_under(&["CN=Top,DC=X".to_owned()]),
            ["uid=a,dc=x", "uid=b,dc=x"]
        );
        assert_eq!(
            index.members_under(&["cn=middle,dc=x".to_owned()]),
            ["uid=b,dc=x"]
        );
        assert!(index.members_under(&["cn=none,dc=x".to_owned()]).is_empty());
    }

    #[test]
    fn dns_compare_without_case_and_spaces() {
        assert_eq!(
            normalize_dn("CN=Domain Admins, OU=Groups ,DC=Corp"),
            "cn=domain admins,ou=groups,dc=corp"
        );
        assert_eq!(normalize_dn(r"cn=a\, b,dc=x"), r"cn=a\, b,dc=x");
    }

    #[test]
    fn nested_groups_resolve_transitively_and_survive_cycles() {
        let mut index = GroupIndex::new();
        index.add_group("cn=staff,dc=x", ["uid=ann,dc=x".to_owned()]);
        index.add_group("cn=all,dc=x", ["CN=Staff, DC=x".to_owned()]);
        index.add_group("cn=staff,dc=x", ["cn=all,dc=x".to_owned()]); // a cycle
        index.add_group("cn=other,dc=x", ["uid=bob,dc=x".to_owned()]);
        assert_eq!(
            index.groups_of("UID=ann,dc=x"),
            vec!["cn=staff,dc=x".to_owned(), "cn=all,dc=x".to_owned()]
        );
        assert_eq!(index.groups_of("uid=nobody,dc=x"), Vec::<String>::new());
    }
}
