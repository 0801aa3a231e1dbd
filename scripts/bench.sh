#!/usr/bin/env bash
# One command from a fresh clone to the whole comparison: set-up, then the stress and
# speedup studies on all four middlewares and the report. Extra arguments go to
# `python -m results all`: --profile quick (default, ~5 min), standard (3 repeats with
# error bars, ~15-20 min) or full (~100 min); --repeat N and --duration S override it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "== running the comparison"
.venv/bin/python -m results all "$@"
