#!/usr/bin/env python
"""Re-execute every executed notebook with nbval and compare its outputs with the stored ones; exit non-zero when
any output changed (or a cell fails).

    .venv/bin/python scripts/nbval.py                  # all notebooks/NN_*.ipynb, in order
    .venv/bin/python scripts/nbval.py notebooks/03_exemplars.ipynb
    .venv/bin/python scripts/nbval.py --fresh          # recompute every merge/evaluation (ignore .cache/report)

* Outputs are compared as text/HTML (`pytest --nbval`, strict), after the substitutions in
  notebooks/nbval_sanitize.cfg (memory addresses, progress-bar rates, timings, absolute paths). Numbers are rounded
  where the notebooks display them, so a changed result changes the text and fails. Cells that print timings or
  machine facts are tagged `nbval-ignore-output`.
* Merge/evaluation results come from catlib.report's disk cache (.cache/report/, keyed by the benchmark's manifest
  and a hash of catlib's sources, so any code change recomputes them); `--fresh` uses an empty cache instead (the
  whole book's computation, about as long as `bash scripts/book.sh --force all`).
* The notebooks write their results files into a temporary copy of notebooks/results/, so the committed ones are
  never modified by a test run.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NB_DIR = REPO / "notebooks"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebooks", nargs="*", type=Path)
    ap.add_argument("--fresh", action="store_true", help="empty merge/evaluation cache (recompute everything)")
    ap.add_argument("--cell-timeout", type=int, default=3600, help="seconds per cell (default 3600)")
    ap.add_argument("pytest_args", nargs=argparse.REMAINDER, help="after --: extra pytest arguments")
    args = ap.parse_args(argv)

    notebooks = [p.resolve() for p in args.notebooks] or sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        print("[nbval] no notebooks")
        return 0
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)
    env.update(CATLIB_PROGRESS="0", HF_HUB_OFFLINE="1", PYDEVD_DISABLE_FILE_VALIDATION="1")
    with tempfile.TemporaryDirectory(prefix="catlib-nbval-") as tmp:
        results = Path(tmp) / "results"
        results.mkdir()
        for f in (NB_DIR / "results").glob("*.json"):
            shutil.copy(f, results / f.name)
        env["CATLIB_RESULTS_DIR"] = str(results)
        if args.fresh:
            env["CATLIB_REPORT_CACHE"] = str(Path(tmp) / "cache")
        cmd = [sys.executable, "-m", "pytest", "--nbval", "--nbval-current-env",
               "--nbval-sanitize-with", str(NB_DIR / "nbval_sanitize.cfg"),
               "--nbval-cell-timeout", str(args.cell_timeout), "-p", "no:cacheprovider", "-q",
               "--rootdir", str(REPO), *[str(p) for p in notebooks],
               *[a for a in args.pytest_args if a != "--"]]
        print(f"[nbval] {len(notebooks)} notebook(s){' with an empty result cache' if args.fresh else ''}",
              flush=True)
        t = time.perf_counter()
        r = subprocess.run(cmd, cwd=REPO, env=env)
        print(f"[nbval] {'passed' if r.returncode == 0 else 'FAILED'} in {time.perf_counter() - t:.0f} s", flush=True)
        return r.returncode


if __name__ == "__main__":
    sys.exit(main())
