//! Connecting and binding: servers tried in order, TLS as configured (StartTLS or
//! LDAPS, certificates verified against the system's or a configured CA), and never a
//! silent fallback to plaintext: when TLS is asked for and fails, the server is not
//! used.

use std::sync::Arc;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError};

use super::error::DirectoryError;
use crate::config::{LdapConfig, TlsMode};

/// How to reach and authenticate to one tenant's directory.
#[derive(Clone)]
pub struct ConnectOptions {
    /// Server URIs, tried in order.
    pub servers: Vec<String>,
    /// TLS mode.
    pub tls: TlsMode,
    /// Trusted CA certificates when not the system's.
    pub tls_config: Option<Arc<rustls::ClientConfig>>,
    /// Bind DN and password; anonymous when `None`.
    pub bind: Option<(String, String)>,
    /// Connection timeout.
    pub connect_timeout: std::time::Duration,
    /// Timeout of each operation.
    pub operation_timeout: std::time::Duration,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password never reaches logs.
        f.debug_struct("ConnectOptions")
            .field("servers", &self.servers)
            .field("tls", &self.tls)
            .field("bind_dn", &self.bind.as_ref().map(|(dn, _)| dn))
            .finish_non_exhaustive()
    }
}

impl ConnectOptions {
    /// Options from a tenant's configuration and its bind password.
    pub fn from_config(
        config: &LdapConfig,
        password: Option<String>,
    ) -> Result<Self, DirectoryError> {
        let tls_config = match (&config.ca_file, config.tls) {
            (Some(path), TlsMode::StartTls | TlsMode::Ldaps) => Some(tls_config_with_ca(path)?),
            _ => None,
        };
        let bind = config
            .bind_dn
            .as_ref()
            .map(|dn| (dn.clone(), password.unwrap_or_default()));
        Ok(Self {
            servers: config.servers.clone(),
            tls: config.tls,
            tls_config,
            bind,
            connect_timeout: config.connect_timeout(),
            operation_timeout: config.operation_timeout(),
        })
    }
}

/// A client configuration trusting exactly the certificates in the PEM file `path`.
pub fn tls_config_with_ca(
    path: &std::path::Path,
) -> Result<Arc<rustls::ClientConfig>, DirectoryError> {
    crate::tls::client_config(Some(path)).map_err(|reason| DirectoryError::CaFile {
        path: path.to_owned(),
        reason,
    })
}

/// A bound connection to one server.
pub struct Connection {
    /// The handle operations are sent through (cheap to clone).
    pub ldap: Ldap,
    /// The URI of the server it is connected to.
    pub server: String,
}

impl Connection {
    /// Connects to the first server that accepts a connection (and TLS, when asked
    /// for), then binds. A refused bind is not retried on the next server: the
    /// credentials are the same there.
    pub async fn open(options: &ConnectOptions) -> Result<Connection, DirectoryError> {
        let mut attempts = Vec::new();
        for server in &options.servers {
            let mut settings = LdapConnSettings::new()
                .set_conn_timeout(options.connect_timeout)
                .set_starttls(options.tls == TlsMode::StartTls);
            if let Some(config) = &options.tls_config {
                settings = settings.set_config(config.clone());
            }
            let connected = LdapConnAsync::with_settings(settings, server).await;
            let (conn, mut ldap) = match connected {
                Ok(pair) => pair,
                Err(err) => {
                    if options.tls != TlsMode::Plain && is_tls_error(&err) {
                        return Err(DirectoryError::Tls {
                            server: server.clone(),
                            reason: err.to_string(),
                        });
                    }
                    attempts.push(format!("{server}: {err}"));
                    continue;
                }
            };
            ldap3::drive!(conn);
            if let Some((dn, password)) = &options.bind {
                let bound = ldap
                    .with_timeout(options.operation_timeout)
                    .simple_bind(dn, password)
                    .await;
                match bound {
                    Ok(result) if result.rc == 0 => {}
                    Ok(result) => {
                        return Err(DirectoryError::Bind {
                            server: server.clone(),
                            dn: dn.clone(),
                            code: result.rc,
                            message: result.text,
                        });
                    }
                    Err(LdapError::Timeout { .. }) => {
                        attempts.push(format!(
                            "{server}: no answer to the bind within {}s",
                            options.operation_timeout.as_secs()
                        ));
                        continue;
                    }
                    Err(err) => {
                        attempts.push(format!("{server}: bind failed: {err}"));
                        continue;
                    }
                }
            }
            return Ok(Connection {
                ldap,
                server: server.clone(),
            });
        }
        Err(DirectoryError::Connect { attempts })
    }

    /// Ends the session politely; errors are irrelevant at that point.
    pub async fn close(mut self) {
        let _ = self.ldap.unbind().await;
    }
}

/// Whether a connection error comes from TLS (certificate, handshake, StartTLS
/// refused) rather than from the network: those are not retried in plaintext, and are
/// reported as TLS failures.
fn is_tls_error(err: &LdapError) -> bool {
    match err {
        LdapError::Rustls { .. } | LdapError::DNSName { .. } => true,
        // A refused StartTLS extended operation comes back as an LDAP result.
        LdapError::LdapResult { .. } => true,
        LdapError::Io { source } => {
            let text = source.to_string().to_ascii_lowercase();
            text.contains("certificate") || text.contains("tls") || text.contains("handshake")
        }
        _ => false,
    }
}
