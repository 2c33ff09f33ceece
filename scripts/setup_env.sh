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
  # torch 2.14.1 from PyPI is the CUDA build: a new .venv takes about 6.2 GB, and pip unpacks into $TMPDIR first.
  # Say so plainly before pip runs out of space half-way ("[Errno 28] No space left on device").
  # (Checked only while torch is not in .venv yet: updating a complete .venv needs little.)
  need_gb=${CATLIB_SETUP_NEED_GB:-8}
  ls -d .venv/lib/python*/site-packages/torch >/dev/null 2>&1 && need_gb=0
  for d in .venv "${TMPDIR:-/tmp}"; do
    free_kb=$(df -Pk "$d" | awk 'NR==2 {print $4}')
    if [ -n "$free_kb" ] && [ "$free_kb" -lt $((need_gb * 1024 * 1024)) ]; then
      echo "[setup] not enough disk space: $d has $((free_kb / 1024)) MB free; installing the pinned requirements" \
           "(torch's CUDA build) needs about $need_gb GB there (a complete .venv is about 6.2 GB)."
      echo "[setup] free some space (e.g. old clones with their own .venv, ~/.cache/pip) and run this again;" \
           "CATLIB_SETUP_NEED_GB=N lowers the threshold at your own risk."
      df -h "$d" | sed 's/^/[setup]   /'
      exit 1
    fi
  done
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
