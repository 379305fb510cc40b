//! The state of one call's store: a WASI context with nothing in it, the memory
//! limiter, the captured console and the plugin's log lines; and the clock that never
//! lets a plugin sleep past its call's deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::console::Console;
use super::limits::MemoryLimiter;
use super::model::{GuestLog, LogLevel};
use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};
use wasmtime_wasi::{HostMonotonicClock, WasiCtx, WasiCtxView, WasiView};

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
    /// The guest's monotonic clock, shared with the WASI context.
    clock: SandboxClock,
    /// When the call must end: no sleep the guest asks for lasts past it.
    deadline: Instant,
    /// Set when a sleep the guest waited for was cut short at the deadline: the call
    /// then fails for its deadline even if it returns before an epoch check.
    cut_short: Arc<AtomicBool>,
}

impl StoreState {
    /// A sandboxed WASI context: no preopened directories, no environment, no
    /// arguments, no network (TCP, UDP and name lookup off), an empty stdin, and
    /// stdout/stderr captured into one bounded console.
    pub(crate) fn new(
        memory_limit: usize,
        console_capture: usize,
        log_budget: usize,
        deadline: Instant,
    ) -> Self {
        let console = Console::new(console_capture);
        let clock = SandboxClock::new();
        let wasi = WasiCtx::builder()
            .monotonic_clock(clock)
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
            clock,
            deadline,
            cut_short: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Whether the guest waited for a sleep that was cut short at the deadline.
    pub(crate) fn sleep_cut_short(&self) -> bool {
        self.cut_short.load(Ordering::Relaxed)
    }

    /// A pollable that is ready after `duration`, or at the deadline if sooner.
    fn sleep(&mut self, duration: Duration) -> wasmtime::Result<Resource<DynPollable>> {
        let now = Instant::now();
        let wanted = now.checked_add(duration);
        let cut = wanted.is_none_or(|wanted| wanted > self.deadline);
        let until = wanted
            .map_or(self.deadline, |wanted| wanted.min(self.deadline))
            .max(now);
        let sleep = self.table.push(Sleep {
            until: until.into(),
            cut_short: cut.then(|| self.cut_short.clone()),
        })?;
        subscribe(&mut self.table, sleep)
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

/// The guest's monotonic clock: nanoseconds since the call's store was made.
#[derive(Debug, Clone, Copy)]
struct SandboxClock {
    origin: Instant,
}

impl SandboxClock {
    fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl HostMonotonicClock for SandboxClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A sleep of the guest, ending no later than its call's deadline.
struct Sleep {
    until: tokio::time::Instant,
    /// The call's flag, when this sleep ends at the deadline instead of when asked.
    cut_short: Option<Arc<AtomicBool>>,
}

#[async_trait::async_trait]
impl Pollable for Sleep {
    async fn ready(&mut self) {
        tokio::time::sleep_until(self.until).await;
        if let Some(flag) = &self.cut_short {
            flag.store(true, Ordering::Relaxed);
        }
    }
}

/// The WASI interface whose sleeps are bounded by the deadline. Epoch interruption
/// only stops a plugin while it runs wasm code; one that sleeps (`std::thread::sleep`
/// is `subscribe-duration` and `poll`) waits in the host, where no epoch reaches it. So
/// a sleep ends at the deadline at the latest, and the first wasm instruction after it
/// traps. Every other way to wait in this sandbox is ready at once: stdin is empty,
/// stdout and stderr are memory, sockets and files are denied.
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// Replaces WASI's `subscribe-duration` and `subscribe-instant` with sleeps bounded
/// by the call's deadline. Called after WASI's own functions are linked.
pub(crate) fn link_bounded_sleeps(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut clock = linker.instance(MONOTONIC_CLOCK)?;
    clock.func_wrap(
        "subscribe-duration",
        |mut store: wasmtime::StoreContextMut<'_, StoreState>, (nanos,): (u64,)| {
            Ok((store.data_mut().sleep(Duration::from_nanos(nanos))?,))
        },
    )?;
    clock.func_wrap(
        "subscribe-instant",
        |mut store: wasmtime::StoreContextMut<'_, StoreState>, (when,): (u64,)| {
            let state = store.data_mut();
            let now = state.clock.now();
            state
                .sleep(Duration::from_nanos(when.saturating_sub(now)))
                .map(|pollable| (pollable,))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}
