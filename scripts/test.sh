#!/usr/bin/env bash
# The README's test command: set up .venv, lint and format check (ruff), the unit tests, nbval on the executed
# notebooks, then the book built (-W: warnings are errors) and opened in headless Chromium (scripts/browser_check.py;
# CATLIB_SKIP_BROWSER=1 skips that last step where Chromium cannot be installed).
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
if [ "${CATLIB_SKIP_BROWSER:-0}" = 1 ]; then
  echo "[test] browser check skipped (CATLIB_SKIP_BROWSER=1)"
else
  bash scripts/setup_browser.sh
  env -u MPLBACKEND .venv/bin/python scripts/build_book.py --no-execute --strict
  .venv/bin/python scripts/browser_check.py
fi
