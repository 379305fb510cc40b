//! A read of a tenant's directory: the next mark taken before the search, the groups,
//! the user search (paged, or a content synchronization refresh), the members of
//! changed groups read again, Active Directory's tombstones and DirSync changes.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::*;
use crate::config::{GroupMode, SearchScope};
use crate::plugin::model::Entry;

impl LdapDirectory {
    /// A search of the tenant's groups (under the groups' base, else the users').
    fn group_spec(&self, filter: String, attributes: Vec<String>) -> SearchSpec {
        let base = self
            .config
            .groups
            .base_dn
            .as_deref()
            .unwrap_or(&self.config.base_dn);
        self.spec(base, filter, attributes, SearchScope::Sub)
    }

    /// The DNs of the groups whose change attribute is at or after `since`.
    async fn changed_groups(
        &self,
        connection: &Connection,
        since: &str,
    ) -> Result<Vec<String>, DirectoryError> {
        let groups = &self.config.groups;
        let spec = self.group_spec(
            filter::all(vec![
                filter::normalize(&groups.filter),
                format!(
                    "({}>={})",
                    self.config.change_attribute,
                    filter::escape(since)
                ),
            ]),
            vec!["1.1".into()],
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
        let spec = self.group_spec(
            filter::normalize(&groups.filter),
            vec![groups.member_attribute.clone()],
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
                    // A deleted group matters when it was among the tenant's groups
                    // (under the groups' base, where changed groups are looked for
                    // too), or where it was is not known (no lastKnownParent, or a
                    // container deleted with it).
                    if let Some(parent) = changes.deleted_under.iter().find(|parent| {
                        let parent = normalize_dn(parent);
                        parent.is_empty()
                            || parent.contains("\\0adel:")
                            || parent.contains("cn=deleted objects")
                            || parent == groups_base
                            || parent.ends_with(&format!(",{groups_base}"))
                    }) {
                        let place = if parent.is_empty() {
                            "somewhere not told".to_owned()
                        } else {
                            format!("under `{parent}`")
                        };
                        return Err(DirectoryError::StaleMark {
                            reason: format!(
                                "a group {place} was deleted, and a deleted group keeps no members: who was in it takes a full read"
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
            stats.searches += 1;
            let mut changed = self.changed_groups(connection, &since).await?;
            let removed = match dirsync_changes {
                // DirSync tells of member values only: a group renamed or moved is
                // found by its change attribute above.
                Some(changes) => {
                    changed.extend(changes.groups);
                    changes.removed
                }
                None => Vec::new(),
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
                // Only entries this tenant reads: a group may hold members from
                // elsewhere, and DirSync speaks of every group of the domain.
                let base = normalize_dn(&self.config.base_dn);
                affected.retain(|dn| groups::is_within(dn, &base, self.config.scope));
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
                &self.config.unique_identifiers,
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
