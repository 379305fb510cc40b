//! One wasmtime engine for every tenant: compiled with the sandbox's limits, a pooling
//! allocator with copy-on-write memory images, an epoch clock for deadlines, the
//! linker that offers plugins the contract's imports and a bare WASI whose sleeps end
//! at the deadline, and the threads calls run on, shared fairly between tenants.
//!
//! Every call runs on the [`Executor`]'s threads, never on the caller's: the `async`
//! methods await it without holding a thread; the others block until it is done.

use super::cache::CompileCache;
use super::error::{CallError, CallErrorKind, LoadError};
use super::executor::{Executor, ExecutorLoad, Lane, Saturated};
use super::inspect::{ComponentReport, inspect};
use super::limits::{CallLimits, MemoryLimitExceeded, SandboxConfig};
use super::model::Entry;
use super::model::{GuestLog, MappingContext, MappingError};
use super::state::{LogBudgetExceeded, StoreState};
use super::{v0_1_0, v0_2_0, v0_3_0};
mod batch;
mod contracts;

pub use batch::{BatchOutput, RawBatch, RawDecision};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};

/// The engine could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Wasmtime refused the configuration.
    #[error("configuring the WebAssembly engine: {0}")]
    Config(String),
    /// The compiled-code cache folder could not be used.
    #[error("compiled-code cache folder `{path}`: {cause}")]
    Cache {
        /// The folder.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
}

/// The plugin runtime: one per process, shared by all tenants.
#[derive(Clone)]
pub struct PluginEngine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    engine: Engine,
    linker: Linker<StoreState>,
    config: SandboxConfig,
    cache: Option<CompileCache>,
    executor: Executor,
    _ticker: EpochTicker,
}

/// Stack of each plugin call thread: the wasm stack (`max_stack`) runs on it, with
/// the host's frames around it.
const CALL_THREAD_STACK: usize = 8 << 20;

