#!/usr/bin/env bash
# Several replicas on PostgreSQL, end to end: no single machine to lose.
#
# Starts a throw-away PostgreSQL server and slapd (CLUSTER_USERS people, 20,000 by
# default) on free loopback ports, and three `abacsync serve` replicas (a, b, c), each
# with its own data folder, on one database. Then:
#   1. a full import is asked of replica a (grommunio's downsync);
#   2. replica a is killed (-9) while it runs;
#   3. once a's lease has run out, another replica takes the task over and runs it
#      again from the directory: the task ends completed, every user written once;
#   4. the tenant's background sync (every 10 s) fires once per period over the two
#      replicas left, never once per replica.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
scripts/build-plugins.sh --quiet
cargo build --release --quiet -p abacsync -p abacsync-testkit --bins
export PATH="$PWD/target/release:$PATH"
plugin=target/wasm-plugins/wasm32-wasip2/plugin/openldap_mapping.wasm
work=$(mktemp -d -t abacsync-cluster.XXXXXX)
trap 'rm -rf "$work"' EXIT

test-directory --postgres --users "${CLUSTER_USERS:-20000}" --plugin "$plugin" --dir "$work" -- bash -euo pipefail -c '
    dir=$(dirname "$ABACSYNC_CONFIG")
    password="cluster demo password"
    # Background syncs every 10 s; task leases of 4 s (renewed every second) so that a
    # dead replica is noticed quickly in a demo.
    sed -i "s/^default_language = \"en\"/default_language = \"en\"\nsync_interval_secs = 10/" "$ABACSYNC_CONFIG"
    printf "\n[server]\ntask_lease_secs = 4\n" >> "$ABACSYNC_CONFIG"
    pids=()
    trap "kill \${pids[*]} 2>/dev/null || true" EXIT
    start_replica() {
        local name=$1 config="$dir/abacsync-$1.toml"
        sed "s|^data_dir = \"data\"|data_dir = \"data-$name\"|" "$ABACSYNC_CONFIG" > "$config"
        ABACSYNC_ADMIN_USER=admin ABACSYNC_ADMIN_PASSWORD="$password" ABACSYNC_LOG=warn \
            abacsync serve --config "$config" --listen 127.0.0.1:0 > "$dir/$name.out" 2> "$dir/$name.log" &
        pids+=($!)
        eval "pid_$name=$!"
        for _ in $(seq 300); do grep -q listening "$dir/$name.out" 2>/dev/null && break; sleep 0.1; done
        eval "url_$name=$(sed -n "s/^abacsync listening on //p" "$dir/$name.out")"
        echo "replica $name: $(sed -n "s/^abacsync listening on //p" "$dir/$name.out") (pid ${pids[-1]})"
    }
    echo "== three replicas on one PostgreSQL database"
    start_replica a
    start_replica b
    start_replica c

    # A grommunio session made on a works on every replica (one signing key in the store).
    jwt=$(curl -s -d user=admin -d "pass=$password" "$url_a/api/v1/login" | sed -n "s/.*\"grommunioAuthJwt\":\"\([^\"]*\)\".*/\1/p")
    cookie="grommunioAuthJwt=$jwt"
    task_state() {
        curl -s --cookie "$cookie" "$1/api/v1/tasq/tasks/$2"
    }
    field() {
        sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"
    }

    echo
    echo "== 1. a full import asked of replica a: POST $url_a/api/v1/domains/1/ldap/downsync?import=true&timeout=0"
    task=$(curl -s -X POST --cookie "$cookie" "$url_a/api/v1/domains/1/ldap/downsync?import=true&timeout=0" | sed -n "s/.*\"taskID\":\([0-9]*\).*/\1/p")
    echo "task $task"
    for _ in $(seq 600); do
        [ "$(task_state "$url_b" "$task" | field stateName)" = running ] && break
        sleep 0.05
    done
    sleep 0.5
    echo "   seen from replica b: $(task_state "$url_b" "$task" | field stateName): $(task_state "$url_b" "$task" | field message)"

    echo
    echo "== 2. kill -9 replica a mid-sync"
    kill -9 "$pid_a"
    killed=$(date +%s%N)

    echo
    echo "== 3. the task, as replica c shows it"
    last=""
    while :; do
        body=$(task_state "$url_c" "$task")
        state=$(echo "$body" | field stateName)
        message=$(echo "$body" | field message)
        if [ "$state: $message" != "$last" ]; then
            echo "   +$(( ($(date +%s%N) - killed) / 1000000 )) ms  $state: $message"
            last="$state: $message"
        fi
        [ "$state" != queued ] && [ "$state" != running ] && break
        sleep 0.2
    done
    echo "   result counts: $(echo "$body" | sed -n "s/.*\"counts\":\({[^}]*}\).*/\1/p")"
    echo "   in the database: $(psql -X -A -t "$PG_URL" -c "SELECT count(*) || \$\$ users, \$\$ || (SELECT count(*) FROM audit_events WHERE kind = \$\$created\$\$) || \$\$ created events\$\$ FROM users")"

    echo
    echo "== 4. background syncs every 10 s over replicas b and c: 30 s of them"
    sleep 30
    psql -X -A -t "$PG_URL" -c "SELECT \$\$   \$\$ || count(*) || \$\$ scheduled syncs in \$\$ || count(DISTINCT created_at / 10000) || \$\$ periods of 10 s, run by \$\$ || string_agg(DISTINCT owner, \$\$, \$\$) FROM tasks WHERE command = \$\$schedule\$\$"
'
