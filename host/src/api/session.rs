//! Who is calling: Rocket.Chat's `X-User-Id` + `X-Auth-Token` headers, or grommunio's
//! `grommunioAuthJwt` cookie with `X-Csrf-Token` on state-changing requests from
//! browsers (a token that is sent must always match); and
//! Rocket.Chat's two-factor check (`x-2fa-code`, `x-2fa-method`).

use std::time::Instant;

use axum::http::{HeaderMap, Method};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::{ApiError, RcError};
use crate::auth::{Principal, jwt, password, token, totp};
use crate::store::{Account, Dialect, StoreError};

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
        .filter(|account| bool::from(account.public_id.as_bytes().ct_eq(user_id.as_bytes())))
        .map(|account| Session {
            principal: Principal::from(&account),
            account,
            token_hash,
            dialect: Dialect::RocketChat,
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
    let account = state
        .accounts(move |accounts| accounts.session_account(&lookup, Dialect::Grommunio, now_ms))
        .await?
        .ok_or_else(|| ApiError::access_denied("Invalid user"))?;
    Ok(Session {
        principal: Principal::from(&account),
        account,
        token_hash,
        dialect: Dialect::Grommunio,
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
            .ok_or_else(|| ApiError::access_denied("Invalid user"));
    }
    grommunio(state, method, headers).await
}

/// Whether a browser sent the request: browsers add `Origin` to every state-changing
/// request and `Sec-Fetch-Site` to every request (and `Referer` mostly); a forged
/// cross-site request always comes from a browser, so only these need the CSRF token.
fn from_browser(headers: &HeaderMap) -> bool {
    ["origin", "referer", "sec-fetch-site", "sec-fetch-mode"]
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

/// Rocket.Chat's two-factor check of an endpoint that requires it.
///
/// With TOTP enabled the code must be a current TOTP code never used before; without
/// it, Rocket.Chat's password fallback applies: the code is the SHA-256 hex digest of
/// the account's password. Failed codes count towards the account's rate limit.
///
/// # Errors
/// `totp-required` without a code, `totp-invalid` with a wrong or replayed one, 429
/// after too many failures.
pub async fn two_factor(
    state: &AppState,
    session: &Session,
    headers: &HeaderMap,
) -> Result<(), RcError> {
    if state.two_factor_remembered(&session.token_hash) {
        return Ok(());
    }
    let account = &session.account;
    let totp_secret = account.totp_secret.clone().filter(|_| account.totp_enabled);
    let (method, available) = if totp_secret.is_some() {
        ("totp", vec!["totp"])
    } else {
        ("password", Vec::new())
    };
    let Some(code) = header(headers, "x-2fa-code") else {
        return Err(RcError::TotpRequired { method, available });
    };
    let key = format!("account:{}", account.id);
    let now = Instant::now();
    if let Some(wait) = state.two_factor_limiter.retry_after(&key, now) {
        return Err(RcError::TooManyRequests {
            retry_after: wait.as_secs().max(1),
        });
    }
    let accepted = match totp_secret {
        Some(secret) => {
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
        None => {
            let digest = code.to_ascii_lowercase();
            let stored = account.password_hash.clone();
            super::blocking(move || Ok(password::verify_digest(&digest, &stored))).await?
        }
    };
    if !accepted {
        state.two_factor_limiter.failed(&key, now);
        return Err(RcError::TotpInvalid { method });
    }
    state.two_factor_limiter.succeeded(&key);
    state.remember_two_factor(&session.token_hash);
    Ok(())
}
