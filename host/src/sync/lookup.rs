//! A few directory entries read and mapped by the tenant's plugin, with nothing
//! compared or written: what a directory search (grommunio's `ldap/search`), a dump of
//! one entry (`ldap/dump`) and the first step of an import (`ldap/importUser`) need.
//!
//! The same read and the same plugin call as a sync, so a search shows each entry as a
//! sync would see it: its directory id, username, name and email are the plugin's.

use tokio::sync::mpsc;

use super::SyncError;
use crate::config::TenantConfig;
use crate::ldap::{DirectorySource, ReadRequest, Selection};
use crate::plugin::TenantPlugin;
use crate::plugin::model::{Decision, Entry, MappedUser, MappingError, SyncMode};

/// One entry found, with the plugin's decision for it.
#[derive(Debug, Clone)]
pub struct Found {
    /// The entry as read.
    pub entry: Entry,
    /// The plugin's decision, or why it could not decide.
    pub decision: Result<Decision, MappingError>,
}

impl Found {
    /// The user the plugin maps the entry to, when it maps it to one.
    pub fn user(&self) -> Option<&MappedUser> {
        match &self.decision {
            Ok(Decision::Upsert(user)) => Some(user),
            _ => None,
        }
    }
}

/// What a lookup reads besides what the plugin asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attributes {
    /// The plugin's attributes and the tenant's identifiers: enough to map.
    Mapped,
    /// Every user attribute of the entry too (`*`), as a dump shows it.
    All,
}

/// Reads at most `limit` entries of `selection` from `directory` and maps them with
/// `plugin`. A read cut short at `limit` is not an error: a search shows its first
/// matches.
///
/// # Errors
/// [`SyncError::Directory`] or [`SyncError::Plugin`] when the read or the plugin call
/// fails (not one entry's mapping error: that is the entry's decision).
pub async fn lookup<D: DirectorySource + Clone + 'static>(
    tenant: &TenantConfig,
    plugin: &TenantPlugin,
    directory: &D,
    selection: Selection,
    limit: usize,
    extra: Attributes,
) -> Result<Vec<Found>, SyncError> {
    let context = plugin.context(SyncMode::Targeted);
    let asked = plugin
        .plugin
        .required_attributes_async(&context)
        .await
        .map_err(|cause| plugin_error(tenant, plugin, cause))?;
    let mut attributes = super::engine::read_attributes(tenant, asked);
    if extra == Attributes::All {
        attributes.push("*".into());
    }
    let request = ReadRequest {
        selection,
        attributes,
        batch_size: limit.clamp(1, 500),
    };
    let (sender, mut receiver) = mpsc::channel::<Vec<Entry>>(2);
    let reader = directory.clone();
    let read = tokio::spawn(async move { reader.read(request, sender).await });
    let mut entries = Vec::new();
    while let Some(batch) = receiver.recv().await {
        entries.extend(batch);
        if entries.len() >= limit {
            break;
        }
    }
    let cut_short = entries.len() >= limit;
    // Dropping the receiver ends a read cut short: the reader sees a closed sink.
    drop(receiver);
    entries.truncate(limit);
    match read.await {
        Ok(Ok(_)) => {}
        Ok(Err(_)) if cut_short => {}
        Ok(Err(cause)) => {
            return Err(SyncError::Directory {
                tenant: tenant.id,
                cause,
            });
        }
        Err(join) => {
            return Err(SyncError::Internal {
                tenant: tenant.id,
                reason: format!("the read stopped: {join}"),
            });
        }
    }
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let batch = plugin
        .plugin
        .map_entries_raw_async(&context, entries.clone())
        .await
        .map_err(|cause| plugin_error(tenant, plugin, cause))?
        .decode();
    Ok(entries
        .into_iter()
        .zip(batch.outcomes)
        .map(|(entry, decision)| Found { entry, decision })
        .collect())
}

fn plugin_error(
    tenant: &TenantConfig,
    plugin: &TenantPlugin,
    cause: crate::plugin::CallError,
) -> SyncError {
    SyncError::Plugin {
        tenant: tenant.id,
        plugin: plugin.plugin.label().to_owned(),
        batch: String::new(),
        cause: Box::new(cause),
    }
}

/// `entry` as LDIF text (RFC 2849): text values plain or base64 when they must be,
/// binary values base64.
pub fn ldif(entry: &Entry) -> String {
    use base64::Engine as _;
    let mut out = String::new();
    let mut line = |name: &str, value: &[u8]| {
        let safe = std::str::from_utf8(value).ok().filter(|text| {
            !text.starts_with([' ', ':', '<'])
                && !text.ends_with(' ')
                && !text.chars().any(|c| c == '\n' || c == '\r' || c == '\0')
                && text.is_ascii()
        });
        match safe {
            Some(text) => out.push_str(&format!("{name}: {text}\n")),
            None => out.push_str(&format!(
                "{name}:: {}\n",
                base64::engine::general_purpose::STANDARD.encode(value)
            )),
        }
    };
    line("dn", entry.dn.as_bytes());
    for (name, values) in &entry.attributes {
        for value in values {
            line(name, value.as_bytes());
        }
    }
    for (name, values) in &entry.binary_attributes {
        for value in values {
            line(name, value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldif_writes_text_plain_and_the_rest_in_base64() {
        let mut entry = Entry::new("uid=jürgen,ou=people,dc=example,dc=org");
        entry.attributes.push(("cn".into(), vec!["Ann Lee".into()]));
        entry
            .attributes
            .push(("description".into(), vec![" leading space".into()]));
        entry
            .binary_attributes
            .push(("objectGUID".into(), vec![vec![0, 1, 2, 255]]));
        assert_eq!(
            ldif(&entry),
            "dn:: dWlkPWrDvHJnZW4sb3U9cGVvcGxlLGRjPWV4YW1wbGUsZGM9b3Jn\n\
             cn: Ann Lee\n\
             description:: IGxlYWRpbmcgc3BhY2U=\n\
             objectGUID:: AAEC/w==\n"
        );
    }
}
