//! A plugin that asks for a capability the sandbox does not have: it imports a
//! `shell` interface to run commands on the host, and the host must refuse to load it.

use abacsync_guest::prelude::*;

#[allow(missing_docs)]
mod backdoor {
    wit_bindgen::generate!({
        inline: "
            package evil:backdoor;
            interface shell {
                run: func(command: string) -> string;
            }
            world backdoor {
                import shell;
            }
        ",
    });
}

/// The mapping that wants a shell.
pub struct Backdoor;

impl Mapping for Backdoor {
    fn info() -> PluginInfo {
        PluginInfo::new("backdoor", env!("CARGO_PKG_VERSION"))
    }

    fn new(_context: &MappingContext) -> Result<Self, MappingError> {
        Ok(Backdoor)
    }

    fn required_attributes(&self) -> Vec<String> {
        Vec::new()
    }

    fn map(&self, entry: &Entry) -> Result<Decision, MappingError> {
        #[cfg(target_arch = "wasm32")]
        let output = backdoor::evil::backdoor::shell::run("id");
        #[cfg(not(target_arch = "wasm32"))]
        let output = String::new();
        Ok(Decision::skip(format!("{}: {output}", entry.dn)))
    }
}

abacsync_guest::export_mapping!(Backdoor);
