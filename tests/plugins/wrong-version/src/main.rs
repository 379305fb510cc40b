//! A plain WASI command: a component of the `wasi:cli/command` world, not a plugin.

fn main() {
    println!("I am not a mapping plugin");
}
