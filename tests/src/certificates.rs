//! A private CA and a server certificate it signed, for `127.0.0.1` and `localhost`,
//! made with the `openssl` CLI: what the TLS fixtures (slapd's LDAPS and StartTLS,
//! PostgreSQL's TLS) serve, and what clients are told to trust. P-256 keys: generated
//! in milliseconds, unlike RSA.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The CA's certificate (PEM), in the folder given to [`generate`].
pub const CA_CERT: &str = "ca.pem";
/// The server's certificate (PEM).
pub const SERVER_CERT: &str = "server.pem";
/// The server's private key (PEM, unencrypted).
pub const SERVER_KEY: &str = "server.key";

/// What [`generate`] wrote.
#[derive(Debug, Clone)]
pub struct Certificates {
    /// The CA's certificate: what a client trusts.
    pub ca: PathBuf,
    /// The server's certificate.
    pub cert: PathBuf,
    /// The server's key.
    pub key: PathBuf,
}

/// A step of [`generate`] that failed.
#[derive(Debug, thiserror::Error)]
#[error("making {step}: {reason}")]
pub struct CertificateError {
    /// What was being made.
    pub step: String,
    /// Why it failed (openssl's standard error, or the I/O error).
    pub reason: String,
}

/// Writes a CA and a server certificate for `127.0.0.1` and `localhost` into `dir`
/// with the `openssl` program at `openssl`.
///
/// # Errors
/// [`CertificateError`] when a file cannot be written or openssl fails.
pub fn generate(openssl: &Path, dir: &Path) -> Result<Certificates, CertificateError> {
    generate_for(openssl, dir, &["IP:127.0.0.1", "DNS:localhost"])
}

/// [`generate`] with the server certificate's subject alternative names given
/// (`IP:127.0.0.9`, `DNS:dc1.example`).
///
/// # Errors
/// [`CertificateError`] when a file cannot be written or openssl fails.
pub fn generate_for(
    openssl: &Path,
    dir: &Path,
    names: &[&str],
) -> Result<Certificates, CertificateError> {
    std::fs::write(
        dir.join("server.ext"),
        format!(
            "subjectAltName = {}\n\
             basicConstraints = critical, CA:FALSE\n\
             keyUsage = critical, digitalSignature, keyEncipherment\n\
             extendedKeyUsage = serverAuth\n",
            names.join(", ")
        ),
    )
    .map_err(|err| CertificateError {
        step: "the server certificate's extensions".into(),
        reason: err.to_string(),
    })?;
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let steps: [(&str, Vec<&str>); 3] = [
        ("the test CA", {
            let mut args = vec![
                "req",
                "-x509",
                "-days",
                "30",
                "-subj",
                "/CN=abacsync test CA",
            ];
            args.extend(key);
            args.extend(["-keyout", "ca.key", "-out", CA_CERT]);
            args.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
            args.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
            args
        }),
        ("the server key", {
            let mut args = vec!["req", "-new", "-subj", "/CN=localhost"];
            args.extend(key);
            args.extend(["-keyout", SERVER_KEY, "-out", "server.csr"]);
            args
        }),
        ("the server certificate", {
            vec![
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                CA_CERT,
                "-CAkey",
                "ca.key",
                "-set_serial",
                "2",
                "-days",
                "30",
                "-extfile",
                "server.ext",
                "-out",
                SERVER_CERT,
            ]
        }),
    ];
    for (step, args) in steps {
        let failed = |reason: String| CertificateError {
            step: step.into(),
            reason,
        };
        let output = Command::new(openssl)
            .current_dir(dir)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|err| failed(format!("cannot run {}: {err}", openssl.display())))?;
        if !output.status.success() {
            return Err(failed(format!(
                "openssl {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
    }
    Ok(Certificates {
        ca: dir.join(CA_CERT),
        cert: dir.join(SERVER_CERT),
        key: dir.join(SERVER_KEY),
    })
}
