//! Logging in and out in both dialects, and TOTP enrolment.
//!
//! `POST /api/v1/login` serves both: a JSON body is Rocket.Chat's login (`user` or
//! `username`, `password` as text or `{digest, algorithm}`, optional `code`); a form
//! body is grommunio's (`user`, `pass`), which sets the `grommunioAuthJwt` cookie and
//! returns the CSRF token state-changing requests must send back.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, RcError};
use super::session::{self, COOKIE, Caller, Session};
use super::{AppState, blocking};
use crate::auth::ratelimit::Attempt;
use crate::auth::{Permission, jwt, password, token, totp};
use crate::store::{Account, Dialect, StoreError};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(profile))
        .routes(routes!(totp_begin, totp_disable))
        .routes(routes!(totp_confirm))
        .routes(routes!(set_email_two_factor))
        .routes(routes!(confirm_email_two_factor))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RcPassword {
    Plain(String),
    Digest { digest: String, algorithm: String },
}

/// Rocket.Chat's login body, in each form its REST login accepts: `user` (an email
/// address when it contains `@`), `username` or `email` with `password`; or `resume`,
/// a session token the client stored.
#[derive(Deserialize)]
struct RcLogin {
    user: Option<String>,
    username: Option<String>,
    email: Option<String>,
    password: Option<RcPassword>,
    code: Option<String>,
    resume: Option<String>,
}

/// Whom a login names.
enum LoginName {
    Username(String),
    Email(String),
}

impl LoginName {
    /// As Rocket.Chat reads its body: `user` first (an email when it contains `@`),
    /// then `username`, then `email`.
    fn of(login: &RcLogin) -> Option<Self> {
        if let Some(user) = &login.user {
            return Some(if user.contains('@') {
                Self::Email(user.clone())
            } else {
                Self::Username(user.clone())
            });
        }
        login
            .username
            .clone()
            .map(Self::Username)
            .or_else(|| login.email.clone().map(Self::Email))
    }

    /// The name the rate limits count under.
    fn key(&self) -> String {
        match self {
            Self::Username(name) => name.clone(),
            Self::Email(email) => email.to_lowercase(),
        }
    }
}

#[derive(Deserialize)]
struct GrommunioLogin {
    user: Option<String>,
    pass: Option<String>,
    /// The second factor's code, for an account that has one (abacsync's addition:
    /// grommunio's own login has no second factor).
    code: Option<String>,
    /// Which method `code` comes from (`totp` or `email`), when not the first.
    method: Option<String>,
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value.starts_with("application/x-www-form-urlencoded")
                || value.starts_with("multipart/form-data")
        })
}

/// Logs in: Rocket.Chat's JSON login or grommunio's form login.
///
/// JSON (`{"user", "password", "code"?}`, the password as text or `{"digest",
/// "algorithm": "sha-256"}`) answers Rocket.Chat's `authToken` and `userId`. A form
/// (`user`, `pass`) sets the `grommunioAuthJwt` cookie and answers it with the CSRF
/// token. Failed attempts are rate-limited per account name and client address.
#[utoipa::path(post, path = "/api/v1/login", tag = "sessions",
    request_body(content = Value, description = "JSON (Rocket.Chat) or application/x-www-form-urlencoded (grommunio)",
        example = json!({"user": "admin", "password": "secret"})),
    responses(
        (status = 200, description = "Logged in", body = Value,
            example = json!({"status": "success", "data": {"userId": "2tTEqR7ZNMJ4HGGNa", "authToken": "…", "me": {"_id": "2tTEqR7ZNMJ4HGGNa", "username": "admin"}}})),
        (status = 400, description = "Incomplete login form (grommunio)", body = Value, example = json!({"message": "Incomplete login form"})),
        (status = 401, description = "Wrong credentials, or a two-factor code needed or wrong", body = Value,
            example = json!({"status": "error", "error": "Unauthorized", "message": "Unauthorized"})),
        (status = 429, description = "Too many failed attempts", body = Value),
    ))]
