//! Deterministic LDIF for tests and benchmarks: a directory of `count` people under
//! `ou=people,<base>` and, optionally, groups under `ou=groups,<base>`.
//!
//! The same arguments always give the same bytes, so tests can assert on any value
//! (user `i` is `uid=user{i:06}`, its names, department and city follow from `i`).
//! [`write_people_ldif`] streams to any [`Write`], so 100,000 users never need to sit
//! in one `String`; [`people_ldif`] is the convenience for small directories.
//!
//! The output is meant for `slapadd` (see [`crate::slapd::SlapdBuilder::ldif_writer`])
//! or `ldapadd`: the two containers come first, then the users, then the groups, so
//! every parent precedes its children. The base entry itself is not written — the
//! [`crate::slapd::Slapd`] fixture creates it.
//!
//! Group membership is simple by design:
//! - user `i` is a direct member of group `i % groups`;
//! - with [`PeopleOptions::nested_groups`], group `j > 0` is also a member of group
//!   `(j - 1) / 2` (a binary tree), so group 0 contains every user transitively.

use std::io::{self, Write};

/// Given names, picked by `i % len`.
const GIVEN_NAMES: &[&str] = &[
    "Ada", "Alan", "Barbara", "Dennis", "Edsger", "Frances", "Grace", "Guido", "Hedy", "Ken",
    "Linus", "Margaret", "Niklaus", "Radia", "Tim", "Vint",
];

/// Family names, picked by `(i / GIVEN_NAMES.len()) % len` so that name pairs repeat
/// only every 16 × 16 users.
const FAMILY_NAMES: &[&str] = &[
    "Allen",
    "Backus",
    "Cerf",
    "Dijkstra",
    "Engelbart",
    "Floyd",
    "Hopper",
    "Kay",
    "Knuth",
    "Lamarr",
    "Liskov",
    "Lovelace",
    "Perlman",
    "Ritchie",
    "Thompson",
    "Wirth",
];

/// `(ou, departmentNumber)`, picked by `i % len`.
const DEPARTMENTS: &[(&str, &str)] = &[
    ("Engineering", "100"),
    ("Sales", "200"),
    ("Marketing", "300"),
    ("Finance", "400"),
    ("Human Resources", "500"),
    ("Support", "600"),
    ("Legal", "700"),
];

/// Cities (`l`), picked by `(i / 3) % len` so that city and department vary apart.
const CITIES: &[&str] = &["Amsterdam", "Berlin", "Lisbon", "Madrid", "Paris", "Vienna"];

/// `preferredLanguage` values, picked by `i % len`.
const LANGUAGES: &[&str] = &["en", "de", "fr", "es", "nl"];

/// What [`write_people_ldif`] writes besides the users' personal attributes. The
/// default is people only: no POSIX attributes, no groups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeopleOptions {
    /// Add `posixAccount` to every user: `uidNumber` `10000 + i`, `gidNumber` 10000,
    /// `homeDirectory` `/home/<uid>`, `loginShell` `/bin/bash`. Needs the `nis`
    /// schema.
    pub posix: bool,
    /// Number of `groupOfNames` groups under `ou=groups` (`cn=group{j:04}`). User `i`
    /// is a direct member of group `i % groups`. Must not exceed the user count, since
    /// `groupOfNames` requires at least one member.
    pub groups: usize,
    /// Make the groups a binary tree: group `j > 0` is a member of group `(j - 1) / 2`.
    pub nested_groups: bool,
    /// Also write `memberOf` (direct memberships only, as slapd's `memberof` overlay
    /// keeps them) on users and nested groups. `slapadd` bypasses overlays, so
    /// initial entries loaded with it only have `memberOf` if the LDIF carries it. The
    /// attribute must exist: start the fixture with `memberof(true)` or the `msuser`
    /// schema.
    pub member_of: bool,
}

/// The container of the generated users: `ou=people,<base>`.
pub fn people_dn(base: &str) -> String {
    format!("ou=people,{base}")
}

/// The container of the generated groups: `ou=groups,<base>`.
pub fn groups_dn(base: &str) -> String {
    format!("ou=groups,{base}")
}

/// The `uid` of user `i`: `user000042`.
pub fn uid(i: usize) -> String {
    format!("user{i:06}")
}

/// The DN of user `i`: `uid=user000042,ou=people,<base>`.
pub fn user_dn(base: &str, i: usize) -> String {
    format!("uid={},ou=people,{base}", uid(i))
}

/// The `cn` of group `j`: `group0007`.
pub fn group_cn(j: usize) -> String {
    format!("group{j:04}")
}

/// The DN of group `j`: `cn=group0007,ou=groups,<base>`.
pub fn group_dn(base: &str, j: usize) -> String {
    format!("cn={},ou=groups,{base}", group_cn(j))
}

