//! Why a sync stopped.

use crate::ldap::DirectoryError;
use crate::plugin::CallError;
use crate::store::StoreError;

/// Why a sync stopped.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The directory failed; nothing was written.
    #[error("tenant {tenant}: {cause}")]
    Directory {
        /// The tenant.
        tenant: u64,
        /// The directory's error.
        cause: DirectoryError,
    },
    /// The plugin failed a whole call (trap, timeout, limits, refused context).
    #[error("tenant {tenant}: plugin {plugin}{batch}: {cause}")]
    Plugin {
        /// The tenant.
        tenant: u64,
        /// The plugin's label.
        plugin: String,
        /// Which entries the failed call was mapping (` mapping entry `dn``, ` mapping
        /// 500 entries from `dn` to `dn``), or empty for a call about no entries.
        batch: String,
        /// The call's error.
        cause: Box<CallError>,
    },
    /// The store failed.
    #[error("tenant {tenant}: {cause}")]
    Store {
        /// The tenant.
        tenant: u64,
        /// The store's error.
        cause: StoreError,
    },
    /// The store failed while the changes were written: the first `written` of
    /// `planned` changes are in the store, each user's change whole, the rest are not.
    #[error(
        "tenant {tenant}: {cause}, after {written} of {planned} changes were written (each user's change whole); once the cause is fixed, the next sync writes the rest"
    )]
    Applying {
        /// The tenant.
        tenant: u64,
        /// Changes written before the failure.
        written: u64,
        /// Changes the sync had planned.
        planned: u64,
        /// The store's error.
        cause: StoreError,
    },
    /// The changes would take the tenant's users past its quota of attribute bytes;
    /// nothing was written.
    #[error(
        "tenant {tenant}: the sync would store {growth} more bytes of ABAC attributes beside the {used} stored, more than the tenant's quota of {limit} (quotas.tenant_attribute_bytes); nothing was written"
    )]
    OverQuota {
        /// The tenant.
        tenant: u64,
        /// Attribute bytes stored before the sync.
        used: u64,
        /// Bytes the sync would add.
        growth: u64,
        /// The quota.
        limit: u64,
    },
    /// The sync's plan could not be kept or read back (its folder is full or not
    /// writable).
    #[error("tenant {tenant}: {cause}; {}", match written {
        None => "nothing was written".to_owned(),
        Some((written, planned)) => format!(
            "{written} of {planned} changes were written (each user's change whole); the next sync writes the rest"
        ),
    })]
    Records {
        /// The tenant.
        tenant: u64,
        /// Why.
        cause: crate::sync::records::RecordError,
        /// Changes written and planned, when it failed while writing.
        written: Option<(u64, u64)>,
    },
    /// Cancelled before anything was written.
    #[error("tenant {tenant}: the sync was cancelled")]
    Cancelled {
        /// The tenant.
        tenant: u64,
    },
    /// A blocking task panicked (a bug, reported rather than crashing the host).
    #[error("tenant {tenant}: internal error: {reason}")]
    Internal {
        /// The tenant.
        tenant: u64,
        /// What happened.
        reason: String,
    },
}

impl SyncError {
    /// Whether the directory could not be reached at all.
    pub fn is_directory_unreachable(&self) -> bool {
        matches!(self, SyncError::Directory { cause, .. } if cause.is_unreachable())
    }
}