async fn login(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let client = client_ip(&state.settings.trusted_proxies, client, &headers);
    // A form with `password` and no `pass` is Rocket.Chat's login sent as a form
    // (`curl -d user=…&password=…`, as its documentation shows).
    let rocketchat_form = is_form(&headers)
        && serde_urlencoded_form::<BTreeMap<String, String>>(&body)
            .is_some_and(|form| form.contains_key("password") && !form.contains_key("pass"));
    if rocketchat_form {
        let form: BTreeMap<String, String> = serde_urlencoded_form(&body).unwrap_or_default();
        let json = serde_json::to_vec(&form).unwrap_or_default();
        rocketchat_login(&state, client, &headers, &json)
            .await
            .into_response()
    } else if is_form(&headers) {
        grommunio_login(&state, client, &headers, &body)
            .await
            .into_response()
    } else {
        rocketchat_login(&state, client, &headers, &body)
            .await
            .into_response()
    }
}

/// The client's address: the peer's, or behind a configured trusted proxy the last
/// address of `X-Forwarded-For` that is not one (a client can put anything in front
/// of it, but not behind).
pub(crate) fn client_ip(trusted: &[ipnet::IpNet], peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = peer.ip();
    if !is_trusted(&client) {
        return client;
    }
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            // Garbage from beyond the proxies: the last proxy's peer is the client.
            break;
        };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

/// The rate-limit counts of one login attempt, given back once it succeeds (with its
/// second factor): only failures stay counted.
struct Counted {
    /// The account name from this address.
    pair: String,
    /// The address, whatever the name.
    address: Attempt,
    /// The account name, from every address (not counted when its limit was reached
    /// and the login brought its second factor).
    account: Option<Attempt>,
}

impl Counted {
    async fn succeeded(self, state: &AppState) {
        state.login_limiter.succeeded(&self.pair).await;
        state.address_limiter.forgive(self.address).await;
        if let Some(account) = self.account {
            state.account_limiter.forgive(account).await;
        }
    }
}

/// Checks a password (its SHA-256 digest) under the rate limits: failures per account
/// name and address, per address, and per account name from every address. The last
/// is the lock-out anyone who knows a name could cause, so once it is reached a login
/// that brings a second-factor code (`with_code`) is still checked: a correct
/// password and a correct code pass. The decoy hash keeps unknown names as slow as
/// known ones.
async fn check_password(
    state: &AppState,
    client: IpAddr,
    name: &LoginName,
    digest: String,
    with_code: bool,
) -> Result<Result<(Account, Counted), ()>, LoginRefusal> {
    let key = name.key();
    let username = key.as_str();
    let now = state.now_ms();
    let pair = format!("{username}\u{0}{client}");
    let refused = |wait: Duration| LoginRefusal::TooMany(wait.as_secs().max(1));
    let pair_at = state
        .login_limiter
        .attempt(&pair, now)
        .await?
        .map_err(refused)?;
    let address = client.to_string();
    let address_at = match state.address_limiter.attempt(&address, now).await? {
        Ok(at) => at,
        Err(wait) => {
            state.login_limiter.forgive(pair_at).await;
            return Err(refused(wait));
        }
    };
    let account_at = match state.account_limiter.attempt(username, now).await? {
        Ok(at) => Some(at),
        Err(_) if with_code => None,
        Err(wait) => {
            state.login_limiter.forgive(pair_at).await;
            state.address_limiter.forgive(address_at).await;
            return Err(refused(wait));
        }
    };
    let counted = Counted {
        pair,
        address: address_at,
        account: account_at,
    };
    let account = match name {
        LoginName::Username(name) => {
            let name = name.clone();
            state
                .accounts(move |accounts| accounts.account_by_username(&name))
                .await
        }
        LoginName::Email(email) => {
            let email = email.clone();
            state
                .accounts(move |accounts| accounts.account_by_email(&email))
                .await
        }
    }
    .map_err(LoginRefusal::Store)?;
    let stored = account
        .as_ref()
        .map_or_else(|| password::decoy().to_owned(), |a| a.password_hash.clone());
    let matches = blocking(move || Ok(password::verify_digest(&digest, &stored)))
        .await
        .map_err(LoginRefusal::Store)?;
    match account {
        // Held off by the account's limit, only an account with a second factor
        // goes on (to check the code it brought).
        Some(account)
            if matches && (account_at.is_some() || account.totp_enabled || account.email_2fa) =>
        {
            Ok(Ok((account, counted)))
        }
        Some(_) if matches => Err(LoginRefusal::TooMany(
            state.settings.rate_limit_window_secs.max(1),
        )),
        _ => Ok(Err(())),
    }
}

enum LoginRefusal {
    TooMany(u64),
    Store(StoreError),
}

