//! The digest of what a sync writes a user from: a user whose stored digest equals the
//! one of its new decision is unchanged, and is not loaded or planned again.

use sha2::{Digest, Sha256};

use super::diff::PlanRules;
use crate::plugin::model::MappedUser;
use crate::store::{Avatar, MappedDigest};

/// A decision as its digest reads it.
#[derive(Debug, Clone, Copy)]
pub enum DecisionText<'a> {
    /// The plugin's own JSON for it (contract 0.2.0): the same text is the same
    /// decision, without decoding it.
    Json(&'a str),
    /// The plugin's own numbers and texts for it (contract 0.3.0), likewise.
    Columns {
        /// Its numbers.
        shapes: &'a [u32],
        /// Its texts, each followed by a NUL.
        texts: &'a str,
    },
    /// The decoded user (contract 0.1.0).
    User(&'a MappedUser),
}

/// The digest of what a sync writes a user from: the plugin's upsert for the entry,
/// the entry's DN, and its avatar when avatars are synced. Planning the same decision
/// against the user it produced changes nothing ([`plan_upsert`](super::diff::plan_upsert) is idempotent), so a
/// user whose stored digest equals this one is unchanged without being loaded.
///
/// SHA-256 (cut to 16 bytes) of a length-prefixed encoding: stable across processes,
/// unlike `std`'s hashers. The host's version is part of it, so that a host whose
/// checks of decisions changed compares every user once.
pub fn mapped_digest(
    decision: DecisionText<'_>,
    dn: &str,
    avatar: Option<&Avatar>,
    rules: &PlanRules,
) -> MappedDigest {
    fn text(hash: &mut Sha256, value: &str) {
        hash.update((value.len() as u64).to_le_bytes());
        hash.update(value.as_bytes());
    }
    fn optional(hash: &mut Sha256, value: Option<&str>) {
        match value {
            None => hash.update([0]),
            Some(value) => {
                hash.update([1]);
                text(hash, value);
            }
        }
    }
    let mut hash = Sha256::new();
    text(&mut hash, concat!("abacsync ", env!("CARGO_PKG_VERSION")));
    match decision {
        DecisionText::Json(json) => {
            hash.update(b"json");
            text(&mut hash, json);
        }
        DecisionText::Columns { shapes, texts } => {
            hash.update(b"columns");
            hash.update((shapes.len() as u64).to_le_bytes());
            for number in shapes {
                hash.update(number.to_le_bytes());
            }
            text(&mut hash, texts);
        }
        DecisionText::User(user) => {
            // Every field, so that a new one cannot be forgotten here.
            let MappedUser {
                username,
                email,
                display_name,
                language,
                active,
                ldap_id,
                attributes,
            } = user;
            hash.update(b"user");
            text(&mut hash, username);
            optional(&mut hash, email.as_deref());
            optional(&mut hash, display_name.as_deref());
            optional(&mut hash, language.as_deref());
            hash.update([u8::from(*active)]);
            text(&mut hash, ldap_id);
            hash.update((attributes.len() as u64).to_le_bytes());
            for (key, values) in attributes {
                text(&mut hash, key);
                hash.update((values.len() as u64).to_le_bytes());
                for value in values {
                    text(&mut hash, value);
                }
            }
        }
    }
    text(&mut hash, dn);
    if rules.sync_avatars {
        hash.update([1]);
        optional(&mut hash, avatar.map(|avatar| avatar.sha256.as_str()));
    } else {
        hash.update([0]);
    }
    let full = hash.finalize();
    let mut digest = [0; 16];
    digest.copy_from_slice(&full[..16]);
    MappedDigest(digest)
}