impl PluginEngine {
    /// An engine with `config`'s limits, caching compiled code in `cache_dir` if given.
    pub fn new(config: SandboxConfig, cache_dir: Option<PathBuf>) -> Result<Self, EngineError> {
        let engine = Engine::new(&engine_config(&config))
            .map_err(|err| EngineError::Config(format!("{err:#}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .and_then(|()| super::state::link_bounded_sleeps(&mut linker))
            .map_err(|err| EngineError::Config(format!("{err:#}")))?;
        v0_1_0::add_to_linker(&mut linker)
            .and_then(|()| v0_2_0::add_to_linker(&mut linker))
            .and_then(|()| v0_3_0::add_to_linker(&mut linker))
            .map_err(|err| EngineError::Config(format!("{err:#}")))?;
        let cache = cache_dir
            .map(|dir| {
                CompileCache::open(&dir, &engine)
                    .map_err(|cause| EngineError::Cache { path: dir, cause })
            })
            .transpose()?;
        let ticker = EpochTicker::start(engine.clone(), config.epoch_tick);
        Ok(Self {
            inner: Arc::new(EngineInner {
                executor: Executor::new(
                    usize::try_from(config.max_instances).unwrap_or(usize::MAX),
                    usize::try_from(config.tenant_instances).unwrap_or(usize::MAX),
                    usize::try_from(config.tenant_queue).unwrap_or(usize::MAX),
                    CALL_THREAD_STACK.max(config.max_stack.saturating_mul(4)),
                ),
                engine,
                linker,
                config,
                cache,
                _ticker: ticker,
            }),
        })
    }

    /// The sandbox's limits.
    pub fn config(&self) -> &SandboxConfig {
        &self.inner.config
    }

    /// Plugin calls running and waiting now.
    pub fn load_now(&self) -> ExecutorLoad {
        self.inner.executor.load()
    }

    /// Load a component: check it, compile it (or take it from the cache), and ask it
    /// for its name and version.
    pub fn load(&self, label: &str, bytes: &[u8]) -> Result<Plugin, LoadError> {
        let started = Instant::now();
        let report = inspect(label, bytes, &self.inner.config)?;
        let (component, from_cache) = self.compile(label, bytes, &report.sha256)?;
        let pre = self.pre(label, &component, &report.contract_version)?;
        let mut plugin = Plugin {
            core: Arc::new(Core {
                label: label.to_owned(),
                language: report.language.clone(),
                pre,
                engine: self.inner.clone(),
            }),
            info: super::model::PluginInfo {
                name: String::new(),
                version: String::new(),
            },
            report,
            limits: CallLimits::from(&self.inner.config),
            load: LoadStats {
                duration: Duration::ZERO,
                from_cache,
                probe: CallStats::default(),
            },
            declared: Mutex::new(Vec::new()),
        };
        let (info, probe) = plugin.info_call().map_err(|source| LoadError::Probe {
            plugin: label.to_owned(),
            cause: Box::new(source),
        })?;
        plugin.info = info;
        plugin.load.probe = probe;
        plugin.load.duration = started.elapsed();
        Ok(plugin)
    }

    fn compile(
        &self,
        label: &str,
        bytes: &[u8],
        sha256: &str,
    ) -> Result<(Component, bool), LoadError> {
        let inner = &self.inner;
        if let Some(component) = inner
            .cache
            .as_ref()
            .and_then(|cache| cache.load(&inner.engine, sha256))
        {
            return Ok((component, true));
        }
        let component = Component::new(&inner.engine, bytes).map_err(|err| LoadError::Invalid {
            plugin: label.to_owned(),
            reason: format!("{err:#}"),
        })?;
        if let Some(cache) = &inner.cache
            && let Err(err) = cache.store(sha256, &component)
        {
            tracing::warn!(plugin = label, error = %err, dir = %cache.dir().display(), "could not cache compiled plugin");
        }
        Ok((component, false))
    }

    fn pre(
        &self,
        label: &str,
        component: &Component,
        contract_version: &str,
    ) -> Result<Contract, LoadError> {
        let link = |err: wasmtime::Error| LoadError::Link {
            plugin: label.to_owned(),
            reason: format!("{err:#}"),
        };
        let pre = self.inner.linker.instantiate_pre(component).map_err(link)?;
        // `inspect` accepted only the versions in `SUPPORTED_VERSIONS`.
        if contract_version == "0.1.0" {
            v0_1_0::MappingPluginPre::new(pre)
                .map(Contract::V0_1)
                .map_err(link)
        } else if contract_version == "0.2.0" {
            v0_2_0::MappingPluginPre::new(pre)
                .map(Contract::V0_2)
                .map_err(link)
        } else {
            v0_3_0::MappingPluginPre::new(pre)
                .map(Contract::V0_3)
                .map_err(link)
        }
    }
}

/// Bytes of each pooled linear memory that are zeroed with `memset` when an instance
/// ends, instead of being handed back to the kernel: the next instance in the slot
/// then takes no page faults there. A batch call of a Rust plugin touches a few MiB;
/// 8 MiB made batch calls 13% faster for Rust plugins and about 5% for Python and
/// JavaScript (`cargo bench --bench plugin_runtime`), at the cost of up to 8 MiB
/// resident per slot in use.
const LINEAR_MEMORY_KEEP_RESIDENT: usize = 8 << 20;

/// See `max_unused_warm_slots` below.
const MAX_UNUSED_WARM_SLOTS: u32 = 4;

fn engine_config(sandbox: &SandboxConfig) -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .consume_fuel(sandbox.fuel.is_some())
        .max_wasm_stack(sandbox.max_stack)
        .memory_init_cow(true)
        // A trap's backtrace is walked outside the deadline's reach: a few frames
        // help a plugin author; thousands (a stack overflow) only cost time.
        .wasm_backtrace_max_frames(std::num::NonZeroUsize::new(32))
        .parallel_compilation(true)
        .cranelift_opt_level(wasmtime::OptLevel::Speed);
    // `perf` then names the plugins' functions (in /tmp/perf-PID.map): for profiling
    // a plugin, or the cost of the boundary, in place.
    if std::env::var_os("ABACSYNC_PLUGIN_PERFMAP").is_some_and(|value| value == "1") {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    let mut pool = PoolingAllocationConfig::default();
    let instances = sandbox.max_instances;
    pool.total_component_instances(instances)
        // Language runtimes (CPython, SpiderMonkey) link many core modules per
        // component; Rust plugins use one or two.
        .total_core_instances(instances * 32)
        .total_memories(instances * 4)
        .total_tables(instances * 32)
        .max_memories_per_component(4)
        .max_tables_per_component(32)
        .max_memory_size(sandbox.memory_limit)
        .table_elements(100_000)
        .max_core_instance_size(4 << 20)
        .max_component_instance_size(4 << 20)
        .linear_memory_keep_resident(LINEAR_MEMORY_KEEP_RESIDENT)
        // Slots idle with a memory kept resident: at most this many beyond those in
        // use (wasmtime's default, 100, would let 800 MiB stay resident over time).
        .max_unused_warm_slots(MAX_UNUSED_WARM_SLOTS);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// How long loading took and whether the compiled code came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadStats {
    /// Inspect, compile or deserialize, link, and the first call.
    pub duration: Duration,
    /// Whether compilation was skipped thanks to the disk cache.
    pub from_cache: bool,
    /// The first call (`info`) in a fresh instance: its instantiation time and the
    /// memory the guest needs before it maps anything (a language runtime's heap).
    pub probe: CallStats,
}

/// What one call cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallStats {
    /// Wall-clock time of the whole call, instantiation included.
    pub duration: Duration,
    /// Time to instantiate.
    pub instantiate: Duration,
    /// Peak linear memory in bytes.
    pub peak_memory: usize,
    /// Bytes logged through the host's `log`.
    pub log_bytes: usize,
    /// Bytes written to stdout/stderr.
    pub console_bytes: usize,
    /// Fuel used, when metering is on.
    pub fuel_used: Option<u64>,
}

/// A component linked against the contract version it exports, ready to instantiate.
#[derive(Clone)]
enum Contract {
    V0_1(v0_1_0::MappingPluginPre<StoreState>),
    V0_2(v0_2_0::MappingPluginPre<StoreState>),
    V0_3(v0_3_0::MappingPluginPre<StoreState>),
}

/// One instance, by contract version.
enum Instance {
    V0_1(v0_1_0::MappingPlugin),
    V0_2(v0_2_0::MappingPlugin),
    V0_3(v0_3_0::MappingPlugin),
}

/// How many contexts' declared attribute names a plugin remembers (contracts 0.2.0 and
/// later).
const DECLARED_CONTEXTS: usize = 64;

/// A loaded, checked plugin, ready to be called from any thread.
pub struct Plugin {
    core: Arc<Core>,
    info: super::model::PluginInfo,
    report: ComponentReport,
    limits: CallLimits,
    load: LoadStats,
    /// The attribute names the plugin declared per context, most recent last: contracts
    /// 0.2.0 and later spell the entries' attribute names as declared.
    declared: Mutex<Vec<(MappingContext, Arc<[String]>)>>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("label", &self.core.label)
            .field("info", &self.info)
            .field("sha256", &self.report.sha256)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// The label the plugin was loaded under (file name or plugin id).
    pub fn label(&self) -> &str {
        &self.core.label
    }

    /// Its name and version, as it reported them.
    pub fn info(&self) -> &super::model::PluginInfo {
        &self.info
    }

    /// What the static checks found.
    pub fn report(&self) -> &ComponentReport {
        &self.report
    }

    /// How loading went.
    pub fn load_stats(&self) -> LoadStats {
        self.load
    }

    /// The limits its calls run under.
    pub fn limits(&self) -> CallLimits {
        self.limits
    }

    /// Tighten the limits for this plugin (a tenant's own); values above the
    /// engine's are capped at the engine's.
    pub fn set_limits(&mut self, limits: CallLimits) {
        let engine = CallLimits::from(&self.core.engine.config);
        self.limits = CallLimits {
            memory_limit: limits.memory_limit.min(engine.memory_limit),
            deadline: limits.deadline.min(engine.deadline),
            fuel: match (limits.fuel, engine.fuel) {
                (Some(mine), Some(max)) => Some(mine.min(max)),
                (_, fuel) => fuel,
            },
        };
    }

    /// The contract version the plugin implements (`0.1.0`, `0.2.0` or `0.3.0`).
    pub fn contract_version(&self) -> &str {
        &self.report.contract_version
    }

    fn info_call(&self) -> Result<(super::model::PluginInfo, CallStats), CallError> {
        let call = self.call(Lane::Loading, "info", |store, instance| match instance {
            Instance::V0_1(plugin) => plugin
                .abacsync_mapping_mapper()
                .call_info(store)
                .map(Into::into),
            Instance::V0_2(plugin) => plugin
                .abacsync_mapping_mapper()
                .call_info(store)
                .map(Into::into),
            Instance::V0_3(plugin) => plugin
                .abacsync_mapping_mapper()
                .call_info(store)
                .map(Into::into),
        });
        let (info, stats, _) = futures_executor::block_on(call)?;
        Ok((info, stats))
    }

    /// The LDAP attributes the plugin needs for `context`. Blocks until the call is
    /// done: from async code, use [`required_attributes_async`](Self::required_attributes_async).
    pub fn required_attributes(&self, context: &MappingContext) -> Result<Vec<String>, CallError> {
        futures_executor::block_on(self.required_attributes_async(context))
    }

    /// [`required_attributes`](Self::required_attributes), awaited without holding
    /// a thread.
    pub async fn required_attributes_async(
        &self,
        context: &MappingContext,
    ) -> Result<Vec<String>, CallError> {
        let guest_v1: v0_1_0::abacsync::mapping::types::MappingContext = context.into();
        let guest_v2: v0_2_0::abacsync::mapping::types::MappingContext = context.into();
        let guest_v3: v0_3_0::abacsync::mapping::types::MappingContext = context.into();
        let (result, _, _) = self
            .call(
                Lane::Tenant(context.tenant_id),
                "required-attributes",
                move |store, instance| match instance {
                    Instance::V0_1(plugin) => plugin
                        .abacsync_mapping_mapper()
                        .call_required_attributes(store, &guest_v1)
                        .map(|result| result.map_err(MappingError::from)),
                    Instance::V0_2(plugin) => plugin
                        .abacsync_mapping_mapper()
                        .call_required_attributes(store, &guest_v2)
                        .map(|result| result.map_err(MappingError::from)),
                    Instance::V0_3(plugin) => plugin
                        .abacsync_mapping_mapper()
                        .call_required_attributes(store, &guest_v3)
                        .map(|result| result.map_err(MappingError::from)),
                },
            )
            .await?;
        let names = result.map_err(|error| self.refused("required-attributes", error))?;
        if !matches!(self.core.pre, Contract::V0_1(_)) {
            self.remember_declared(context, &names);
        }
        Ok(names)
    }

    fn remember_declared(&self, context: &MappingContext, names: &[String]) {
        let mut declared = self.declared.lock().unwrap_or_else(PoisonError::into_inner);
        declared.retain(|(known, _)| known != context);
        if declared.len() >= DECLARED_CONTEXTS {
            declared.remove(0);
        }
        declared.push((context.clone(), names.into()));
    }

    /// The names the plugin declares for `context`, asking it when not yet known.
    async fn declared(&self, context: &MappingContext) -> Result<Arc<[String]>, CallError> {
        let known = self
            .declared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .rev()
            .find(|(known, _)| known == context)
            .map(|(_, names)| names.clone());
        match known {
            Some(names) => Ok(names),
            None => self
                .required_attributes_async(context)
                .await
                .map(Into::into),
        }
    }

    /// Map a batch of entries in one call of a fresh instance. Blocks until the call
    /// is done.
    pub fn map_entries(
        &self,
        context: &MappingContext,
        entries: Vec<Entry>,
    ) -> Result<BatchOutput, CallError> {
        self.map_entries_raw(context, entries).map(RawBatch::decode)
    }

    /// [`map_entries`](Self::map_entries), the decisions left as the plugin wrote
    /// them: a caller can read the ids a decision names, or fingerprint it, without
    /// decoding all of it. Blocks until the call is done.
    pub fn map_entries_raw(
        &self,
        context: &MappingContext,
        entries: Vec<Entry>,
    ) -> Result<RawBatch, CallError> {
        futures_executor::block_on(self.map_entries_raw_async(context, entries))
    }

    /// [`map_entries_raw`](Self::map_entries_raw), awaited without holding a thread.
    pub async fn map_entries_raw_async(
        &self,
        context: &MappingContext,
        entries: Vec<Entry>,
    ) -> Result<RawBatch, CallError> {
        let expected = entries.len();
        let (function, batch) = match &self.core.pre {
            Contract::V0_1(_) => self.map_entries_v0_1(context, entries).await?,
            Contract::V0_2(_) => self.map_batch_v0_2(context, &entries).await?,
            Contract::V0_3(_) => self.map_batch_v0_3(context, entries).await?,
        };
        let got = batch.form.len();
        if got != expected {
            return Err(self.error(
                function,
                CallErrorKind::ResultCount { expected, got },
                String::new(),
            ));
        }
        for log in &batch.logs {
            emit_log(&self.core.label, context.tenant_id, log);
        }
        Ok(batch)
    }

    /// The plugin's own error for the whole call (its outer `mapping-error`).
    fn refused(&self, function: &'static str, error: MappingError) -> CallError {
        self.error(function, CallErrorKind::Refused(error), String::new())
    }

    fn error(&self, function: &'static str, kind: CallErrorKind, console: String) -> CallError {
        self.core.error(function, kind, console)
    }

    /// Runs `f` against a fresh instance under the plugin's limits, on a thread of the
    /// executor in `lane`'s turn; awaits the outcome.
    async fn call<R: Send + 'static>(
        &self,
        lane: Lane,
        function: &'static str,
        f: impl FnOnce(&mut Store<StoreState>, &Instance) -> wasmtime::Result<R> + Send + 'static,
    ) -> Result<(R, CallStats, Vec<GuestLog>), CallError> {
        let (answer, outcome) = tokio::sync::oneshot::channel();
        let core = self.core.clone();
        let limits = self.limits;
        let job = Box::new(move || {
            // The caller gave up waiting (a request that was cancelled): not run.
            if !answer.is_closed() {
                let _ = answer.send(core.run(limits, function, f));
            }
        });
        self.core
            .engine
            .executor
            .submit(lane, job)
            .map_err(|Saturated { max_queued }| {
                self.error(
                    function,
                    CallErrorKind::Busy {
                        lane: lane.to_string(),
                        max_queued,
                    },
                    String::new(),
                )
            })?;
        outcome.await.unwrap_or_else(|_| {
            Err(self.error(
                function,
                CallErrorKind::Lost("the plugin call ended without an answer".into()),
                String::new(),
            ))
        })
    }
}

/// What a call needs of its plugin on the executor's thread.
struct Core {
    label: String,
    language: Option<String>,
    pre: Contract,
    engine: Arc<EngineInner>,
}

impl Core {
    fn error(&self, function: &'static str, kind: CallErrorKind, console: String) -> CallError {
        CallError {
            plugin: self.label.clone(),
            function,
            kind,
            console,
        }
    }

