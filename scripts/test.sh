#!/usr/bin/env bash
# The whole test suite (sets up .venv first). Extra arguments go to pytest (e.g. -k export, -m "not slow").
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build_plugins.sh
export OMP_WAIT_POLICY=PASSIVE
exec .venv/bin/python -m pytest -q -ra --durations=30 "$@" tests
