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
    /// The bind was refused (wrong DN or password: code 49). Active Directory's
    /// reason (`data 52e`, `533`, `701`…) is named first.
    #[error(
        "bind as `{dn}` refused by {server}: {}{message} (LDAP result {code})",
        ad_reason(message)
    )]
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
    /// The server cannot do what was asked (watching without content
    /// synchronization).
    #[error("{what}")]
    Unsupported {
        /// What, and why not.
        what: String,
    },
    /// The stored mark cannot be read from: the server asks for a full reload
    /// (`e-syncRefreshRequired`), the mark comes from another server, or the server no
    /// longer offers what the mark needs. Nothing was read; a full read replaces it.
    #[error("the incremental mark cannot be used: {reason}")]
    StaleMark {
        /// Why.
        reason: String,
    },
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

/// Active Directory's reason for a refused bind, from the `data XXX` code in its
/// diagnostic message (`80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext
/// error, data 52e, v4563`), as `"invalid credentials: "`; empty for other servers.
pub(crate) fn ad_reason(message: &str) -> &'static str {
    let Some(start) = message.find("data ") else {
        return "";
    };
    let code: String = message[start + 5..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    match code.to_ascii_lowercase().as_str() {
        "525" => "no such user: ",
        "52e" => "invalid credentials: ",
        "530" => "not permitted to log on at this time: ",
        "531" => "not permitted to log on from this workstation: ",
        "532" => "password expired: ",
        "533" => "account disabled: ",
        "568" => "too many security identifiers in the account's token: ",
        "701" => "account expired: ",
        "773" => "the password must be changed before the first logon: ",
        "775" => "account locked out: ",
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

#[cfg(test)]
mod ad_tests {
    use super::*;

    #[test]
    fn active_directory_bind_refusals_say_why() {
        let refused = |message: &str| {
            DirectoryError::Bind {
                server: "ldaps://dc1".into(),
                dn: "CN=sync,DC=corp".into(),
                code: 49,
                message: message.into(),
            }
            .to_string()
        };
        let ad = |data: &str| {
            format!(
                "80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data {data}, v4563"
            )
        };
        assert_eq!(
            refused(&ad("52e")),
            format!(
                "bind as `CN=sync,DC=corp` refused by ldaps://dc1: invalid credentials: {} (LDAP result 49)",
                ad("52e")
            )
        );
        assert!(refused(&ad("533")).contains(": account disabled: 8009"));
        assert!(refused(&ad("701")).contains(": account expired: "));
        assert!(refused(&ad("775")).contains(": account locked out: "));
        assert!(refused(&ad("532")).contains(": password expired: "));
        // Other servers' messages, and unknown codes, are shown as they are.
        assert_eq!(
            refused("Invalid credentials"),
            "bind as `CN=sync,DC=corp` refused by ldaps://dc1: Invalid credentials (LDAP result 49)"
        );
        assert!(refused(&ad("999")).contains("ldaps://dc1: 80090308"));
    }
}