    /// Runs `f` against a fresh instance under `limits`, on this thread.
    fn run<R>(
        &self,
        limits: CallLimits,
        function: &'static str,
        f: impl FnOnce(&mut Store<StoreState>, &Instance) -> wasmtime::Result<R>,
    ) -> Result<(R, CallStats, Vec<GuestLog>), CallError> {
        let config = &self.engine.config;
        let started = Instant::now();
        let state = StoreState::new(
            limits.memory_limit,
            config.console_capture,
            config.log_budget,
            started + limits.deadline,
        );
        let mut store = Store::new(&self.engine.engine, state);
        store.limiter(|state| &mut state.limiter);
        // Bounds the bytes lifted from the guest per call: without it, a list of
        // strings that all point at one large region would make the host copy that
        // region once per element.
        store.set_hostcall_fuel(config.max_output_bytes);
        let ticks = limits
            .deadline
            .as_nanos()
            .div_ceil(config.epoch_tick.as_nanos().max(1));
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX).max(1));
        store.epoch_deadline_trap();
        if let Some(fuel) = limits.fuel {
            // Fuel is on for the engine whenever the configuration has a budget.
            store.set_fuel(fuel).map_err(|err| {
                self.error(
                    function,
                    CallErrorKind::Instantiate(format!("{err:#}")),
                    String::new(),
                )
            })?;
        }
        let instance = match &self.pre {
            Contract::V0_1(pre) => pre.instantiate(&mut store).map(Instance::V0_1),
            Contract::V0_2(pre) => pre.instantiate(&mut store).map(Instance::V0_2),
            Contract::V0_3(pre) => pre.instantiate(&mut store).map(Instance::V0_3),
        }
        .map_err(|err| {
            let console = store.data().console.text();
            self.classify(limits, function, err, console, true)
        })?;
        let instantiate = started.elapsed();
        let result = f(&mut store, &instance).and_then(|value| {
            // Woken by the deadline, not when it asked: its answer cannot count.
            if store.data().sleep_cut_short() {
                Err(wasmtime::Error::new(Trap::Interrupt))
            } else {
                Ok(value)
            }
        });
        let state = store.data();
        let stats = CallStats {
            duration: started.elapsed(),
            instantiate,
            peak_memory: state.limiter.peak,
            log_bytes: state.log_bytes,
            console_bytes: state.console.bytes_written(),
            fuel_used: limits
                .fuel
                .map(|fuel| fuel.saturating_sub(store.get_fuel().unwrap_or(0))),
        };
        match result {
            Ok(value) => {
                let logs = std::mem::take(&mut store.data_mut().logs);
                Ok((value, stats, logs))
            }
            Err(err) => {
                let console = store.data().console.text();
                Err(self.classify(limits, function, err, console, false))
            }
        }
    }

    fn classify(
        &self,
        limits: CallLimits,
        function: &'static str,
        err: wasmtime::Error,
        console: String,
        instantiating: bool,
    ) -> CallError {
        let kind = if let Some(exceeded) = err.downcast_ref::<MemoryLimitExceeded>() {
            CallErrorKind::MemoryLimit {
                limit: exceeded.limit,
            }
        } else if let Some(exceeded) = err.downcast_ref::<LogBudgetExceeded>() {
            CallErrorKind::LogBudget {
                limit: exceeded.limit,
            }
        } else if is_hostcall_fuel_exhausted(&err) {
            CallErrorKind::OversizedOutput {
                limit: self.engine.config.max_output_bytes,
            }
        } else if let Some(trap) = err.downcast_ref::<Trap>() {
            match trap {
                Trap::Interrupt => CallErrorKind::Deadline(limits.deadline),
                Trap::OutOfFuel => CallErrorKind::OutOfFuel(limits.fuel.unwrap_or(0)),
                Trap::StackOverflow => CallErrorKind::StackOverflow,
                Trap::MemoryOutOfBounds if panic_message(&console).is_none() => {
                    CallErrorKind::Trap(format!(
                        "{trap} (often the plugin's own stack in linear memory overflowing: unbounded recursion?)"
                    ))
                }
                _ => match panic_message(&console) {
                    Some(message) => CallErrorKind::Panic { message },
                    None => CallErrorKind::Trap(trap.to_string()),
                },
            }
        } else if instantiating {
            CallErrorKind::Instantiate(format!("{err:#}"))
        } else {
            CallErrorKind::Trap(format!("{err:#}"))
        };
        let kind = match kind {
            // componentize-py's runtime panics, in its own Rust, when a script's
            // exception escapes an export or its result does not fit the WIT types.
            CallErrorKind::Panic { message }
                if self.language.as_deref() == Some("Python")
                    && message.contains("(at runtime/src/") =>
            {
                CallErrorKind::Panic {
                    message: format!(
                        "{message}: the script raised outside the SDK's per-entry guard, \
                         or returned a value that does not fit the WIT types"
                    ),
                }
            }
            kind => kind,
        };
        self.error(function, kind, console)
    }
}

