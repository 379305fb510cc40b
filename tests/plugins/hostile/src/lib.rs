//! A plugin that misbehaves on purpose, to prove the sandbox holds. The setting
//! `behaviour` chooses how (in `map-entries`; `info` and `required-attributes` behave):
//!
//! - `loop`: spins forever.
//! - `memory`: allocates until it is stopped.
//! - `recursion`: recurses without end on the wasm stack.
//! - `shadow-stack`: recurses with large address-taken locals, overflowing the
//!   stack Rust keeps in linear memory.
//! - `panic`: panics with a message naming the entry.
//! - `oversized`: returns ~2 MB of attribute values per entry.
//! - `log-flood`: logs without end.
//! - `print-flood`: prints 1 MiB to stdout and stderr, then behaves.
//! - `network`: connects to the setting `address` (TCP) for every entry.
//! - `files`: reads `/etc/passwd` for every entry.
//! - `sleep`: sleeps for the setting `secs` (default 20) in one `std::thread::sleep`,
//!   which waits in the host (WASI `subscribe-duration` and `poll`), not in wasm.
//! - `sleep-loop`: sleeps 10 ms at a time, without end.
//! - `huge-grow`: asks for all of 32-bit memory at once (`memory.grow` of 65,535
//!   pages, 4 GiB), and reports whether it got it.
//! - `huge-alloc`: allocates 2 GiB − 64 KiB in one `Vec` (the most one allocation may
//!   ask for on wasm32).
//! - `output-bytes`: returns one user whose attribute values total the setting
//!   `bytes` (in distinct values of 64 KiB).
//! - `bulk`: makes every entry a user (named by its DN) with the setting `values`
//!   (default 2) values of `size` bytes (default 10,000) in attribute `bulk`, which
//!   change with the setting `salt`: a tenant filling the store.
//! - `count-calls`: reports how many calls this instance has seen (always 1 when
//!   instances are fresh).
//! - anything else or nothing: skips every entry with reason `ok`.

use abacsync_guest::prelude::*;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

static CALLS: AtomicUsize = AtomicUsize::new(0);

/// The misbehaving mapping.
pub struct Hostile {
    behaviour: String,
    address: String,
    secs: String,
    bytes: String,
    values: usize,
    size: usize,
    salt: String,
}

impl Mapping for Hostile {
    fn info() -> PluginInfo {
        PluginInfo::new("hostile", env!("CARGO_PKG_VERSION"))
    }

    fn new(context: &MappingContext) -> Result<Self, MappingError> {
        Ok(Hostile {
            behaviour: context.setting("behaviour").unwrap_or("none").to_owned(),
            address: context
                .setting("address")
                .unwrap_or("127.0.0.1:9")
                .to_owned(),
            secs: context.setting("secs").unwrap_or("20").to_owned(),
            bytes: context.setting("bytes").unwrap_or("0").to_owned(),
            values: context
                .setting("values")
                .and_then(|n| n.parse().ok())
                .unwrap_or(2),
            size: context
                .setting("size")
                .and_then(|n| n.parse().ok())
                .unwrap_or(10_000),
            salt: context.setting("salt").unwrap_or("").to_owned(),
        })
    }

    fn required_attributes(&self) -> Vec<String> {
        attributes(&["uid"])
    }

