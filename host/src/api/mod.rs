//! The HTTP API (axum): Rocket.Chat's and grommunio's documented sync triggers, logins
//! in both dialects, grommunio-style tasks, the admin API, health and metrics.
//!
//! Each resource module exposes `router()`; [`router`] merges them. Authentication
//! lives in [`session`]; error bodies in [`error`].

mod admin;
pub mod error;
mod grommunio;
mod login;
mod ops;
mod plugins;
mod rocketchat;
pub mod session;
mod tasks;
mod tenants;
mod tokens;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use utoipa_axum::router::OpenApiRouter;

use crate::auth::ratelimit::RateLimiter;
use crate::config::ServerConfig;
use crate::store::{AccountStore, StoreError};
use crate::sync::SyncService;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// The state's parts.
pub struct Inner {
    /// Syncs, tasks, tenants, the user store.
    pub service: Arc<SyncService>,
    /// Accounts and sessions.
    pub accounts: Arc<dyn AccountStore>,
    /// Server settings.
    pub settings: ServerConfig,
    /// Signs the grommunio dialect's JWT cookies.
    pub jwt_secret: Vec<u8>,
    /// Failed logins per account name and client address (`rate_limit_attempts`).
    pub login_limiter: RateLimiter,
    /// Failed logins per client address, whatever the name ([`ADDRESS_FACTOR`] times
    /// as many: many people may share one address behind a NAT).
    pub address_limiter: RateLimiter,
    /// Failed logins per account name from every address ([`ACCOUNT_FACTOR`] times as
    /// many); beyond, only a login with its second factor is checked.
    pub account_limiter: RateLimiter,
    /// Failed two-factor codes per account.
    pub two_factor_limiter: RateLimiter,
    /// Sends two-factor codes by email, when `[server.smtp]` is set.
    pub mailer: Option<crate::auth::mail::Mailer>,
}

/// Failures one address may have, over every name, per `rate_limit_attempts`.
pub const ADDRESS_FACTOR: usize = 5;
/// Failures one account name may have, from every address, per `rate_limit_attempts`.
pub const ACCOUNT_FACTOR: usize = 10;

impl std::ops::Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// The state of a server with these parts.
    pub fn new(
        service: Arc<SyncService>,
        accounts: Arc<dyn AccountStore>,
        settings: ServerConfig,
        jwt_secret: Vec<u8>,
        mailer: Option<crate::auth::mail::Mailer>,
    ) -> Self {
        let window = Duration::from_secs(settings.rate_limit_window_secs);
        let attempts = settings.rate_limit_attempts;
        let limiter = |scope, max| RateLimiter::new(scope, max, window, accounts.clone());
        Self(Arc::new(Inner {
            login_limiter: limiter("login", attempts),
            address_limiter: limiter("login-address", attempts.saturating_mul(ADDRESS_FACTOR)),
            account_limiter: limiter("login-account", attempts.saturating_mul(ACCOUNT_FACTOR)),
            two_factor_limiter: limiter("two-factor", attempts),
            service,
            accounts,
            settings,
            jwt_secret,
            mailer,
        }))
    }

    /// The current time in milliseconds since the epoch.
    pub fn now_ms(&self) -> i64 {
        self.service.now()
    }

    /// Runs a blocking store call off the async workers.
    pub async fn accounts<T: Send + 'static>(
        &self,
        call: impl FnOnce(&dyn AccountStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let accounts = self.accounts.clone();
        blocking(move || call(accounts.as_ref())).await
    }

    /// Whether a session that last passed a two-factor check at `passed` (ms) is
    /// within the remember window.
    pub(crate) fn two_factor_remembered(&self, passed: Option<i64>) -> bool {
        let window_ms = i64::try_from(self.settings.two_factor_remember_secs)
            .unwrap_or(i64::MAX / 1000)
            .saturating_mul(1000);
        window_ms > 0 && passed.is_some_and(|at| self.now_ms().saturating_sub(at) < window_ms)
    }
}

/// Runs `call` on the blocking pool; a panic in it becomes a [`StoreError`].
pub async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|err| StoreError::Panicked(err.to_string()))?
}

