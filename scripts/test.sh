#!/usr/bin/env bash
# Set everything up on a fresh machine and run the whole test suite.
# Models the tests need are built by the test fixtures with the project's own
# build code (cached in .cache/test-models). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --dev
exec .venv/bin/python -m pytest -q -ra "$@"
