//! Search filters: rendering to RFC 4515 text for the search log, and matching entries
//! the way AD does — attribute names and text values case-insensitive, octet strings
//! byte for byte, DNs normalised, numbers and times ordered by value, plus AD's
//! extensible matching rules for bit masks and transitive membership.

use std::cmp::Ordering;
use std::collections::HashSet;

use ldap3_proto::proto::{LdapFilter, LdapMatchingRuleAssertion, LdapSubstringFilter};

use super::AdEntry;
use super::codec::unescape;
use super::directory::{Directory, first_rdn_value, is_binary, is_dn_valued, normalize_dn};

/// LDAP_MATCHING_RULE_BIT_AND.
const BIT_AND: &str = "1.2.840.113556.1.4.803";
/// LDAP_MATCHING_RULE_BIT_OR.
const BIT_OR: &str = "1.2.840.113556.1.4.804";
/// LDAP_MATCHING_RULE_IN_CHAIN (transitive links).
const IN_CHAIN: &str = "1.2.840.113556.1.4.1941";

/// The RFC 4515 text of a filter whose values the codec has already escaped.
pub(super) fn render(filter: &LdapFilter) -> String {
    let list = |filters: &[LdapFilter]| filters.iter().map(render).collect::<String>();
    match filter {
        LdapFilter::And(filters) => format!("(&{})", list(filters)),
        LdapFilter::Or(filters) => format!("(|{})", list(filters)),
        LdapFilter::Not(inner) => format!("(!{})", render(inner)),
        LdapFilter::Equality(attribute, value) => format!("({attribute}={value})"),
        LdapFilter::Substring(attribute, parts) => {
            let mut text = format!("({attribute}=");
            text.push_str(parts.initial.as_deref().unwrap_or_default());
            for any in &parts.any {
                text.push('*');
                text.push_str(any);
            }
            text.push('*');
            text.push_str(parts.final_.as_deref().unwrap_or_default());
            text.push(')');
            text
        }
        LdapFilter::GreaterOrEqual(attribute, value) => format!("({attribute}>={value})"),
        LdapFilter::LessOrEqual(attribute, value) => format!("({attribute}<={value})"),
        LdapFilter::Present(attribute) => format!("({attribute}=*)"),
        LdapFilter::Approx(attribute, value) => format!("({attribute}~={value})"),
        LdapFilter::Extensible(assertion) => {
            let mut text = String::from("(");
            text.push_str(assertion.type_.as_deref().unwrap_or_default());
            if assertion.dn_attributes {
                text.push_str(":dn");
            }
            if let Some(rule) = &assertion.matching_rule {
                text.push(':');
                text.push_str(rule);
            }
            text.push_str(":=");
            text.push_str(&assertion.match_value);
            text.push(')');
            text
        }
    }
}

/// A filter prepared for matching: attribute names lower case without options, values
/// unescaped.
pub(super) enum Matcher {
    And(Vec<Matcher>),
    Or(Vec<Matcher>),
    Not(Box<Matcher>),
    Equal(String, Vec<u8>),
    Substring {
        attribute: String,
        initial: Option<Vec<u8>>,
        any: Vec<Vec<u8>>,
        final_: Option<Vec<u8>>,
    },
    AtLeast(String, Vec<u8>),
    AtMost(String, Vec<u8>),
    Present(String),
    BitAnd(String, i64),
    BitOr(String, i64),
    InChain(String, String),
    /// An assertion this server cannot evaluate (unknown matching rule): matches nothing.
    Never,
}

