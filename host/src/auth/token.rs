//! Random tokens and ids, and the hash a token is stored under.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// A new random token: 32 bytes, URL-safe base64 (43 characters), like Rocket.Chat's
/// `authToken`s in length.
///
/// # Errors
/// When the system has no randomness.
pub fn new_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// A new random id of 17 characters from Meteor's alphabet, as Rocket.Chat's user ids.
///
/// # Errors
/// When the system has no randomness.
pub fn new_public_id() -> Result<String, getrandom::Error> {
    const ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz";
    let mut bytes = [0u8; 17];
    getrandom::fill(&mut bytes)?;
    // 256 % 55 != 0 leaves a slight bias; ids need uniqueness, not secrecy.
    Ok(bytes
        .iter()
        .map(|&b| char::from(ALPHABET[usize::from(b) % ALPHABET.len()]))
        .collect())
}

/// What a token is stored and looked up as: its SHA-256.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Hex SHA-256 of `text`: Rocket.Chat's `password` two-factor method sends the
/// password this way.
pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_ids_are_random_and_well_formed() {
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        let id = new_public_id().unwrap();
        assert_eq!(id.len(), 17);
        assert!(id.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(token_hash("x").len(), 32);
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
