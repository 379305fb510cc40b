#!/usr/bin/env bash
# Builds a Python mapping plugin into a WebAssembly component.
#
#   scripts/build-python-plugin.sh plugins/openldap-py [out.wasm]
#
# The plugin folder holds `app.py`, whose `Mapper` class derives from
# `abacsync_mapping.Mapping` (guest-sdk/python). componentize-py (pinned in
# guest-sdk/python/toolchain/requirements.txt, installed from PyPI into
# target/toolchains/python on first use) generates the bindings from wit/v0.2.0 and
# bundles CPython, the SDK and the script into one component. The default output is
# target/wasm-plugins/python/<folder name with _>.wasm. Nothing is rebuilt when the
# script, the SDK, the WIT and the toolchain are unchanged.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
[ $# -ge 1 ] || { echo "usage: $0 <plugin folder> [out.wasm]" >&2; exit 2; }
plugin="$(cd "$1" && pwd)"
[ -f "$plugin/app.py" ] || { echo "$0: $plugin has no app.py" >&2; exit 2; }
name="$(basename "$plugin" | tr - _)"
out="${2:-$root/target/wasm-plugins/python/$name.wasm}"
mkdir -p "$(dirname "$out")"

. "$root/scripts/lib.sh"
toolchain="$root/target/toolchains/python"
ensure_venv "$toolchain" "$root/guest-sdk/python/toolchain/requirements.txt"

stamp="$out.inputs"
inputs="$( { find "$plugin" "$root/guest-sdk/python/abacsync_mapping" "$root/guest-sdk/python/toolchain" "$root/wit/v0.2.0" -type f \
    \( -name '*.py' -o -name '*.wit' -o -name requirements.txt \) -print0 | sort -z |
    xargs -0 sha256sum; } | sha256sum | cut -d' ' -f1)"
if [ -f "$out" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$inputs" ]; then
    exit 0
fi
"$toolchain/bin/componentize-py" --quiet -d "$root/wit/v0.2.0" -w mapping-plugin \
    componentize -p "$plugin" -p "$root/guest-sdk/python" app -o "$out.$$.tmp"
mv "$out.$$.tmp" "$out"
echo "$inputs" > "$stamp"
echo "build-python-plugin: $out" >&2
