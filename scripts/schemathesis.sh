#!/usr/bin/env bash
# Property-based API testing with schemathesis (PyPI) against the served OpenAPI
# description (issue 5's "bad requests"): no 5xx, and no status, content type or body
# outside the schema, for every operation. Bounded: SCHEMATHESIS_EXAMPLES cases per
# operation (default 25), fixed seed, so a CI run takes minutes and repeats itself.
#
#   scripts/schemathesis.sh            # part of scripts/test.sh
#
# Starts a throw-away slapd with a few users (test-directory), serves the API with an
# admin account, and runs schemathesis with that admin's Rocket.Chat headers, so that
# the generated requests reach the handlers and not only the authentication layer.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib.sh
toolchain="$PWD/target/toolchains/schemathesis"
ensure_venv "$toolchain" tests/schemathesis/requirements.txt
# ABACSYNC_PROFILE=debug reuses the binaries `cargo test` built (scripts/test.sh).
profile="${ABACSYNC_PROFILE:-release}"
scripts/build-plugins.sh --quiet
if [ "$profile" = release ]; then
    cargo build --release --quiet -p abacsync -p abacsync-testkit --bins
else
    cargo build --quiet -p abacsync -p abacsync-testkit --bins
fi
export PATH="$PWD/target/$profile:$PATH"
export SCHEMATHESIS="$toolchain/bin/schemathesis"
export SCHEMATHESIS_HOOKS=hooks PYTHONPATH="$PWD/tests/schemathesis${PYTHONPATH:+:$PYTHONPATH}"
export SCHEMATHESIS_EXAMPLES="${SCHEMATHESIS_EXAMPLES:-25}"
plugin=target/wasm-plugins/wasm32-wasip2/plugin/openldap_mapping.wasm
work=$(mktemp -d -t abacsync-schemathesis.XXXXXX)
trap 'rm -rf "$work"' EXIT
export REPORT_DIR="${SCHEMATHESIS_REPORT_DIR:-$PWD/target/schemathesis-report}"

test-directory --users 20 --plugin "$plugin" --dir "$work" -- bash -euo pipefail -c '
    . scripts/lib.sh
    serve_api "schemathesis password"
    rc_login "schemathesis password"
    # The password method'"'"'s two-factor code (the admin has no TOTP): the operations
    # that ask for a second factor (ldap.syncNow, downsync, the token and factor
    # routes) are reached with it, not only refused.
    code=$(printf %s "schemathesis password" | sha256sum | cut -d" " -f1)
    "$SCHEMATHESIS" run "$url/api/v1/openapi.json" \
        --header "x-auth-token: $token" --header "x-user-id: $user_id" \
        --header "x-2fa-method: password" --header "x-2fa-code: $code" \
        --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
        --max-examples "$SCHEMATHESIS_EXAMPLES" --seed 20261123 --workers 2 \
        --phases examples,coverage,fuzzing \
        --exclude-path /api/v1/logout \
        --report junit --report-dir "$REPORT_DIR" \
        --no-color
    kill -TERM $server
    wait $server
'
