//! Directory objects of the emulated Active Directory, and builders for the users and
//! groups a sync client meets in a real domain.

/// 2024-01-01T00:00:00Z: the fixed clock behind the helpers' `whenCreated`/`whenChanged`.
const EPOCH_2024: i64 = 1_704_067_200;

/// The domain SID of the helpers' `objectSid` values (`S-1-5-21-…`).
const DOMAIN_SUB_AUTHORITIES: [u32; 4] = [21, 1_004_336_348, 1_177_238_915, 682_003_330];

/// One directory object: its DN and its attributes, every value as raw bytes so binary
/// attributes (`objectGUID`, `objectSid`) survive unchanged.
///
/// A DN without a `DC=` component (`CN=alice,CN=Users`) is relative to the server's base
/// DN: the server completes it, in the entry's DN and in DN-valued attributes (`member`,
/// `memberOf`, `manager`, `objectCategory`), when the entry is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdEntry {
    /// The distinguished name.
    pub dn: String,
    /// Attribute names as AD spells them (`sAMAccountName`), in the order they are
    /// returned, each with its values.
    pub attributes: Vec<(String, Vec<Vec<u8>>)>,
}

impl AdEntry {
    /// An entry with no attributes; the server adds `distinguishedName`.
    pub fn new(dn: impl Into<String>) -> Self {
        Self {
            dn: dn.into(),
            attributes: Vec::new(),
        }
    }

    /// A user as AD returns it: objectClass `top/person/organizationalPerson/user`,
    /// `CN=<sam>,CN=Users` under the base DN, `sAMAccountName`, `userPrincipalName` (also
    /// `mail`), the 16 raw bytes of `objectGUID`, an `objectSid` derived from the GUID,
    /// `userAccountControl`, `memberOf`, `uSNCreated`/`uSNChanged` = `usn`, `whenChanged`
    /// = 2024-01-01 plus `usn` seconds, a `displayName`/`givenName`/`sn` made from the
    /// account name (`alice.smith` → `Alice Smith`) and `department` = `Engineering`.
    /// `member_of` takes group DNs, relative or absolute.
    pub fn user(
        sam: &str,
        upn: &str,
        guid: [u8; 16],
        uac: u32,
        member_of: &[&str],
        usn: u64,
    ) -> Self {
        let words: Vec<String> = sam
            .split(['.', '_', '-', ' '])
            .filter(|word| !word.is_empty())
            .map(capitalise)
            .collect();
        let display_name = words.join(" ");
        let given_name = words.first().cloned().unwrap_or_default();
        let surname = words.last().cloned().unwrap_or_default();
        let rid = 1_000 + u32::from_le_bytes([guid[0], guid[1], guid[2], guid[3]]) % 1_000_000;
        Self::new(format!("CN={sam},CN=Users"))
            .with(
                "objectClass",
                ["top", "person", "organizationalPerson", "user"],
            )
            .with("cn", [sam])
            .with("sn", [surname])
            .with("givenName", [given_name])
            .with("displayName", [display_name])
            .with("memberOf", member_of.iter().copied())
            .with("uSNCreated", [usn.to_string()])
            .with("whenCreated", [generalized_time(EPOCH_2024)])
            .with("department", ["Engineering"])
            .with("name", [sam])
            .with("objectGUID", [guid])
            .with("userAccountControl", [uac.to_string()])
            .with("objectSid", [object_sid(rid)])
            .with("sAMAccountName", [sam])
            .with("sAMAccountType", ["805306368"])
            .with("userPrincipalName", [upn])
            .with("objectCategory", ["CN=Person,CN=Schema,CN=Configuration"])
            .with("mail", [upn])
            .with_usn(usn)
    }

