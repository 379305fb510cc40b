//! Building search filters from untrusted values (RFC 4515): every value is escaped,
//! so a username like `*)(uid=*` matches only a user of that name, never everyone.

use std::fmt::Write;

/// Escapes `value` for use as an assertion value: `*`, `(`, `)`, `\` and NUL become
/// `\2a`, `\28`, `\29`, `\5c`, `\00`; everything else (UTF-8 included) stays.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for character in value.chars() {
        match character {
            '*' | '(' | ')' | '\\' | '\0' => {
                let _ = write!(out, "\\{:02x}", character as u32);
            }
            other => out.push(other),
        }
    }
    out
}

/// Escapes every byte of `bytes` (`\e0\04…`), for binary assertion values.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for byte in bytes {
        let _ = write!(out, "\\{byte:02x}");
    }
    out
}

/// `(attribute=value)` with `value` escaped.
pub fn equals(attribute: &str, value: &str) -> String {
    format!("({attribute}={})", escape(value))
}

/// `(|f1 f2 …)`, or the only filter when there is one. `None` for no filters.
pub fn any(filters: Vec<String>) -> Option<String> {
    match filters.len() {
        0 => None,
        1 => filters.into_iter().next(),
        _ => Some(format!("(|{})", filters.concat())),
    }
}

/// `(&f1 f2 …)`, or the only filter when there is one.
pub fn all(filters: Vec<String>) -> String {
    if filters.len() == 1 {
        filters.into_iter().next().unwrap_or_default()
    } else {
        format!("(&{})", filters.concat())
    }
}

/// Wraps a configured filter in parentheses when it lacks them (`objectClass=person`).
pub fn normalize(filter: &str) -> String {
    let trimmed = filter.trim();
    if trimmed.starts_with('(') {
        trimmed.to_owned()
    } else {
        format!("({trimmed})")
    }
}

/// The text form of an objectGUID's bytes, `3f2504e0-4f89-11d3-9a0c-0305e82c3301` (the
/// inverse of [`guid_bytes`], and the form the Active Directory mapping gives its users'
/// ids); `None` unless `bytes` is 16 bytes long.
pub fn guid_text(bytes: &[u8]) -> Option<String> {
    let b: &[u8; 16] = bytes.try_into().ok()?;
    let order = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15];
    let mut text = String::with_capacity(36);
    for (index, source) in order.iter().enumerate() {
        if matches!(index, 4 | 6 | 8 | 10) {
            text.push('-');
        }
        let _ = write!(text, "{:02x}", b[*source]);
    }
    Some(text)
}

/// The bytes of an objectGUID from its text form `3f2504e0-4f89-11d3-9a0c-0305e82c3301`
/// (the first three fields little-endian, as Active Directory stores them); `None` when
/// `text` is not a GUID.
pub fn guid_bytes(text: &str) -> Option<[u8; 16]> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || text.len() != 36 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let mut plain = [0u8; 16];
    for (index, byte) in plain.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(index * 2..index * 2 + 2)?, 16).ok()?;
    }
    let order = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15];
    let mut bytes = [0u8; 16];
    for (target, source) in order.iter().enumerate() {
        bytes[target] = plain[*source];
    }
    Some(bytes)
}

/// A filter matching entries whose unique identifier is one of `ids`, trying each
/// identifier attribute: GUID-shaped ids also match `objectGUID` by their bytes.
pub fn identifiers(unique_attributes: &[String], ids: &[String]) -> Option<String> {
    let mut clauses = Vec::new();
    for id in ids {
        for attribute in unique_attributes {
            if attribute.eq_ignore_ascii_case("objectGUID") {
                if let Some(bytes) = guid_bytes(id) {
                    clauses.push(format!("({attribute}={})", escape_bytes(&bytes)));
                }
            } else {
                clauses.push(equals(attribute, id));
            }
        }
    }
    any(clauses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_values_are_escaped() {
        assert_eq!(equals("uid", "*"), r"(uid=\2a)");
        assert_eq!(equals("uid", ")(uid=*"), r"(uid=\29\28uid=\2a)");
        assert_eq!(equals("uid", r"a\b"), r"(uid=a\5cb)");
        assert_eq!(equals("uid", "a\0b"), r"(uid=a\00b)");
        assert_eq!(equals("cn", "Jürgen"), "(cn=Jürgen)");
        // Every escaped filter parses as exactly one equality assertion.
        for value in ["*", ")(uid=*", r"\", "\0", "(|(a=b))"] {
            assert!(ldap3::parse_filter(equals("uid", value)).is_ok(), "{value}");
        }
    }

    #[test]
    fn guid_text_round_trips_to_ad_bytes() {
        let bytes = guid_bytes("3f2504e0-4f89-11d3-9a0c-0305e82c3301").unwrap();
        assert_eq!(
            bytes,
            [
                0xe0, 0x04, 0x25, 0x3f, 0x89, 0x4f, 0xd3, 0x11, 0x9a, 0x0c, 0x03, 0x05, 0xe8, 0x2c,
                0x33, 0x01
            ]
        );
        assert_eq!(
            abacsync_guest::guid::format_guid(&bytes).as_deref(),
            Some("3f2504e0-4f89-11d3-9a0c-0305e82c3301")
        );
        assert_eq!(
            guid_text(&bytes).as_deref(),
            Some("3f2504e0-4f89-11d3-9a0c-0305e82c3301")
        );
        let odd: Vec<u8> = (0u8..16).map(|i| i.wrapping_mul(37)).collect();
        assert_eq!(guid_text(&odd), abacsync_guest::guid::format_guid(&odd));
        assert_eq!(guid_text(&bytes[..15]), None);
        assert!(guid_bytes("not-a-guid").is_none());
        assert!(guid_bytes("3f2504e04f8911d39a0c0305e82c3301").is_none());
    }

    #[test]
    fn identifier_filter_covers_each_attribute() {
        let attributes = vec!["entryUUID".to_owned(), "objectGUID".to_owned()];
        let filter = identifiers(
            &attributes,
            &["3f2504e0-4f89-11d3-9a0c-0305e82c3301".into(), "x*".into()],
        )
        .unwrap();
        assert!(filter.starts_with("(|(entryUUID=3f2504e0-4f89-11d3-9a0c-0305e82c3301)"));
        assert!(filter.contains(r"(objectGUID=\e0\04\25\3f"));
        assert!(filter.contains(r"(entryUUID=x\2a)"));
        assert!(!filter.contains("(objectGUID=x"));
        assert!(ldap3::parse_filter(&filter).is_ok());
        assert_eq!(identifiers(&attributes, &[]), None);
    }
}
