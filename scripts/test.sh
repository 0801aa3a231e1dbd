#!/usr/bin/env bash
# One command from a fresh clone to a tested suite: set-up (virtual environment,
# dependencies, Redis and RabbitMQ), then ruff and pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "== ruff"
.venv/bin/ruff check .

echo "== pytest"
.venv/bin/python -m pytest "$@"
