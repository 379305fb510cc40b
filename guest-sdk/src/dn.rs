//! Distinguished names (RFC 4514): parse `cn=Smith\, John+uid=js,ou=people,dc=example`
//! into relative DNs and attribute values, with escapes decoded.

use std::fmt;

/// One `type=value` pair of a relative DN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ava {
    /// The attribute type as written (`cn`, `OU`, `2.5.4.3`).
    pub attr: String,
    /// The value with escapes decoded.
    pub value: String,
}

/// A relative DN: one or more pairs joined by `+`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rdn(pub Vec<Ava>);

impl Rdn {
    /// The value of attribute type `attr` in this RDN (case-insensitive type).
    pub fn value(&self, attr: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|ava| ava.attr.eq_ignore_ascii_case(attr))
            .map(|ava| ava.value.as_str())
    }
}

/// A parsed distinguished name, leftmost (most specific) RDN first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dn(Vec<Rdn>);

/// Why a string is not a distinguished name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnError {
    /// The byte offset where parsing failed.
    pub position: usize,
    /// What was wrong there.
    pub reason: &'static str,
}

impl fmt::Display for DnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid DN at byte {}: {}", self.position, self.reason)
    }
}

impl std::error::Error for DnError {}

impl Dn {
    /// Parse a DN. The empty string is the root DN, with no RDNs.
    pub fn parse(input: &str) -> Result<Dn, DnError> {
        Parser {
            bytes: input.as_bytes(),
            pos: 0,
        }
        .dn()
    }

    /// The RDNs, leftmost first.
    pub fn rdns(&self) -> &[Rdn] {
        &self.0
    }

    /// The value of `attr` in the leftmost RDN that has it: `cn` of a group DN.
    pub fn first_value(&self, attr: &str) -> Option<&str> {
        self.0.iter().find_map(|rdn| rdn.value(attr))
    }

    /// Every value of `attr` across all RDNs, leftmost first (all `ou`s of a DN).
    pub fn values<'a>(&'a self, attr: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter_map(move |rdn| rdn.value(attr))
    }

    /// The DN without its leftmost RDN; `None` for the root DN.
    pub fn parent(&self) -> Option<Dn> {
        (!self.0.is_empty()).then(|| Dn(self.0[1..].to_vec()))
    }

    /// Whether this DN lies below `ancestor` (types and values compared
    /// case-insensitively, as for most directory attributes).
    pub fn is_under(&self, ancestor: &Dn) -> bool {
        let (mine, theirs) = (&self.0, &ancestor.0);
        mine.len() > theirs.len()
            && mine[mine.len() - theirs.len()..]
                .iter()
                .zip(theirs)
                .all(|(a, b)| rdn_eq_ignore_case(a, b))
    }
}

fn rdn_eq_ignore_case(a: &Rdn, b: &Rdn) -> bool {
    a.0.len() == b.0.len()
        && a.0.iter().zip(&b.0).all(|(x, y)| {
            x.attr.eq_ignore_ascii_case(&y.attr) && x.value.to_lowercase() == y.value.to_lowercase()
        })
}