/// `items` as JSON, as many as fit in `max_bytes` (`quotas.page_bytes`) of JSON: the
/// page stops before the item that would pass it (the first is always given, so that
/// a client always moves on), and says whether it was cut short.
pub(crate) fn page_of<T>(
    items: &[T],
    max_bytes: u64,
    to_json: impl Fn(&T) -> serde_json::Value,
) -> (Vec<serde_json::Value>, bool) {
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut page = Vec::with_capacity(items.len());
    let mut size = Count(0);
    for item in items {
        let value = to_json(item);
        // A value always serialises; the count is what matters.
        let _ = serde_json::to_writer(&mut size, &value);
        if !page.is_empty() && size.0 + 1 > max_bytes {
            return (page, true);
        }
        size.0 += 1; // the comma
        page.push(value);
    }
    (page, false)
}

/// Where the OpenAPI description is served.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "abacsync",
        description = "Keeps users and their ABAC attributes in step with LDAP and Active Directory: Rocket.Chat's and grommunio's sync triggers, tasks, and the admin API."
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "rocket.chat", description = "Rocket.Chat's documented endpoints"),
        (name = "grommunio", description = "grommunio-admin-api's documented endpoint"),
        (name = "tasks", description = "Background tasks (grommunio TasQ style)"),
        (name = "sessions", description = "Logins, logout, two-factor enrolment"),
        (name = "admin", description = "Users, audit events, runs, accounts"),
        (name = "tenants", description = "Tenants, connection tests, dry runs, schedules"),
        (name = "plugins", description = "Upload, try, assign, version and roll back mapping plugins"),
        (name = "operations", description = "Health and metrics"),
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "rocketchat",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Auth-Token",
                "Rocket.Chat dialect: the authToken from /api/v1/login, with X-User-Id",
            ))),
        );
        components.add_security_scheme(
            "grommunio",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "grommunioAuthJwt",
                "grommunio dialect: the cookie from the form login; browsers also send X-Csrf-Token",
            ))),
        );
    }
}

/// The API's routes and their OpenAPI description, from the same annotations.
pub fn documented_router() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (routes, mut openapi) = OpenApiRouter::with_openapi(<ApiDoc as utoipa::OpenApi>::openapi())
        .merge(ops::router())
        .merge(login::router())
        .merge(rocketchat::router())
        .merge(tokens::router())
        .merge(grommunio::router())
        .merge(tasks::router())
        .merge(admin::router())
        .merge(plugins::router())
        .merge(tenants::router())
        .split_for_parts();
    document_malformed_requests(&mut openapi);
    document_constraints(&mut openapi);
    (routes, openapi)
}

