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

/// Where to push: the server's base URL, checked before anything is built.
pub(crate) struct Server {
    base: String,
    https: bool,
    host: String,
    port: u16,
    ca_file: Option<std::path::PathBuf>,
}

impl Server {
    /// `url` must be `https://HOST[:PORT][/PATH]`, or `http://` to a loopback address
    /// (or anywhere with `insecure_http`): the token must not cross a network in clear.
    pub(crate) fn parse(
        url: &str,
        insecure_http: bool,
        ca_file: Option<std::path::PathBuf>,
    ) -> anyhow::Result<Server> {
        let base = url.trim_end_matches('/');
        let uri: Uri = base
            .parse()
            .with_context(|| format!("`{url}` is not a URL (e.g. https://abacsync.example.org)"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => anyhow::bail!("`{url}`: the server's URL starts with https:// (or http://)"),
        };
        let authority = uri.authority().context("the server's URL has no host")?;
        anyhow::ensure!(
            !authority.as_str().contains('@'),
            "`{url}`: give no user or password in the URL; the token comes from ABACSYNC_USER_ID and ABACSYNC_TOKEN"
        );
        anyhow::ensure!(
            uri.query().is_none(),
            "`{url}`: the server's URL has no query"
        );
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|address| address.is_loopback());
        anyhow::ensure!(
            https || loopback || insecure_http,
            "`{url}`: the token would cross the network in clear; use https:// (with --ca-file for a private CA), or --insecure-http if you must"
        );
        anyhow::ensure!(
            https || ca_file.is_none(),
            "--ca-file is for https:// servers"
        );
        Ok(Server {
            base: base.to_owned(),
            https,
            port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
            host,
            ca_file,
        })
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
    server: &Server,
    method: Method,
    path: &str,
    credentials: &Credentials,
    content_type: &str,
    body: Vec<u8>,
) -> anyhow::Result<Answer> {
    let url: Uri = format!("{}{path}", server.base).parse()?;
    let tcp = tokio::net::TcpStream::connect((server.host.as_str(), server.port))
        .await
        .with_context(|| format!("connecting to {}:{}", server.host, server.port))?;
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
    if !server.https {
        return send(hyper_util::rt::TokioIo::new(tcp), request).await;
    }
    let config = abacsync::tls::client_config(server.ca_file.as_deref())
        .map_err(|reason| anyhow::anyhow!("TLS settings: {reason}"))?;
    let name = rustls::pki_types::ServerName::try_from(server.host.clone())
        .with_context(|| format!("`{}` is not a server name", server.host))?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .with_context(|| format!("TLS with {}", server.host))?;
    send(hyper_util::rt::TokioIo::new(tls), request).await
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

/// Uploads `component` as `name` (a checked plugin name: nothing to escape) to
/// `server` and assigns it to `tenant` with `settings`.
pub(crate) fn push(
    server: &Server,
    credentials: &Credentials,
    name: &str,
    component: Vec<u8>,
    tenant: u64,
    settings: &BTreeMap<String, String>,
) -> anyhow::Result<Pushed> {
    let upload = format!("/api/v1/admin/plugins?name={name}");
    let assign = format!("/api/v1/admin/tenants/{tenant}/plugin");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let within = |future| tokio::time::timeout(Duration::from_secs(120), future);
        let uploaded = within(request(
            server,
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
            server,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_never_crosses_a_network_in_clear() {
        assert!(Server::parse("https://abacsync.example.org/", false, None).is_ok());
        assert!(Server::parse("http://127.0.0.1:8080", false, None).is_ok());
        assert!(Server::parse("http://[::1]:8080", false, None).is_ok());
        assert!(Server::parse("http://localhost", false, None).is_ok());
        let error = Server::parse("http://abacsync.example.org", false, None)
            .err()
            .expect("clear text to another host");
        assert!(error.to_string().contains("--insecure-http"), "{error}");
        assert!(Server::parse("http://abacsync.example.org", true, None).is_ok());
        let error = Server::parse("https://alice:pw@abacsync.example.org", false, None)
            .err()
            .expect("credentials in the URL");
        assert!(error.to_string().contains("no user or password"), "{error}");
        for bad in ["abacsync.example.org", "ftp://x", "https://x/?a=b"] {
            assert!(Server::parse(bad, true, None).is_err(), "{bad}");
        }
        let server = Server::parse("https://[2001:db8::1]/abacsync/", false, None).expect("v6");
        assert_eq!((server.host.as_str(), server.port), ("2001:db8::1", 443));
        assert_eq!(server.base, "https://[2001:db8::1]/abacsync");
    }

    #[test]
    fn a_refusal_reads_as_the_servers_own_words() {
        let answer = Answer {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: json!({"message": "Plugin refused", "errors": ["imports wasi:http"]}),
        };
        assert_eq!(
            answer.reason(),
            "422 Unprocessable Entity: Plugin refused; imports wasi:http"
        );
        let answer = Answer {
            status: StatusCode::BAD_GATEWAY,
            body: Value::String("upstream down".into()),
        };
        assert_eq!(answer.reason(), "502 Bad Gateway: \"upstream down\"");
    }
}
