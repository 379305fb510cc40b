# Shell functions the scripts share; source it: `. scripts/lib.sh` (from the repository
# root, as every script runs).

# ensure_venv DIR REQUIREMENTS: a Python venv in DIR with the pinned REQUIREMENTS
# installed, made again when the requirements file changes.
ensure_venv() {
    local dir="$1" requirements="$2"
    if ! cmp -s "$requirements" "$dir/requirements.txt" 2>/dev/null; then
        echo "installing $(grep -E '^[A-Za-z0-9]' "$requirements" | sed 's/ *[\\]$//' | xargs) into $dir" >&2
        python3 -m venv --clear "$dir"
        "$dir/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
        cp "$requirements" "$dir/requirements.txt"
    fi
}

# serve_api PASSWORD: inside a test-directory command, starts `abacsync serve` on a
# free loopback port with the first admin `admin` / PASSWORD, stopped when the shell
# exits. Sets `server` (its pid) and `url`.
serve_api() {
    local out
    out="$(dirname "$ABACSYNC_CONFIG")/serve.out"
    ABACSYNC_ADMIN_USER=admin ABACSYNC_ADMIN_PASSWORD="$1" ABACSYNC_LOG=warn \
        abacsync serve --listen 127.0.0.1:0 > "$out" &
    server=$!
    trap "kill -TERM $server 2>/dev/null || true" EXIT
    for _ in $(seq 300); do grep -q listening "$out" 2>/dev/null && break; sleep 0.1; done
    url=$(sed -n "s/^abacsync listening on //p" "$out")
}

# rc_login PASSWORD: Rocket.Chat login as `admin` at `url`; sets `token` and `user_id`.
rc_login() {
    local login
    login=$(curl -s -H "content-type: application/json" \
        -d "{\"user\":\"admin\",\"password\":\"$1\"}" "$url/api/v1/login")
    token=$(echo "$login" | sed -n "s/.*\"authToken\":\"\([^\"]*\)\".*/\1/p")
    user_id=$(echo "$login" | sed -n "s/.*\"userId\":\"\([^\"]*\)\".*/\1/p")
}

# ensure_wrk: installs wrk (the HTTP load generator) from apt when it is missing.
ensure_wrk() {
    if ! command -v wrk > /dev/null; then
        echo "installing wrk (apt)"
        local sudo_cmd=""
        [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
        $sudo_cmd apt-get install -y -qq wrk > /dev/null
    fi
}