/// The request bodies' schemas with every limit the handlers enforce (lengths, item
/// counts, uniqueness, enums, unknown fields refused), so that clients generated from
/// the description send what the server takes. Written as JSON Schema here, beside
/// each other, rather than as one Rust type per body.
fn document_constraints(openapi: &mut utoipa::openapi::OpenApi) {
    use serde_json::json;
    let identifiers = json!({
        "type": "array", "minItems": 1, "maxItems": rocketchat::MAX_SYNC_ITEMS, "uniqueItems": true,
        "items": {"type": "string", "minLength": 1}
    });
    // No control characters (Rust's `char::is_control`: C0, DEL and C1), and not blank.
    let token_name = json!({"type": "string", "minLength": 1, "maxLength": 100,
        "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*\\S[^\\u0000-\\u001f\\u007f-\\u009f]*$"});
    let code = json!({"type": "string"});
    let permissions: Vec<&str> = crate::auth::Permission::ALL
        .iter()
        .map(|permission| permission.as_str())
        .collect();
    let bodies = [
        (
            "/api/v1/abac/users/sync",
            "post",
            json!({
                "type": "object", "minProperties": 1, "additionalProperties": false,
                "properties": {"usernames": identifiers, "ids": identifiers, "emails": identifiers, "ldapIds": identifiers}
            }),
        ),
        (
            "/api/v1/users.generatePersonalAccessToken",
            "post",
            json!({
                "type": "object", "required": ["tokenName"], "additionalProperties": false,
                "properties": {"tokenName": token_name, "bypassTwoFactor": {"type": "boolean"}}
            }),
        ),
        (
            "/api/v1/users.regeneratePersonalAccessToken",
            "post",
            json!({
                "type": "object", "required": ["tokenName"], "additionalProperties": false,
                "properties": {"tokenName": token_name}
            }),
        ),
        (
            "/api/v1/users.removePersonalAccessToken",
            "post",
            json!({
                "type": "object", "required": ["tokenName"], "additionalProperties": false,
                "properties": {"tokenName": token_name}
            }),
        ),
        (
            "/api/v1/admin/accounts",
            "post",
            json!({
                "type": "object", "required": ["username", "password"], "additionalProperties": false,
                "properties": {
                    "username": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "\\S"},
                    "password": {"type": "string", "minLength": 12},
                    "tenant": {"type": ["integer", "null"], "minimum": 0},
                    "role": {"type": ["string", "null"], "enum": ["admin", "sync-operator", "auditor", null]},
                    "permissions": {"type": ["array", "null"], "items": {"type": "string", "enum": permissions}},
                    "email": {"type": ["string", "null"], "format": "email"}
                }
            }),
        ),
        (
            "/api/v1/me/totp/confirm",
            "post",
            json!({
                "type": "object", "required": ["code"], "additionalProperties": false,
                "properties": {"code": code}
            }),
        ),
        (
            "/api/v1/me/email2fa/confirm",
            "post",
            json!({
                "type": "object", "required": ["code"], "additionalProperties": false,
                "properties": {"code": code}
            }),
        ),
        (
            "/api/v1/me/email2fa",
            "put",
            json!({
                "type": "object", "required": ["enabled"], "additionalProperties": false,
                "properties": {"enabled": {"type": "boolean"}, "email": {"type": ["string", "null"], "format": "email"}}
            }),
        ),
        (
            "/api/v1/admin/tenants/{tenant}/plugin/rollback",
            "post",
            json!({
                "type": "object", "additionalProperties": false,
                "properties": {"to": {"type": ["integer", "null"], "minimum": 1}}
            }),
        ),
        (
            "/api/v1/admin/tenants/{tenant}/plugin",
            "put",
            json!({
                "type": "object", "required": ["pluginId"], "additionalProperties": false,
                "properties": {
                    "pluginId": {"type": "integer", "minimum": 1},
                    "settings": {"type": "object", "additionalProperties": {"type": "string"}}
                }
            }),
        ),
    ];
    for (path, method, schema) in bodies {
        let Some(item) = openapi.paths.paths.get_mut(path) else {
            continue;
        };
        let operation = match method {
            "post" => item.post.as_mut(),
            "put" => item.put.as_mut(),
            _ => None,
        };
        let content = operation
            .and_then(|operation| operation.request_body.as_mut())
            .and_then(|body| match body {
                utoipa::openapi::RefOr::T(body) => body.content.get_mut("application/json"),
                utoipa::openapi::RefOr::Ref(_) => None,
            });
        if let (Some(utoipa::openapi::RefOr::T(content)), Ok(schema)) =
            (content, serde_json::from_value(schema))
        {
            content.schema = Some(schema);
        }
    }
}

/// Every operation that takes a parameter or a body may answer 400 when they do not
/// parse (`/tenants/abc`, `?limit=x`, a body that is not JSON), with a JSON
/// `{"message"}` body ([`json_rejections`]); the description says so for each
/// operation that does not document its own 400.
fn document_malformed_requests(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    use utoipa::openapi::{ContentBuilder, ResponseBuilder};
    let response = ResponseBuilder::new()
        .description(
            "The request is malformed: a path or query parameter, or the body, does not parse",
        )
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(
                    ObjectBuilder::new()
                        .property("message", ObjectBuilder::new().schema_type(Type::String))
                        .required("message"),
                ))
                .build(),
        )
        .build();
    for item in openapi.paths.paths.values_mut() {
        let item_has_parameters = item.parameters.as_ref().is_some_and(|p| !p.is_empty());
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            let takes_input = item_has_parameters
                || operation.request_body.is_some()
                || operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
            if takes_input && !operation.responses.responses.contains_key("400") {
                operation
                    .responses
                    .responses
                    .insert("400".to_owned(), response.clone().into());
            }
        }
    }
}

/// The OpenAPI description of the whole API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    documented_router().1
}

/// `ms` since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub(crate) fn iso8601(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// grommunio's time format, `%Y-%m-%d %H:%M:%S` (UTC, no zone: its `Date(time=True)`).
pub(crate) fn grommunio_time(ms: i64) -> String {
    let iso = iso8601(ms);
    format!("{} {}", &iso[..10], &iso[11..19])
}

/// The whole API, with its OpenAPI description served at [`OPENAPI_PATH`].
pub fn router(state: AppState) -> Router {
    let (routes, openapi) = documented_router();
    let document = Arc::new(openapi);
    routes
        .route(
            OPENAPI_PATH,
            axum::routing::get(move || {
                let document = document.clone();
                async move { axum::Json(document.as_ref().clone()) }
            }),
        )
        .layer(axum::middleware::from_fn(json_rejections))
        .layer(axum::middleware::from_fn(read_ahead))
        .layer(axum::middleware::from_fn(log_request))
        .with_state(state)
}

