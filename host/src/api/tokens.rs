//! Rocket.Chat's personal access tokens, for scripts: `users.generatePersonalAccessToken`,
//! `users.regeneratePersonalAccessToken`, `users.getPersonalAccessTokens`,
//! `users.removePersonalAccessToken`, with Rocket.Chat's bodies and errors.
//!
//! A token is a Rocket.Chat session of its account that never expires (sent as
//! `X-Auth-Token` with the account's `X-User-Id`), stored hashed like every session,
//! and able to do what its account may do, no more. One made with `bypassTwoFactor`
//! skips the two-factor check of the endpoints that ask for one (`ldap.syncNow`,
//! `downsync`): what lets a script run unattended. Making, regenerating or removing a
//! token needs the account's current second factor, never remembered and never
//! bypassed, so neither a stolen session nor a bypassing token can mint another.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::RcError;
use super::session::{self, Session};
use super::{AppState, iso8601};
use crate::auth::token;
use crate::store::{NewPersonalToken, StoreError};

/// The longest token name.
const MAX_NAME_CHARS: usize = 100;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(generate))
        .routes(routes!(regenerate))
        .routes(routes!(list))
        .routes(routes!(remove))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TokenBody {
    token_name: String,
    #[serde(default)]
    bypass_two_factor: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NameBody {
    token_name: String,
}

fn invalid(reason: impl std::fmt::Display) -> RcError {
    RcError::Failed {
        message: reason.to_string(),
        error_type: "error-invalid-params",
    }
}

/// The body as `T`, with a valid `tokenName`.
fn body<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    name: impl Fn(&T) -> &str,
) -> Result<T, RcError> {
    let parsed: T = serde_json::from_slice(bytes).map_err(invalid)?;
    let token_name = name(&parsed);
    if token_name.trim().is_empty()
        || token_name.chars().count() > MAX_NAME_CHARS
        || token_name.chars().any(char::is_control)
    {
        return Err(invalid(format!(
            "tokenName must be 1 to {MAX_NAME_CHARS} characters, none of them control characters"
        )));
    }
    Ok(parsed)
}

/// The Rocket.Chat session, having passed a current second-factor check.
async fn checked(state: &AppState, headers: &HeaderMap) -> Result<Session, RcError> {
    let session = session::rocketchat(state, headers)
        .await?
        .ok_or(RcError::NotLoggedIn)?;
    session::fresh_two_factor(state, &session, headers).await?;
    Ok(session)
}

fn no_such_token() -> RcError {
    RcError::Failed {
        message: "Token does not exist".into(),
        error_type: "error-token-does-not-exists",
    }
}

/// A new token and what the store keeps of it (hash, last 6 characters).
fn new_token() -> Result<(String, Vec<u8>, String), RcError> {
    let token =
        token::new_token().map_err(|err| RcError::Internal(format!("no randomness: {err}")))?;
    let hash = token::token_hash(&token);
    let last: String = token
        .chars()
        .rev()
        .take(6)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    Ok((token, hash, last))
}

/// Makes a personal access token for the caller (Rocket.Chat
/// `users.generatePersonalAccessToken`).
///
/// Needs the account's current second factor (`x-2fa-code`), never remembered. The
/// token is answered once and never again; with `bypassTwoFactor` it skips the
/// two-factor check of the endpoints that ask for one.
#[utoipa::path(post, path = "/api/v1/users.generatePersonalAccessToken", tag = "rocket.chat", security(("rocketchat" = [])),
    request_body(content = Value, example = json!({"tokenName": "nightly-sync", "bypassTwoFactor": true})),
    responses(
        (status = 200, description = "The token", body = Value, example = json!({"token": "…", "success": true})),
        (status = 400, description = "totp-required / totp-invalid, error-invalid-params, error-token-already-exists", body = Value,
            example = json!({"success": false, "error": "A token with this name already exists [error-token-already-exists]", "errorType": "error-token-already-exists"})),
        (status = 401, description = "Not logged in", body = Value),
        (status = 429, description = "Too many failed two-factor codes", body = Value),
    ))]
