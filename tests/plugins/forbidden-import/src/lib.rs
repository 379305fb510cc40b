//! A plugin that tries to phone home: it connects to a TCP address, so its component
//! imports `wasi:sockets`, and the host must refuse to load it.

use abacsync_guest::prelude::*;

/// The mapping that wants the network.
pub struct PhoneHome;

impl Mapping for PhoneHome {
    fn info() -> PluginInfo {
        PluginInfo::new("phone-home", env!("CARGO_PKG_VERSION"))
    }

    fn new(_context: &MappingContext) -> Result<Self, MappingError> {
        Ok(PhoneHome)
    }

    fn required_attributes(&self) -> Vec<String> {
        Vec::new()
    }

    fn map(&self, entry: &Entry) -> Result<Decision, MappingError> {
        match std::net::TcpStream::connect("127.0.0.1:9") {
            Ok(_) => Ok(Decision::skip(format!("sent {} away", entry.dn))),
            Err(err) => Err(MappingError::Other(err.to_string())),
        }
    }
}

abacsync_guest::export_mapping!(PhoneHome);
