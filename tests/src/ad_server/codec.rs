//! The wire codec: `ldap3_proto`'s messages over BER, with one repair on the way in.
//!
//! `ldap3_proto` reads filter assertion values as UTF-8 text, so a filter on a binary
//! attribute (`(objectGUID=\ab\cd…)`, sent as raw octets) would fail to decode. Before a
//! message is handed to `ldap3_proto`, every assertion value of a search filter is
//! rewritten to its RFC 4515 escaped form; [`unescape`] turns it back into bytes when the
//! filter is compiled, and the escaped form is exactly what a recorded filter shows.

use std::io;

use bytes::{Buf, BytesMut};
use ldap3_lber::common::TagClass;
use ldap3_lber::structure::{PL, StructureTag};
use ldap3_lber::{Parser, write as ber_write};
use ldap3_proto::LdapMsg;
use tokio_util::codec::{Decoder, Encoder};

/// Largest request accepted: a search with a long filter fits many times over.
const MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// Deepest BER nesting accepted.
const MAX_DEPTH: usize = 128;
/// `[APPLICATION 3]`: a SearchRequest.
const SEARCH_REQUEST: u64 = 3;
/// Position of the filter among a SearchRequest's fields.
const FILTER_FIELD: usize = 6;

/// Decodes requests into [`LdapMsg`] and encodes responses.
#[derive(Debug, Default)]
pub(super) struct AdCodec;

impl Decoder for AdCodec {
    type Item = LdapMsg;
    type Error = io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Option<LdapMsg>> {
        if buf.len() > MAX_REQUEST_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request too large",
            ));
        }
        let (consumed, mut tag) = match Parser::new(MAX_DEPTH).parse(buf) {
            Ok((rest, tag)) => (buf.len() - rest.len(), tag),
            Err(ldap3_lber::Err::Incomplete(_)) => return Ok(None),
            Err(error) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("malformed BER: {error:?}"),
                ));
            }
        };
        buf.advance(consumed);
        escape_search_filter(&mut tag);
        LdapMsg::try_from(tag)
            .map(Some)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error.to_string()))
    }
}

impl Encoder<LdapMsg> for AdCodec {
    type Error = io::Error;

    fn encode(&mut self, msg: LdapMsg, buf: &mut BytesMut) -> io::Result<()> {
        ber_write::encode_into(buf, msg.into())
    }
}

/// Escapes the assertion values of the filter of `message`, if it is a SearchRequest.
fn escape_search_filter(message: &mut StructureTag) {
    let PL::C(fields) = &mut message.payload else {
        return;
    };
    let Some(operation) = fields.get_mut(1) else {
        return;
    };
    if operation.class != TagClass::Application || operation.id != SEARCH_REQUEST {
        return;
    }
    if let PL::C(request) = &mut operation.payload
        && let Some(filter) = request.get_mut(FILTER_FIELD)
    {
        escape_filter(filter);
    }
}

/// Escapes every assertion value in a filter (RFC 4511 §4.5.1 tags 0–9).
fn escape_filter(filter: &mut StructureTag) {
    if filter.class != TagClass::Context {
        return;
    }
    let PL::C(children) = &mut filter.payload else {
        return;
    };
    match filter.id {
        // and, or, not
        0..=2 => children.iter_mut().for_each(escape_filter),
        // equalityMatch, greaterOrEqual, lessOrEqual, approxMatch
        3 | 5 | 6 | 8 => {
            if let Some(value) = children.get_mut(1) {
                escape_primitive(value);
            }
        }
        // substrings: type, SEQUENCE OF initial/any/final
        4 => {
            if let Some(StructureTag {
                payload: PL::C(parts),
                ..
            }) = children.get_mut(1)
            {
                parts.iter_mut().for_each(escape_primitive);
            }
        }
        // extensibleMatch: matchValue is [3]
        9 => children
            .iter_mut()
            .filter(|child| child.id == 3)
            .for_each(escape_primitive),
        _ => {}
    }
}

fn escape_primitive(tag: &mut StructureTag) {
    if let PL::P(value) = &mut tag.payload {
        *value = escape(value).into_bytes();
    }
}

/// RFC 4515 form of an assertion value: `\`, `*`, `(`, `)`, NUL and bytes that are not
/// UTF-8 become `\xx`; other text stays as it is.
pub(super) fn escape(value: &[u8]) -> String {
    let mut escaped = String::with_capacity(value.len());
    for chunk in value.utf8_chunks() {
        for character in chunk.valid().chars() {
            match character {
                '\\' | '*' | '(' | ')' | '\0' => {
                    escaped.push_str(&format!("\\{:02x}", character as u32))
                }
                _ => escaped.push(character),
            }
        }
        for byte in chunk.invalid() {
            escaped.push_str(&format!("\\{byte:02x}"));
        }
    }
    escaped
}

/// The bytes of an RFC 4515 escaped value; a `\` not followed by two hex digits stays.
pub(super) fn unescape(value: &str) -> Vec<u8> {
    let bytes = value.as_bytes();
    let mut raw = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = bytes
            .get(index + 1..index + 3)
            .filter(|pair| pair.iter().all(u8::is_ascii_hexdigit))
            .and_then(|pair| std::str::from_utf8(pair).ok())
            .and_then(|pair| u8::from_str_radix(pair, 16).ok());
        match (bytes[index], hex) {
            (b'\\', Some(byte)) => {
                raw.push(byte);
                index += 3;
            }
            (byte, _) => {
                raw.push(byte);
                index += 1;
            }
        }
    }
    raw
}
