#!/usr/bin/env bash
# The main job, end to end: a real sync from a real directory through a real plugin.
#
# Builds abacsync and the example plugins, checks the OpenLDAP plugin and runs it over
# its golden fixtures, then starts a throw-away OpenLDAP directory (slapd on a free
# loopback port, 1,000 generated people) and syncs it into a fresh store: a dry run, a
# full sync, a change and a deletion in the directory, an incremental sync that sees
# both (RFC 4533 content synchronization), and a full sync with nothing left. Then it
# serves the API and triggers syncs the way grommunio's and Rocket.Chat's clients do.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
scripts/build-plugins.sh --quiet
cargo build --release --quiet -p abacsync -p abacsync-testkit --bins
export PATH="$PWD/target/release:$PATH"
plugin=target/wasm-plugins/wasm32-wasip2/plugin/openldap_mapping.wasm
demo=$(mktemp -d -t abacsync-demo.XXXXXX)
trap 'rm -rf "$demo"' EXIT

echo "== abacsync plugin check $plugin"
abacsync plugin check "$plugin"
echo
echo "== abacsync plugin test (golden fixtures)"
abacsync plugin test "$plugin" plugins/openldap/fixtures/entries.ldif \
    --expect plugins/openldap/fixtures/expected.json > /dev/null

echo

test-directory --users "${DEMO_USERS:-1000}" --plugin "$plugin" --dir "$demo" -- bash -euo pipefail -c '
    echo "== abacsync sync --tenant 1 --dry-run"
    abacsync sync --tenant 1 --dry-run
    echo
    echo "== abacsync sync --tenant 1"
    abacsync sync --tenant 1
    echo
    echo "== in the directory: user000007 changes department, user000008 leaves"
    printf "dn: uid=user000007,ou=people,%s\nchangetype: modify\nreplace: departmentNumber\ndepartmentNumber: 900\n" "$LDAP_BASE_DN" |
        ldapmodify -x -H "$LDAP_URL" -D "$LDAP_BIND_DN" -w "$LDAP_BIND_PASSWORD" > /dev/null
    ldapdelete -x -H "$LDAP_URL" -D "$LDAP_BIND_DN" -w "$LDAP_BIND_PASSWORD" "uid=user000008,ou=people,$LDAP_BASE_DN"
    echo
    echo "== abacsync sync --tenant 1 --mode incremental   (syncrepl: only what changed, the user who left included)"
    abacsync sync --tenant 1 --mode incremental
    echo
    echo "== abacsync sync --tenant 1   (full: nothing left to do)"
    abacsync sync --tenant 1
    echo
    echo "== abacsync sync --tenant 1 --json   (the report, per-user results included; first lines)"
    report="$(dirname "$ABACSYNC_CONFIG")/report.json"
    abacsync sync --tenant 1 --json > "$report"
    head -n 24 "$report"
    echo
    echo "== abacsync serve   (the REST API on a free loopback port)"
    . scripts/lib.sh
    serve_api "demo password 1"
    answer="$(dirname "$ABACSYNC_CONFIG")/downsync.json"
    echo "listening on $url"
    echo
    echo "== grommunio: form login, then POST /api/v1/domains/1/ldap/downsync?import=true&timeout=30"
    jwt=$(curl -s -d user=admin -d "pass=demo password 1" "$url/api/v1/login" | sed -n "s/.*\"grommunioAuthJwt\":\"\([^\"]*\)\".*/\1/p")
    # Into a file first: piped straight into head, curl fails writing the rest (exit 23).
    curl -s --request POST --url "$url/api/v1/domains/1/ldap/downsync?import=true&timeout=30" --cookie "grommunioAuthJwt=$jwt" > "$answer"
    head -c 400 "$answer"
    echo
    echo
    echo "== Rocket.Chat: login, then POST /api/v1/ldap.syncNow with the two-factor code"
    login=$(curl -s -H "content-type: application/json" -d "{\"user\":\"admin\",\"password\":\"demo password 1\"}" "$url/api/v1/login")
    token=$(echo "$login" | sed -n "s/.*\"authToken\":\"\([^\"]*\)\".*/\1/p")
    user_id=$(echo "$login" | sed -n "s/.*\"userId\":\"\([^\"]*\)\".*/\1/p")
    code=$(printf "%s" "demo password 1" | sha256sum | cut -d" " -f1)
    curl -s --location --request POST "$url/api/v1/ldap.syncNow" \
        --header "x-auth-token: $token" --header "x-user-id: $user_id" --header "x-2fa-code: $code"
    echo
    sleep 1
    echo
    echo "== GET /api/v1/tasq/tasks"
    curl -s "$url/api/v1/tasq/tasks" --header "x-auth-token: $token" --header "x-user-id: $user_id"
    echo
    kill -TERM $server
    wait $server
'
