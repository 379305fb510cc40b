//! Admin accounts and their sessions: who may call the API.

use std::collections::BTreeSet;

use super::{StoreError, Timestamp};
use crate::auth::Permission;
use crate::plugin::model::TenantId;

/// An account's id in the store.
pub type AccountId = i64;

/// An admin account as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Store id.
    pub id: AccountId,
    /// The id clients see (Rocket.Chat's `userId`).
    pub public_id: String,
    /// Login name.
    pub username: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// `None`: system-wide; otherwise the only tenant it may see.
    pub tenant: Option<TenantId>,
    /// What it may do.
    pub permissions: BTreeSet<Permission>,
    /// The TOTP secret once enrolment began.
    pub totp_secret: Option<Vec<u8>>,
    /// Whether TOTP is confirmed and required.
    pub totp_enabled: bool,
    /// The last accepted TOTP step.
    pub totp_last_step: Option<i64>,
    /// Email address (for two-factor codes by email).
    pub email: Option<String>,
    /// Whether two-factor codes by email are on.
    pub email_2fa: bool,
    /// Creation time.
    pub created_at: Timestamp,
}

/// What a session is, beside whose.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionFacts {
    /// A personal access token's name; `None` for a login's session.
    pub personal_token: Option<String>,
    /// A personal access token made to skip the two-factor check of the endpoints
    /// that ask for one.
    pub bypass_two_factor: bool,
    /// When the session last passed a two-factor check.
    pub two_factor_at: Option<Timestamp>,
}

/// A personal access token to add.
#[derive(Debug, Clone)]
pub struct NewPersonalToken<'a> {
    /// Its name, unique per account.
    pub name: &'a str,
    /// SHA-256 of the token.
    pub token_hash: &'a [u8],
    /// Its last 6 characters, for lists.
    pub last_part: &'a str,
    /// Whether it skips two-factor checks.
    pub bypass_two_factor: bool,
}

/// A personal access token as listed (never the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonalToken {
    /// Its name.
    pub name: String,
    /// When it was made (or last regenerated).
    pub created_at: Timestamp,
    /// Its last 6 characters.
    pub last_part: String,
    /// Whether it skips two-factor checks.
    pub bypass_two_factor: bool,
}

/// A new account.
#[derive(Debug, Clone)]
pub struct NewAccount {
    /// The id clients will see.
    pub public_id: String,
    /// Login name (unique).
    pub username: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// `None`: system-wide.
    pub tenant: Option<TenantId>,
    /// What it may do.
    pub permissions: BTreeSet<Permission>,
    /// Email address.
    pub email: Option<String>,
}

/// Which API dialect a session belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `X-Auth-Token` + `X-User-Id`.
    RocketChat,
    /// `grommunioAuthJwt` cookie + `X-Csrf-Token`.
    Grommunio,
}

impl Dialect {
    /// Name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::RocketChat => "rocketchat",
            Dialect::Grommunio => "grommunio",
        }
    }
}

/// A counted attempt ([`AccountStore::count_attempt`]).
pub type AttemptId = i64;

/// Attempts kept over every scope and key; beyond, the oldest are forgotten first, so
/// that a flood of distinct names costs bounded room.
pub const MAX_ATTEMPTS: u64 = 100_000;

/// Accounts, sessions, and what logins share across replicas (rate-limit counts,
/// secrets). Not tenant-scoped: the API checks an account's tenant.
pub trait AccountStore: Send + Sync {
    /// Creates an account.
    ///
    /// # Errors
    /// [`StoreError::AccountExists`] when the username is taken.
    fn create_account(&self, account: &NewAccount, now: Timestamp) -> Result<Account, StoreError>;

    /// One account by store id.
    fn account(&self, id: AccountId) -> Result<Option<Account>, StoreError>;

    /// One account by login name.
    fn account_by_username(&self, username: &str) -> Result<Option<Account>, StoreError>;

    /// The one account whose email address is `email` (without case); `None` when
    /// none or several have it.
    fn account_by_email(&self, email: &str) -> Result<Option<Account>, StoreError>;

    /// Accounts, all or those of one tenant, ordered by id.
    fn list_accounts(&self, tenant: Option<TenantId>) -> Result<Vec<Account>, StoreError>;

    /// How many accounts exist.
    fn count_accounts(&self) -> Result<u64, StoreError>;

    /// Deletes an account and its sessions; whether it existed.
    fn delete_account(&self, id: AccountId) -> Result<bool, StoreError>;

