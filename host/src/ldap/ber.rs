//! A small BER reader for the values of LDAP controls and intermediate responses that
//! the client library does not parse safely. Every read is bounds-checked and returns
//! an error for malformed input: a hostile server gets a clear error, never a panic.

/// Why a value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BerError(pub String);

fn fail<T>(what: impl Into<String>) -> Result<T, BerError> {
    Err(BerError(what.into()))
}

/// One element: its identifier octet and its contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Element<'a> {
    /// The identifier octet (class, constructed bit, tag number below 31).
    pub tag: u8,
    /// The contents.
    pub contents: &'a [u8],
}

/// Universal tags used here.
pub mod tag {
    /// BOOLEAN.
    pub const BOOLEAN: u8 = 0x01;
    /// INTEGER.
    pub const INTEGER: u8 = 0x02;
    /// OCTET STRING.
    pub const OCTET_STRING: u8 = 0x04;
    /// ENUMERATED.
    pub const ENUMERATED: u8 = 0x0a;
    /// SEQUENCE (constructed).
    pub const SEQUENCE: u8 = 0x30;
    /// SET (constructed).
    pub const SET: u8 = 0x31;
}

/// Reads elements one after another from a buffer.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `input`.
    pub fn new(input: &'a [u8]) -> Self {
        Self { rest: input }
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The identifier of the next element, without reading it.
    pub fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// The next element.
    pub fn element(&mut self) -> Result<Element<'a>, BerError> {
        let (&tag, rest) = self
            .rest
            .split_first()
            .ok_or(BerError("truncated".into()))?;
        if tag & 0x1f == 0x1f {
            return fail("multi-octet tag numbers are not used by these controls");
        }
        let (&first, mut rest) = rest
            .split_first()
            .ok_or(BerError("truncated length".into()))?;
        let length = if first < 0x80 {
            usize::from(first)
        } else if first == 0x80 {
            return fail("indefinite length is not allowed in LDAP");
        } else {
            let octets = usize::from(first & 0x7f);
            if octets > std::mem::size_of::<u32>() {
                return fail(format!("a length of {octets} octets"));
            }
            let (bytes, after) = rest
                .split_at_checked(octets)
                .ok_or(BerError("truncated length".into()))?;
            rest = after;
            bytes
                .iter()
                .fold(0usize, |length, byte| (length << 8) | usize::from(*byte))
        };
        let (contents, after) = rest.split_at_checked(length).ok_or(BerError(format!(
            "an element of {length} octets with {} left",
            rest.len()
        )))?;
        self.rest = after;
        Ok(Element { tag, contents })
    }

    /// The next element, which must have identifier `tag`.
    pub fn expect(&mut self, tag: u8, what: &str) -> Result<&'a [u8], BerError> {
        let element = self
            .element()
            .map_err(|err| BerError(format!("{what}: {err}")))?;
        if element.tag != tag {
            return fail(format!(
                "{what}: expected tag {tag:#04x}, found {:#04x}",
                element.tag
            ));
        }
        Ok(element.contents)
    }

    /// The next element when it has identifier `tag`; `None` (nothing read) otherwise.
    pub fn optional(&mut self, tag: u8, what: &str) -> Result<Option<&'a [u8]>, BerError> {
        if self.peek_tag() == Some(tag) {
            self.expect(tag, what).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// A BOOLEAN's contents.
pub fn boolean(contents: &[u8], what: &str) -> Result<bool, BerError> {
    match contents {
        [value] => Ok(*value != 0),
        _ => fail(format!("{what}: a boolean of {} octets", contents.len())),
    }
}

/// An ENUMERATED's (or a small INTEGER's) contents.
pub fn small_integer(contents: &[u8], what: &str) -> Result<i64, BerError> {
    if contents.is_empty() || contents.len() > 8 {
        return fail(format!("{what}: an integer of {} octets", contents.len()));
    }
    let negative = contents[0] & 0x80 != 0;
    let start: i64 = if negative { -1 } else { 0 };
    Ok(contents
        .iter()
        .fold(start, |value, byte| (value << 8) | i64::from(*byte)))
}

/// One element: `tag`, the definite length of `contents`, `contents`.
pub fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let length = contents.len();
    if length < 0x80 {
        out.push(length as u8);
    } else {
        let bytes: Vec<u8> = length
            .to_be_bytes()
            .into_iter()
            .skip_while(|byte| *byte == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(contents);
    out
}

/// The contents of an INTEGER holding `value`, in the fewest octets (two's complement).
pub fn integer(value: i64) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let mut start = 0;
    while start < 7 {
        let redundant = (bytes[start] == 0x00 && bytes[start + 1] & 0x80 == 0)
            || (bytes[start] == 0xff && bytes[start + 1] & 0x80 != 0);
        if !redundant {
            break;
        }
        start += 1;
    }
    bytes[start..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_short_and_long_lengths() {
        let mut long = vec![0x04, 0x81, 200];
        long.extend(std::iter::repeat_n(7u8, 200));
        let mut reader = Reader::new(&long);
        assert_eq!(reader.expect(tag::OCTET_STRING, "x").unwrap().len(), 200);
        assert!(reader.is_empty());
        let mut reader = Reader::new(&[0x01, 0x01, 0xff]);
        assert!(boolean(reader.expect(tag::BOOLEAN, "b").unwrap(), "b").unwrap());
    }

    #[test]
    fn refuses_what_does_not_fit() {
        for input in [
            &[][..],
            &[0x04],
            &[0x04, 0x05, 1, 2],
            &[0x04, 0x80],
            &[0x04, 0x89, 1, 1, 1, 1, 1, 1, 1, 1, 1],
            &[0x04, 0x84, 0xff, 0xff, 0xff, 0xff, 0],
            &[0x1f, 0x01, 0x00],
        ] {
            assert!(Reader::new(input).element().is_err(), "{input:?}");
        }
        assert!(small_integer(&[], "n").is_err());
        assert_eq!(small_integer(&[0xff], "n").unwrap(), -1);
        assert_eq!(small_integer(&[0x01, 0x00], "n").unwrap(), 256);
        for value in [
            0,
            1,
            127,
            128,
            255,
            256,
            -1,
            -128,
            -129,
            i64::from(i32::MIN),
            i64::MAX,
        ] {
            assert_eq!(
                small_integer(&integer(value), "n").unwrap(),
                value,
                "{value}"
            );
        }
        assert_eq!(integer(-2_147_483_647), [0x80, 0, 0, 1]);
        assert_eq!(integer(128), [0x00, 0x80]);
    }
}
