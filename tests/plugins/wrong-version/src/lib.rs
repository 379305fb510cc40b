//! Exports `abacsync:mapping/mapper@0.9.0`, a version the host does not load.
#![allow(missing_docs)]

wit_bindgen::generate!({ path: "wit", world: "mapping-plugin" });

struct Future;

impl exports::abacsync::mapping::mapper::Guest for Future {
    fn info() -> String {
        "from the future".to_owned()
    }
}

export!(Future);