impl From<StoreError> for LoginRefusal {
    fn from(err: StoreError) -> Self {
        LoginRefusal::Store(err)
    }
}

async fn new_session(
    state: &AppState,
    account: &Account,
    dialect: Dialect,
) -> Result<String, StoreError> {
    let session_token =
        token::new_token().map_err(|err| StoreError::Panicked(format!("no randomness: {err}")))?;
    let hash = token::token_hash(&session_token);
    let id = account.id;
    let now = state.now_ms();
    let hours = i64::try_from(state.settings.session_hours).unwrap_or(i64::MAX / 3_600_000);
    let expires = now.saturating_add(hours.saturating_mul(3_600_000));
    state
        .accounts(move |accounts| accounts.create_session(&hash, id, dialect, now, expires))
        .await?;
    Ok(session_token)
}

async fn rocketchat_login(
    state: &AppState,
    client: IpAddr,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Json<serde_json::Value>, RcError> {
    let Ok(login) = serde_json::from_slice::<RcLogin>(body) else {
        return Err(RcError::LoginFailed);
    };
    let name = LoginName::of(&login);
    if name.is_none()
        && let Some(resume) = login.resume
    {
        return resume_login(state, client, &resume).await;
    }
    let (Some(user), Some(password)) = (name, login.password) else {
        return Err(RcError::LoginFailed);
    };
    let digest = match password {
        RcPassword::Plain(text) => token::sha256_hex(&text),
        RcPassword::Digest { digest, algorithm } if algorithm == "sha-256" => {
            digest.to_ascii_lowercase()
        }
        RcPassword::Digest { .. } => return Err(RcError::LoginFailed),
    };
    // An account with a two-factor method needs a code to log in (body `code` or
    // `x-2fa-code`); the password fallback does not apply here.
    let method = headers
        .get("x-2fa-method")
        .and_then(|value| value.to_str().ok());
    let code = login.code.as_deref().or_else(|| {
        headers
            .get("x-2fa-code")
            .and_then(|value| value.to_str().ok())
    });
    let with_code = code.is_some_and(|code| !code.trim().is_empty());
    let (account, counted) = match check_password(state, client, &user, digest, with_code).await {
        Ok(Ok(found)) => found,
        Ok(Err(())) => return Err(RcError::LoginFailed),
        Err(LoginRefusal::TooMany(wait)) => {
            return Err(RcError::TooManyRequests { retry_after: wait });
        }
        Err(LoginRefusal::Store(err)) => return Err(err.into()),
    };
    match session::login_second_factor(state, &account, method, code).await {
        Ok(()) => {}
        Err(RcError::TotpRequired {
            method,
            code_generated,
            available,
        }) => {
            return Err(RcError::LoginTwoFactor {
                error: "totp-required",
                method,
                code_generated,
                available,
            });
        }
        Err(RcError::TotpInvalid { method }) => {
            return Err(RcError::LoginTwoFactor {
                error: "totp-invalid",
                method,
                code_generated: false,
                available: session::available_methods(state, &account),
            });
        }
        Err(other) => return Err(other),
    }
    counted.succeeded(state).await;
    let auth_token = new_session(state, &account, Dialect::RocketChat).await?;
    Ok(login_answer(&account, &auth_token))
}

/// Rocket.Chat's answer to a login.
fn login_answer(account: &Account, auth_token: &str) -> Json<serde_json::Value> {
    Json(json!({
        "status": "success",
        "success": true,
        "data": {
            "userId": account.public_id,
            "authToken": auth_token,
            "me": me_body(account),
        },
    }))
}

/// `{"resume": token}`: a Rocket.Chat session the client kept, answered as a login
/// with the same token (its second factor was asked when it began). Unknown or expired
/// tokens count as failures of the client's address.
async fn resume_login(
    state: &AppState,
    client: IpAddr,
    resume: &str,
) -> Result<Json<serde_json::Value>, RcError> {
    let address = client.to_string();
    let at = state
        .address_limiter
        .attempt(&address, state.now_ms())
        .await?
        .map_err(|wait| RcError::TooManyRequests {
            retry_after: wait.as_secs().max(1),
        })?;
    let hash = token::token_hash(resume);
    let now = state.now_ms();
    let account = state
        .accounts(move |accounts| accounts.session_account(&hash, Dialect::RocketChat, now))
        .await?;
    let Some((account, _)) = account else {
        return Err(RcError::LoginFailed);
    };
    state.address_limiter.forgive(at).await;
    Ok(login_answer(&account, resume))
}

/// The account as Rocket.Chat's user object (`_id`, `username`, `name`, `emails`,
/// `roles`, `active`, `status`) with abacsync's own fields beside. `roles` holds
/// `admin` for a system-wide account with every permission (what Rocket.Chat's admin
/// tools look for) and `user` for every account.
fn me_body(account: &Account) -> serde_json::Value {
    let admin = account.tenant.is_none()
        && Permission::ALL
            .iter()
            .all(|p| account.permissions.contains(p));
    let roles: Vec<&str> = if admin {
        vec!["admin", "user"]
    } else {
        vec!["user"]
    };
    // An address is stored once proven (a new one waits in its verification).
    let emails: Vec<serde_json::Value> = account
        .email
        .iter()
        .map(|address| json!({"address": address, "verified": true}))
        .collect();
    json!({
        "_id": account.public_id,
        "username": account.username,
        "name": account.username,
        "emails": emails,
        "roles": roles,
        "active": true,
        "status": "online",
        "tenant": account.tenant,
        "permissions": account.permissions,
        "email": account.email,
        "services": {
            "totp": {"enabled": account.totp_enabled},
            "email2fa": {"enabled": account.email_2fa},
        },
    })
}

async fn grommunio_login(
    state: &AppState,
    client: IpAddr,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let form: GrommunioLogin = serde_urlencoded_form(body)
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "Incomplete login form"))?;
    let (Some(user), Some(pass)) = (form.user, form.pass) else {
        // grommunio's token renewal (admin-web's `renew()`): no form, a valid cookie.
        return match renewed_session(state, headers).await? {
            Some(account) => grommunio_session(state, &account).await,
            None => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "Incomplete login form",
            )),
        };
    };
    let code = form.code.as_deref().filter(|code| !code.trim().is_empty());
    let digest = token::sha256_hex(&pass);
    let (account, counted) = match check_password(
        state,
        client,
        &LoginName::Username(user),
        digest,
        code.is_some(),
    )
    .await
    {
        Ok(Ok(found)) => found,
        Ok(Err(())) => {
            return Ok((
                StatusCode::UNAUTHORIZED,
                Json(json!({"message": "Login failed", "error": "Invalid username or password"})),
            )
                .into_response());
        }
        Err(LoginRefusal::TooMany(wait)) => return Err(ApiError::too_many(wait)),
        Err(LoginRefusal::Store(err)) => return Err(err.into()),
    };
    // Every way into a session asks for the account's second factor: the form takes
    // it as the field `code` (and `method`), since grommunio's form has none.
    if let Err(err) =
        session::login_second_factor(state, &account, form.method.as_deref(), code).await
    {
        return Ok(grommunio_two_factor_refusal(err));
    }
    counted.succeeded(state).await;
    grommunio_session(state, &account).await
}

