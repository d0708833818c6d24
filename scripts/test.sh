#!/usr/bin/env bash
# The project's test command (README): type-check, then every test file under node's test runner.
# Python-backed parity tests use $XLIR_PYTHON (a python with torch + transformers); without it they
# skip with a message. Tests that read ../shared skip when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${XLIR_PYTHON:-}" ] && [ -x .venv/bin/python ]; then export XLIR_PYTHON="$PWD/.venv/bin/python"; fi
npx tsc --noEmit -p .
exec node --import tsx --test --test-reporter=tap test/*.test.ts
