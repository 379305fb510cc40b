//! Static checks on a component, before anything is compiled or run: size, kind,
//! imports against the sandbox's allow-list, the contract version it exports, and
//! what can be told of its toolchain and memory needs.

use super::error::LoadError;
use super::limits::SandboxConfig;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use wasmtime::wasmparser::{ComponentName, Encoding, KnownCustom, Parser, Payload};

/// The contract's package and interface names.
pub const CONTRACT_PACKAGE: &str = "abacsync:mapping";
/// The versions of the contract this host loads, oldest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.1.0", "0.2.0", "0.3.0"];

/// What a static look at a component found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentReport {
    /// Size in bytes.
    pub size: usize,
    /// SHA-256 of the bytes, hex.
    pub sha256: String,
    /// The contract version of its `mapper` export (`0.1.0`).
    pub contract_version: String,
    /// Top-level imports, by name.
    pub imports: Vec<String>,
    /// Top-level exports, by name.
    pub exports: Vec<String>,
    /// Languages, SDKs and tools named in `producers` sections (`Rust`,
    /// `componentize-py 0.17.2`, …).
    pub toolchain: Vec<String>,
    /// The language the plugin was most likely written in.
    pub language: Option<String>,
    /// Core modules inside the component.
    pub core_modules: usize,
    /// Linear memory the component's modules declare at start, in bytes.
    pub initial_memory_bytes: u64,
}

/// Inspect `bytes` without compiling them, refusing what the sandbox cannot load.
pub fn inspect(
    plugin: &str,
    bytes: &[u8],
    config: &SandboxConfig,
) -> Result<ComponentReport, LoadError> {
    if bytes.len() > config.max_component_bytes {
        return Err(LoadError::TooLarge {
            plugin: plugin.to_owned(),
            size: bytes.len(),
            limit: config.max_component_bytes,
        });
    }
    if Parser::is_core_wasm(bytes) {
        return Err(LoadError::CoreModule {
            plugin: plugin.to_owned(),
        });
    }
    if !Parser::is_component(bytes) {
        let reason = if bytes.starts_with(b"\0asm") {
            "unsupported WebAssembly version or layer".to_owned()
        } else {
            format!(
                "it does not start with the `\\0asm` magic (first bytes: {:02x?})",
                &bytes[..bytes.len().min(8)]
            )
        };
        return Err(LoadError::NotWasm {
            plugin: plugin.to_owned(),
            reason,
        });
    }
    let invalid = |err: wasmtime::wasmparser::BinaryReaderError| LoadError::Invalid {
        plugin: plugin.to_owned(),
        reason: err.to_string(),
    };

    let mut imports = Vec::new();
    let mut exports = Vec::new();
    let mut toolchain = BTreeSet::new();
    let mut core_modules = 0;
    let mut initial_memory_bytes = 0u64;
    // Nesting: 0 is the outer component; imports and exports count only there.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(invalid)? {
            Payload::Version {
                encoding: Encoding::Module,
                ..
            } => core_modules += 1,
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    imports.push(import.map_err(invalid)?.name.name.to_owned());
                }
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader {
                    exports.push(export.map_err(invalid)?.name.name.to_owned());
                }
            }
            Payload::MemorySection(reader) => {
                for memory in reader {
                    let pages = memory.map_err(invalid)?.initial;
                    initial_memory_bytes =
                        initial_memory_bytes.saturating_add(pages.saturating_mul(65536));
                }
            }
            Payload::CustomSection(section) => match section.as_known() {
                // componentize-py links CPython as a library module named
                // `libpython3.N.so`; its producers section does not say so.
                KnownCustom::ComponentName(names) => {
                    for subsection in names.into_iter().flatten() {
                        if let ComponentName::CoreModules(map) | ComponentName::CoreInstances(map) =
                            subsection
                        {
                            for naming in map.into_iter().flatten() {
                                if let Some(version) = naming
                                    .name
                                    .strip_prefix("libpython")
                                    .and_then(|rest| rest.strip_suffix(".so"))
                                {
                                    toolchain.insert(format!("CPython {version}"));
                                }
                            }
                        }
                    }
                }
                KnownCustom::Producers(fields) => {
                    for field in fields.into_iter().flatten() {
                        for value in field.values.into_iter().flatten() {
                            let entry = if value.version.is_empty() {
                                value.name.to_owned()
                            } else {
                                format!("{} {}", value.name, value.version)
                            };
                            toolchain.insert(entry);
                        }
                    }
                }
                _ => {}
            },
            _ => {}
        }
    }

    for import in &imports {
        check_import(plugin, import)?;
    }
    let contract_version = contract_version(plugin, &exports)?;
    let toolchain: Vec<String> = toolchain.into_iter().collect();
    Ok(ComponentReport {
        size: bytes.len(),
        sha256: hex(&Sha256::digest(bytes)),
        contract_version,
        language: guess_language(&toolchain),
        imports,
        exports,
        toolchain,
        core_modules,
        initial_memory_bytes,
    })
}

