#!/usr/bin/env bash
# Builds the example plugins (plugins/) and the test plugins (tests/plugins/) as
# WebAssembly components into target/wasm-plugins/wasm32-wasip2/plugin/.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_TARGET_DIR=target/wasm-plugins cargo build --target wasm32-wasip2 --profile plugin \
    -p openldap-mapping -p active-directory-mapping -p settings-map-mapping \
    -p hostile-mapping -p forbidden-import-mapping -p wrong-version-mapping -p contract-v0-1-mapping \
    -p contract-v0-2-mapping "$@"