/// The account of the request's live grommunio cookie, its session ended so that a
/// renewal replaces it; `None` when there is no valid one. The cookie's second factor
/// was asked when it was issued; renewing asks no other (and no CSRF token: admin-web
/// sends none, and the cookie is `SameSite=Strict`).
async fn renewed_session(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Account>, ApiError> {
    if session::cookie(headers, COOKIE).is_none() {
        return Ok(None);
    }
    let Ok(old) = session::grommunio(state, &Method::GET, headers).await else {
        return Ok(None);
    };
    let hash = old.token_hash.clone();
    state.accounts(move |a| a.delete_session(&hash)).await?;
    Ok(Some(old.account))
}

/// A new grommunio session for `account`: the cookie and its CSRF token.
async fn grommunio_session(state: &AppState, account: &Account) -> Result<Response, ApiError> {
    let session_id = new_session(state, account, Dialect::Grommunio).await?;
    let csrf = token::new_token().map_err(ApiError::internal)?;
    let now = state.now_ms() / 1000;
    let hours = i64::try_from(state.settings.session_hours).unwrap_or(i64::MAX / 3600);
    let claims = jwt::Claims {
        sub: account.username.clone(),
        sid: session_id,
        csrf: csrf.clone(),
        iat: now,
        exp: now.saturating_add(hours.saturating_mul(3600)),
    };
    let signed = jwt::sign(&claims, &state.jwt_secret);
    let secure = if state.settings.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{COOKIE}={signed}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        hours.saturating_mul(3600)
    );
    let mut response = Json(json!({"grommunioAuthJwt": signed, "csrf": csrf})).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// The form login's answer when the second factor is missing or wrong: 401 in
/// grommunio's `{"message", "error"}` shape, naming the missing factor and how to
/// send it.
fn grommunio_two_factor_refusal(err: RcError) -> Response {
    let (error, method, code_generated, available) = match err {
        RcError::TotpRequired {
            method,
            code_generated,
            available,
        } => (
            format!(
                "Two-factor code required ({method}): send it as the form field 'code'{}",
                if code_generated {
                    "; a code was sent by email"
                } else {
                    ""
                }
            ),
            method,
            code_generated,
            available,
        ),
        RcError::TotpInvalid { method } => (
            format!("Invalid two-factor code ({method})"),
            method,
            false,
            Vec::new(),
        ),
        other => return other.into_response(),
    };
    let mut body = json!({
        "message": "Login failed",
        "error": error,
        "twoFactor": {"method": method, "codeGenerated": code_generated},
    });
    if !available.is_empty() {
        body["twoFactor"]["availableMethods"] = json!(available);
    }
    (StatusCode::UNAUTHORIZED, Json(body)).into_response()
}

fn serde_urlencoded_form<T: serde::de::DeserializeOwned>(body: &[u8]) -> Option<T> {
    serde_urlencoded::from_bytes(body).ok()
}

/// Ends the session (either dialect).
#[utoipa::path(method(get, post), path = "/api/v1/logout", tag = "sessions", security(("grommunio" = []), ("rocketchat" = [])),
    responses(
        (status = 200, description = "Logged out", body = Value, example = json!({"status": "success", "data": {"message": "You've been logged out!"}})),
        (status = 401, description = "Not logged in", body = Value),
    ))]