/// Refuse imports outside the allow-list: the contract's `host` interface and the
/// WASI 0.2 interfaces a language runtime needs to start (I/O streams, clocks,
/// randomness, stdio, exit, an environment that is empty, and a filesystem with
/// nothing opened).
///
/// `wasi:sockets` is linked but gives nothing: CPython (componentize-py) imports it
/// whether or not a script uses the network, so refusing it would refuse every Python
/// plugin. Creating a socket or looking up a name fails with `access-denied` at run
/// time (see `StoreState::new`); `it::sandbox::network_and_files_are_denied_at_run_time`
/// proves no connection leaves. `wasi:http`, which only a plugin that means to talk
/// to the network imports, is refused here.
fn check_import(plugin: &str, import: &str) -> Result<(), LoadError> {
    let forbidden = |why| LoadError::ForbiddenImport {
        plugin: plugin.to_owned(),
        import: import.to_owned(),
        why,
    };
    let (path, _version) = import.split_once('@').unwrap_or((import, ""));
    let Some((package, interface)) = path.split_once('/') else {
        return Err(forbidden(
            "plugins may import interfaces only, not bare functions",
        ));
    };
    let allowed = match package {
        "wasi:io" => matches!(interface, "error" | "streams" | "poll"),
        "wasi:clocks" => matches!(interface, "wall-clock" | "monotonic-clock"),
        "wasi:random" => matches!(interface, "random" | "insecure" | "insecure-seed"),
        "wasi:cli" => matches!(
            interface,
            "environment"
                | "exit"
                | "stdin"
                | "stdout"
                | "stderr"
                | "terminal-input"
                | "terminal-output"
                | "terminal-stdin"
                | "terminal-stdout"
                | "terminal-stderr"
        ),
        "wasi:filesystem" => matches!(interface, "types" | "preopens"),
        "wasi:sockets" => matches!(
            interface,
            "network"
                | "instance-network"
                | "ip-name-lookup"
                | "tcp"
                | "tcp-create-socket"
                | "udp"
                | "udp-create-socket"
        ),
        "wasi:http" => return Err(forbidden("plugins have no network access")),
        CONTRACT_PACKAGE => matches!(interface, "host" | "types"),
        _ => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(forbidden("it is not part of the plugin sandbox"))
    }
}

/// The version of the `abacsync:mapping/mapper` export, which must be one this host loads.
fn contract_version(plugin: &str, exports: &[String]) -> Result<String, LoadError> {
    let prefix = format!("{CONTRACT_PACKAGE}/mapper@");
    let Some(version) = exports.iter().find_map(|name| name.strip_prefix(&prefix)) else {
        return Err(LoadError::WrongWorld {
            plugin: plugin.to_owned(),
            exports: if exports.is_empty() {
                "none".to_owned()
            } else {
                exports.join(", ")
            },
        });
    };
    if SUPPORTED_VERSIONS.contains(&version) {
        Ok(version.to_owned())
    } else {
        Err(LoadError::UnsupportedVersion {
            plugin: plugin.to_owned(),
            found: version.to_owned(),
            supported: SUPPORTED_VERSIONS.join(", "),
        })
    }
}

fn guess_language(toolchain: &[String]) -> Option<String> {
    let has = |needle: &str| toolchain.iter().any(|entry| entry.starts_with(needle));
    let language = if has("componentize-py") || has("CPython") {
        "Python"
    } else if has("componentize-js") || has("ComponentizeJS") || has("StarlingMonkey") {
        "JavaScript"
    } else if has("Rust") || has("rustc") || has("wit-bindgen-rust") {
        "Rust"
    } else if has("TinyGo") || has("Go") {
        "Go"
    } else if has("C11") || has("C99") || has("clang") {
        "C"
    } else {
        return None;
    };
    Some(language.to_owned())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SandboxConfig {
        SandboxConfig::default()
    }

    #[test]
    fn refuses_core_modules_and_garbage() {
        let core = b"\0asm\x01\0\0\0";
        assert!(matches!(
            inspect("p", core, &config()),
            Err(LoadError::CoreModule { .. })
        ));
        let err = inspect("p", b"MZ\x90\0", &config()).unwrap_err();
        assert!(err.to_string().contains("`\\0asm` magic"), "{err}");
        let mut small = config();
        small.max_component_bytes = 4;
        assert!(matches!(
            inspect("p", core, &small),
            Err(LoadError::TooLarge { size: 8, .. })
        ));
    }

    #[test]
    fn allow_list() {
        assert!(check_import("p", "wasi:cli/environment@0.2.3").is_ok());
        assert!(check_import("p", "abacsync:mapping/host@0.1.0").is_ok());
        // Linked, but denied at run time.
        assert!(check_import("p", "wasi:sockets/tcp@0.2.0").is_ok());
        let err = check_import("p", "wasi:http/outgoing-handler@0.2.0").unwrap_err();
        assert_eq!(
            err.to_string(),
            "plugin `p` imports `wasi:http/outgoing-handler@0.2.0`, which the sandbox does not provide: plugins have no network access"
        );
        assert!(check_import("p", "wasi:sockets/something-new@0.2.0").is_err());
        assert!(check_import("p", "wasi:filesystem/something@0.2.0").is_err());
        assert!(check_import("p", "evil:host/exec").is_err());
        assert!(check_import("p", "exec").is_err());
    }

    #[test]
    fn contract_versions() {
        let ok = ["abacsync:mapping/mapper@0.1.0".to_owned()];
        assert_eq!(contract_version("p", &ok).unwrap(), "0.1.0");
        let future = ["abacsync:mapping/mapper@0.9.0".to_owned()];
        assert!(matches!(
            contract_version("p", &future),
            Err(LoadError::UnsupportedVersion { .. })
        ));
        let other = ["wasi:cli/run@0.2.0".to_owned()];
        let err = contract_version("p", &other).unwrap_err();
        assert!(err.to_string().contains("wasi:cli/run@0.2.0"), "{err}");
    }
}
