//! Who is calling: Rocket.Chat's `X-User-Id` + `X-Auth-Token` headers, or grommunio's
//! `grommunioAuthJwt` cookie with `X-Csrf-Token` on state-changing requests from
//! browsers (a token that is sent must always match); and
//! Rocket.Chat's two-factor check (`x-2fa-code`, `x-2fa-method`).

use axum::http::{HeaderMap, Method};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::{ApiError, RcError};
use crate::auth::{Principal, jwt, password, token, totp};
use crate::store::{Account, Dialect, SessionFacts, StoreError};

/// The session cookie of the grommunio dialect.
pub const COOKIE: &str = "grommunioAuthJwt";

/// An authenticated caller and the session it came with.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who.
    pub principal: Principal,
    /// The account as stored (for two-factor checks).
    pub account: Account,
    /// The session token's hash.
    pub token_hash: Vec<u8>,
    /// Which dialect's session.
    pub dialect: Dialect,
    /// What the session is: a login's or a personal access token, its two-factor
    /// bypass, when it last passed a check.
    pub facts: SessionFacts,
}

impl From<&Account> for Principal {
    fn from(account: &Account) -> Self {
        Principal {
            account: account.id,
            public_id: account.public_id.clone(),
            username: account.username.clone(),
            tenant: account.tenant,
            permissions: account.permissions.clone(),
            totp_enabled: account.totp_enabled,
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|value| !value.is_empty())
}

/// The Rocket.Chat session of the request, if its headers name a live one.
///
/// # Errors
/// [`StoreError`] when the store fails.
pub async fn rocketchat(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Session>, StoreError> {
    let (Some(user_id), Some(auth_token)) = (
        header(headers, "x-user-id"),
        header(headers, "x-auth-token"),
    ) else {
        return Ok(None);
    };
    let token_hash = token::token_hash(auth_token);
    let now = state.now_ms();
    let lookup = token_hash.clone();
    let account = state
        .accounts(move |accounts| accounts.session_account(&lookup, Dialect::RocketChat, now))
        .await?;
    Ok(account
        .filter(|(account, _)| bool::from(account.public_id.as_bytes().ct_eq(user_id.as_bytes())))
        .map(|(account, facts)| Session {
            principal: Principal::from(&account),
            account,
            token_hash,
            dialect: Dialect::RocketChat,
            facts,
        }))
}

/// The grommunio session of the request: a valid cookie naming a live session, and on
/// a state-changing request a matching `X-Csrf-Token`.
///
/// # Errors
/// 401 `Access denied` saying what is wrong; 500 when the store fails.
pub async fn grommunio(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Session, ApiError> {
    let Some(jwt_token) = cookie(headers, COOKIE) else {
        return Err(ApiError::access_denied("No token provided"));
    };
    let now_ms = state.now_ms();
    let claims = jwt::verify(&jwt_token, &state.jwt_secret, now_ms / 1000).map_err(|err| {
        ApiError::access_denied(match err {
            jwt::JwtError::Expired => "Token has expired",
            jwt::JwtError::Signature => "Invalid token signature",
            jwt::JwtError::Malformed | jwt::JwtError::Algorithm => "invalid token",
        })
    })?;
    if !is_safe(method) {
        match header(headers, "x-csrf-token") {
            Some(sent) if bool::from(sent.as_bytes().ct_eq(claims.csrf.as_bytes())) => {}
            Some(_) => return Err(ApiError::access_denied("Invalid CSRF token")),
            None if from_browser(headers) => {
                return Err(ApiError::access_denied("Missing CSRF token"));
            }
            // A client that is no browser chose to send the cookie (grommunio's own
            // `curl --cookie` examples): no forged cross-site request is possible.
            None => {}
        }
    }
    let token_hash = token::token_hash(&claims.sid);
    let lookup = token_hash.clone();
    let (account, facts) = state
        .accounts(move |accounts| accounts.session_account(&lookup, Dialect::Grommunio, now_ms))
        .await?
        .ok_or_else(|| ApiError::access_denied("Invalid user"))?;
    Ok(Session {
        principal: Principal::from(&account),
        account,
        token_hash,
        dialect: Dialect::Grommunio,
        facts,
    })
}

/// A session in either dialect: Rocket.Chat's headers when present, else the cookie.
///
/// # Errors
/// As [`grommunio`]; 401 when Rocket.Chat headers name no live session.
pub async fn any(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Session, ApiError> {
    if header(headers, "x-auth-token").is_some() || header(headers, "x-user-id").is_some() {
        return rocketchat(state, headers)
            .await?
            .ok_or_else(ApiError::not_logged_in);
    }
    grommunio(state, method, headers).await
}

/// Whether a browser sent the request: browsers add `Origin` to every state-changing
/// request and `Sec-Fetch-Site` to every request (and `Referer` mostly); a forged
/// cross-site request always comes from a browser, so only these need the CSRF token.
/// `Sec-Fetch-Mode` alone is not a browser's: Node's `fetch` sends it (`cors`) with
/// none of the others, and a script is no victim of a forged request.
fn from_browser(headers: &HeaderMap) -> bool {
    ["origin", "referer", "sec-fetch-site"]
        .iter()
        .any(|name| headers.contains_key(*name))
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The value of cookie `name`.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"').to_owned())
}

/// The two-factor methods `account` can use, in Rocket.Chat's order of preference.
pub fn available_methods(state: &AppState, account: &Account) -> Vec<&'static str> {
    let mut methods = Vec::new();
    if account.totp_enabled && account.totp_secret.is_some() {
        methods.push("totp");
    }
    if account.email_2fa && account.email.is_some() && state.mailer.is_some() {
        methods.push("email");
    }
    methods
}

/// Rocket.Chat's two-factor check of an endpoint that requires it.
///
/// The method is the one `x-2fa-method` names when the account has it, else the
/// account's first (TOTP, then email). TOTP codes must be current and are never
/// accepted twice; an email code is sent when a request comes without one, valid for
/// `[server.smtp].code_ttl_secs`, and is used once. An account with neither falls back
/// to Rocket.Chat's password method: the code is the SHA-256 hex digest of the
/// password. Failed codes (and sent emails) count towards the account's rate limit.
///
/// # Errors
/// `totp-required` without a code, `totp-invalid` with a wrong or replayed one, 429
/// after too many failures.
pub async fn two_factor(
    state: &AppState,
    session: &Session,
    headers: &HeaderMap,
) -> Result<(), RcError> {
    check_two_factor(state, session, headers, Remember::Allowed).await
}

/// [`two_factor`] without the remember window: changes to the account's own factors
/// (enrolling, confirming, changing or removing a method) always need a current code,
/// whatever the session passed before.
///
/// # Errors
/// As [`two_factor`].
pub async fn fresh_two_factor(
    state: &AppState,
    session: &Session,
    headers: &HeaderMap,
) -> Result<(), RcError> {
    check_two_factor(state, session, headers, Remember::Never).await
}

/// Whether a passed check within the remember window counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Remember {
    Allowed,
    Never,
}

async fn check_two_factor(
    state: &AppState,
    session: &Session,
    headers: &HeaderMap,
    mode: Remember,
) -> Result<(), RcError> {
    // A personal access token made to bypass two-factor skips the check, as in
    // Rocket.Chat, except where a current code is always needed (changes to factors).
    if mode == Remember::Allowed && session.facts.bypass_two_factor {
        return Ok(());
    }
    // A login's probe has no session yet: nothing to remember it under.
    let remember = !session.token_hash.is_empty();
    if remember
        && mode == Remember::Allowed
        && state.two_factor_remembered(session.facts.two_factor_at)
    {
        return Ok(());
    }
    let account = &session.account;
    let available = available_methods(state, account);
    let requested = header(headers, "x-2fa-method");
    let method = match requested {
        Some(name) if available.contains(&name) => {
            if name == "totp" {
                "totp"
            } else {
                "email"
            }
        }
        _ => available.first().copied().unwrap_or("password"),
    };
    let key = format!("account:{}", account.id);
    let now = state.now_ms();
    let code = header(headers, "x-2fa-code");
    if code.is_none() && method != "email" {
        return Err(RcError::TotpRequired {
            method,
            code_generated: false,
            available,
        });
    }
    if let Err(wait) = state.two_factor_limiter.attempt(&key, now).await? {
        return Err(RcError::TooManyRequests {
            retry_after: wait.as_secs().max(1),
        });
    }
    let Some(code) = code else {
        // An email is sent; the attempt counted stays counted: mails are rate-limited.
        send_email_code(state, account).await?;
        return Err(RcError::TotpRequired {
            method,
            code_generated: true,
            available,
        });
    };
    let accepted = match method {
        "totp" => {
            let secret = account.totp_secret.clone().unwrap_or_default();
            let unix = u64::try_from(state.now_ms() / 1000).unwrap_or(0);
            match totp::matching_step(&secret, code, unix) {
                Some(step) => {
                    let id = account.id;
                    let step = i64::try_from(step).unwrap_or(i64::MAX);
                    state
                        .accounts(move |accounts| accounts.use_totp_step(id, step))
                        .await?
                }
                None => false,
            }
        }
        "email" => {
            let id = account.id;
            let hash = token::token_hash(code.trim());
            let at = state.now_ms();
            state
                .accounts(move |accounts| accounts.take_email_code(id, &hash, at))
                .await?
        }
        _ => {
            let digest = code.to_ascii_lowercase();
            let stored = account.password_hash.clone();
            super::blocking(move || Ok(password::verify_digest(&digest, &stored))).await?
        }
    };
    if !accepted {
        return Err(RcError::TotpInvalid { method });
    }
    state.two_factor_limiter.succeeded(&key).await;
    if remember && state.settings.two_factor_remember_secs > 0 {
        // In the store, so that every replica remembers it.
        let hash = session.token_hash.clone();
        let now = state.now_ms();
        state
            .accounts(move |accounts| accounts.passed_two_factor(&hash, now))
            .await?;
    }
    Ok(())
}

/// Draws a 6-digit code, stores its hash and mails it.
async fn send_email_code(state: &AppState, account: &Account) -> Result<(), RcError> {
    let Some(address) = &account.email else {
        return Err(RcError::Internal(
            "email two-factor without an address".into(),
        ));
    };
    let (code, hash, expires) = email_code(state)?;
    let id = account.id;
    state
        .accounts(move |accounts| accounts.put_email_code(id, &hash, expires))
        .await?;
    mail_code(state, address, &code).await
}

/// A fresh 6-digit code, its hash, and when it expires (`[server.smtp].code_ttl_secs`).
///
/// # Errors
/// 500 when the system has no randomness.
pub(crate) fn email_code(state: &AppState) -> Result<(String, Vec<u8>, i64), RcError> {
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).map_err(|err| RcError::Internal(err.to_string()))?;
    let code = format!("{:06}", u32::from_le_bytes(bytes) % 1_000_000);
    let hash = token::token_hash(&code);
    let expires = state.now_ms().saturating_add(
        i64::try_from(code_ttl_secs(state))
            .unwrap_or(i64::MAX / 1000)
            .saturating_mul(1000),
    );
    Ok((code, hash, expires))
}

fn code_ttl_secs(state: &AppState) -> u64 {
    state
        .settings
        .smtp
        .as_ref()
        .map_or(600, |smtp| smtp.code_ttl_secs)
}

/// Mails `code` to `address`.
///
/// # Errors
/// 500 without a mail server or when sending fails.
pub(crate) async fn mail_code(state: &AppState, address: &str, code: &str) -> Result<(), RcError> {
    let Some(mailer) = &state.mailer else {
        return Err(RcError::Internal(
            "email two-factor without a mailer".into(),
        ));
    };
    mailer
        .send_code(address, code, code_ttl_secs(state))
        .await
        .map_err(|err| RcError::Internal(err.to_string()))
}

/// The actions whose rule depends on the session's dialect: one rule per action,
/// applied here for every route that offers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A full sync of a tenant's directory: `ldap.syncNow` and `ldap/downsync`.
    FullSync,
    /// A sync of named users: `abac/users/sync`.
    TargetedSync,
}

