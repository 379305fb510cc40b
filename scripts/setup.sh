#!/usr/bin/env bash
# Installs what building and testing abacsync needs, when it is missing:
# - the wasm32-wasip2 Rust target (plugins are compiled to it);
# - OpenLDAP's server and tools (slapd, slapadd, ldapsearch…): the tests, the demo and
#   the benchmark start their own directory on a free loopback port;
# - openssl, which the test directory uses to make its TLS certificates;
# - curl: the API tests and the demo replay the seed documents' own curl calls;
# - python3 (with venv), node and npm, for the Python and JavaScript plugin toolchains;
# - PostgreSQL's server (initdb, postgres, psql): the tests start their own on a free
#   loopback port for the PostgreSQL store and the replica tests.
# - Samba's AD domain controller (samba, samba-tool, its provisioning data) and iproute2:
#   the Active Directory tests provision their own domain on a loopback address of its
#   own (Samba's LDAP ports are fixed).
# Safe to run again; used by scripts/demo.sh, scripts/test.sh and .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    echo "setup: installing the wasm32-wasip2 Rust target"
    rustup target add wasm32-wasip2
fi

missing=()
command -v slapd >/dev/null 2>&1 || [ -x /usr/sbin/slapd ] || missing+=(slapd)
command -v ldapsearch >/dev/null 2>&1 || missing+=(ldap-utils)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v curl >/dev/null 2>&1 || missing+=(curl)
# Python and JavaScript plugins: componentize-py comes from PyPI into a venv,
# componentize-js from npm (scripts/build-python-plugin.sh, scripts/build-js-plugin.sh).
command -v python3 >/dev/null 2>&1 || missing+=(python3)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 \
    || missing+=(postgresql)
command -v samba >/dev/null 2>&1 || [ -x /usr/sbin/samba ] || missing+=(samba)
command -v samba-tool >/dev/null 2>&1 || missing+=(samba-common-bin)
[ -d /usr/share/samba/setup/ad-schema ] || missing+=(samba-ad-provision samba-ad-dc)
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || missing+=(iproute2)
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]} from apt"
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo="sudo"
    fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
    # The package starts a system slapd on port 389; abacsync's tests run their own.
    if command -v service >/dev/null 2>&1; then
        $sudo service slapd stop >/dev/null 2>&1 || true
        # Likewise the system PostgreSQL on port 5432, and Samba's daemons.
        $sudo service postgresql stop >/dev/null 2>&1 || true
        for daemon in samba-ad-dc smbd nmbd winbind; do
            $sudo service "$daemon" stop >/dev/null 2>&1 || true
        done
    fi
fi
