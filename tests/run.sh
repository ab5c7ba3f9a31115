#!/usr/bin/env bash
# The whole test suite: unit tests, then every notebook re-run and compared under nbval.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONHASHSEED=0
python -m pytest tests notebooks -q --nbval --nbval-current-env --nbval-cell-timeout=600 \
    --nbval-sanitize-with tests/nbval_sanitize.cfg "$@"
