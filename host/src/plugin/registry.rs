//! Which plugin, with which settings, each tenant uses. A component loaded for several
//! tenants is compiled and held once.

use super::engine::{Plugin, PluginEngine};
use super::error::{CallError, LoadError};
use super::inspect::hex;
use super::model::{MappingContext, SyncMode, TenantId};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};

/// A tenant's plugin and its settings.
#[derive(Debug)]
pub struct TenantPlugin {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The loaded plugin (shared with other tenants using the same component).
    pub plugin: Arc<Plugin>,
    /// The tenant's settings for it.
    pub settings: Vec<(String, String)>,
}

impl TenantPlugin {
    /// The context for a call in `mode`.
    pub fn context(&self, mode: SyncMode) -> MappingContext {
        MappingContext {
            tenant_id: self.tenant_id,
            mode,
            settings: self.settings.clone(),
        }
    }
}

/// A plugin could not be assigned to a tenant.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The component was refused.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The plugin refused the tenant's settings, or failed when asked about them.
    #[error("tenant {tenant}: the plugin does not accept these settings: {cause}")]
    Settings {
        /// The tenant.
        tenant: TenantId,
        /// The plugin's answer.
        cause: Box<CallError>,
    },
}

/// The tenants' plugins.
pub struct PluginRegistry {
    engine: PluginEngine,
    tenants: RwLock<HashMap<TenantId, Arc<TenantPlugin>>>,
    loaded: Mutex<HashMap<String, Weak<Plugin>>>,
    /// One lock per component being loaded, so that tenants asking for the same new
    /// component at once compile it once: the others wait for it, not for each other.
    loading: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl PluginRegistry {
    /// An empty registry on `engine`.
    pub fn new(engine: PluginEngine) -> Self {
        Self {
            engine,
            tenants: RwLock::default(),
            loaded: Mutex::default(),
            loading: Mutex::default(),
        }
    }

    /// The engine plugins run on.
    pub fn engine(&self) -> &PluginEngine {
        &self.engine
    }

    /// Load `bytes`, or return the plugin already loaded from the same bytes. Blocking:
    /// it may compile the component (seconds for a language runtime), so async callers
    /// run it on a blocking thread; other components load and run meanwhile.
    pub fn load_shared(&self, label: &str, bytes: &[u8]) -> Result<Arc<Plugin>, LoadError> {
        let sha256 = hex(&Sha256::digest(bytes));
        if let Some(plugin) = self.lock_loaded().get(&sha256).and_then(Weak::upgrade) {
            return Ok(plugin);
        }
        let gate = self
            .loading
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(sha256.clone())
            .or_default()
            .clone();
        let result = {
            let _only_loader = gate.lock().unwrap_or_else(PoisonError::into_inner);
            // Whoever held the gate before may have loaded it. (Bound first: a guard
            // in the `match` scrutinee would live through the arms and deadlock.)
            let already = self.lock_loaded().get(&sha256).and_then(Weak::upgrade);
            match already {
                Some(plugin) => Ok(plugin),
                None => self.engine.load(label, bytes).map(|plugin| {
                    let plugin = Arc::new(plugin);
                    let mut loaded = self.lock_loaded();
                    loaded.retain(|_, plugin| plugin.strong_count() > 0);
                    loaded.insert(sha256.clone(), Arc::downgrade(&plugin));
                    plugin
                }),
            }
        };
        drop(gate);
        self.loading
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, gate| Arc::strong_count(gate) > 1);
        result
    }

    /// Give `tenant` the plugin in `bytes` with `settings`, after the plugin accepted
    /// them (its `required-attributes` succeeds for them).
    pub fn assign(
        &self,
        tenant: TenantId,
        label: &str,
        bytes: &[u8],
        settings: Vec<(String, String)>,
    ) -> Result<Arc<TenantPlugin>, RegistryError> {
        let plugin = self.load_shared(label, bytes)?;
        let assigned = Arc::new(TenantPlugin {
            tenant_id: tenant,
            plugin,
            settings,
        });
        assigned
            .plugin
            .required_attributes(&assigned.context(SyncMode::Full))
            .map_err(|source| RegistryError::Settings {
                tenant,
                cause: Box::new(source),
            })?;
        self.tenants
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(tenant, assigned.clone());
        Ok(assigned)
    }

    /// The tenant's plugin, if it has one.
    pub fn get(&self, tenant: TenantId) -> Option<Arc<TenantPlugin>> {
        self.tenants
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&tenant)
            .cloned()
    }

    /// Take the tenant's plugin away.
    pub fn remove(&self, tenant: TenantId) -> Option<Arc<TenantPlugin>> {
        self.tenants
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&tenant)
    }

    fn lock_loaded(&self) -> std::sync::MutexGuard<'_, HashMap<String, Weak<Plugin>>> {
        self.loaded.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
