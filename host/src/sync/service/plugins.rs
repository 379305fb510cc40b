//! A tenant's plugin: loaded from the store's assignment or the configured file,
//! assigned with validation, suspended and resumed by its health.

use super::*;

/// Why a tenant's plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PluginLoadError {
    /// The component file cannot be read.
    #[error("tenant {tenant}: cannot read plugin {path}: {cause}")]
    Read {
        /// The tenant.
        tenant: TenantId,
        /// The file.
        path: String,
        /// Why.
        cause: std::io::Error,
    },
    /// The component or its settings were refused.
    #[error(transparent)]
    Refused(#[from] RegistryError),
    /// The tenant has no plugin: none configured, none assigned.
    #[error("tenant {0} has no plugin: set plugin.path or assign one through the API")]
    Missing(TenantId),
    /// An assigned plugin is not in the store.
    #[error("tenant {tenant}: assigned plugin {plugin} is not in the store")]
    NotStored {
        /// The tenant.
        tenant: TenantId,
        /// The plugin.
        plugin: PluginId,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Loads `tenant`'s plugin from its configured file and assigns it (compiled once per
/// distinct component).
///
/// # Errors
/// [`PluginLoadError`] when the file cannot be read or the plugin is refused.
pub fn load_tenant_plugin(
    registry: &PluginRegistry,
    tenant: &TenantConfig,
) -> Result<Arc<TenantPlugin>, PluginLoadError> {
    let Some(path) = &tenant.plugin.path else {
        return Err(PluginLoadError::Missing(tenant.id));
    };
    let bytes = std::fs::read(path).map_err(|cause| PluginLoadError::Read {
        tenant: tenant.id,
        path: path.display().to_string(),
        cause,
    })?;
    let label = path.file_name().map_or_else(
        || path.display().to_string(),
        |name| name.to_string_lossy().into_owned(),
    );
    let settings = tenant
        .plugin
        .settings
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(registry.assign(tenant.id, &label, &bytes, settings)?)
}

impl SyncService {
    /// The tenant's plugin, loaded on first use: its newest assignment through the
    /// API, else the configured file. Blocking (it may compile the component).
    ///
    /// # Errors
    /// [`PluginLoadError`] when it cannot be loaded.
    pub fn plugin(&self, tenant: &TenantConfig) -> Result<Arc<TenantPlugin>, PluginLoadError> {
        if let Some(plugin) = self.registry.get(tenant.id) {
            return Ok(plugin);
        }
        match self.catalog.assignments(tenant.id)?.into_iter().next() {
            Some(assignment) => self.load_assignment(&assignment),
            None => load_tenant_plugin(&self.registry, tenant),
        }
    }

    fn load_assignment(
        &self,
        assignment: &Assignment,
    ) -> Result<Arc<TenantPlugin>, PluginLoadError> {
        let missing = || PluginLoadError::NotStored {
            tenant: assignment.tenant,
            plugin: assignment.plugin,
        };
        let stored = self
            .catalog
            .plugin(assignment.plugin)?
            .ok_or_else(missing)?;
        let bytes = self
            .catalog
            .plugin_component(assignment.plugin)?
            .ok_or_else(missing)?;
        let settings = assignment
            .settings
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(self
            .registry
            .assign(assignment.tenant, &stored.label, &bytes, settings)?)
    }

    /// Gives `tenant` the stored plugin `plugin` with `settings`, after the plugin
    /// accepted them; the assignment becomes the newest version in the tenant's
    /// history. Blocking (it may compile the component).
    ///
    /// # Errors
    /// [`PluginLoadError`] when the plugin is not stored or refuses the settings.
    pub fn assign_plugin(
        &self,
        tenant: TenantId,
        plugin: PluginId,
        settings: &std::collections::BTreeMap<String, String>,
        by: Option<AccountId>,
        reason: &str,
    ) -> Result<Assignment, PluginLoadError> {
        let probe = Assignment {
            id: 0,
            tenant,
            plugin,
            settings: settings.clone(),
            assigned_by: by,
            assigned_at: self.now(),
            reason: reason.to_owned(),
        };
        // Compiles and checks the settings; on success the registry holds it already.
        self.load_assignment(&probe)?;
        self.health.resume(tenant);
        Ok(self
            .catalog
            .assign_plugin(tenant, plugin, settings, by, reason, self.now())?)
    }

    /// The health of `tenant`'s plugin.
    pub fn plugin_status(&self, tenant: TenantId) -> crate::sync::health::PluginStatus {
        self.health.status(tenant)
    }

    /// Lifts a suspension of `tenant`'s plugin.
    pub fn resume_plugin(&self, tenant: TenantId) {
        self.health.resume(tenant);
    }
}