/// axum's own rejections (a path or query parameter that does not parse, a wrong
/// content type, a body over the limit, a method not allowed) answer in plain text;
/// this gives them the API's JSON error body, `{"message": …}`, keeping the status and
/// headers (`Allow`).
async fn json_rejections(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let rocketchat = is_rocketchat_path(&path, request.headers());
    let response = next.run(request).await;
    if let Some(answer) = unrouted(&response, &method, rocketchat) {
        return answer;
    }
    let plain_text = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/plain"));
    if !response.status().is_client_error() || !plain_text {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => parts
            .status
            .canonical_reason()
            .unwrap_or("Bad request")
            .to_owned(),
    };
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts.headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    let body = serde_json::json!({ "message": text.trim() }).to_string();
    axum::response::Response::from_parts(parts, axum::body::Body::from(body))
}

/// Whether a Rocket.Chat client is calling: its info route, a method-style route
/// (`ldap.syncNow`), the ABAC routes, or any request with its session headers.
fn is_rocketchat_path(path: &str, headers: &axum::http::HeaderMap) -> bool {
    let last = path.rsplit('/').next().unwrap_or_default();
    path == "/api/info"
        || path.starts_with("/api/v1/abac/")
        || last.contains('.') && path.starts_with("/api/v1/")
        || headers.contains_key("x-auth-token")
}

/// The answer to a request no route took (axum's bodiless 404 and 405), in the
/// caller's dialect: Rocket.Chat answers both with a JSON 404; grommunio with
/// `{"message":"Resource not found"}` and `{"message":"Method 'X' not allowed on this
/// endpoint"}` (its 405 keeps the `Allow` header).
fn unrouted(
    response: &axum::response::Response,
    method: &axum::http::Method,
    rocketchat: bool,
) -> Option<axum::response::Response> {
    use axum::http::StatusCode;
    let status = response.status();
    let bodiless = !response
        .headers()
        .contains_key(axum::http::header::CONTENT_TYPE);
    if !bodiless
        || !matches!(
            status,
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
        )
    {
        return None;
    }
    if rocketchat {
        let body = serde_json::json!({
            "success": false,
            "error": "Resource not found",
            "status": "error",
            "message": "API endpoint does not exist",
        });
        return Some(axum::response::IntoResponse::into_response((
            StatusCode::NOT_FOUND,
            axum::Json(body),
        )));
    }
    let message = if status == StatusCode::NOT_FOUND {
        "Resource not found".to_owned()
    } else {
        format!("Method '{method}' not allowed on this endpoint")
    };
    let mut answer = axum::response::IntoResponse::into_response((
        status,
        axum::Json(serde_json::json!({ "message": message })),
    ));
    if let Some(allow) = response.headers().get(axum::http::header::ALLOW) {
        answer
            .headers_mut()
            .insert(axum::http::header::ALLOW, allow.clone());
    }
    Some(answer)
}

/// How much of a request body [`read_ahead`] reads before the handler runs.
const READ_AHEAD_BYTES: usize = 64 * 1024;

/// Reads a small request body before the handler runs, so that the handler always
/// leaves the request consumed.
///
/// hyper keeps a connection alive only when the handler has read the whole request
/// body. Otherwise it answers with `connection: close` and closes the socket, and body
/// bytes still unread in the kernel then make it reset the connection: the client loses
/// the part of the response it has not read yet. Handlers that take no body (the sync
/// triggers) met this with clients that send an empty chunked body on a bodiless POST
/// (ureq does): a 2 MB downsync answer arrived cut short, now and then. A body longer
/// than [`READ_AHEAD_BYTES`] is handed over as it streams in, its read part first.
async fn read_ahead(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::body::{Body, HttpBody};

    let (parts, mut body) = request.into_parts();
    let hint = body.size_hint();
    if hint.exact() == Some(0) || hint.lower() > READ_AHEAD_BYTES as u64 {
        return next
            .run(axum::extract::Request::from_parts(parts, body))
            .await;
    }
    let mut read = bytes::BytesMut::new();
    let body = loop {
        let frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await;
        match frame {
            None => break Body::from(read.freeze()),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    read.extend_from_slice(&data);
                }
                if read.len() > READ_AHEAD_BYTES {
                    break Body::new(ReadAhead {
                        read: Some(read.freeze()),
                        rest: body,
                    });
                }
            }
            Some(Err(err)) => {
                return axum::response::IntoResponse::into_response(error::ApiError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    format!("cannot read the request body: {err}"),
                ));
            }
        }
    };
    next.run(axum::extract::Request::from_parts(parts, body))
        .await
}

