#!/usr/bin/env bash
# Builds a JavaScript mapping plugin into a WebAssembly component.
#
#   scripts/build-js-plugin.sh plugins/openldap-js [out.wasm]
#
# The plugin folder holds `mapping.js`, an ES module exporting `mapper` made with
# `defineMapping` from `./abacsync-mapping.js` (guest-sdk/js). componentize-js (pinned
# in guest-sdk/js/toolchain/package-lock.json, installed from npm into target/toolchains/js on
# first use) compiles the module with the SDK, against wit/v0.2.0, into a component
# that embeds the StarlingMonkey engine. The default output is
# target/wasm-plugins/js/<folder name with _>.wasm. Nothing is rebuilt when the
# module, the SDK, the WIT and the toolchain are unchanged.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
[ $# -ge 1 ] || { echo "usage: $0 <plugin folder> [out.wasm]" >&2; exit 2; }
plugin="$(cd "$1" && pwd)"
[ -f "$plugin/mapping.js" ] || { echo "$0: $plugin has no mapping.js" >&2; exit 2; }
name="$(basename "$plugin" | tr - _)"
out="${2:-$root/target/wasm-plugins/js/$name.wasm}"
mkdir -p "$(dirname "$out")"

toolchain="$root/target/toolchains/js"
sdk="$root/guest-sdk/js"
# npm rewrites the lock file it installs from: the pinned one is kept beside it
# (package-lock.pinned.json) to tell whether the install is current.
if ! cmp -s "$sdk/toolchain/package-lock.json" "$toolchain/package-lock.pinned.json" 2>/dev/null ||
    [ ! -d "$toolchain/node_modules/@bytecodealliance/componentize-js" ]; then
    echo "build-js-plugin: installing componentize-js (npm, from the lock file) into $toolchain" >&2
    mkdir -p "$toolchain"
    cp "$sdk/toolchain/package.json" "$sdk/toolchain/package-lock.json" "$toolchain/"
    # `npm install` rather than `npm ci`: npm 11 rejects lock files that list only this
    # platform's optional binaries. The versions and integrity hashes are the lock's.
    # No package's install script runs (componentize-js needs none).
    (cd "$toolchain" && npm install --silent --no-audit --no-fund --ignore-scripts)
    cp "$sdk/toolchain/package-lock.json" "$toolchain/package-lock.pinned.json"
fi

stamp="$out.inputs"
inputs="$( { find "$plugin" "$sdk" "$root/wit/v0.2.0" -type f \
    \( -name '*.js' -o -name '*.mjs' -o -name '*.wit' -o -name package-lock.json \) \
    -not -path '*/node_modules/*' -print0 | sort -z |
    xargs -0 sha256sum; } | sha256sum | cut -d' ' -f1)"
if [ -f "$out" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$inputs" ]; then
    exit 0
fi
# The module and the SDK side by side, so `./abacsync-mapping.js` resolves.
staging="$(mktemp -d "${TMPDIR:-/tmp}/abacsync-js-plugin.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
cp -r "$plugin/." "$staging/"
cp "$sdk/abacsync-mapping.js" "$staging/"
cp "$sdk/toolchain/build.mjs" "$toolchain/build.mjs"
node "$toolchain/build.mjs" "$staging/mapping.js" "$root/wit/v0.2.0" "$out.$$.tmp"
mv "$out.$$.tmp" "$out"
echo "$inputs" > "$stamp"
echo "build-js-plugin: $out" >&2
