//! `abacsync plugin push`: upload a project's component to a server and assign it to a
//! tenant through the admin API, as a Rocket.Chat-style token (`X-User-Id`,
//! `X-Auth-Token`) from the environment.

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode, Uri};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

/// Who pushes: the environment's token.
pub(crate) struct Credentials {
    user_id: String,
    token: String,
}

impl Credentials {
    pub(crate) fn from_env() -> anyhow::Result<Credentials> {
        let read = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        match (read("ABACSYNC_USER_ID"), read("ABACSYNC_TOKEN")) {
            (Some(user_id), Some(token)) => Ok(Credentials { user_id, token }),
            _ => anyhow::bail!(
                "set ABACSYNC_USER_ID and ABACSYNC_TOKEN: the user id and a personal access token of an account that may manage the tenant (`POST /api/v1/users.generatePersonalAccessToken`)"
            ),
        }
    }
}

/// What the server answered.
struct Answer {
    status: StatusCode,
    body: Value,
}

impl Answer {
    /// The server's own message for a refusal (`message`, `error`, `errors`).
    fn reason(&self) -> String {
        let mut parts: Vec<String> = ["message", "error"]
            .iter()
            .filter_map(|key| self.body.get(key).and_then(Value::as_str))
            .map(str::to_owned)
            .collect();
        if let Some(errors) = self.body.get("errors").and_then(Value::as_array) {
            parts.extend(errors.iter().filter_map(Value::as_str).map(str::to_owned));
        }
        if parts.is_empty() {
            parts.push(self.body.to_string());
        }
        format!("{}: {}", self.status, parts.join("; "))
    }
}

async fn request(
    method: Method,
    url: &Uri,
    credentials: &Credentials,
    content_type: &str,
    body: Vec<u8>,
) -> anyhow::Result<Answer> {
    let https = match url.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => anyhow::bail!("`{url}`: the server's URL starts with http:// or https://"),
    };
    let host = url.host().context("the server's URL has no host")?;
    let port = url.port_u16().unwrap_or(if https { 443 } else { 80 });
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .with_context(|| format!("connecting to {host}:{port}"))?;
    let request = Request::builder()
        .method(method)
        .uri(url.path_and_query().map_or("/", |path| path.as_str()))
        .header(
            hyper::header::HOST,
            url.authority().map_or("", |a| a.as_str()),
        )
        .header("x-user-id", &credentials.user_id)
        .header("x-auth-token", &credentials.token)
        .header(hyper::header::CONTENT_TYPE, content_type)
        .header(hyper::header::ACCEPT, "application/json")
        .body(Full::new(Bytes::from(body)))?;
    let response = if https {
        let config = abacsync::tls::client_config(None).map_err(anyhow::Error::msg)?;
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .with_context(|| format!("`{host}` is not a server name"))?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .with_context(|| format!("TLS with {host}"))?;
        send(hyper_util::rt::TokioIo::new(tls), request).await?
    } else {
        send(hyper_util::rt::TokioIo::new(tcp), request).await?
    };
    Ok(response)
}

async fn send<T>(io: T, request: Request<Full<Bytes>>) -> anyhow::Result<Answer>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(connection);
    let response = sender.send_request(request).await?;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Ok(Answer { status, body })
}

/// What a push did.
pub(crate) struct Pushed {
    pub(crate) plugin_id: i64,
    pub(crate) assignment: Value,
}

/// Uploads `component` as `name` to `server` and assigns it to `tenant` with `settings`.
pub(crate) fn push(
    server: &str,
    credentials: &Credentials,
    name: &str,
    component: Vec<u8>,
    tenant: u64,
    settings: &BTreeMap<String, String>,
) -> anyhow::Result<Pushed> {
    let base = server.trim_end_matches('/');
    let upload: Uri = format!("{base}/api/v1/admin/plugins?name={name}")
        .parse()
        .with_context(|| format!("`{server}` is not a URL"))?;
    let assign: Uri = format!("{base}/api/v1/admin/tenants/{tenant}/plugin").parse()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let within = |future| tokio::time::timeout(Duration::from_secs(120), future);
        let uploaded = within(request(
            Method::POST,
            &upload,
            credentials,
            "application/wasm",
            component,
        ))
        .await
        .context("the upload took over 120 s")??;
        anyhow::ensure!(
            uploaded.status == StatusCode::CREATED,
            "the server refused the plugin: {}",
            uploaded.reason()
        );
        let plugin_id = uploaded.body["id"]
            .as_i64()
            .context("the server's answer to the upload has no plugin id")?;
        let body = json!({"pluginId": plugin_id, "settings": settings});
        let assigned = within(request(
            Method::PUT,
            &assign,
            credentials,
            "application/json",
            serde_json::to_vec(&body)?,
        ))
        .await
        .context("the assignment took over 120 s")??;
        anyhow::ensure!(
            assigned.status == StatusCode::OK,
            "plugin {plugin_id} is uploaded, but the server refused to assign it to tenant {tenant}: {}",
            assigned.reason()
        );
        Ok(Pushed {
            plugin_id,
            assignment: assigned.body,
        })
    })
}