async fn logout(State(state): State<AppState>, method: Method, headers: HeaderMap) -> Response {
    match session::rocketchat(&state, &headers).await {
        Ok(Some(session)) => {
            let hash = session.token_hash;
            if let Err(err) = state.accounts(move |a| a.delete_session(&hash)).await {
                return RcError::from(err).into_response();
            }
            return Json(
                json!({"status": "success", "success": true, "data": {"message": "You've been logged out!"}}),
            )
            .into_response();
        }
        Ok(None) => {}
        Err(err) => return RcError::from(err).into_response(),
    }
    if session::cookie(&headers, COOKIE).is_none() {
        return RcError::NotLoggedIn.into_response();
    }
    match session::grommunio(&state, &method, &headers).await {
        Ok(session) => {
            let hash = session.token_hash;
            if let Err(err) = state.accounts(move |a| a.delete_session(&hash)).await {
                return ApiError::from(err).into_response();
            }
            let mut response = Json(json!({"message": "Logged out"})).into_response();
            response.headers_mut().insert(
                header::SET_COOKIE,
                HeaderValue::from_static(
                    "grommunioAuthJwt=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
                ),
            );
            response
        }
        Err(err) => err.into_response(),
    }
}

/// The caller's account.
#[utoipa::path(get, path = "/api/v1/me", tag = "sessions", security(("grommunio" = []), ("rocketchat" = [])),
    responses((status = 200, description = "The account", body = Value), (status = 401, description = "Not logged in", body = Value)))]
async fn me(caller: Caller) -> Json<serde_json::Value> {
    let mut body = me_body(&caller.0.account);
    body["success"] = json!(true);
    Json(body)
}

/// grommunio's profile, which admin-web reads right after its login: the user
/// (`ID`, `username`, `domainID`, `roles`, …, in grommunio's names) and its
/// capabilities, mapped from abacsync's permissions: `SystemAdminWrite` (a system-wide
/// account that manages tenants), `SystemAdminRead` (system-wide, views),
/// `DomainAdminWrite` (may trigger syncs or manage tenants), `DomainAdminRead` (views).
#[utoipa::path(get, path = "/api/v1/profile", tag = "sessions", security(("grommunio" = []), ("rocketchat" = [])),
    responses((status = 200, description = "The user and its capabilities", body = Value,
        example = json!({"user": {"ID": 1, "username": "admin", "domainID": 0, "status": 0, "lang": "", "roles": [], "properties": {}},
            "capabilities": ["SystemAdminWrite", "SystemAdminRead", "DomainAdminWrite", "DomainAdminRead"]})),
        (status = 401, description = "Not logged in", body = Value)))]
