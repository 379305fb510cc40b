//! Reading a tenant's directory with `ldap3`: one connection per sync, paged searches
//! streamed in batches, binary attributes kept as bytes, Active Directory range
//! retrieval, group memberships from `memberOf` or from the groups read once.
//!
//! [`DirectorySource`] is the seam the sync engine reads through; [`LdapDirectory`]
//! is its LDAP implementation.

pub mod ber;
mod connection;
pub mod dirsync;
mod entry;
mod error;
pub mod filter;
mod groups;
pub mod marks;
mod notify;
mod read;
mod search;
pub mod syncrepl;
mod tombstones;

pub use connection::{ConnectOptions, Connection, tls_config_with_ca};
pub use entry::{EntryShaper, RawAttribute, RawEntry, ShapeNotes, decode, parse_description};
pub use error::DirectoryError;
pub use groups::{GroupIndex, normalize_dn};
pub use search::{SearchSpec, SearchStats};
pub use syncrepl::SYNC_REQUEST_OID;

use std::future::Future;

use tokio::sync::mpsc;

use crate::config::{LdapConfig, SearchScope};
use crate::plugin::model::Entry;

/// Which entries a read asks for, within the tenant's base and user filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every user entry.
    All,
    /// Entries whose change attribute is at or after `mark`.
    ChangedSince {
        /// A value of the tenant's change attribute.
        mark: String,
        /// The server the mark was taken on, when marks are a server's own (Active
        /// Directory's USNs): another server cannot read from it.
        origin: Option<String>,
        /// Active Directory's DirSync cookie of the groups, taken with the mark: the
        /// members added to and removed from groups since.
        groups_cookie: Option<Vec<u8>>,
    },
    /// RFC 4533 content synchronization: the entries changed since the cookie, and
    /// which entries were deleted.
    Changes {
        /// The cookie of the last read.
        cookie: Vec<u8>,
        /// The change attribute's value at the last read: groups changed since have
        /// their members read again.
        groups_since: Option<String>,
    },
    /// Entries whose unique identifier is one of these.
    Identifiers(Vec<String>),
    /// Entries one of whose search attributes contains this text (a directory
    /// search: grommunio's `ldap/search`).
    Matching(String),
}

/// One read of user entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRequest {
    /// Which entries.
    pub selection: Selection,
    /// Attributes to ask for (the plugin's, the identifiers, the change attribute).
    pub attributes: Vec<String>,
    /// Entries per batch sent to the sink.
    pub batch_size: usize,
}

/// Where the next incremental read starts, taken before this read's search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextMark {
    /// A value of the change attribute.
    Value {
        /// The value.
        value: String,
        /// The server it was taken on, when marks are a server's own.
        origin: Option<String>,
        /// Active Directory's DirSync cookie of the groups, taken at the same time.
        groups_cookie: Option<Vec<u8>>,
    },
    /// An RFC 4533 cookie.
    Cookie {
        /// The cookie.
        cookie: Vec<u8>,
        /// The change attribute's value, taken at the same time (for groups).
        value: Option<String>,
    },
}

/// What a read tells of the directory ids of entries that are gone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Deletions {
    /// Nothing: a read of changed entries by their change attribute cannot see
    /// deletions, and a targeted read not those of others.
    #[default]
    Unknown,
    /// These entries were deleted, by their directory id (`entryUUID` from a content
    /// synchronization, the text form of `objectGUID` from Active Directory tombstones).
    Listed(Vec<String>),
    /// Every entry is gone that was neither read nor listed here (by `entryUUID`) as
    /// present: a full read lists none.
    AllBut(Vec<String>),
}

/// What a complete read found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// The server that answered.
    pub server: String,
    /// The filter sent.
    pub filter: String,
    /// Entries read.
    pub entries: u64,
    /// Searches sent (users, groups, range follow-ups): never one per user.
    pub searches: u64,
    /// Groups read (group mode `search`).
    pub groups: u64,
    /// Groups changed since the mark, whose members an incremental read read again.
    pub changed_groups: u64,
    /// Text attributes holding values that were not UTF-8 (passed on as bytes).
    pub invalid_utf8_values: u64,
    /// Continuation references received: parts of the base held by other servers,
    /// never followed (they could send the bind credentials anywhere).
    pub references: u64,
    /// References to Active Directory's partitions beside the domain (Configuration,
    /// DomainDnsZones, ForestDnsZones): they hold no users, so they do not stop
    /// removals.
    pub partition_references: u64,
    /// Where the next incremental read starts; `None` when the server offers nothing
    /// to take it from (the engine then keeps the newest change read).
    pub next_mark: Option<NextMark>,
    /// Which entries are gone.
    pub deletions: Deletions,
    /// How changes were tracked (`syncrepl`, `timestamps`), for incremental reads.
    pub tracking: Option<&'static str>,
    /// What an operator should know of this read (deletions not seen, …).
    pub notes: Vec<String>,
}

