#!/usr/bin/env bash
# Set-up shared by scripts/test.sh and scripts/bench.sh (and usable on its own):
# a virtual environment with insultbench installed, and Redis and RabbitMQ reachable.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "error: insultbench needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  "$python" -m venv .venv
fi
echo "== installing insultbench and its dependencies into .venv"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'

echo "== making Redis and RabbitMQ reachable"
.venv/bin/python -m middlewares brokers up
