#!/usr/bin/env bash
# The README's test command: set up .venv, lint and format check (ruff), the unit tests, then nbval on the executed
# notebooks.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export CATLIB_PROGRESS=0 HF_HUB_OFFLINE=1
.venv/bin/ruff check . && .venv/bin/ruff format --check . >/dev/null || { echo "[test] ruff: run '.venv/bin/ruff format .' (and fix what 'ruff check .' lists)"; exit 1; }
.venv/bin/python -m pytest -q tests "$@"
if ls notebooks/_executed/*.ipynb >/dev/null 2>&1 || ls notebooks/*.ipynb >/dev/null 2>&1; then
  .venv/bin/python scripts/nbval.py
  .venv/bin/python scripts/result_cache.py check --sample 6
fi