impl Matcher {
    /// Prepares `filter` for matching.
    pub(super) fn compile(filter: &LdapFilter) -> Self {
        match filter {
            LdapFilter::And(filters) => Self::And(filters.iter().map(Self::compile).collect()),
            LdapFilter::Or(filters) => Self::Or(filters.iter().map(Self::compile).collect()),
            LdapFilter::Not(inner) => Self::Not(Box::new(Self::compile(inner))),
            LdapFilter::Equality(attribute, value) | LdapFilter::Approx(attribute, value) => {
                Self::Equal(attribute_key(attribute), unescape(value))
            }
            LdapFilter::Substring(attribute, parts) => substring(attribute, parts),
            LdapFilter::GreaterOrEqual(attribute, value) => {
                Self::AtLeast(attribute_key(attribute), unescape(value))
            }
            LdapFilter::LessOrEqual(attribute, value) => {
                Self::AtMost(attribute_key(attribute), unescape(value))
            }
            LdapFilter::Present(attribute) => Self::Present(attribute_key(attribute)),
            LdapFilter::Extensible(assertion) => extensible(assertion),
        }
    }

    /// Whether `entry` matches; `directory` resolves DNs for transitive membership.
    pub(super) fn matches(&self, entry: &AdEntry, directory: &Directory) -> bool {
        let values = |attribute: &str| entry.get(attribute).unwrap_or_default();
        match self {
            Self::And(matchers) => matchers.iter().all(|m| m.matches(entry, directory)),
            Self::Or(matchers) => matchers.iter().any(|m| m.matches(entry, directory)),
            Self::Not(inner) => !inner.matches(entry, directory),
            Self::Equal(attribute, wanted) => values(attribute)
                .iter()
                .any(|value| equal(attribute, value, wanted)),
            Self::Substring {
                attribute,
                initial,
                any,
                final_,
            } => values(attribute).iter().any(|value| {
                let fold = |bytes: &[u8]| fold(attribute, bytes);
                substring_match(
                    &fold(value),
                    initial.as_deref().map(fold).as_deref(),
                    &any.iter().map(|part| fold(part)).collect::<Vec<_>>(),
                    final_.as_deref().map(fold).as_deref(),
                )
            }),
            Self::AtLeast(attribute, bound) => values(attribute)
                .iter()
                .any(|value| order(attribute, value, bound) != Ordering::Less),
            Self::AtMost(attribute, bound) => values(attribute)
                .iter()
                .any(|value| order(attribute, value, bound) != Ordering::Greater),
            Self::Present(attribute) => !values(attribute).is_empty(),
            Self::BitAnd(attribute, mask) => values(attribute)
                .iter()
                .filter_map(|value| integer(value))
                .any(|value| value & mask == *mask),
            Self::BitOr(attribute, mask) => values(attribute)
                .iter()
                .filter_map(|value| integer(value))
                .any(|value| value & mask != 0),
            Self::InChain(attribute, target) => in_chain(entry, attribute, target, directory),
            Self::Never => false,
        }
    }
}

