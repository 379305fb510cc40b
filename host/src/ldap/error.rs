//! What can go wrong talking to a directory. Every variant names the server or the
//! operation; none of them is ever treated as "the directory is empty".

use std::time::Duration;

/// A directory operation failed; the read it belonged to is incomplete.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// No configured server accepted a connection.
    #[error("cannot connect to the directory: {}", .attempts.join("; "))]
    Connect {
        /// One line per server tried: URI and cause.
        attempts: Vec<String>,
    },
    /// TLS could not be set up; abacsync never falls back to plaintext.
    #[error("TLS with {server} failed: {reason}")]
    Tls {
        /// The server.
        server: String,
        /// Why (certificate, StartTLS refused, …).
        reason: String,
    },
    /// The CA file cannot be used.
    #[error("CA file {path}: {reason}")]
    CaFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
    /// The bind was refused (wrong DN or password: code 49).
    #[error("bind as `{dn}` refused by {server}: {message} (LDAP result {code})")]
    Bind {
        /// The server.
        server: String,
        /// The bind DN (empty: anonymous).
        dn: String,
        /// LDAP result code.
        code: u32,
        /// The server's diagnostic message.
        message: String,
    },
    /// A search ended with an error result: the entries read are not the whole set.
    #[error("search of `{base}` with {filter} failed: {message} (LDAP result {code}{})", hint(*.code))]
    Search {
        /// Search base.
        base: String,
        /// Filter.
        filter: String,
        /// LDAP result code (4 size limit, 3 time limit, 10 referral, 32 no such object…).
        code: u32,
        /// The server's diagnostic message, and referral URLs.
        message: String,
    },
    /// The server did not answer in time.
    #[error("the directory did not answer {operation} within {}s", .after.as_secs())]
    Timeout {
        /// What was waited for.
        operation: String,
        /// How long.
        after: Duration,
    },
    /// The connection broke or a protocol error happened mid-operation.
    #[error("directory connection lost during {operation} after {entries} entries: {cause}")]
    Connection {
        /// What was running.
        operation: String,
        /// Entries received before.
        entries: u64,
        /// The client library's error.
        cause: String,
    },
    /// The server sent something that is not a valid LDAP entry.
    #[error("malformed entry from the directory: {0}")]
    Malformed(String),
    /// Range retrieval of a large attribute did not converge.
    #[error("range retrieval of {attribute} on `{dn}` failed: {reason}")]
    Range {
        /// The entry.
        dn: String,
        /// The attribute.
        attribute: String,
        /// Why.
        reason: String,
    },
    /// The sync was cancelled while reading.
    #[error("cancelled")]
    Cancelled,
}

fn hint(code: u32) -> &'static str {
    match code {
        3 => {
            ": time limit exceeded, the read is incomplete; check the server's time limit, or lower the page size so that each page is read within it"
        }
        4 => {
            ": size limit exceeded, the read is incomplete; check the server's size limit and paging"
        }
        10 => ": referral, not followed",
        11 => ": admin limit exceeded",
        32 => ": the base DN does not exist",
        50 => ": the bind DN may not read these entries",
        _ => "",
    }
}

impl DirectoryError {
    /// Whether the directory could not be reached at all (for a 503 in APIs).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            DirectoryError::Connect { .. }
                | DirectoryError::Tls { .. }
                | DirectoryError::Timeout { .. }
                | DirectoryError::Connection { .. }
        )
    }
}
