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
# The Python package: its wheel built (`pip wheel ./python`, what `pip install ./python` builds)
# and installed into a venv of its own, then its tests, which compare it with the CLI just built.
PYVENV=target/python-venv
[ -x "$PYVENV/bin/python" ] || python3 -m venv "$PYVENV"
# torch too (about 2 minutes and 5 GB from PyPI, its CUDA libraries included): `glassbox.torch`'s
# test is required here, not skipped.
"$PYVENV/bin/pip" install -q --disable-pip-version-check numpy pytest torch
export GLASSBOX_REQUIRE_TORCH=1
rm -rf target/python-wheel
"$PYVENV/bin/pip" wheel -q --disable-pip-version-check --no-deps ./python -w target/python-wheel
"$PYVENV/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps target/python-wheel/glassbox-*.whl
GLASSBOX_BIN="$PWD/target/debug/glassbox" "$PYVENV/bin/pytest" -q -rs -p no:cacheprovider python/tests
if [ -x scripts/fuzz-smoke.sh ]; then ./scripts/fuzz-smoke.sh; fi
