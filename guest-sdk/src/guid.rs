//! Text forms of Active Directory's binary identifiers.

/// Format a 16-byte `objectGUID` the way Active Directory tools show it:
/// `3f2504e0-4f89-11d3-9a0c-0305e82c3301`. The first three fields are stored
/// little-endian, so `e0 04 25 3f 89 4f d3 11 …` becomes `3f2504e0-4f89-11d3-…`.
/// `None` when `bytes` is not 16 bytes long.
pub fn format_guid(bytes: &[u8]) -> Option<String> {
    let b: &[u8; 16] = bytes.try_into().ok()?;
    Some(format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[3],
        b[2],
        b[1],
        b[0],
        b[5],
        b[4],
        b[7],
        b[6],
        b[8],
        b[9],
        b[10],
        b[11],
        b[12],
        b[13],
        b[14],
        b[15]
    ))
}

/// Format a binary `objectSid` as `S-1-5-21-…`; `None` when it is malformed.
pub fn format_sid(bytes: &[u8]) -> Option<String> {
    let (&revision, rest) = bytes.split_first()?;
    let (&count, rest) = rest.split_first()?;
    let (authority, rest) = rest.split_at_checked(6)?;
    if rest.len() != usize::from(count) * 4 {
        return None;
    }
    let authority = authority
        .iter()
        .fold(0u64, |acc, byte| acc << 8 | u64::from(*byte));
    let mut out = format!("S-{revision}-{authority}");
    for chunk in rest.chunks_exact(4) {
        let sub = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        out.push_str(&format!("-{sub}"));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_uses_mixed_endianness() {
        let bytes = [
            0xe0, 0x04, 0x25, 0x3f, 0x89, 0x4f, 0xd3, 0x11, 0x9a, 0x0c, 0x03, 0x05, 0xe8, 0x2c,
            0x33, 0x01,
        ];
        assert_eq!(
            format_guid(&bytes).as_deref(),
            Some("3f2504e0-4f89-11d3-9a0c-0305e82c3301")
        );
        assert_eq!(format_guid(&bytes[..15]), None);
    }

    #[test]
    fn sid_of_builtin_administrators() {
        let bytes = [1, 2, 0, 0, 0, 0, 0, 5, 32, 0, 0, 0, 32, 2, 0, 0];
        assert_eq!(format_sid(&bytes).as_deref(), Some("S-1-5-32-544"));
        assert_eq!(format_sid(&bytes[..15]), None);
    }
}
