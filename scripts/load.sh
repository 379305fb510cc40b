#!/usr/bin/env bash
# Read-endpoint latency while a large sync runs, measured with wrk (issue 5's load
# figure). Reported, not asserted.
#
#   scripts/load.sh                 # 100,000 users; LOAD_USERS, LOAD_SECONDS to change
#
# Starts a throw-away slapd with LOAD_USERS people (test-directory), serves the API,
# and runs wrk against GET /api/v1/admin/tenants/1/users?limit=100 twice, LOAD_SECONDS
# each: idle (the baseline of the same run), then while a full import of every user
# runs (grommunio's downsync, in the background). Prints wrk's latency distributions
# and the sync's own time.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
. scripts/lib.sh
ensure_wrk
scripts/build-plugins.sh --quiet
cargo build --release --quiet -p abacsync -p abacsync-testkit --bins
export PATH="$PWD/target/release:$PATH"
plugin=target/wasm-plugins/wasm32-wasip2/plugin/openldap_mapping.wasm
work=$(mktemp -d -t abacsync-load.XXXXXX)
trap 'rm -rf "$work"' EXIT
export LOAD_SECONDS="${LOAD_SECONDS:-10}"

test-directory --users "${LOAD_USERS:-100000}" --plugin "$plugin" --dir "$work" -- bash -euo pipefail -c '
    . scripts/lib.sh
    serve_api "load test password"
    rc_login "load test password"
    auth=(-H "x-auth-token: $token" -H "x-user-id: $user_id")
    target="$url/api/v1/admin/tenants/1/users?limit=100"

    measure() {
        echo "== $1: wrk -t2 -c16 -d${LOAD_SECONDS}s --latency GET /api/v1/admin/tenants/1/users?limit=100"
        wrk -t2 -c16 -d"${LOAD_SECONDS}s" --latency "${auth[@]}" "$target" |
            sed -n "/Latency Distribution/,/Requests\/sec/p"
        echo
    }
    sync_in_background() {
        # A full sync under a Rocket.Chat token asks for the second factor (the password digest here).
        code=$(printf "%s" "load test password" | sha256sum | cut -d" " -f1)
        curl -s -X POST "${auth[@]}" -H "x-2fa-code: $code" "$url/api/v1/domains/1/ldap/downsync?import=true&timeout=0" |
            sed -n "s/.*\"taskID\":\([0-9]*\).*/\1/p"
    }
    wait_task() {
        while :; do
            body=$(curl -s "${auth[@]}" "$url/api/v1/tasq/tasks/$1?level=1")
            state=$(echo "$body" | sed -n "s/.*\"stateName\":\"\([a-z]*\)\".*/\1/p")
            [ "$state" != queued ] && [ "$state" != running ] && break
            sleep 0.5
        done
        echo "   task $1: $state: $(echo "$body" | sed -n "s/.*\"message\":\"\([^\"]*\)\".*/\1/p")"
        echo
    }

    started=$(date +%s%N)
    task=$(sync_in_background)
    measure "during the first full import (task $task)"
    wait_task "$task"
    echo "   first import done after $(( ($(date +%s%N) - started) / 1000000 )) ms (wall clock, with the load)"
    echo
    measure "idle, store populated (the baseline)"
    task=$(sync_in_background)
    measure "during a full sync that changes nothing (task $task)"
    wait_task "$task"
'