/// An attribute description reduced to its lower-case type (`member;range=0-*` → `member`).
fn attribute_key(description: &str) -> String {
    description
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn substring(attribute: &str, parts: &LdapSubstringFilter) -> Matcher {
    Matcher::Substring {
        attribute: attribute_key(attribute),
        initial: parts.initial.as_deref().map(unescape),
        any: parts.any.iter().map(|part| unescape(part)).collect(),
        final_: parts.final_.as_deref().map(unescape),
    }
}

fn extensible(assertion: &LdapMatchingRuleAssertion) -> Matcher {
    let Some(attribute) = assertion.type_.as_deref().map(attribute_key) else {
        return Matcher::Never;
    };
    let value = unescape(&assertion.match_value);
    let mask = || integer(&value);
    match assertion.matching_rule.as_deref() {
        None => Matcher::Equal(attribute, value),
        Some(BIT_AND) => mask().map_or(Matcher::Never, |mask| Matcher::BitAnd(attribute, mask)),
        Some(BIT_OR) => mask().map_or(Matcher::Never, |mask| Matcher::BitOr(attribute, mask)),
        Some(IN_CHAIN) => {
            Matcher::InChain(attribute, normalize_dn(&String::from_utf8_lossy(&value)))
        }
        Some(_) => Matcher::Never,
    }
}

/// Equality under the attribute's syntax.
fn equal(attribute: &str, value: &[u8], wanted: &[u8]) -> bool {
    if is_binary(attribute) {
        return value == wanted;
    }
    let (value, wanted) = (
        String::from_utf8_lossy(value),
        String::from_utf8_lossy(wanted),
    );
    if attribute == "objectcategory" && !wanted.contains('=') {
        // AD accepts a class's lDAPDisplayName for objectCategory: (objectCategory=person).
        return first_rdn_value(&value).is_some_and(|name| name.eq_ignore_ascii_case(&wanted));
    }
    if is_dn_valued(attribute) {
        return normalize_dn(&value) == normalize_dn(&wanted);
    }
    match (integer(value.as_bytes()), integer(wanted.as_bytes())) {
        (Some(left), Some(right)) => left == right,
        _ => value.to_lowercase() == wanted.to_lowercase(),
    }
}

/// Ordering under the attribute's syntax: GeneralizedTime by instant, integers by value,
/// octet strings by bytes, other text case-insensitively.
fn order(attribute: &str, value: &[u8], bound: &[u8]) -> Ordering {
    if is_binary(attribute) {
        return value.cmp(bound);
    }
    if let (Some(left), Some(right)) = (generalized_time(value), generalized_time(bound)) {
        return left.cmp(&right);
    }
    if let (Some(left), Some(right)) = (integer(value), integer(bound)) {
        return left.cmp(&right);
    }
    fold(attribute, value).cmp(&fold(attribute, bound))
}

/// Value folded for case-insensitive comparison, unless the attribute is binary.
fn fold(attribute: &str, value: &[u8]) -> Vec<u8> {
    if is_binary(attribute) {
        value.to_vec()
    } else {
        String::from_utf8_lossy(value).to_lowercase().into_bytes()
    }
}

fn integer(value: &[u8]) -> Option<i64> {
    std::str::from_utf8(value).ok()?.trim().parse().ok()
}

/// `YYYYMMDDHHMMSS[.f]Z` as the number `YYYYMMDDHHMMSS` (fractions are ignored).
fn generalized_time(value: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(value).ok()?;
    let digits = text.get(..14)?;
    let rest = text.get(14..)?;
    let zulu = rest == "Z" || (rest.starts_with('.') && rest.ends_with('Z'));
    (zulu && digits.bytes().all(|byte| byte.is_ascii_digit())).then(|| digits.parse().ok())?
}

fn substring_match(
    value: &[u8],
    initial: Option<&[u8]>,
    any: &[Vec<u8>],
    final_: Option<&[u8]>,
) -> bool {
    let mut rest = value;
    if let Some(initial) = initial {
        let Some(after) = rest.strip_prefix(initial) else {
            return false;
        };
        rest = after;
    }
    for part in any.iter().filter(|part| !part.is_empty()) {
        let Some(position) = rest
            .windows(part.len())
            .position(|window| window == part.as_slice())
        else {
            return false;
        };
        rest = &rest[position + part.len()..];
    }
    final_.is_none_or(|final_| rest.ends_with(final_))
}

/// LDAP_MATCHING_RULE_IN_CHAIN: whether `target` is reachable from `entry` by following
/// `attribute` through the directory (`memberOf` up nested groups, `member` down them).
fn in_chain(entry: &AdEntry, attribute: &str, target: &str, directory: &Directory) -> bool {
    let mut seen = HashSet::new();
    let mut pending: Vec<String> = links(entry, attribute);
    while let Some(norm) = pending.pop() {
        if norm == target {
            return true;
        }
        if seen.insert(norm.clone())
            && let Some(stored) = directory.get(&norm)
        {
            pending.extend(links(&stored.entry, attribute));
        }
    }
    false
}

fn links(entry: &AdEntry, attribute: &str) -> Vec<String> {
    entry
        .get(attribute)
        .unwrap_or_default()
        .iter()
        .map(|value| normalize_dn(&String::from_utf8_lossy(value)))
        .collect()
}