/// A request body whose first part [`read_ahead`] has already read.
struct ReadAhead {
    read: Option<bytes::Bytes>,
    rest: axum::body::Body,
}

impl axum::body::HttpBody for ReadAhead {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if let Some(read) = self.read.take() {
            return std::task::Poll::Ready(Some(Ok(http_body::Frame::data(read))));
        }
        std::pin::Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let rest = self.rest.size_hint();
        let read = self.read.as_ref().map_or(0, |read| read.len() as u64);
        // Upper first: `set_lower` checks the lower bound against the upper one.
        let mut hint = http_body::SizeHint::new();
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + read);
        }
        hint.set_lower(rest.lower() + read);
        hint
    }
}

/// Logs each request: method, route, status, time; server errors as warnings.
async fn log_request(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(
            || request.uri().path().to_owned(),
            |path| path.as_str().to_owned(),
        );
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let millis = started.elapsed().as_secs_f64() * 1000.0;
    if status >= 500 {
        tracing::warn!(%method, route, status, millis, "request");
    } else {
        tracing::info!(%method, route, status, millis, "request");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statuses(doc: &serde_json::Value, path: &str, method: &str) -> Vec<String> {
        let mut codes: Vec<String> = doc["paths"][path][method]["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} is not documented"))
            .keys()
            .cloned()
            .collect();
        codes.sort();
        codes
    }

    #[test]
    fn iso8601_formats_utc() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(iso8601(1_795_392_000_000), "2026-11-23T00:00:00.000Z");
        assert_eq!(grommunio_time(951_782_400_123), "2000-02-29 00:00:00");
    }

    #[test]
    fn the_bodies_state_the_limits_the_handlers_enforce() {
        let doc = serde_json::to_value(openapi()).unwrap();
        let schema = |path: &str, method: &str| {
            doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
                .clone()
        };
        let sync = schema("/api/v1/abac/users/sync", "post");
        assert_eq!(sync["minProperties"], 1, "{sync}");
        assert_eq!(sync["additionalProperties"], false);
        assert_eq!(sync["properties"]["ldapIds"]["maxItems"], 100);
        assert_eq!(sync["properties"]["ids"]["uniqueItems"], true);
        let account = schema("/api/v1/admin/accounts", "post");
        assert_eq!(
            account["properties"]["password"]["minLength"], 12,
            "{account}"
        );
        assert_eq!(
            account["properties"]["permissions"]["items"]["enum"]
                .as_array()
                .unwrap()
                .len(),
            crate::auth::Permission::ALL.len()
        );
        for path in [
            "/api/v1/users.generatePersonalAccessToken",
            "/api/v1/users.regeneratePersonalAccessToken",
            "/api/v1/users.removePersonalAccessToken",
        ] {
            let token = schema(path, "post");
            assert_eq!(token["properties"]["tokenName"]["maxLength"], 100, "{path}");
        }
        for (path, method) in [
            ("/api/v1/me/totp/confirm", "post"),
            ("/api/v1/me/email2fa/confirm", "post"),
            ("/api/v1/me/email2fa", "put"),
            ("/api/v1/admin/tenants/{tenant}/plugin/rollback", "post"),
            ("/api/v1/admin/tenants/{tenant}/plugin", "put"),
        ] {
            assert_eq!(
                schema(path, method)["additionalProperties"],
                false,
                "{path}"
            );
        }
    }

    #[test]
    fn the_description_covers_the_documented_contracts() {
        let doc = serde_json::to_value(openapi()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        assert_eq!(
            statuses(&doc, "/api/v1/ldap.syncNow", "post"),
            ["200", "400", "401", "429"]
        );
        assert_eq!(
            statuses(&doc, "/api/v1/abac/users/sync", "post"),
            ["200", "400", "401", "403"]
        );
        assert_eq!(
            statuses(&doc, "/api/v1/domains/{domainID}/ldap/downsync", "post"),
            [
                "200", "202", "400", "401", "403", "404", "429", "500", "503"
            ]
        );
        // Every operation is described and tagged.
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                assert!(
                    operation["summary"].is_string() || operation["description"].is_string(),
                    "{method} {path} has no description"
                );
                assert!(operation["tags"].is_array(), "{method} {path} has no tag");
            }
        }
    }
}