async fn generate(
    State(state): State<AppState>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Json<Value>, RcError> {
    let session = checked(&state, &headers).await?;
    let wanted: TokenBody = body(&bytes, |b: &TokenBody| &b.token_name)?;
    let (token, hash, last) = new_token()?;
    let account = session.account.id;
    let now = state.now_ms();
    let created = state
        .accounts(move |accounts| {
            Ok(accounts.create_personal_token(
                account,
                &NewPersonalToken {
                    name: &wanted.token_name,
                    token_hash: &hash,
                    last_part: &last,
                    bypass_two_factor: wanted.bypass_two_factor,
                },
                now,
            ))
        })
        .await?;
    match created {
        Ok(()) => Ok(Json(json!({"token": token, "success": true}))),
        Err(StoreError::TokenExists(_)) => Err(RcError::Failed {
            message: "A token with this name already exists".into(),
            error_type: "error-token-already-exists",
        }),
        Err(err) => Err(err.into()),
    }
}

/// Replaces one of the caller's tokens by a new one of the same name and bypass
/// (Rocket.Chat `users.regeneratePersonalAccessToken`); the old one stops working.
#[utoipa::path(post, path = "/api/v1/users.regeneratePersonalAccessToken", tag = "rocket.chat", security(("rocketchat" = [])),
    request_body(content = Value, example = json!({"tokenName": "nightly-sync"})),
    responses(
        (status = 200, description = "The new token", body = Value, example = json!({"token": "…", "success": true})),
        (status = 400, description = "totp-required / totp-invalid, error-invalid-params, error-token-does-not-exists", body = Value),
        (status = 401, description = "Not logged in", body = Value),
        (status = 429, description = "Too many failed two-factor codes", body = Value),
    ))]
async fn regenerate(
    State(state): State<AppState>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Json<Value>, RcError> {
    let session = checked(&state, &headers).await?;
    let wanted: NameBody = body(&bytes, |b: &NameBody| &b.token_name)?;
    let (token, hash, last) = new_token()?;
    let account = session.account.id;
    let now = state.now_ms();
    let replaced = state
        .accounts(move |accounts| {
            accounts.regenerate_personal_token(account, &wanted.token_name, &hash, &last, now)
        })
        .await?;
    if !replaced {
        return Err(no_such_token());
    }
    Ok(Json(json!({"token": token, "success": true})))
}

/// The caller's tokens, never their values (Rocket.Chat
/// `users.getPersonalAccessTokens`).
#[utoipa::path(get, path = "/api/v1/users.getPersonalAccessTokens", tag = "rocket.chat", security(("rocketchat" = [])),
    responses(
        (status = 200, description = "The tokens", body = Value,
            example = json!({"tokens": [{"name": "nightly-sync", "createdAt": "2026-12-04T10:00:00.000Z", "lastTokenPart": "x1Yz9Q", "bypassTwoFactor": true}], "success": true})),
        (status = 401, description = "Not logged in", body = Value),
    ))]
async fn list(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, RcError> {
    let session = session::rocketchat(&state, &headers)
        .await?
        .ok_or(RcError::NotLoggedIn)?;
    let account = session.account.id;
    let tokens = state
        .accounts(move |accounts| accounts.personal_tokens(account))
        .await?;
    let tokens: Vec<Value> = tokens
        .iter()
        .map(|token| {
            json!({
                "name": token.name,
                "createdAt": iso8601(token.created_at),
                "lastTokenPart": token.last_part,
                "bypassTwoFactor": token.bypass_two_factor,
            })
        })
        .collect();
    Ok(Json(json!({"tokens": tokens, "success": true})))
}

/// Removes one of the caller's tokens (Rocket.Chat `users.removePersonalAccessToken`).
#[utoipa::path(post, path = "/api/v1/users.removePersonalAccessToken", tag = "rocket.chat", security(("rocketchat" = [])),
    request_body(content = Value, example = json!({"tokenName": "nightly-sync"})),
    responses(
        (status = 200, description = "Removed", body = Value, example = json!({"success": true})),
        (status = 400, description = "totp-required / totp-invalid, error-invalid-params, error-token-does-not-exists", body = Value),
        (status = 401, description = "Not logged in", body = Value),
        (status = 429, description = "Too many failed two-factor codes", body = Value),
    ))]
async fn remove(
    State(state): State<AppState>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Json<Value>, RcError> {
    let session = checked(&state, &headers).await?;
    let wanted: NameBody = body(&bytes, |b: &NameBody| &b.token_name)?;
    let account = session.account.id;
    let removed = state
        .accounts(move |accounts| accounts.delete_personal_token(account, &wanted.token_name))
        .await?;
    if !removed {
        return Err(no_such_token());
    }
    Ok(Json(json!({"success": true})))
}
