#!/usr/bin/env bash
# The test suite: installs missing prerequisites, builds the plugins, runs every test of
# the workspace (unit tests, plugin tests, integration tests in tests/it), packages the
# SDKs, then schemathesis against the served OpenAPI description (scripts/schemathesis.sh).
# Under CI=true a missing prerequisite fails the run; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
scripts/build-plugins.sh
cargo test --workspace "$@"
# The SDKs package as published: the crate, the Python wheel, the npm package (with
# its TypeScript declarations type-checked).
scripts/check-sdk-packages.sh
# Property-based tests of the HTTP API against its OpenAPI description (bounded).
ABACSYNC_PROFILE=debug scripts/schemathesis.sh
