#!/usr/bin/env python
"""Re-execute every executed notebook with nbval and compare its outputs with the stored ones; exit non-zero when
any output changed (or a cell fails).

    .venv/bin/python scripts/nbval.py                  # all notebooks/NN_*.ipynb, in order
    .venv/bin/python scripts/nbval.py notebooks/03_exemplars.ipynb
    .venv/bin/python scripts/nbval.py --fresh          # recompute every merge/evaluation (ignore .cache/report)

* Outputs are compared as text/HTML (`pytest --nbval`), after the substitutions in
  notebooks/nbval_sanitize.cfg (memory addresses, progress-bar rates, timings, absolute paths). Numbers are rounded
  where the notebooks display them, so a changed result changes the text and fails. Cells that print timings or
  machine facts are tagged `nbval-ignore-output`.
* One exception (scripts/plugins/nbval_tolerance.py): a displayed number may differ by up to 2 units of its last digit
  (51.2 against 51.3), with every other character equal. Another CPU type rounds floats differently, which flips a
  test prediction or two (measured on an AMD EPYC against the notebooks' machine: 7 cells of 3 notebooks, by 0.1-0.2
  points). Such matches are listed at the end of the run; `--strict` compares exactly.
* Merge/evaluation results come from catlib's result cache (.cache/report/, keyed by the benchmark's manifest
  and a hash of catlib's merge code, so a change to that code recomputes them). Where it has no entry yet, the
  results the notebooks were executed with are taken from notebooks/.result-cache.jsonl.xz (scripts/result_cache.py;
  `scripts/test.sh` then recomputes a sample of them from the weights). A bundle with entries of other code (a
  change to catlib committed without its rekeyed bundle) fails at once rather than recomputing for an hour
  (CATLIB_NBVAL_RECOMPUTE=1 recomputes). `--fresh` uses an empty cache instead (the whole book's computation, about
  65 minutes on 2 cores).
* Notebooks on different tiny zoos run side by side (``--jobs``, default 2): the lanes and order of
  scripts/build_book.py; the cost and claims notebooks run after them, alone.
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
sys.path.insert(0, str(REPO / "scripts"))
import result_cache as RC  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebooks", nargs="*", type=Path)
    ap.add_argument("--fresh", action="store_true", help="empty merge/evaluation cache (recompute everything)")
    ap.add_argument(
        "--strict",
        action="store_true",
        help="compare outputs exactly (default: a shown number may differ by 2 units of its last digit)",
    )
    ap.add_argument("--cell-timeout", type=int, default=3600, help="seconds per cell (default 3600)")
    ap.add_argument(
        "--jobs",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="pytest processes side by side, one per tiny zoo (default: 2, or 1 on one core)",
    )
    ap.add_argument("pytest_args", nargs=argparse.REMAINDER, help="after --: extra pytest arguments")
    args = ap.parse_args(argv)

    notebooks = [p.resolve() for p in args.notebooks] or sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        print("[nbval] no notebooks")
        return 0
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)
    env.update(
        CATLIB_PROGRESS="0",
        HF_HUB_OFFLINE="1",
        PYDEVD_DISABLE_FILE_VALIDATION="1",
        CATLIB_NBVAL_UNITS="0" if args.strict else env.get("CATLIB_NBVAL_UNITS", "2"),
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "scripts" / "plugins"), env.get("PYTHONPATH")])),
    )
    with tempfile.TemporaryDirectory(prefix="catlib-nbval-") as tmp:
        results = Path(tmp) / "results"
        results.mkdir()
        for f in (NB_DIR / "results").glob("*.json"):
            shutil.copy(f, results / f.name)
        env["CATLIB_RESULTS_DIR"] = str(results)
        if args.fresh:
            env["CATLIB_REPORT_CACHE"] = str(Path(tmp) / "cache")
        else:  # the results the notebooks were executed with (scripts/result_cache.py), where none are cached yet
            cache_dir = Path(env.get("CATLIB_REPORT_CACHE") or REPO / ".cache" / "report")
            if env.get("CATLIB_REPORT_CACHE") != "off":
                total, mine, written = RC.unpack(cache_dir)
                print(
                    f"[nbval] {RC.BUNDLE.name}: {total} results, {mine} computed by this code, {written} added to "
                    f"the result cache",
                    flush=True,
                )
                if mine < total and env.get("CATLIB_NBVAL_RECOMPUTE") != "1":
                    # A bundle is packed from one code's results: older entries mean catlib's merge code changed
                    # after it was packed, and re-executing would recompute those merges (an hour or more).
                    print(
                        f"[nbval] FAILED: {total - mine} bundled results were computed by other code than this "
                        "checkout's (catlib's merge or benchmark code changed after the bundle was packed). Rekey "
                        "them (`.venv/bin/python scripts/result_cache.py rekey --since <commit>`) or rebuild the "
                        "book, and commit notebooks/.result-cache.jsonl.xz; CATLIB_NBVAL_RECOMPUTE=1 recomputes "
                        "them here instead.",
                        flush=True,
                    )
                    return 1
        base = [
            sys.executable,
            "-m",
            "pytest",
            "--nbval",
            "--nbval-current-env",
            "--nbval-sanitize-with",
            str(NB_DIR / "nbval_sanitize.cfg"),
            "--nbval-cell-timeout",
            str(args.cell_timeout),
            "-p",
            "no:cacheprovider",
            "-p",
            "nbval_tolerance",
            "-q",
            "--rootdir",
            str(REPO),
            *[a for a in args.pytest_args if a != "--"],
        ]
        groups = phases(notebooks)
        print(
            f"[nbval] {len(notebooks)} notebook(s){' with an empty result cache' if args.fresh else ''}, "
            f"{' then '.join(' | '.join(','.join(p.stem[:2] for p in lane) for lane in ph) for ph in groups)} "
            f"(lanes separated by | run side by side)",
            flush=True,
        )
        t = time.perf_counter()
        rc = 0
        for phase in groups:
            rc = max(rc, run_side_by_side([base + [str(p) for p in lane] for lane in phase], env, args.jobs, Path(tmp)))
        print(f"[nbval] {'passed' if rc == 0 else 'FAILED'} in {time.perf_counter() - t:.0f} s", flush=True)
        return rc


def phases(notebooks: list) -> list:
    """[[lane, ...], ...]: the book's execution plan (scripts/build_book.py): first one lane per tiny zoo, side
    by side, then the notebooks that run alone (cost, claims), one after another."""
    sys.path.insert(0, str(REPO / "scripts"))
    import build_book as B

    params = {name: p for name, _, p in B.plan()}
    side = [(nb.stem, nb, params.get(nb.stem, {})) for nb in notebooks if not B.alone(nb.stem)]
    out = [[[it[1] for it in lane] for lane in B.lanes(side)]]
    out += [[[nb]] for nb in notebooks if B.alone(nb.stem)]
    return [ph for ph in out if ph]


def run_side_by_side(cmds: list, env: dict, jobs: int, tmp: Path) -> int:
    """Run the pytest commands, up to ``jobs`` at once; each one's output is printed when it ends. Worst exit code."""
    if jobs <= 1 or len(cmds) == 1:
        return max(subprocess.run(c, cwd=REPO, env=env).returncode for c in cmds)
    rc, pending, running = 0, list(enumerate(cmds)), []
    while pending or running:
        while pending and len(running) < jobs:
            k, c = pending.pop(0)
            log = open(tmp / f"lane{k}.log", "w+")
            running.append((subprocess.Popen(c, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT), log))
        time.sleep(1)
        for proc, log in [r for r in running if r[0].poll() is not None]:
            running.remove((proc, log))
            log.seek(0)
            sys.stdout.write(log.read())
            sys.stdout.flush()
            log.close()
            rc = max(rc, proc.returncode)
    return rc


if __name__ == "__main__":
    sys.exit(main())
