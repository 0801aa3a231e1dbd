#!/usr/bin/env bash
# One command from a fresh clone to the whole comparison: set-up, then the stress and
# speedup studies on all four middlewares and the report. Extra arguments go to
# `python -m results all` (for example --profile full).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "== running the comparison"
.venv/bin/python -m results all "$@"
