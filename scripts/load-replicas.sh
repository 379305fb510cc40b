#!/usr/bin/env bash
# Read throughput of the admin API with one replica, then with LOAD_REPLICAS (2) on one
# PostgreSQL database, measured with wrk in the same run (issue 17's scaling figure).
# Reported, not asserted: replicas on one machine share its cores (and the database's),
# so the ratio says how far the store lets reads scale here, not what separate
# machines would give.
#
#   scripts/load-replicas.sh        # LOAD_USERS (10,000), LOAD_SECONDS (10), LOAD_REPLICAS (2)
#
# Starts a throw-away slapd and PostgreSQL (test-directory --postgres), imports every
# user through replica a, then runs wrk against GET /api/v1/admin/tenants/1/users?limit=100:
# first against replica a alone, then against every replica at once (one wrk each, the
# same connections in total), and prints requests per second of each and the ratio.
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
export LOAD_SECONDS="${LOAD_SECONDS:-10}" LOAD_REPLICAS="${LOAD_REPLICAS:-2}"

test-directory --postgres --users "${LOAD_USERS:-10000}" --plugin "$plugin" --dir "$work" -- bash -euo pipefail -c '
    dir=$(dirname "$ABACSYNC_CONFIG")
    password="load test password"
    urls=()
    pids=()
    trap "kill \${pids[*]} 2>/dev/null || true" EXIT
    for n in $(seq "$LOAD_REPLICAS"); do
        config="$dir/abacsync-$n.toml"
        sed "s|^data_dir = \"data\"|data_dir = \"data-$n\"|" "$ABACSYNC_CONFIG" > "$config"
        ABACSYNC_ADMIN_USER=admin ABACSYNC_ADMIN_PASSWORD="$password" ABACSYNC_LOG=warn \
            abacsync serve --config "$config" --listen 127.0.0.1:0 > "$dir/$n.out" &
        pids+=($!)
        for _ in $(seq 300); do grep -q listening "$dir/$n.out" 2>/dev/null && break; sleep 0.1; done
        urls+=("$(sed -n "s/^abacsync listening on //p" "$dir/$n.out")")
    done
    url=${urls[0]}
    login=$(curl -s -H "content-type: application/json" -d "{\"user\":\"admin\",\"password\":\"$password\"}" "$url/api/v1/login")
    token=$(echo "$login" | sed -n "s/.*\"authToken\":\"\([^\"]*\)\".*/\1/p")
    user_id=$(echo "$login" | sed -n "s/.*\"userId\":\"\([^\"]*\)\".*/\1/p")
    code=$(printf "%s" "$password" | sha256sum | cut -d" " -f1)
    curl -s -X POST -H "x-auth-token: $token" -H "x-user-id: $user_id" -H "x-2fa-code: $code" \
        "$url/api/v1/domains/1/ldap/downsync?import=true&timeout=600" > /dev/null
    path="/api/v1/admin/tenants/1/users?limit=100"
    connections=16
    rate() {
        sed -n "s/^Requests\/sec: *\([0-9.]*\).*/\1/p" "$1"
    }
    echo "== one replica: wrk -t2 -c$connections -d${LOAD_SECONDS}s GET $path"
    wrk -t2 -c$connections -d"${LOAD_SECONDS}s" -H "x-auth-token: $token" -H "x-user-id: $user_id" "$url$path" > "$dir/one.txt"
    one=$(rate "$dir/one.txt")
    echo "   $one requests/s"
    echo "== $LOAD_REPLICAS replicas at once: $((connections / LOAD_REPLICAS)) connections each"
    n=0
    wrks=()
    for replica in "${urls[@]}"; do
        n=$((n + 1))
        wrk -t1 -c$((connections / LOAD_REPLICAS)) -d"${LOAD_SECONDS}s" -H "x-auth-token: $token" -H "x-user-id: $user_id" "$replica$path" > "$dir/many-$n.txt" &
        wrks+=($!)
    done
    wait "${wrks[@]}"
    total=0
    for n in $(seq "$LOAD_REPLICAS"); do
        r=$(rate "$dir/many-$n.txt")
        echo "   replica $n: $r requests/s"
        total=$(awk -v a="$total" -v b="$r" "BEGIN { print a + b }")
    done
    echo "   together: $total requests/s"
    echo "ratio, $LOAD_REPLICAS replicas / one: $(awk -v a="$total" -v b="$one" "BEGIN { printf \"%.2f\", a / b }") (cores here: $(nproc))"
'
