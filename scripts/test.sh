#!/usr/bin/env bash
# The test suite: installs missing prerequisites, builds the plugins, and runs every
# test of the workspace (unit tests, plugin tests, integration tests in tests/it).
# Under CI=true a missing prerequisite fails the run; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
scripts/build-plugins.sh
cargo test --workspace "$@"