/// What `action` demands of `session` beyond its permission, whichever route the
/// session calls it through.
///
/// | session | full sync | targeted sync |
/// |---|---|---|
/// | Rocket.Chat token (`X-Auth-Token`) | Rocket.Chat's two-factor check (`x-2fa-code`; the remember window applies) | nothing more |
/// | grommunio cookie | nothing more: its login asked for the account's second factor, and grommunio's protocol has no step-up | nothing more |
///
/// A Rocket.Chat token therefore meets the same check on `ldap/downsync` as on
/// `ldap.syncNow`.
///
/// # Errors
/// As [`two_factor`].
pub async fn authorize(
    state: &AppState,
    session: &Session,
    headers: &HeaderMap,
    action: Action,
) -> Result<(), RcError> {
    match (session.dialect, action) {
        (Dialect::RocketChat, Action::FullSync) => two_factor(state, session, headers).await,
        (Dialect::RocketChat, Action::TargetedSync) | (Dialect::Grommunio, _) => Ok(()),
    }
}

/// The second factor a login of `account` needs, from the code (and method) the
/// login sent: nothing for an account without a method, else a current code of one
/// of its methods (an email code is mailed when none is sent). The same check for
/// both dialects' logins.
///
/// # Errors
/// `totp-required` / `totp-invalid` as for [`two_factor`]; 429 after too many failures.
pub async fn login_second_factor(
    state: &AppState,
    account: &Account,
    method: Option<&str>,
    code: Option<&str>,
) -> Result<(), RcError> {
    if available_methods(state, account).is_empty() {
        return Ok(());
    }
    let mut headers = HeaderMap::new();
    if let Some(method) = method.and_then(|m| axum::http::HeaderValue::from_str(m).ok()) {
        headers.insert("x-2fa-method", method);
    }
    if let Some(code) = code.and_then(|c| axum::http::HeaderValue::from_str(c).ok()) {
        headers.insert("x-2fa-code", code);
    }
    let probe = Session {
        principal: account.into(),
        account: account.clone(),
        token_hash: Vec::new(),
        dialect: Dialect::RocketChat,
        facts: SessionFacts::default(),
    };
    check_two_factor(state, &probe, &headers, Remember::Never).await
}

/// The caller of an admin endpoint, in either dialect: extracting it authenticates
/// (401 otherwise), before any query or body is looked at.
pub struct Caller(pub Session);

impl axum::extract::FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, ApiError> {
        any(state, &parts.method, &parts.headers).await.map(Caller)
    }
}

impl Caller {
    /// The session, when it has `permission`; 403 otherwise.
    ///
    /// # Errors
    /// [`ApiError::forbidden`].
    pub fn require(self, permission: crate::auth::Permission) -> Result<Session, ApiError> {
        if self.0.principal.has(permission) {
            Ok(self.0)
        } else {
            Err(ApiError::forbidden())
        }
    }
}