/// The generated directory as one `String`; see [`write_people_ldif`].
///
/// # Errors
/// [`io::ErrorKind::InvalidInput`] when the options are inconsistent (more groups
/// than users).
pub fn people_ldif(base: &str, count: usize, options: &PeopleOptions) -> io::Result<String> {
    let mut out = Vec::new();
    write_people_ldif(&mut out, base, count, options)?;
    // Every value written is ASCII; a lossy conversion never loses anything here.
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Write `ou=people,<base>` and `ou=groups,<base>`, `count` `inetOrgPerson` users
/// and the groups of `options` to `out`, as LDIF. Wrap `out` in a
/// [`io::BufWriter`] when it is a file or a pipe.
///
/// Every user has `uid`, `cn`, `sn`, `givenName`, `displayName`, `mail`
/// (`<given>.<family>.<i>@<domain of base>`), `departmentNumber`, `ou`,
/// `employeeType` (7 in 10 `employee`, 2 `contractor`, 1 `intern`), `l` and
/// `preferredLanguage`.
///
/// # Errors
/// [`io::ErrorKind::InvalidInput`] when `options.groups > count`, before anything is
/// written; otherwise whatever `out` returns.
pub fn write_people_ldif(
    out: &mut (impl Write + ?Sized),
    base: &str,
    count: usize,
    options: &PeopleOptions,
) -> io::Result<()> {
    if options.groups > count {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} groups for {count} users: every groupOfNames needs a member, so groups must not exceed users",
                options.groups
            ),
        ));
    }
    let domain = mail_domain(base);
    write_container(out, &people_dn(base), "people")?;
    write_container(out, &groups_dn(base), "groups")?;
    for i in 0..count {
        write_user(out, base, &domain, i, options)?;
    }
    for j in 0..options.groups {
        write_group(out, base, count, j, options)?;
    }
    out.flush()
}

/// An `organizationalUnit` entry.
fn write_container(out: &mut (impl Write + ?Sized), dn: &str, ou: &str) -> io::Result<()> {
    writeln!(out, "dn: {dn}\nobjectClass: organizationalUnit\nou: {ou}\n")
}

/// User `i`; see [`write_people_ldif`] for its attributes.
fn write_user(
    out: &mut (impl Write + ?Sized),
    base: &str,
    domain: &str,
    i: usize,
    options: &PeopleOptions,
) -> io::Result<()> {
    let uid = uid(i);
    let given = GIVEN_NAMES[i % GIVEN_NAMES.len()];
    let family = FAMILY_NAMES[(i / GIVEN_NAMES.len()) % FAMILY_NAMES.len()];
    let (department, department_number) = DEPARTMENTS[i % DEPARTMENTS.len()];
    let employee_type = match i % 10 {
        0..=6 => "employee",
        7 | 8 => "contractor",
        _ => "intern",
    };
    let city = CITIES[(i / 3) % CITIES.len()];
    let language = LANGUAGES[i % LANGUAGES.len()];
    let mail = format!("{given}.{family}.{i}@{domain}").to_ascii_lowercase();

    writeln!(out, "dn: {}", user_dn(base, i))?;
    writeln!(out, "objectClass: inetOrgPerson")?;
    if options.posix {
        writeln!(out, "objectClass: posixAccount")?;
    }
    writeln!(out, "uid: {uid}")?;
    writeln!(out, "cn: {given} {family}")?;
    writeln!(out, "sn: {family}")?;
    writeln!(out, "givenName: {given}")?;
    writeln!(out, "displayName: {given} {family}")?;
    writeln!(out, "mail: {mail}")?;
    writeln!(out, "departmentNumber: {department_number}")?;
    writeln!(out, "ou: {department}")?;
    writeln!(out, "employeeType: {employee_type}")?;
    writeln!(out, "l: {city}")?;
    writeln!(out, "preferredLanguage: {language}")?;
    if options.posix {
        writeln!(out, "uidNumber: {}", 10_000 + i)?;
        writeln!(out, "gidNumber: 10000")?;
        writeln!(out, "homeDirectory: /home/{uid}")?;
        writeln!(out, "loginShell: /bin/bash")?;
    }
    if options.member_of && options.groups > 0 {
        writeln!(out, "memberOf: {}", group_dn(base, i % options.groups))?;
    }
    writeln!(out)
}

/// Group `j`: its users (`i % groups == j`), then its subgroups when nested.
fn write_group(
    out: &mut (impl Write + ?Sized),
    base: &str,
    count: usize,
    j: usize,
    options: &PeopleOptions,
) -> io::Result<()> {
    let groups = options.groups;
    writeln!(out, "dn: {}", group_dn(base, j))?;
    writeln!(out, "objectClass: groupOfNames")?;
    writeln!(out, "cn: {}", group_cn(j))?;
    writeln!(out, "description: Generated group {j}")?;
    for i in (j..count).step_by(groups) {
        writeln!(out, "member: {}", user_dn(base, i))?;
    }
    if options.nested_groups {
        for child in [2 * j + 1, 2 * j + 2] {
            if child < groups {
                writeln!(out, "member: {}", group_dn(base, child))?;
            }
        }
        if options.member_of && j > 0 {
            writeln!(out, "memberOf: {}", group_dn(base, (j - 1) / 2))?;
        }
    }
    writeln!(out)
}

