//! TLS to PostgreSQL. A URL that asks for it (`sslmode=require`, `verify-ca`,
//! `verify-full`, or `prefer`) gets it, always verified: the server's certificate
//! must chain to the CA of `sslrootcert` (or `[store] ca_file`), else to the system's
//! roots, and name the host connected to. abacsync never speaks unverified TLS, and
//! never falls back to plain text once TLS was asked for; `prefer` is taken as
//! `require`. Without `sslmode` (or with `disable` or `allow`) the connection is plain
//! TCP, as it was before TLS was built.
//!
//! libpq's `verify-*` modes and `sslrootcert` are not parameters `tokio-postgres`
//! reads: they are taken out of the URL here, and the rest is handed to it.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

/// What the URL asked of TLS, and the URL without the parameters only libpq knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TlsRequest {
    /// The URL for `tokio-postgres`.
    pub url: String,
    /// Whether to speak TLS.
    pub required: bool,
    /// `sslrootcert`: the CA file the server's certificate must chain to.
    pub root_cert: Option<PathBuf>,
}

/// Splits `url` (a `postgres://` URL or `key=value` words) into what `tokio-postgres`
/// reads and what TLS needs. An `sslmode` it does not know is an error.
pub(super) fn request(url: &str) -> Result<TlsRequest, String> {
    let mut mode = None;
    let mut root_cert = None;
    let rest = if let Some((base, query)) = url.split_once('?') {
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "sslmode" => mode = Some(percent_decoded(value)?),
                "sslrootcert" => root_cert = Some(percent_decoded(value)?),
                _ => kept.push(pair),
            }
        }
        if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        }
    } else if url.contains("://") {
        url.to_owned()
    } else {
        // `host=… sslmode=…`: quoted values are left to tokio-postgres, which reads
        // every other word.
        let mut kept = Vec::new();
        for word in url.split_whitespace() {
            match word.split_once('=') {
                Some(("sslmode", value)) => mode = Some(value.to_owned()),
                Some(("sslrootcert", value)) => root_cert = Some(value.to_owned()),
                _ => kept.push(word),
            }
        }
        kept.join(" ")
    };
    let required = match mode.as_deref() {
        None | Some("disable" | "allow") => false,
        Some("prefer" | "require" | "verify-ca" | "verify-full") => true,
        Some(other) => {
            return Err(format!(
                "sslmode {other:?} is not one of disable, allow, prefer, require, verify-ca, verify-full"
            ));
        }
    };
    Ok(TlsRequest {
        url: rest,
        required,
        root_cert: root_cert.map(PathBuf::from),
    })
}

/// `%XX` escapes of a URL query value decoded.
fn percent_decoded(value: &str) -> Result<String, String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = value
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| format!("bad percent escape in {value:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{value:?} is not UTF-8 once decoded"))
}

/// Opens TLS over each new connection, with one rustls configuration.
#[derive(Clone)]
pub(super) struct Rustls {
    config: Arc<rustls::ClientConfig>,
}

impl Rustls {
    pub(super) fn new(config: Arc<rustls::ClientConfig>) -> Self {
        Self { config }
    }
}

impl<S> MakeTlsConnect<S> for Rustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = Stream<S>;
    type TlsConnect = Connect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, host: &str) -> Result<Connect, io::Error> {
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
        Ok(Connect {
            config: self.config.clone(),
            name,
        })
    }
}

/// TLS to one host.
pub(super) struct Connect {
    config: Arc<rustls::ClientConfig>,
    name: rustls::pki_types::ServerName<'static>,
}

impl<S> TlsConnect<S> for Connect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = Stream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Stream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let connector = tokio_rustls::TlsConnector::from(self.config);
            Ok(Stream(connector.connect(self.name, stream).await?))
        })
    }
}

/// A TLS connection to the server.
pub(super) struct Stream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for Stream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM without channel binding (SCRAM-SHA-256, not -PLUS): the server's
        // certificate is verified instead.
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Stream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Stream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::request;

    #[test]
    fn libpq_tls_parameters_are_taken_out_of_the_url() {
        let asked =
            request("postgres://u@db:5432/app?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=5")
                .unwrap();
        assert_eq!(asked.url, "postgres://u@db:5432/app?connect_timeout=5");
        assert!(asked.required);
        assert_eq!(
            asked.root_cert.as_deref(),
            Some(std::path::Path::new("/etc/ca.pem"))
        );
        let words = request("host=db dbname=app sslmode=require").unwrap();
        assert_eq!(words.url, "host=db dbname=app");
        assert!(words.required);
        for plain in ["postgres://u@db/app", "postgres://u@db/app?sslmode=disable"] {
            let asked = request(plain).unwrap();
            assert!(!asked.required, "{plain}");
            assert_eq!(asked.url, "postgres://u@db/app");
        }
        assert!(
            request("postgres://db/app?sslmode=verify-full")
                .unwrap()
                .required
        );
        let err = request("postgres://db/app?sslmode=maybe").unwrap_err();
        assert!(err.contains("maybe"), "{err}");
    }
}