async fn profile(caller: Caller) -> Json<serde_json::Value> {
    let session = caller.0;
    let principal = &session.principal;
    let system = principal.is_system_wide();
    let mut capabilities = Vec::new();
    if system && principal.has(Permission::ManageTenants) {
        capabilities.push("SystemAdminWrite");
    }
    if system && principal.has(Permission::ViewAdmin) {
        capabilities.push("SystemAdminRead");
    }
    if principal.has(Permission::DomainAdmin) || principal.has(Permission::ManageTenants) {
        capabilities.push("DomainAdminWrite");
    }
    if principal.has(Permission::ViewAdmin) {
        capabilities.push("DomainAdminRead");
    }
    let account = &session.account;
    Json(json!({
        "user": {
            "ID": account.id,
            "username": account.username,
            "domainID": account.tenant.unwrap_or(0),
            "status": 0,
            "lang": "",
            "roles": [],
            "properties": {"displayname": account.username},
            "aliases": [],
            "altnames": [],
        },
        "capabilities": capabilities,
    }))
}

/// Starts TOTP enrolment: a new secret, not yet required. Replaces an unconfirmed one;
/// refused while TOTP is enabled (disable it first, with a code).
///
/// Needs the account's current second factor (`x-2fa-code`; for an account without
/// one, Rocket.Chat's password method: the SHA-256 hex digest of the password), never
/// remembered: a stolen session alone cannot enrol a factor of its own.
#[utoipa::path(post, path = "/api/v1/me/totp", tag = "sessions", security(("grommunio" = []), ("rocketchat" = [])),
    params(
        ("x-2fa-code" = Option<String>, Header, description = "A current code of the account's method, or the SHA-256 hex digest of the password when it has none"),
        ("x-2fa-method" = Option<String>, Header, description = "totp, email or password"),
    ),
    responses(
        (status = 200, description = "A new secret and its otpauth URI", body = Value,
            example = json!({"secret": "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", "url": "otpauth://totp/abacsync:admin?secret=…"})),
        (status = 400, description = "totp-required or totp-invalid: the current factor is missing or wrong", body = Value),
        (status = 409, description = "TOTP is already enabled", body = Value),
        (status = 429, description = "Too many failed two-factor codes", body = Value),
    ))]
async fn totp_begin(State(state): State<AppState>, caller: Caller, headers: HeaderMap) -> Response {
    let session = caller.0;
    if session.account.totp_enabled {
        return ApiError::new(StatusCode::CONFLICT, "TOTP is already enabled").into_response();
    }
    if let Err(err) = session::fresh_two_factor(&state, &session, &headers).await {
        return err.into_response();
    }
    let secret = match totp::new_secret() {
        Ok(secret) => secret,
        Err(err) => return ApiError::internal(err).into_response(),
    };
    let id = session.account.id;
    let stored = secret.clone();
    if let Err(err) = state
        .accounts(move |accounts| accounts.set_totp(id, Some(&stored), false))
        .await
    {
        return ApiError::from(err).into_response();
    }
    Json(json!({
        "secret": totp::base32(&secret),
        "url": totp::otpauth_uri("abacsync", &session.account.username, &secret),
    }))
    .into_response()
}

#[derive(Deserialize)]
struct CodeBody {
    code: String,
}

/// Confirms enrolment with a first code of the new secret; from then on TOTP is
/// required. (The current factor was asked when the enrolment began.)
#[utoipa::path(post, path = "/api/v1/me/totp/confirm", tag = "sessions", security(("grommunio" = []), ("rocketchat" = [])),
    request_body(content = Value, example = json!({"code": "123456"})),
    responses(
        (status = 200, description = "TOTP enabled", body = Value, example = json!({"enabled": true})),
        (status = 400, description = "Not a current code", body = Value),
        (status = 409, description = "No enrolment begun, or already enabled", body = Value),
        (status = 429, description = "Too many failed codes", body = Value),
    ))]
