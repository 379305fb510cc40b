//! Who may call the API: accounts' passwords, sessions and tokens, two-factor codes,
//! permissions, and rate limits of failed attempts. HTTP lives in [`crate::api`];
//! this module knows nothing of requests.

pub mod jwt;
pub mod mail;
pub mod password;
mod permission;
pub mod ratelimit;
pub mod token;
pub mod totp;

pub use permission::{Permission, Principal, Role, UnknownPermission};
