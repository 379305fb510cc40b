//! The state of one call's store: a WASI context with nothing in it, the memory
//! limiter, the captured console and the plugin's log lines.

use super::console::Console;
use super::limits::MemoryLimiter;
use super::model::{GuestLog, LogLevel};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// The error a log call past the budget traps with.
#[derive(Debug, thiserror::Error)]
#[error("log budget of {limit} bytes exceeded")]
pub struct LogBudgetExceeded {
    /// The budget.
    pub limit: usize,
}

/// Data of one call's `Store`. Built fresh for every call.
pub(crate) struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) console: Console,
    pub(crate) logs: Vec<GuestLog>,
    pub(crate) log_bytes: usize,
    pub(crate) log_budget: usize,
}

impl StoreState {
    /// A sandboxed WASI context: no preopened directories, no environment, no
    /// arguments, no network (TCP, UDP and name lookup off), an empty stdin, and
    /// stdout/stderr captured into one bounded console.
    pub(crate) fn new(memory_limit: usize, console_capture: usize, log_budget: usize) -> Self {
        let console = Console::new(console_capture);
        let wasi = WasiCtx::builder()
            .stdout(console.clone())
            .stderr(console.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(memory_limit),
            console,
            logs: Vec::new(),
            log_bytes: 0,
            log_budget,
        }
    }

    /// A line the guest logged through the contract's `host.log`, within the budget;
    /// past it, the call traps with [`LogBudgetExceeded`].
    pub(crate) fn guest_log(&mut self, level: LogLevel, message: String) -> wasmtime::Result<()> {
        self.log_bytes += message.len();
        if self.log_bytes > self.log_budget {
            return Err(wasmtime::Error::new(LogBudgetExceeded {
                limit: self.log_budget,
            }));
        }
        self.logs.push(GuestLog { level, message });
        Ok(())
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