    fn map_all(&self, entries: &[Entry]) -> Vec<Result<Decision, MappingError>> {
        let calls = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
        match self.behaviour.as_str() {
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = black_box(n.wrapping_add(1));
                }
            }
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    black_box(&hoard);
                }
            }
            "recursion" => {
                black_box(recurse(black_box(1)));
                Vec::new()
            }
            "shadow-stack" => {
                black_box(recurse_with_frames(black_box(1)));
                Vec::new()
            }
            "panic" => panic!(
                "hostile plugin gave up on {}",
                entries.first().map_or("nothing", |e| e.dn.as_str())
            ),
            "sleep" => {
                let secs = self.secs.parse().unwrap_or(20);
                std::thread::sleep(std::time::Duration::from_secs(secs));
                entries
                    .iter()
                    .map(|_| Ok(Decision::skip("woke up")))
                    .collect()
            }
            "sleep-loop" => loop {
                std::thread::sleep(std::time::Duration::from_millis(10));
            },
            "log-flood" => {
                let line = "x".repeat(1024);
                loop {
                    abacsync_guest::log::info(&line);
                }
            }
            "print-flood" => {
                let line = "y".repeat(1023);
                for _ in 0..1024 {
                    println!("{line}");
                    eprintln!("{line}");
                }
                entries.iter().map(|_| Ok(Decision::skip("ok"))).collect()
            }
            "oversized" => entries
                .iter()
                .map(|entry| {
                    let values = (0..1_800).map(|i| format!("{i:0>1100}"));
                    Ok(Decision::Upsert(
                        User::new(entry.dn.clone(), entry.dn.clone()).attribute("huge", values),
                    ))
                })
                .collect(),
            "network" => {
                // The setting `address` names a listener the test watches.
                let address = self.address.as_str();
                entries
                    .iter()
                    .map(|_| match std::net::TcpStream::connect(address) {
                        Ok(_) => Ok(Decision::skip(format!("connected to {address}"))),
                        Err(err) => Err(MappingError::Other(format!("connect: {err}"))),
                    })
                    .collect()
            }
            "files" => entries
                .iter()
                .map(|_| match std::fs::read("/etc/passwd") {
                    Ok(bytes) => Ok(Decision::skip(format!("read {} bytes", bytes.len()))),
                    Err(err) => Err(MappingError::Other(format!("read: {err}"))),
                })
                .collect(),
            "huge-grow" => {
                #[cfg(target_arch = "wasm32")]
                let grown = core::arch::wasm32::memory_grow(0, 65_535) != usize::MAX;
                #[cfg(not(target_arch = "wasm32"))]
                let grown = false;
                entries
                    .iter()
                    .map(|_| Ok(Decision::skip(format!("grown={grown}"))))
                    .collect()
            }
            "huge-alloc" => {
                let hoard = vec![1u8; (2 << 30) - (64 << 10) - 1];
                black_box(&hoard);
                entries
                    .iter()
                    .map(|_| Ok(Decision::skip("allocated")))
                    .collect()
            }
            "output-bytes" => {
                let mut left: usize = self.bytes.parse().unwrap_or(0);
                let mut values = Vec::new();
                // Distinct values of 64 KiB (the largest a value may be).
                while left > 0 {
                    let size = left.clamp(8, 64 << 10);
                    values.push(format!("{:08}{}", values.len(), "v".repeat(size - 8)));
                    left = left.saturating_sub(size);
                }
                let first = &entries[0].dn;
                vec![Ok(Decision::Upsert(
                    User::new(first.clone(), first.clone()).attribute("bulk", values),
                ))]
            }
            "bulk" => entries
                .iter()
                .map(|entry| {
                    let values: Vec<String> = (0..self.values)
                        .map(|i| {
                            let head = format!("{}:{i}:", self.salt);
                            let fill = self.size.saturating_sub(head.len()).max(1);
                            format!("{head}{}", "x".repeat(fill))
                        })
                        .collect();
                    Ok(Decision::Upsert(
                        User::new(entry.dn.clone(), entry.dn.clone()).attribute("bulk", values),
                    ))
                })
                .collect(),
            "count-calls" => entries
                .iter()
                .map(|_| Ok(Decision::skip(format!("calls={calls}"))))
                .collect(),
            _ => entries.iter().map(|_| Ok(Decision::skip("ok"))).collect(),
        }
    }

    fn map(&self, _entry: &Entry) -> Result<Decision, MappingError> {
        Ok(Decision::skip("ok"))
    }
}

/// Recursion whose frames live on the wasm stack only.
#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    recurse(black_box(depth + 1))
        .wrapping_mul(3)
        .wrapping_add(depth)
}

/// Recursion whose frames hold an array passed by reference, so they live on
/// Rust's stack in linear memory.
#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse_with_frames(depth: u64) -> u64 {
    let frame = black_box([depth; 64]);
    recurse_with_frames(depth + 1).wrapping_add(frame[(depth % 64) as usize])
}

abacsync_guest::export_mapping!(Hostile);
