//! Permissions and the account they belong to, as the API checks them.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::plugin::model::TenantId;

/// What an account may do. Names are Rocket.Chat's where Rocket.Chat has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Permission {
    /// Trigger full syncs (`ldap.syncNow`).
    #[serde(rename = "sync-auth-services-users")]
    SyncAuthServicesUsers,
    /// Manage ABAC (with the next one: `abac/users/sync`).
    #[serde(rename = "abac-management")]
    AbacManagement,
    /// Manage ABAC attributes of admin rooms (Rocket.Chat 8.5+ adds it to `abac/users/sync`).
    #[serde(rename = "manage-abac-admin-room-attributes")]
    ManageAbacAdminRoomAttributes,
    /// grommunio's domain admin right: downsync, tasks.
    #[serde(rename = "domain-admin")]
    DomainAdmin,
    /// Read the admin API: tenants, plugins, users, audit events, tasks, runs.
    #[serde(rename = "view-admin")]
    ViewAdmin,
    /// Change tenants, plugins, schedules; run dry runs.
    #[serde(rename = "manage-tenants")]
    ManageTenants,
    /// Create and delete admin accounts (system-wide accounts only).
    #[serde(rename = "manage-accounts")]
    ManageAccounts,
}

impl Permission {
    /// Every permission.
    pub const ALL: [Permission; 7] = [
        Permission::SyncAuthServicesUsers,
        Permission::AbacManagement,
        Permission::ManageAbacAdminRoomAttributes,
        Permission::DomainAdmin,
        Permission::ViewAdmin,
        Permission::ManageTenants,
        Permission::ManageAccounts,
    ];

    /// The permission's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::SyncAuthServicesUsers => "sync-auth-services-users",
            Permission::AbacManagement => "abac-management",
            Permission::ManageAbacAdminRoomAttributes => "manage-abac-admin-room-attributes",
            Permission::DomainAdmin => "domain-admin",
            Permission::ViewAdmin => "view-admin",
            Permission::ManageTenants => "manage-tenants",
            Permission::ManageAccounts => "manage-accounts",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is no permission.
#[derive(Debug, thiserror::Error)]
#[error("unknown permission `{0}`")]
pub struct UnknownPermission(pub String);

impl FromStr for Permission {
    type Err = UnknownPermission;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Permission::ALL
            .into_iter()
            .find(|p| p.as_str() == name)
            .ok_or_else(|| UnknownPermission(name.to_owned()))
    }
}

/// Roles: named sets of permissions, expanded when an account is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Everything (system-wide, or within its tenant).
    Admin,
    /// Syncs and ABAC management, no tenant or account management.
    SyncOperator,
    /// Read-only access to the admin API.
    Auditor,
}

impl Role {
    /// The role's permissions.
    pub fn permissions(self) -> BTreeSet<Permission> {
        match self {
            Role::Admin => Permission::ALL.into_iter().collect(),
            Role::SyncOperator => [
                Permission::SyncAuthServicesUsers,
                Permission::AbacManagement,
                Permission::ManageAbacAdminRoomAttributes,
                Permission::DomainAdmin,
                Permission::ViewAdmin,
            ]
            .into_iter()
            .collect(),
            Role::Auditor => [Permission::ViewAdmin].into_iter().collect(),
        }
    }
}

/// Who is calling, once authenticated: what the API checks permissions against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The account's store id.
    pub account: i64,
    /// The id clients see.
    pub public_id: String,
    /// The account's username.
    pub username: String,
    /// `None`: every tenant; otherwise the only tenant it may see.
    pub tenant: Option<TenantId>,
    /// What it may do (within its tenants).
    pub permissions: BTreeSet<Permission>,
    /// Whether TOTP is enabled for the account.
    pub totp_enabled: bool,
}

impl Principal {
    /// Whether it has `permission` (for the tenants it may see).
    pub fn has(&self, permission: Permission) -> bool {
        self.permissions.contains(&permission)
    }

    /// Whether it may see `tenant` at all.
    pub fn may_see(&self, tenant: TenantId) -> bool {
        self.tenant.is_none_or(|own| own == tenant)
    }

    /// Whether it has `permission` for `tenant`.
    pub fn has_for(&self, permission: Permission, tenant: TenantId) -> bool {
        self.may_see(tenant) && self.has(permission)
    }

    /// Whether it is system-wide (not tied to one tenant).
    pub fn is_system_wide(&self) -> bool {
        self.tenant.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for permission in Permission::ALL {
            assert_eq!(
                permission.as_str().parse::<Permission>().ok(),
                Some(permission)
            );
        }
        assert!("admin".parse::<Permission>().is_err());
    }

    #[test]
    fn a_tenant_admin_sees_only_its_tenant() {
        let principal = Principal {
            account: 1,
            public_id: "x".into(),
            username: "ops".into(),
            tenant: Some(7),
            permissions: Role::Admin.permissions(),
            totp_enabled: false,
        };
        assert!(principal.has_for(Permission::DomainAdmin, 7));
        assert!(!principal.has_for(Permission::DomainAdmin, 8));
        assert!(!principal.is_system_wide());
    }
}
