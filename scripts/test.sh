#!/usr/bin/env bash
# The project's test command (the README's): fetches the real artifacts, then runs every test.
# A missing artifact is a failure, never a skip.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/fetch-artifacts.sh
export GLASSBOX_REQUIRE_ARTIFACTS=1
# The workbench's browser tests need Chromium (.ci/run installs Debian's): never skipped here.
export GLASSBOX_REQUIRE_BROWSER=1
# A one-off build gains nothing from incremental state (about 1 GB on disk).
export CARGO_INCREMENTAL=0
cargo test --workspace --all-targets
cargo test --workspace --doc
if [ -x scripts/fuzz-smoke.sh ]; then ./scripts/fuzz-smoke.sh; fi
