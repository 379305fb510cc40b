//! The `abacsync` command: see `abacsync --help`.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
