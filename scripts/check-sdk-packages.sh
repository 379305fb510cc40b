#!/usr/bin/env bash
# Builds the three SDK packages as they would be published, into target/sdk-packages:
# the Rust crate (`cargo package`: it packages on its own, with the contract inside, and
# builds from its package), the Python wheel and sdist (`python -m build`), and the npm
# package (`npm pack`). The type hints must hold: mypy --strict on the Python SDK and on
# the Python example plugins, tsc --strict on a mapping against the TypeScript
# declarations (guest-sdk/js/types-test). scripts/test.sh runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
out=target/sdk-packages
rm -rf "$out" && mkdir -p "$out"

cargo package -p abacsync-guest --quiet --allow-dirty
cp target/package/abacsync-guest-*.crate "$out/"

ensure_venv target/toolchains/python-build guest-sdk/python/toolchain/build-requirements.txt
if ! target/toolchains/python-build/bin/python -m build --outdir "$out" guest-sdk/python \
    > "$out/python-build.log" 2>&1; then
    cat "$out/python-build.log" >&2
    exit 1
fi
wheel="$(ls "$out"/abacsync_mapping-*.whl)"
contents="$(target/toolchains/python-build/bin/python -m zipfile -l "$wheel" | awk 'NR > 1 {print $1}' | grep -v '\.dist-info/' | sort | xargs)"
if [ "$contents" != "abacsync_mapping/__init__.py abacsync_mapping/py.typed" ]; then
    echo "check-sdk-packages: the wheel holds [$contents], not the module and its py.typed" >&2
    exit 1
fi

python_tools=target/toolchains/python-build/bin
(cd guest-sdk/python && "../../$python_tools/mypy" --cache-dir ../../target/mypy-cache -p abacsync_mapping)
for example in openldap-py active-directory-py settings-map-py; do
    (cd "plugins/$example" && MYPYPATH=../../guest-sdk/python "../../$python_tools/mypy" --strict \
        --cache-dir ../../target/mypy-cache app.py)
done
rm -rf guest-sdk/python/abacsync_mapping.egg-info guest-sdk/python/build

(cd guest-sdk/js && npm pack --silent --pack-destination "../../$out" > /dev/null)
(cd guest-sdk/js/types-test && npx --yes -p typescript@5.9.3 tsc -p tsconfig.json)

ls "$out"
