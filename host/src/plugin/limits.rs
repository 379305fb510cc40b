//! The sandbox's limits, with their secure defaults, and the resource limiter that
//! enforces the memory limit per call.

use std::time::Duration;

/// Limits and sizes of the plugin sandbox. [`SandboxConfig::default`] is the secure
/// default, and every field documents its value:
///
/// | field | default |
/// |---|---|
/// | `max_component_bytes` | 64 MiB |
/// | `memory_limit` | 128 MiB of linear memory per call |
/// | `deadline` | 5 s of wall-clock time per call |
/// | `fuel` | off (`None`); `Some(n)` makes each call stop after `n` units |
/// | `max_stack` | 1 MiB of wasm stack |
/// | `log_budget` | 64 KiB logged per call |
/// | `console_capture` | first 16 KiB of stdout/stderr kept per call |
/// | `max_output_bytes` | 64 MiB of results per call |
/// | `max_instances` | 64 instances alive at once (the pool's size, and the plugin call threads) |
/// | `tenant_instances` | 16 of them running one tenant's calls at most |
/// | `tenant_queue` | 64 of one tenant's calls waiting at most; more are refused (busy) |
/// | `epoch_tick` | 5 ms resolution of the deadline |
///
/// What a plugin never gets, whatever the limits: preopened directories, environment
/// variables, arguments, sockets, HTTP, or any import outside the allow-list
/// (see `validate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxConfig {
    /// Largest component accepted, in bytes.
    pub max_component_bytes: usize,
    /// Linear memory a call may use, in bytes (all memories of the instance together).
    pub memory_limit: usize,
    /// Wall-clock time a call may take.
    pub deadline: Duration,
    /// Fuel per call; `None` turns fuel metering off (it costs some speed).
    pub fuel: Option<u64>,
    /// Wasm stack size in bytes.
    pub max_stack: usize,
    /// Bytes a call may log through the host's `log` import.
    pub log_budget: usize,
    /// Bytes of the guest's stdout/stderr kept per call (the rest is counted, not kept).
    pub console_capture: usize,
    /// Bytes of decisions a call may return.
    pub max_output_bytes: usize,
    /// Instances that may exist at once: calls run on as many threads of their own,
    /// and calls beyond wait for a free one.
    pub max_instances: u32,
    /// Calls of one tenant that may run at once, so that no tenant can take every
    /// instance (nor the load of components, which has a share of its own).
    pub tenant_instances: u32,
    /// Calls of one tenant that may wait for an instance; more are refused at once.
    pub tenant_queue: u32,
    /// How often the deadline clock ticks.
    pub epoch_tick: Duration,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        const MIB: usize = 1 << 20;
        Self {
            max_component_bytes: 64 * MIB,
            memory_limit: 128 * MIB,
            deadline: Duration::from_secs(5),
            fuel: None,
            max_stack: MIB,
            log_budget: 64 * 1024,
            console_capture: 16 * 1024,
            max_output_bytes: 64 * MIB,
            max_instances: 64,
            tenant_instances: 16,
            tenant_queue: 64,
            epoch_tick: Duration::from_millis(5),
        }
    }
}

/// Per-call limits a tenant may tighten (never loosen beyond the engine's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    /// Linear memory in bytes.
    pub memory_limit: usize,
    /// Wall-clock deadline.
    pub deadline: Duration,
    /// Fuel, when metering is on.
    pub fuel: Option<u64>,
}

impl From<&SandboxConfig> for CallLimits {
    fn from(config: &SandboxConfig) -> Self {
        Self {
            memory_limit: config.memory_limit,
            deadline: config.deadline,
            fuel: config.fuel,
        }
    }
}

/// The error a memory growth past the limit traps with.
#[derive(Debug, thiserror::Error)]
#[error("memory limit of {limit} bytes exceeded (wanted {desired} bytes)")]
pub struct MemoryLimitExceeded {
    /// The limit.
    pub limit: usize,
    /// What the guest asked for.
    pub desired: usize,
}

/// Enforces the memory limit and records the peak, for reports.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    limit: usize,
    /// Bytes of all memories together.
    current_total: usize,
    pub(crate) peak: usize,
}

impl MemoryLimiter {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            current_total: 0,
            peak: 0,
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.current_total - current.min(self.current_total) + desired;
        if total > self.limit {
            // A trap rather than a failed `memory.grow`: the guest would otherwise
            // abort with a less helpful message, or limp on without memory.
            return Err(wasmtime::Error::new(MemoryLimitExceeded {
                limit: self.limit,
                desired: total,
            }));
        }
        self.current_total = total;
        self.peak = self.peak.max(total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; a million entries is far beyond any
        // real plugin (CPython's is in the tens of thousands).
        Ok(desired <= 1_000_000)
    }
}
