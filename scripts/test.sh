#!/usr/bin/env bash
# The test suite: installs missing prerequisites, builds the plugins, runs every test of
# the workspace (unit tests, plugin tests, integration tests in tests/it), then
# schemathesis against the served OpenAPI description (scripts/schemathesis.sh).
# Under CI=true a missing prerequisite fails the run; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
scripts/build-plugins.sh
cargo test --workspace "$@"
# The Rust SDK packages on its own (the contract inside), and builds from its package.
cargo package -p abacsync-guest --quiet --allow-dirty
# Property-based tests of the HTTP API against its OpenAPI description (bounded).
ABACSYNC_PROFILE=debug scripts/schemathesis.sh