/// A source of directory entries: the sync engine's view of a directory.
pub trait DirectorySource: Send + Sync {
    /// Streams the selected entries in batches to `sink` and returns once the whole
    /// result set has been read and confirmed complete. An error means the entries
    /// sent so far are not the whole set.
    fn read(
        &self,
        request: ReadRequest,
        sink: mpsc::Sender<Vec<Entry>>,
    ) -> impl Future<Output = Result<ReadStats, DirectoryError>> + Send;
}

/// A tenant's LDAP directory.
#[derive(Debug, Clone)]
pub struct LdapDirectory {
    options: ConnectOptions,
    config: LdapConfig,
}

impl LdapDirectory {
    /// The directory of a tenant's configuration, with its bind password.
    pub fn new(config: &LdapConfig, password: Option<String>) -> Result<Self, DirectoryError> {
        Ok(Self {
            options: ConnectOptions::from_config(config, password)?,
            config: config.clone(),
        })
    }

    /// Watches the directory until the connection or the server ends it: keeps a
    /// refreshAndPersist search open from the server's cookie of now (Active Directory:
    /// a change notification search) and counts on `changed` the changes it announces
    /// (one at the start too, for what changed while nobody watched). The connection is
    /// checked every `check_every` with a read of its own, so that a silently dead one
    /// ends the watch. Fails with [`DirectoryError::Unsupported`] when the server offers
    /// neither, or offers content synchronization only and `content_sync` is off.
    pub async fn watch(
        &self,
        changed: tokio::sync::watch::Sender<u64>,
        check_every: std::time::Duration,
    ) -> Result<(), DirectoryError> {
        let connection = Connection::open(&self.options).await?;
        let result = self
            .watch_connected(&connection, &changed, check_every)
            .await;
        connection.close().await;
        result
    }

    async fn watch_connected(
        &self,
        connection: &Connection,
        changed: &tokio::sync::watch::Sender<u64>,
        check_every: std::time::Duration,
    ) -> Result<(), DirectoryError> {
        let timeout = self.config.operation_timeout();
        let facts = marks::server_facts(&connection.ldap, &self.config.base_dn, timeout).await?;
        let check = async {
            let mut tick = tokio::time::interval(check_every);
            tick.tick().await;
            loop {
                tick.tick().await;
                marks::server_facts(&connection.ldap, "", timeout).await?;
            }
            #[allow(unreachable_code)]
            Ok::<(), DirectoryError>(())
        };
        // Active Directory: its change notifications, on the naming context's head (the
        // syncs that follow read the changes by USN, tombstones and DirSync).
        if !facts.content_sync
            && facts.notifications
            && let Some(context) = &facts.naming_context
        {
            return tokio::select! {
                watched = notify::persist(&connection.ldap, context, changed) => watched,
                checked = check => checked,
            };
        }
        if !self.config.content_sync {
            return Err(DirectoryError::Unsupported {
                what: "watching needs content synchronization, and content_sync is off for this tenant".into(),
            });
        }
        if !facts.content_sync {
            return Err(DirectoryError::Unsupported {
                what: format!(
                    "{} offers neither content synchronization (RFC 4533: OpenLDAP's syncprov overlay) nor Active Directory's change notifications, which watching needs",
                    connection.server
                ),
            });
        }
        let spec = self.spec(
            &self.config.base_dn,
            filter::normalize(&self.config.user_filter),
            Vec::new(),
            self.config.scope,
        );
        let cookie = syncrepl::current_cookie(&connection.ldap, &spec).await?;
        changed.send_modify(|count| *count += 1);
        tokio::select! {
            watched = syncrepl::persist(&connection.ldap, &spec, Some(&cookie), changed) => watched,
            checked = check => checked,
        }
    }

    /// Connects and binds, then closes: a connection test.
    pub async fn test_connection(&self) -> Result<String, DirectoryError> {
        let connection = Connection::open(&self.options).await?;
        let server = connection.server.clone();
        connection.close().await;
        Ok(server)
    }

    /// The search filter for a selection.
    pub fn filter(&self, selection: &Selection) -> Option<String> {
        let users = filter::normalize(&self.config.user_filter);
        match selection {
            Selection::All | Selection::Changes { .. } => Some(users),
            Selection::ChangedSince { mark, .. } => Some(filter::all(vec![
                users,
                format!(
                    "({}>={})",
                    self.config.change_attribute,
                    filter::escape(mark)
                ),
            ])),
            Selection::Identifiers(ids) => {
                filter::identifiers(&self.config.unique_identifiers, ids)
                    .map(|ids| filter::all(vec![users, ids]))
            }
            Selection::Matching(text) => {
                let escaped = filter::escape(text);
                let clauses = self
                    .config
                    .search_attributes
                    .iter()
                    .map(|attribute| format!("({attribute}=*{escaped}*)"))
                    .collect();
                filter::any(clauses).map(|any| filter::all(vec![users, any]))
            }
        }
    }

    fn spec(
        &self,
        base: &str,
        filter: String,
        attributes: Vec<String>,
        scope: SearchScope,
    ) -> SearchSpec {
        SearchSpec {
            base: base.to_owned(),
            scope,
            filter,
            attributes,
            page_size: self.config.page_size,
            timeout: self.config.operation_timeout(),
        }
    }
}
