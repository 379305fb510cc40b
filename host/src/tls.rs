//! Client TLS settings shared by the directory and the store connections: rustls over
//! *ring*, the server's certificate checked against the system's roots or against the
//! CAs of one PEM file.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// A client configuration trusting the certificates in the PEM file `ca_file`, or the
/// system's roots without one. The error says what is wrong with the file or roots.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certificates = CertificateDer::pem_file_iter(path)
                .map_err(|err| err.to_string())?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|err| err.to_string())?;
            if certificates.is_empty() {
                return Err("no PEM certificate in the file".into());
            }
            for certificate in certificates {
                roots.add(certificate).map_err(|err| err.to_string())?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            if found.certs.is_empty() {
                let why = found.errors.first().map(ToString::to_string);
                return Err(format!(
                    "no trusted root certificate found on this system{}",
                    why.map(|why| format!(" ({why})")).unwrap_or_default()
                ));
            }
            // A system store may hold a certificate rustls cannot parse: the others
            // still count.
            roots.add_parsable_certificates(found.certs);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| err.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