/// Wasmtime's error when lifting a call's results would copy more than the store's
/// hostcall fuel; its type is private, so it is recognised by its message.
fn is_hostcall_fuel_exhausted(err: &wasmtime::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .to_string()
            .contains("fuel allocated for hostcalls has been exhausted")
    })
}

/// Forward a plugin's log line to the host's log, tagged with plugin and tenant.
fn emit_log(plugin: &str, tenant: u64, log: &GuestLog) {
    use super::model::LogLevel;
    let message = log.message.as_str();
    match log.level {
        LogLevel::Trace => tracing::trace!(plugin, tenant, "{message}"),
        LogLevel::Debug => tracing::debug!(plugin, tenant, "{message}"),
        LogLevel::Info => tracing::info!(plugin, tenant, "{message}"),
        LogLevel::Warn => tracing::warn!(plugin, tenant, "{message}"),
        LogLevel::Error => tracing::error!(plugin, tenant, "{message}"),
    }
}

/// The message of a Rust panic, from the guest's stderr:
/// `thread '…' panicked at src/lib.rs:7:9:\nthe message\nnote: …`.
fn panic_message(console: &str) -> Option<String> {
    let start = console.find("panicked at ")?;
    let rest = &console[start + "panicked at ".len()..];
    let (location, message) = rest.split_once(":\n")?;
    let message = message.split("\nnote:").next().unwrap_or(message).trim();
    Some(format!("{message} (at {location})"))
}

/// Advances the engine's epoch every tick; deadlines are counted in ticks.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine, tick: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("abacsync-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })
            .ok();
        if thread.is_none() {
            tracing::error!(
                "could not start the plugin deadline thread; plugin calls will not time out"
            );
        }
        Self { stop, thread }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_rust_panic_messages() {
        let stderr = "\nthread '<unnamed>' panicked at src/lib.rs:7:9:\nno uid for cn=x\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(
            panic_message(stderr).as_deref(),
            Some("no uid for cn=x (at src/lib.rs:7:9)")
        );
        assert_eq!(panic_message("Traceback (most recent call last):"), None);
    }
}
