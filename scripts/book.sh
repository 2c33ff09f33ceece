#!/usr/bin/env bash
# The README's book command: set up .venv and the "catlib" kernel, execute the notebooks that changed (papermill),
# build the Jupyter Book, and print where the HTML is. Arguments go to scripts/build_book.py (e.g. --force all).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
unset MPLBACKEND   # a non-interactive backend here makes the notebooks' figures vanish silently
export CATLIB_PROGRESS=0 HF_HUB_OFFLINE=1
exec .venv/bin/python scripts/build_book.py "$@"