async fn totp_confirm(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let session = caller.0;
    let code: CodeBody = serde_json::from_slice(&body)
        .map_err(|err| ApiError::invalid(vec![format!("body: {err}")]))?;
    let Some(secret) = session.account.totp_secret.clone() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "TOTP enrolment has not begun",
        ));
    };
    if session.account.totp_enabled {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "TOTP is already enabled",
        ));
    }
    let key = format!("account:{}", session.account.id);
    if let Err(wait) = state
        .two_factor_limiter
        .attempt(&key, state.now_ms())
        .await?
    {
        return Err(ApiError::too_many(wait.as_secs().max(1)));
    }
    let unix = u64::try_from(state.now_ms() / 1000).unwrap_or(0);
    let Some(step) = totp::matching_step(&secret, &code.code, unix) else {
        return Err(ApiError::invalid(vec![
            "code: not a current TOTP code".into(),
        ]));
    };
    state.two_factor_limiter.succeeded(&key).await;
    let id = session.account.id;
    let step = i64::try_from(step).unwrap_or(i64::MAX);
    state
        .accounts(move |accounts| {
            accounts.set_totp(id, Some(&secret), true)?;
            accounts.use_totp_step(id, step)
        })
        .await?;
    Ok(Json(json!({"enabled": true})))
}

/// Disables TOTP; needs a current code of the account's factor, never remembered
/// (Rocket.Chat's two-factor check).
#[utoipa::path(delete, path = "/api/v1/me/totp", tag = "sessions", security(("grommunio" = []), ("rocketchat" = [])),
    params(
        ("x-2fa-code" = String, Header, description = "A current code of the account's method"),
        ("x-2fa-method" = Option<String>, Header, description = "totp or email"),
    ),
    responses(
        (status = 200, description = "TOTP disabled", body = Value, example = json!({"enabled": false})),
        (status = 400, description = "totp-required or totp-invalid", body = Value),
        (status = 429, description = "Too many failed two-factor codes", body = Value),
    ))]
async fn totp_disable(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> Response {
    let session = caller.0;
    if let Err(err) = session::fresh_two_factor(&state, &session, &headers).await {
        return err.into_response();
    }
    let id = session.account.id;
    match state
        .accounts(move |accounts| accounts.set_totp(id, None, false))
        .await
    {
        Ok(()) => Json(json!({"enabled": false})).into_response(),
        Err(err) => ApiError::from(err).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmailTwoFactorBody {
    enabled: bool,
    email: Option<String>,
}

/// Turns two-factor codes by email on or off, or moves them to another address.
///
/// Needs the account's current second factor (`x-2fa-code`, as for `POST
/// /api/v1/me/totp`), never remembered. Turning codes off takes effect at once.
/// Turning them on, or naming another address, takes effect only once the address is
/// proven: a code is mailed to it (202) and `POST /api/v1/me/email2fa/confirm
/// {"code"}` completes the change. Needs a mail server (`[server.smtp]`).
#[utoipa::path(put, path = "/api/v1/me/email2fa", tag = "sessions", security(("grommunio" = []), ("rocketchat" = [])),
    params(
        ("x-2fa-code" = Option<String>, Header, description = "A current code of the account's method, or the SHA-256 hex digest of the password when it has none"),
        ("x-2fa-method" = Option<String>, Header, description = "totp, email or password"),
    ),
    request_body(content = Value, example = json!({"enabled": true, "email": "ops@example.org"})),
    responses(
        (status = 200, description = "Codes by email are off", body = Value, example = json!({"enabled": false, "email": "ops@example.org"})),
        (status = 202, description = "A code was mailed to the address; confirm it to turn codes on there", body = Value,
            example = json!({"enabled": false, "pending": "ops@example.org", "codeSent": true})),
        (status = 400, description = "No address, not an address, or totp-required / totp-invalid", body = Value),
        (status = 409, description = "No mail server configured", body = Value),
        (status = 429, description = "Too many failed two-factor codes", body = Value),
    ))]
async fn set_email_two_factor(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match email_two_factor(&state, caller.0, &headers, &body).await {
        Ok(response) => response,
        Err(response) => response,
    }
}

async fn email_two_factor(
    state: &AppState,
    session: Session,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, Response> {
    let body: EmailTwoFactorBody = serde_json::from_slice(body)
        .map_err(|err| ApiError::invalid(vec![format!("body: {err}")]).into_response())?;
    if body.enabled && state.mailer.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "No mail server is configured ([server.smtp])",
        )
        .into_response());
    }
    let email = body.email.or(session.account.email.clone());
    if let Some(address) = &email
        && address.parse::<lettre::Address>().is_err()
    {
        return Err(ApiError::invalid(vec!["email: not an email address".into()]).into_response());
    }
    let Some(address) = email.filter(|_| body.enabled) else {
        if body.enabled {
            return Err(
                ApiError::invalid(vec!["email: the account has no address".into()]).into_response(),
            );
        }
        session::fresh_two_factor(state, &session, headers)
            .await
            .map_err(IntoResponse::into_response)?;
        let id = session.account.id;
        let current = session.account.email.clone();
        let stored = current.clone();
        state
            .accounts(move |accounts| accounts.set_email(id, stored.as_deref(), false))
            .await
            .map_err(|err| ApiError::from(err).into_response())?;
        return Ok(Json(json!({"enabled": false, "email": current})).into_response());
    };
    session::fresh_two_factor(state, &session, headers)
        .await
        .map_err(IntoResponse::into_response)?;
    let key = format!("account:{}", session.account.id);
    // Mails are rate-limited like codes: each one counts.
    if let Err(wait) = state
        .two_factor_limiter
        .attempt(&key, state.now_ms())
        .await
        .map_err(|err| ApiError::from(err).into_response())?
    {
        return Err(ApiError::too_many(wait.as_secs().max(1)).into_response());
    }
    let (code, hash, expires) = session::email_code(state).map_err(IntoResponse::into_response)?;
    let id = session.account.id;
    let pending = address.clone();
    state
        .accounts(move |accounts| accounts.begin_email_verification(id, &pending, &hash, expires))
        .await
        .map_err(|err| ApiError::from(err).into_response())?;
    session::mail_code(state, &address, &code)
        .await
        .map_err(IntoResponse::into_response)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "enabled": session.account.email_2fa,
            "email": session.account.email,
            "pending": address,
            "codeSent": true,
        })),
    )
        .into_response())
}

