#!/usr/bin/env bash
# Create or reuse ./.venv and install the pinned requirements (idempotent; re-installs when requirements change).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  $PY -m venv .venv
fi
stamp=.venv/.catlib-requirements.sha256
want=$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing pinned requirements into .venv (first run: a few minutes)"
  pipi() {  # pip install, hiding this machine's harmless local-index warnings, failing on pip's failure
    local log; log=$(mktemp)
    if ! .venv/bin/python -m pip install --quiet --disable-pip-version-check "$@" >"$log" 2>&1; then
      grep -v "is ignored: it is neither" "$log"; rm -f "$log"; echo "[setup] pip install $* failed"; exit 1
    fi
    grep -v "is ignored: it is neither" "$log" || true; rm -f "$log"
  }
  pipi -r requirements.txt
  pipi --no-deps --no-build-isolation -e .
  .venv/bin/python -c "import torch, open_clip, catlib" || { echo "[setup] import check failed"; exit 1; }
  echo "$want" > "$stamp"
else
  echo "[setup] .venv is up to date"
fi
# the Jupyter kernel the notebooks run on (papermill and nbval use it)
.venv/bin/python -m ipykernel install --sys-prefix --name catlib --display-name "catlib (.venv)" >/dev/null 2>&1