    /// Sets (or clears) the TOTP secret and whether it is enabled; clears the last step.
    fn set_totp(
        &self,
        id: AccountId,
        secret: Option<&[u8]>,
        enabled: bool,
    ) -> Result<(), StoreError>;

    /// Records `step` as used if it is later than the last used one; false when it is
    /// not (a replayed code). Atomic: two requests with one code cannot both pass.
    fn use_totp_step(&self, id: AccountId, step: i64) -> Result<bool, StoreError>;

    /// Sets the account's email address and whether codes by email are on.
    fn set_email(
        &self,
        id: AccountId,
        email: Option<&str>,
        email_2fa: bool,
    ) -> Result<(), StoreError>;

    /// Replaces the account's outstanding email code.
    fn put_email_code(
        &self,
        id: AccountId,
        code_hash: &[u8],
        expires_at: Timestamp,
    ) -> Result<(), StoreError>;

    /// Consumes the account's email code if it is `code_hash` and unexpired; false
    /// otherwise. Atomic: a code is accepted once.
    fn take_email_code(
        &self,
        id: AccountId,
        code_hash: &[u8],
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Starts proving `address`: replaces the account's outstanding verification with
    /// this one. The address counts for nothing until [`confirm_email`] takes the code.
    ///
    /// [`confirm_email`]: AccountStore::confirm_email
    fn begin_email_verification(
        &self,
        id: AccountId,
        address: &str,
        code_hash: &[u8],
        expires_at: Timestamp,
    ) -> Result<(), StoreError>;

    /// Consumes the outstanding verification if its code is `code_hash` and unexpired,
    /// and makes its address the account's, with codes by email on; the address, or
    /// `None`. Atomic: a code is accepted once.
    fn confirm_email(
        &self,
        id: AccountId,
        code_hash: &[u8],
        now: Timestamp,
    ) -> Result<Option<String>, StoreError>;

    /// Stores a session under the token's hash.
    fn create_session(
        &self,
        token_hash: &[u8],
        account: AccountId,
        dialect: Dialect,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<(), StoreError>;

    /// The account of an unexpired session of `dialect`, with what the session is.
    fn session_account(
        &self,
        token_hash: &[u8],
        dialect: Dialect,
        now: Timestamp,
    ) -> Result<Option<(Account, SessionFacts)>, StoreError>;

    /// Records that the session passed a two-factor check at `now`.
    fn passed_two_factor(&self, token_hash: &[u8], now: Timestamp) -> Result<(), StoreError>;

    /// Adds a personal access token (a Rocket.Chat session that does not expire).
    ///
    /// # Errors
    /// [`StoreError::TokenExists`] when the account has a token of that name.
    fn create_personal_token(
        &self,
        account: AccountId,
        token: &NewPersonalToken<'_>,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// Replaces the token named `name` by one hashed `token_hash`, keeping its name and
    /// its two-factor bypass; whether it existed.
    fn regenerate_personal_token(
        &self,
        account: AccountId,
        name: &str,
        token_hash: &[u8],
        last_part: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    /// The account's personal access tokens, oldest first.
    fn personal_tokens(&self, account: AccountId) -> Result<Vec<PersonalToken>, StoreError>;

    /// Removes the token named `name`; whether it existed.
    fn delete_personal_token(&self, account: AccountId, name: &str) -> Result<bool, StoreError>;

    /// Ends a session; whether it existed.
    fn delete_session(&self, token_hash: &[u8]) -> Result<bool, StoreError>;

    /// Counts an attempt of `key` within `scope` (a login, a two-factor code) that
    /// counts until `expires_at`, unless `max` attempts of it are counted already and
    /// not expired at `now`: then the milliseconds until the oldest of them expires.
    /// The check and the count are one step: parallel attempts cannot all slip
    /// through. Expired attempts are dropped, and at most [`MAX_ATTEMPTS`] are kept.
    fn count_attempt(
        &self,
        scope: &str,
        key: &str,
        max: u32,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<Result<AttemptId, i64>, StoreError>;

    /// Gives back one counted attempt (it succeeded).
    fn forgive_attempt(&self, id: AttemptId) -> Result<(), StoreError>;

    /// Forgets every attempt of `key` within `scope` (after a success).
    fn clear_attempts(&self, scope: &str, key: &str) -> Result<(), StoreError>;

    /// The secret named `name` that every replica shares: the stored one, or
    /// `candidate`, stored, when there is none yet (whichever replica asks first
    /// wins; the others get its secret).
    fn shared_secret(
        &self,
        name: &str,
        candidate: &[u8],
        now: Timestamp,
    ) -> Result<Vec<u8>, StoreError>;
}