/// Proves the address named by `PUT /api/v1/me/email2fa` with the code mailed to it;
/// from then on two-factor codes go there.
#[utoipa::path(post, path = "/api/v1/me/email2fa/confirm", tag = "sessions", security(("grommunio" = []), ("rocketchat" = [])),
    request_body(content = Value, example = json!({"code": "123456"})),
    responses(
        (status = 200, description = "Codes by email are on, to the proven address", body = Value, example = json!({"enabled": true, "email": "ops@example.org"})),
        (status = 400, description = "Not the code mailed, or it expired", body = Value),
        (status = 429, description = "Too many failed codes", body = Value),
    ))]
async fn confirm_email_two_factor(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let session = caller.0;
    let code: CodeBody = serde_json::from_slice(&body)
        .map_err(|err| ApiError::invalid(vec![format!("body: {err}")]))?;
    let key = format!("account:{}", session.account.id);
    if let Err(wait) = state
        .two_factor_limiter
        .attempt(&key, state.now_ms())
        .await?
    {
        return Err(ApiError::too_many(wait.as_secs().max(1)));
    }
    let id = session.account.id;
    let hash = token::token_hash(code.code.trim());
    let now = state.now_ms();
    let address = state
        .accounts(move |accounts| accounts.confirm_email(id, &hash, now))
        .await?;
    let Some(address) = address else {
        return Err(ApiError::invalid(vec![
            "code: not the code mailed to the address, or it expired".into(),
        ]));
    };
    state.two_factor_limiter.succeeded(&key).await;
    Ok(Json(json!({"enabled": true, "email": address})))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn the_client_is_named_by_trusted_proxies_only() {
        let peer: SocketAddr = "10.0.0.2:4000".parse().unwrap();
        let spoofed = forwarded(&["198.51.100.1, 203.0.113.9"]);
        // No proxy is trusted: the header is ignored.
        assert_eq!(client_ip(&[], peer, &spoofed), peer.ip());
        let trusted = ["10.0.0.0/24".parse().unwrap()];
        // The last hop before the trusted proxies, not what the client put in front.
        assert_eq!(
            client_ip(&trusted, peer, &spoofed),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        let chained = forwarded(&["198.51.100.1", "203.0.113.9, 10.0.0.7"]);
        assert_eq!(
            client_ip(&trusted, peer, &chained),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        // A peer outside the trusted ranges names itself, header or not.
        let outside: SocketAddr = "192.0.2.5:1".parse().unwrap();
        assert_eq!(client_ip(&trusted, outside, &spoofed), outside.ip());
        // Garbage stops the walk at the last good hop.
        let garbage = forwarded(&["203.0.113.9, not-an-address"]);
        assert_eq!(client_ip(&trusted, peer, &garbage), peer.ip());
    }
}
