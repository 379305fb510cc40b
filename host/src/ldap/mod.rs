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
mod search;
pub mod syncrepl;
mod tombstones;

pub use connection::{ConnectOptions, Connection, tls_config_with_ca};
pub use entry::{EntryShaper, RawAttribute, RawEntry, ShapeNotes, decode, parse_description};
pub use error::DirectoryError;
pub use groups::{GroupIndex, normalize_dn};
pub use search::{SearchSpec, SearchStats};
pub use syncrepl::SYNC_REQUEST_OID;

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::config::{GroupMode, LdapConfig, SearchScope};
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
    /// refreshAndPersist search open from the server's cookie of now and counts on
    /// `changed` the changes it announces (one at the start too, for what changed while
    /// nobody watched). The connection is checked every `check_every` with a read of
    /// its own, so that a silently dead one ends the watch. Fails with
    /// [`DirectoryError::Unsupported`] when the server offers no content
    /// synchronization, or `content_sync` is off.
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
        if !self.config.content_sync {
            return Err(DirectoryError::Unsupported {
                what: "watching needs content synchronization, and content_sync is off for this tenant".into(),
            });
        }
        if !facts.content_sync {
            return Err(DirectoryError::Unsupported {
                what: format!(
                    "{} offers no content synchronization (RFC 4533: OpenLDAP's syncprov overlay), which watching needs",
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

    /// The DNs of the groups whose change attribute is at or after `since`.
    async fn changed_groups(
        &self,
        connection: &Connection,
        since: &str,
    ) -> Result<Vec<String>, DirectoryError> {
        let groups = &self.config.groups;
        let base = groups
            .base_dn
            .clone()
            .unwrap_or_else(|| self.config.base_dn.clone());
        let spec = self.spec(
            &base,
            filter::all(vec![
                filter::normalize(&groups.filter),
                format!(
                    "({}>={})",
                    self.config.change_attribute,
                    filter::escape(since)
                ),
            ]),
            vec!["1.1".into()],
            SearchScope::Sub,
        );
        let shaper = EntryShaper::new(&[], None);
        let (sender, mut receiver) = mpsc::channel::<Vec<Entry>>(2);
        let collect = async move {
            let mut dns = Vec::new();
            while let Some(batch) = receiver.recv().await {
                dns.extend(batch.into_iter().map(|entry| entry.dn));
            }
            dns
        };
        let read =
            async move { search::stream(&connection.ldap, &spec, &shaper, 1000, &sender).await };
        let (read, dns) = tokio::join!(read, collect);
        read?;
        Ok(dns)
    }

    async fn read_groups(
        &self,
        connection: &Connection,
    ) -> Result<(GroupIndex, SearchStats), DirectoryError> {
        let groups = &self.config.groups;
        let base = groups
            .base_dn
            .clone()
            .unwrap_or_else(|| self.config.base_dn.clone());
        let spec = self.spec(
            &base,
            filter::normalize(&groups.filter),
            vec![groups.member_attribute.clone()],
            SearchScope::Sub,
        );
        let shaper = EntryShaper::new(&self.config.binary_attributes, None);
        let (sender, mut receiver) = mpsc::channel::<Vec<Entry>>(2);
        let member_attribute = groups.member_attribute.clone();
        let collect = async move {
            let mut index = GroupIndex::new();
            while let Some(batch) = receiver.recv().await {
                for entry in batch {
                    let members = entry.values(&member_attribute).to_vec();
                    index.add_group(&entry.dn, members);
                }
            }
            index
        };
        let read =
            async move { search::stream(&connection.ldap, &spec, &shaper, 1000, &sender).await };
        let (stats, index) = tokio::join!(read, collect);
        Ok((index, stats?))
    }
}

impl DirectorySource for LdapDirectory {
    /// Runs on a thread of its own, with its own single-threaded runtime: the
    /// connection's driver, the decoding of each message and the shaping of each entry
    /// then share one thread, so the many small allocations of a message are freed
    /// where they were made (on the shared runtime, a message was decoded on one
    /// worker, turned into an entry on another and freed on a third).
    async fn read(
        &self,
        request: ReadRequest,
        sink: mpsc::Sender<Vec<Entry>>,
    ) -> Result<ReadStats, DirectoryError> {
        let directory = self.clone();
        let (done, result) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("abacsync-ldap-read".into())
            .spawn(move || {
                let outcome = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|err| DirectoryError::Connect {
                        attempts: vec![format!("cannot start the reading thread's runtime: {err}")],
                    })
                    .and_then(|runtime| runtime.block_on(directory.read_here(request, sink)));
                let _ = done.send(outcome);
            })
            .map_err(|err| DirectoryError::Connect {
                attempts: vec![format!("cannot start the reading thread: {err}")],
            })?;
        result.await.unwrap_or_else(|_| {
            Err(DirectoryError::Connect {
                attempts: vec!["the reading thread stopped without an answer".into()],
            })
        })
    }
}

impl LdapDirectory {
    /// [`DirectorySource::read`] on the current runtime.
    async fn read_here(
        &self,
        request: ReadRequest,
        sink: mpsc::Sender<Vec<Entry>>,
    ) -> Result<ReadStats, DirectoryError> {
        let Some(filter) = self.filter(&request.selection) else {
            // No identifiers: nothing to read, and no search to send.
            return Ok(ReadStats::default());
        };
        let connection = Connection::open(&self.options).await?;
        let result = self
            .read_connected(&connection, request, filter, sink)
            .await;
        connection.close().await;
        result
    }

    /// Takes the next mark (before the search), then reads.
    async fn read_connected(
        &self,
        connection: &Connection,
        request: ReadRequest,
        filter: String,
        sink: mpsc::Sender<Vec<Entry>>,
    ) -> Result<ReadStats, DirectoryError> {
        let mut stats = ReadStats {
            server: connection.server.clone(),
            filter: filter.clone(),
            ..ReadStats::default()
        };
        let timeout = self.config.operation_timeout();
        let spec = self.spec(
            &self.config.base_dn,
            filter,
            request.attributes.clone(),
            self.config.scope,
        );
        // The value of the change attribute at which the next incremental read starts,
        // taken now: kept beside a cookie too, for the groups changed since.
        let mut value_mark = None;
        // Where Active Directory's tombstones are looked for (an incremental read by
        // the change attribute, on a server with the Show Deleted control).
        let mut tombstones_under = None;
        // Where Active Directory's DirSync reads the groups' changes (a tenant with
        // groups, on a server with the control).
        let mut dirsync_under = None;
        let cookie = match &request.selection {
            Selection::All | Selection::ChangedSince { .. } | Selection::Changes { .. } => {
                // Bookkeeping reads (the root DSE, a cookie) are not counted in
                // `searches`, which counts the reads of entries.
                let facts =
                    marks::server_facts(&connection.ldap, &self.config.base_dn, timeout).await?;
                value_mark = facts.mark_for(&self.config.change_attribute);
                if facts.dirsync
                    && self.config.groups.mode != GroupMode::None
                    && !matches!(request.selection, Selection::Changes { .. })
                {
                    dirsync_under = facts.naming_context.clone();
                }
                let content_sync = facts.content_sync && self.config.content_sync;
                match &request.selection {
                    Selection::ChangedSince {
                        origin: Some(origin),
                        ..
                    } if facts.origin.as_ref() != Some(origin) => {
                        return Err(DirectoryError::StaleMark {
                            reason: format!(
                                "it was taken on another server ({origin}; this one is {})",
                                facts.origin.as_deref().unwrap_or("unnamed")
                            ),
                        });
                    }
                    Selection::Changes { .. } if !content_sync => {
                        return Err(DirectoryError::StaleMark {
                            reason: if self.config.content_sync {
                                "the server no longer offers content synchronization".into()
                            } else {
                                "content_sync is off for this tenant".into()
                            },
                        });
                    }
                    Selection::Changes { cookie, .. } => Some(cookie.clone()),
                    _ => {
                        stats.next_mark = if content_sync {
                            Some(NextMark::Cookie {
                                cookie: syncrepl::current_cookie(&connection.ldap, &spec).await?,
                                value: value_mark.clone(),
                            })
                        } else {
                            value_mark.clone().map(|value| NextMark::Value {
                                value,
                                origin: facts.origin.clone(),
                                groups_cookie: None,
                            })
                        };
                        if stats.next_mark.is_none() {
                            stats.notes.push(format!(
                                "the server publishes nothing to start the next incremental read from (contextCSN, highestCommittedUSN) for {}: it starts from the newest change read, and a change made during this read may wait for the next full sync",
                                self.config.change_attribute
                            ));
                        }
                        if matches!(request.selection, Selection::ChangedSince { .. })
                            && facts.show_deleted
                            && let Some(context) = &facts.naming_context
                        {
                            stats.tracking = Some("tombstones");
                            tombstones_under = Some(context.clone());
                        } else if matches!(request.selection, Selection::ChangedSince { .. }) {
                            stats.tracking = Some("timestamps");
                            stats.notes.push(format!(
                                "deletions wait for the next full sync: this incremental read compares {}, which deleted entries do not have ({})",
                                self.config.change_attribute,
                                if !self.config.content_sync {
                                    "content_sync is off for this tenant"
                                } else if content_sync {
                                    "the next one uses content synchronization"
                                } else {
                                    "the server offers no content synchronization: OpenLDAP's syncprov overlay"
                                }
                            ));
                        }
                        None
                    }
                }
            }
            Selection::Identifiers(_) | Selection::Matching(_) => None,
        };

        // The groups' DirSync cookie of now, and, from the last one, their changes.
        let mut dirsync_changes = None;
        if let Some(context) = &dirsync_under {
            let previous = match &request.selection {
                Selection::ChangedSince {
                    groups_cookie: Some(cookie),
                    ..
                } => Some(cookie.as_slice()),
                _ => None,
            };
            match dirsync::group_changes(
                &connection.ldap,
                context,
                &filter::normalize(&self.config.groups.filter),
                &self.config.groups.member_attribute,
                previous,
                previous.is_some(),
                timeout,
            )
            .await
            {
                Ok(changes) => {
                    let groups_base = normalize_dn(
                        self.config
                            .groups
                            .base_dn
                            .as_deref()
                            .unwrap_or(&self.config.base_dn),
                    );
                    if let Some(parent) = changes.deleted_under.iter().find(|parent| {
                        let parent = normalize_dn(parent);
                        parent == groups_base || parent.ends_with(&format!(",{groups_base}"))
                    }) {
                        return Err(DirectoryError::StaleMark {
                            reason: format!(
                                "a group under `{parent}` was deleted, and a deleted group keeps no members: who was in it takes a full read"
                            ),
                        });
                    }
                    if let Some(NextMark::Value { groups_cookie, .. }) = &mut stats.next_mark {
                        *groups_cookie = Some(changes.cookie.clone());
                    }
                    if previous.is_some() {
                        stats.searches += 1;
                        dirsync_changes = Some(changes);
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "DirSync refused: members removed from groups wait for the next full sync");
                    stats.notes.push(format!(
                        "members removed from groups wait for the next full sync: the DirSync read of the groups failed ({err})"
                    ));
                }
            }
        }

        let mut attributes = request.attributes;
        let group_mode = self.config.groups.mode;
        let mut index = None;
        match group_mode {
            GroupMode::MemberOf => {
                if !attributes
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case("memberOf"))
                {
                    attributes.push("memberOf".into());
                }
            }
            GroupMode::Search => {
                let (groups, group_stats) = self.read_groups(connection).await?;
                stats.searches += 1 + group_stats.range_searches;
                stats.groups = group_stats.entries;
                index = Some(Arc::new(groups));
            }
            GroupMode::None => {}
        }
        // A user's groups change without the user's entry changing (Active Directory's
        // memberOf is a back-link; in group mode `search` the groups hold the
        // memberships): an incremental read also reads again the members, direct or
        // through nested groups, of the groups changed since the mark.
        let groups_since = match &request.selection {
            Selection::ChangedSince { mark, .. } => Some(mark.clone()),
            Selection::Changes { groups_since, .. } => groups_since.clone(),
            _ => None,
        };
        let mut affected = Vec::new();
        if let Some(since) = groups_since.filter(|_| group_mode != GroupMode::None) {
            // From DirSync, the groups changed and the members they lost; else the
            // groups whose change attribute moved (whose lost members stay as they were
            // until the next full sync).
            let (changed, removed) = match dirsync_changes {
                Some(changes) => (changes.groups, changes.removed),
                None => {
                    stats.searches += 1;
                    (self.changed_groups(connection, &since).await?, Vec::new())
                }
            };
            if !changed.is_empty() {
                // The members now, through nested groups too, and those removed (with
                // theirs, for a group removed from a group).
                let mut under = changed.clone();
                under.extend(removed.iter().cloned());
                affected = match &index {
                    Some(index) => index.members_under(&under),
                    None => {
                        let (groups, group_stats) = self.read_groups(connection).await?;
                        stats.searches += 1 + group_stats.range_searches;
                        stats.groups = group_stats.entries;
                        groups.members_under(&under)
                    }
                };
                for dn in &removed {
                    let dn = normalize_dn(dn);
                    if !affected.contains(&dn) {
                        affected.push(dn);
                    }
                }
                stats.changed_groups = changed.len() as u64;
                tracing::info!(
                    groups = changed.len(),
                    members = affected.len(),
                    "groups changed since the last sync: their members are read again"
                );
            }
        }
        let groups_attribute = (group_mode == GroupMode::MemberOf).then(|| "memberOf".to_owned());
        let shaper = EntryShaper::new(&self.config.binary_attributes, groups_attribute);
        let spec = SearchSpec { attributes, ..spec };
        let batch_size = request.batch_size;
        let search = |sink: mpsc::Sender<Vec<Entry>>| {
            let ldap = &connection.ldap;
            let spec = &spec;
            let shaper = &shaper;
            let cookie = cookie.as_deref();
            async move {
                match cookie {
                    Some(cookie) => {
                        syncrepl::refresh(ldap, spec, shaper, Some(cookie), batch_size, &sink)
                            .await
                            .map(|refresh| {
                                let searched = refresh.stats;
                                (searched, Some(refresh))
                            })
                    }
                    None => search::stream(ldap, spec, shaper, batch_size, &sink)
                        .await
                        .map(|searched| (searched, None)),
                }
            }
        };
        // The search, between it and the sink: each user's resolved groups attached,
        // and, when members of changed groups are to be read again, the DNs read
        // recorded (so that none is read twice).
        let record = !affected.is_empty();
        let sink_direct = sink.clone();
        let (sender, mut receiver) = mpsc::channel::<Vec<Entry>>(2);
        let forward_index = index.clone();
        let forward = async move {
            let mut read = HashSet::new();
            while let Some(mut batch) = receiver.recv().await {
                for entry in &mut batch {
                    if let Some(index) = &forward_index {
                        entry.groups = Some(index.groups_of(&entry.dn));
                    }
                    if record {
                        read.insert(normalize_dn(&entry.dn));
                    }
                }
                if sink.send(batch).await.is_err() {
                    return Err(DirectoryError::Cancelled);
                }
            }
            Ok((sink, read))
        };
        let (mut searched, refresh, sink, read) = if index.is_none() && !record {
            // Nothing to do between: straight to the sink.
            drop((sender, forward));
            let (searched, refresh) = search(sink_direct).await?;
            (searched, refresh, None, HashSet::new())
        } else {
            let (result, forwarded) = tokio::join!(search(sender), forward);
            let (searched, refresh) = result?;
            let (sink, read) = forwarded?;
            (searched, refresh, Some(sink), read)
        };
        // Members of changed groups the search did not bring: read by their DN.
        // (Only where some are to be read, which goes through the recording stage.)
        let sink = sink.filter(|_| record);
        for dn in affected
            .iter()
            .filter(|dn| sink.is_some() && !read.contains(*dn))
        {
            // The user filter alone: the entry itself did not change.
            let one = SearchSpec {
                base: dn.clone(),
                scope: SearchScope::Base,
                filter: filter::normalize(&self.config.user_filter),
                ..spec.clone()
            };
            let (sender, mut receiver) = mpsc::channel::<Vec<Entry>>(1);
            match search::stream(&connection.ldap, &one, &shaper, 1, &sender).await {
                Ok(found) => {
                    searched.entries += found.entries;
                    searched.range_searches += 1 + found.range_searches;
                }
                // Moved or deleted since: the full sync, or the deletion, takes care of
                // it.
                Err(DirectoryError::Search { code: 32, .. }) => continue,
                Err(err) => return Err(err),
            }
            drop(sender);
            while let Some(mut batch) = receiver.recv().await {
                for entry in &mut batch {
                    if let Some(index) = &index {
                        entry.groups = Some(index.groups_of(&entry.dn));
                    }
                }
                if let Some(sink) = &sink
                    && sink.send(batch).await.is_err()
                {
                    return Err(DirectoryError::Cancelled);
                }
            }
        }
        if let (Some(context), Selection::ChangedSince { mark, .. }) =
            (&tombstones_under, &request.selection)
        {
            let deleted = tombstones::deleted_since(
                &connection.ldap,
                context,
                &self.config.change_attribute,
                mark,
                &spec,
            )
            .await?;
            stats.searches += 1;
            stats.deletions = Deletions::Listed(deleted);
        }
        stats.entries = searched.entries;
        stats.searches += 1 + searched.range_searches;
        stats.invalid_utf8_values = searched.notes.invalid_utf8_values;
        stats.references = searched.references;
        stats.partition_references = searched.partition_references;
        match (&request.selection, refresh) {
            (_, Some(refresh)) => {
                stats.tracking = Some("syncrepl");
                stats.next_mark = refresh.cookie.map(|cookie| NextMark::Cookie {
                    cookie,
                    value: value_mark,
                });
                stats.deletions = match refresh.gone {
                    syncrepl::Gone::Listed(ids) => Deletions::Listed(ids),
                    syncrepl::Gone::AllBut(ids) => Deletions::AllBut(ids),
                };
            }
            (Selection::All, None) => stats.deletions = Deletions::AllBut(Vec::new()),
            _ => {}
        }
        Ok(stats)
    }
}
