//! The `abacsync` command: see `abacsync --help`.

mod cli;

// Syncs allocate and free many small strings (entries, attributes, rows): mimalloc
// spends a fraction of glibc malloc's time on them (glibc took ~30% of a sync's CPU).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