/// `dc=example,dc=org` → `example.org`; a base without `dc` components gives
/// `example.org`.
fn mail_domain(base: &str) -> String {
    let labels: Vec<&str> = base
        .split(',')
        .filter_map(|rdn| {
            let (attribute, value) = rdn.split_once('=')?;
            attribute
                .trim()
                .eq_ignore_ascii_case("dc")
                .then(|| value.trim())
        })
        .collect();
    if labels.is_empty() {
        "example.org".to_owned()
    } else {
        labels.join(".")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "dc=example,dc=org";

    fn entries(ldif: &str) -> Vec<&str> {
        ldif.split("\n\n")
            .filter(|entry| !entry.trim().is_empty())
            .collect()
    }

    fn values<'a>(entry: &'a str, attribute: &str) -> Vec<&'a str> {
        let prefix = format!("{attribute}: ");
        entry
            .lines()
            .filter_map(|line| line.strip_prefix(prefix.as_str()))
            .collect()
    }

    #[test]
    fn people_only_has_containers_and_users() {
        let ldif = people_ldif(BASE, 3, &PeopleOptions::default()).unwrap();
        let entries = entries(&ldif);
        assert_eq!(entries.len(), 5);
        assert!(entries[0].starts_with("dn: ou=people,dc=example,dc=org\n"));
        assert!(entries[1].starts_with("dn: ou=groups,dc=example,dc=org\n"));
        let user = entries[2];
        assert_eq!(
            values(user, "dn"),
            ["uid=user000000,ou=people,dc=example,dc=org"]
        );
        assert_eq!(values(user, "cn"), ["Ada Allen"]);
        assert_eq!(values(user, "mail"), ["ada.allen.0@example.org"]);
        assert_eq!(values(user, "employeeType"), ["employee"]);
        assert_eq!(values(user, "objectClass"), ["inetOrgPerson"]);
        assert!(values(user, "memberOf").is_empty());
    }

    #[test]
    fn output_is_deterministic_and_streams_the_same_bytes() {
        let options = PeopleOptions {
            posix: true,
            groups: 3,
            nested_groups: true,
            member_of: true,
        };
        let first = people_ldif(BASE, 20, &options).unwrap();
        let mut streamed = Vec::new();
        write_people_ldif(&mut streamed, BASE, 20, &options).unwrap();
        assert_eq!(first.as_bytes(), streamed.as_slice());
        assert_eq!(first, people_ldif(BASE, 20, &options).unwrap());
    }

    #[test]
    fn groups_partition_users_and_nest_as_a_binary_tree() {
        let options = PeopleOptions {
            groups: 3,
            nested_groups: true,
            member_of: true,
            ..PeopleOptions::default()
        };
        let ldif = people_ldif(BASE, 7, &options).unwrap();
        let entries = entries(&ldif);
        assert_eq!(entries.len(), 2 + 7 + 3);
        let group0 = entries[9];
        assert_eq!(
            values(group0, "member"),
            [
                user_dn(BASE, 0),
                user_dn(BASE, 3),
                user_dn(BASE, 6),
                group_dn(BASE, 1),
                group_dn(BASE, 2),
            ]
        );
        assert!(values(group0, "memberOf").is_empty());
        assert_eq!(values(entries[10], "memberOf"), [group_dn(BASE, 0)]);
        // User 4 is in group 1.
        assert_eq!(values(entries[6], "memberOf"), [group_dn(BASE, 1)]);
    }

    #[test]
    fn posix_attributes_are_optional() {
        let options = PeopleOptions {
            posix: true,
            ..PeopleOptions::default()
        };
        let ldif = people_ldif(BASE, 1, &options).unwrap();
        let user = entries(&ldif)[2];
        assert_eq!(
            values(user, "objectClass"),
            ["inetOrgPerson", "posixAccount"]
        );
        assert_eq!(values(user, "uidNumber"), ["10000"]);
        assert_eq!(values(user, "homeDirectory"), ["/home/user000000"]);
    }

    #[test]
    fn more_groups_than_users_is_refused() {
        let options = PeopleOptions {
            groups: 4,
            ..PeopleOptions::default()
        };
        let err = people_ldif(BASE, 3, &options).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn mail_domain_follows_the_dc_components() {
        assert_eq!(
            mail_domain("dc=corp, DC=example,dc=com"),
            "corp.example.com"
        );
        assert_eq!(mail_domain("o=acme"), "example.org");
    }
}