    /// A global security group `CN=<cn>,CN=Users` under the base DN with the given member
    /// DNs (relative or absolute), a GUID derived from its name and `uSNChanged` = 1
    /// (change it with [`AdEntry::with_usn`]). The server keeps `member` and `memberOf`
    /// consistent, as AD does with a link and its back link.
    pub fn group(cn: &str, members: &[&str]) -> Self {
        let low = fnv1a(cn.as_bytes(), 0xcbf2_9ce4_8422_2325);
        let high = fnv1a(cn.as_bytes(), 0x6c62_272e_07bb_0142);
        let mut guid = [0u8; 16];
        guid[..8].copy_from_slice(&low.to_le_bytes());
        guid[8..].copy_from_slice(&high.to_le_bytes());
        Self::new(format!("CN={cn},CN=Users"))
            .with("objectClass", ["top", "group"])
            .with("cn", [cn])
            .with("member", members.iter().copied())
            .with("uSNCreated", ["1"])
            .with("whenCreated", [generalized_time(EPOCH_2024)])
            .with("name", [cn])
            .with("objectGUID", [guid])
            .with("objectSid", [object_sid(500_000 + (low % 100_000) as u32)])
            .with("sAMAccountName", [cn])
            .with("sAMAccountType", ["268435456"])
            .with("groupType", ["-2147483646"])
            .with("objectCategory", ["CN=Group,CN=Schema,CN=Configuration"])
            .with_usn(1)
    }

    /// Sets `uSNChanged` to `usn` and `whenChanged` to 2024-01-01 plus `usn` seconds, as a
    /// change on the domain controller would.
    pub fn with_usn(self, usn: u64) -> Self {
        let seconds = i64::try_from(usn).unwrap_or(i64::MAX - EPOCH_2024);
        self.with("uSNChanged", [usn.to_string()])
            .with("whenChanged", [generalized_time(EPOCH_2024 + seconds)])
    }

    /// Moves the entry to another DN (relative or absolute).
    pub fn with_dn(mut self, dn: impl Into<String>) -> Self {
        self.dn = dn.into();
        self
    }

    /// Replaces an attribute's values (adding the attribute if it is missing); an empty
    /// list removes it.
    pub fn with<V: Into<Vec<u8>>>(
        mut self,
        name: &str,
        values: impl IntoIterator<Item = V>,
    ) -> Self {
        self.set(name, values);
        self
    }

    /// Replaces an attribute's values in place; an empty list removes the attribute.
    pub fn set<V: Into<Vec<u8>>>(&mut self, name: &str, values: impl IntoIterator<Item = V>) {
        let values: Vec<Vec<u8>> = values.into_iter().map(Into::into).collect();
        let slot = self
            .attributes
            .iter()
            .position(|(existing, _)| existing.eq_ignore_ascii_case(name));
        match (slot, values.is_empty()) {
            (Some(index), true) => {
                self.attributes.remove(index);
            }
            (Some(index), false) => self.attributes[index].1 = values,
            (None, true) => {}
            (None, false) => self.attributes.push((name.to_owned(), values)),
        }
    }

    /// An attribute's values, its name compared case-insensitively.
    pub fn get(&self, name: &str) -> Option<&[Vec<u8>]> {
        self.attributes
            .iter()
            .find(|(existing, _)| existing.eq_ignore_ascii_case(name))
            .map(|(_, values)| values.as_slice())
    }

    /// An attribute's first value as text, if it has one and it is UTF-8.
    pub fn first_str(&self, name: &str) -> Option<&str> {
        self.get(name)?
            .first()
            .and_then(|value| std::str::from_utf8(value).ok())
    }
}

/// A UTC time in AD's GeneralizedTime form, `YYYYMMDDHHMMSS.0Z`, from seconds since the
/// Unix epoch.
pub fn generalized_time(unix_seconds: i64) -> String {
    let days = unix_seconds.div_euclid(86_400);
    let seconds = unix_seconds.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil conversion.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}{:02}{:02}{:02}.0Z",
        seconds / 3_600,
        seconds % 3_600 / 60,
        seconds % 60
    )
}

/// The binary form of `S-1-5-21-<domain>-<rid>`: revision, sub-authority count,
/// big-endian identifier authority, little-endian sub-authorities.
fn object_sid(rid: u32) -> Vec<u8> {
    let mut sid = vec![1, 5, 0, 0, 0, 0, 0, 5];
    for sub_authority in DOMAIN_SUB_AUTHORITIES.iter().chain([&rid]) {
        sid.extend_from_slice(&sub_authority.to_le_bytes());
    }
    sid
}

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn fnv1a(bytes: &[u8], seed: u64) -> u64 {
    bytes.iter().fold(seed, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