impl fmt::Display for Dn {
    /// Writes the DN in RFC 4514 form, escaping what must be escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, rdn) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            for (j, ava) in rdn.0.iter().enumerate() {
                if j > 0 {
                    f.write_str("+")?;
                }
                write!(f, "{}=", ava.attr)?;
                let last = ava.value.chars().count().saturating_sub(1);
                for (k, c) in ava.value.chars().enumerate() {
                    let edge_space = c == ' ' && (k == 0 || k == last);
                    match c {
                        '"' | '+' | ',' | ';' | '<' | '>' | '\\' => write!(f, "\\{c}")?,
                        '#' if k == 0 => f.write_str("\\#")?,
                        '\0' => f.write_str("\\00")?,
                        _ if edge_space => f.write_str("\\ ")?,
                        _ => write!(f, "{c}")?,
                    }
                }
            }
        }
        Ok(())
    }
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, reason: &'static str) -> DnError {
        DnError {
            position: self.pos,
            reason,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    fn dn(mut self) -> Result<Dn, DnError> {
        let mut rdns = Vec::new();
        self.skip_spaces();
        if self.peek().is_none() {
            return Ok(Dn(rdns));
        }
        loop {
            let mut avas = vec![self.ava()?];
            loop {
                match self.peek() {
                    Some(b'+') => {
                        self.pos += 1;
                        avas.push(self.ava()?);
                    }
                    Some(b',' | b';') => {
                        self.pos += 1;
                        break;
                    }
                    None => {
                        rdns.push(Rdn(avas));
                        return Ok(Dn(rdns));
                    }
                    Some(_) => return Err(self.error("expected `,` or `+`")),
                }
            }
            rdns.push(Rdn(avas));
        }
    }

    fn ava(&mut self) -> Result<Ava, DnError> {
        self.skip_spaces();
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == b'-' || c == b'.' {
                self.pos += 1;
            } else {
                break;
            }
        }
        if self.pos == start {
            return Err(self.error("expected an attribute type"));
        }
        let attr = String::from_utf8_lossy(&self.bytes[start..self.pos]).into_owned();
        self.skip_spaces();
        if self.peek() != Some(b'=') {
            return Err(self.error("expected `=` after the attribute type"));
        }
        self.pos += 1;
        self.skip_spaces();
        let value = match self.peek() {
            Some(b'#') => self.hex_value()?,
            Some(b'"') => self.quoted_value()?,
            _ => self.string_value()?,
        };
        Ok(Ava { attr, value })
    }

    fn hex_value(&mut self) -> Result<String, DnError> {
        self.pos += 1;
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
            self.pos += 1;
        }
        let digits = &self.bytes[start..self.pos];
        if digits.is_empty() || !digits.len().is_multiple_of(2) {
            return Err(self.error("a `#` value needs an even number of hex digits"));
        }
        let raw: Vec<u8> = digits
            .chunks(2)
            .map(|pair| hex_pair(pair[0], pair[1]))
            .collect();
        self.skip_spaces();
        // A BER-encoded value; its content is shown as text when it is text.
        Ok(String::from_utf8(raw.clone()).unwrap_or_else(|_| {
            let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
            format!("#{hex}")
        }))
    }

    fn quoted_value(&mut self) -> Result<String, DnError> {
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(self.error("unterminated quoted value")),
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => out.push(self.escape()?),
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
        self.skip_spaces();
        String::from_utf8(out).map_err(|_| self.error("value is not UTF-8"))
    }

    fn string_value(&mut self) -> Result<String, DnError> {
        let mut out = Vec::new();
        // Length of `out` up to the last byte that was escaped or not a space, so that
        // unescaped trailing spaces are dropped and escaped ones kept.
        let mut keep = 0;
        while let Some(c) = self.peek() {
            match c {
                b',' | b';' | b'+' => break,
                b'\\' => {
                    out.push(self.escape()?);
                    keep = out.len();
                }
                b'"' | b'<' | b'>' | 0 => return Err(self.error("character must be escaped")),
                _ => {
                    out.push(c);
                    self.pos += 1;
                    if c != b' ' {
                        keep = out.len();
                    }
                }
            }
        }
        out.truncate(keep);
        String::from_utf8(out).map_err(|_| self.error("value is not UTF-8"))
    }

    /// Decode `\c` or `\hh` at the cursor.
    fn escape(&mut self) -> Result<u8, DnError> {
        self.pos += 1;
        match (self.peek(), self.bytes.get(self.pos + 1).copied()) {
            (Some(a), Some(b)) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() => {
                self.pos += 2;
                Ok(hex_pair(a, b))
            }
            (Some(c), _) if b" \"#+,;<=>\\".contains(&c) => {
                self.pos += 1;
                Ok(c)
            }
            _ => Err(self.error("invalid escape")),
        }
    }
}

fn hex_pair(high: u8, low: u8) -> u8 {
    fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => c - b'A' + 10,
        }
    }
    nibble(high) << 4 | nibble(low)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_escapes_multivalued_rdns_and_spaces() {
        let dn = Dn::parse(r"cn=Smith\, John + uid=js , ou=R\C3\A9seau,dc=example,dc=org").unwrap();
        assert_eq!(dn.rdns().len(), 4);
        assert_eq!(dn.first_value("CN"), Some("Smith, John"));
        assert_eq!(dn.first_value("uid"), Some("js"));
        assert_eq!(dn.first_value("ou"), Some("Réseau"));
        assert_eq!(dn.values("dc").collect::<Vec<_>>(), ["example", "org"]);
    }

    #[test]
    fn round_trips_through_display() {
        for text in [r"cn=a\,b\+c,dc=x", r"cn=\#hash\ ,dc=x", "cn=plain,dc=x"] {
            let dn = Dn::parse(text).unwrap();
            assert_eq!(Dn::parse(&dn.to_string()).unwrap(), dn, "{text}");
        }
    }

    #[test]
    fn hex_values_and_quotes() {
        assert_eq!(
            Dn::parse("cn=#414243").unwrap().first_value("cn"),
            Some("ABC")
        );
        assert_eq!(
            Dn::parse(r#"cn="a,b""#).unwrap().first_value("cn"),
            Some("a,b")
        );
    }

    #[test]
    fn rejects_garbage_with_a_position() {
        assert_eq!(Dn::parse("cn").unwrap_err().position, 2);
        assert!(Dn::parse(r"cn=a\zz").is_err());
        assert!(Dn::parse("=x").is_err());
        assert!(Dn::parse("cn=#abc").is_err());
        assert!(Dn::parse("").unwrap().rdns().is_empty());
    }

    #[test]
    fn ancestry_ignores_case() {
        let base = Dn::parse("DC=Example,dc=ORG").unwrap();
        let user = Dn::parse("uid=a,ou=people,dc=example,dc=org").unwrap();
        assert!(user.is_under(&base));
        assert!(!base.is_under(&user));
        assert_eq!(user.parent().unwrap().first_value("ou"), Some("people"));
    }
}
