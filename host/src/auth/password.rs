//! Password hashing: argon2id with a random salt, stored as a PHC string.
//!
//! What is hashed is the password's SHA-256 hex digest, as Rocket.Chat hashes it
//! (bcrypt over the digest there): its `password` two-factor method and its login's
//! `{"digest", "algorithm": "sha-256"}` form send the digest, never the password.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// A password could not be hashed (in practice: no randomness).
#[derive(Debug, thiserror::Error)]
#[error("cannot hash the password: {0}")]
pub struct HashError(String);

/// Hashes `password` (its digest) with argon2id's default parameters (19 MiB, 2 passes).
///
/// # Errors
/// [`HashError`] when no salt can be drawn.
pub fn hash(password: &str) -> Result<String, HashError> {
    let password = super::token::sha256_hex(password);
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|err| HashError(err.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|err| HashError(err.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|err| HashError(err.to_string()))
}

/// Whether `password` matches `stored` (a PHC string). A malformed `stored` never
/// matches.
pub fn verify(password: &str, stored: &str) -> bool {
    verify_digest(&super::token::sha256_hex(password), stored)
}

/// Whether the SHA-256 hex digest `digest` (lower case) is of the password of `stored`.
pub fn verify_digest(digest: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(digest.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A hash that verifies nothing, checked when the username is unknown, so that a
/// login takes as long whether or not the account exists.
pub fn decoy() -> &'static str {
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$JeHBTAS01d7HmbgjwvP/aJdNngp2Qb+Y5hwW4ERWmNE"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let stored = hash("correct horse").unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(verify("correct horse", &stored));
        assert!(!verify("correct horse ", &stored));
        assert!(!verify("correct horse", "not a hash"));
        assert!(!verify("", decoy()));
        assert!(verify_digest(
            &crate::auth::token::sha256_hex("correct horse"),
            &stored
        ));
    }

    #[test]
    fn the_decoy_costs_what_a_real_hash_costs() {
        // An unknown name is checked against the decoy: it must be a well-formed hash
        // with the same algorithm, version and parameters as a real one, or unknown
        // names would answer faster than wrong passwords.
        let real = hash("any password").unwrap();
        let real = PasswordHash::new(&real).unwrap();
        let decoy = PasswordHash::new(decoy()).unwrap();
        assert_eq!(decoy.algorithm, real.algorithm);
        assert_eq!(decoy.version, real.version);
        assert_eq!(decoy.params, real.params);
        assert_eq!(
            decoy.hash.map(|output| output.len()),
            real.hash.map(|output| output.len())
        );
    }
}
