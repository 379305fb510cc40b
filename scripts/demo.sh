#!/usr/bin/env bash
# The main job, end to end: build abacsync and the example plugins, check a plugin,
# and run it over the OpenLDAP fixtures, comparing with the golden output.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
scripts/build-plugins.sh --quiet
cargo build --release --quiet -p abacsync
abacsync=target/release/abacsync
plugin=target/wasm-plugins/wasm32-wasip2/plugin/openldap_mapping.wasm

echo "== abacsync plugin check $plugin"
"$abacsync" plugin check "$plugin"
echo
echo "== abacsync plugin test $plugin plugins/openldap/fixtures/entries.ldif --expect plugins/openldap/fixtures/expected.json"
"$abacsync" plugin test "$plugin" plugins/openldap/fixtures/entries.ldif \
    --expect plugins/openldap/fixtures/expected.json
