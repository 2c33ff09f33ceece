#!/usr/bin/env python
"""The book's merge/evaluation results, committed beside the notebooks that show them.

The notebooks read every merge, statistic and accuracy through catlib's result cache (``.cache/report/``, one JSON
file per result holding its full key: benchmark fingerprint, code fingerprint, method, hyperparameters, split).
That folder is not committed; computing it from nothing takes about 45 minutes on 2 cores. So that a fresh clone
(and CI) re-executes the notebooks against the results they were executed with, ``scripts/build_book.py`` packs
the entries computed by the current code into ``notebooks/.result-cache.jsonl.xz`` after it executes notebooks, and
``scripts/nbval.py`` unpacks them into an empty cache before it re-executes the notebooks.

Nothing in the bundle is trusted for its own sake:

* an entry is used only when its stored key equals the key the notebook asks for, which contains the sha256 of
  the benchmark's weights and data and of catlib's merge code (``catlib.protocol.cache``): after a change to that
  code no entry matches and every result is recomputed (``nbval.py --fresh`` does that on purpose);
* ``check`` recomputes a sample of the bundle's accuracies from the weights, with the current code, and fails when
  one differs by more than ``--tolerance`` points on a task (another CPU type rounds floats differently and flips a
  prediction or two: 0.1-0.4 points on the embedded benchmarks' splits).

    python scripts/result_cache.py pack            # .cache/report -> notebooks/.result-cache.jsonl.xz
    python scripts/result_cache.py unpack          # the bundle -> .cache/report (existing files are kept)
    python scripts/result_cache.py check --sample 4
"""

from __future__ import annotations

import argparse
import json
import lzma
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "notebooks" / ".result-cache.jsonl.xz"
sys.path.insert(0, str(REPO))

from catlib.core.io import atomic_write_bytes  # noqa: E402
from catlib.protocol.cache import CACHE_VERSION, ResultCache, atomic_write, code_fingerprint, sha  # noqa: E402

# The benchmarks whose results the book's notebooks compute on a CPU (the others need checkpoints on a user's disk).
EMBEDDED = ("tiny", "tiny-large", "control", "control-shared")


def current_codes() -> set:
    """The code fingerprints of this checkout: the shared code alone (embedded benchmarks) and with the CLIP code."""
    return {code_fingerprint(()), code_fingerprint(("clip",))}


def entries(cache_dir: Path):
    """(kind, key, value) of every readable entry of the cache folder, in a fixed order."""
    for path in sorted(cache_dir.glob("*/*.json")):
        try:
            e = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(e, dict) and isinstance(e.get("key"), dict) and "value" in e:
            yield path.parent.name, e["key"], e["value"]


def pack(cache_dir: Path, bundle: Path = BUNDLE) -> int:
    """Write the entries of ``cache_dir`` computed by this checkout's code (cache version and code fingerprint) to
    ``bundle`` (JSON lines, xz), atomically; the same entries give the same bytes. Returns how many."""
    codes = current_codes()
    lines = [
        json.dumps({"kind": kind, "key": key, "value": value}, sort_keys=True)
        for kind, key, value in entries(cache_dir)
        if key.get("v") == CACHE_VERSION and key.get("code") in codes
    ]
    data = lzma.compress(("\n".join(lines) + "\n").encode(), preset=9)
    atomic_write_bytes(bundle, data)
    return len(lines)


def read(bundle: Path = BUNDLE) -> list:
    """The bundle's entries as dicts ``{"kind", "key", "value"}`` ([] when there is no bundle)."""
    if not bundle.exists():
        return []
    try:
        text = lzma.decompress(bundle.read_bytes()).decode()
    except (lzma.LZMAError, UnicodeDecodeError) as e:
        raise SystemExit(
            f"[result-cache] {bundle.name} is not a readable xz file ({e}); delete it and rebuild"
        ) from None
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def unpack(cache_dir: Path, bundle: Path = BUNDLE) -> tuple:
    """Write the bundle's entries for this checkout's code into ``cache_dir`` where no file is there yet (a file the
    user's own runs wrote is never replaced). Returns (entries in the bundle, for this code, written)."""
    codes = current_codes()
    rows = read(bundle)
    mine = [r for r in rows if r["key"].get("v") == CACHE_VERSION and r["key"].get("code") in codes]
    cache = ResultCache(cache_dir)
    written = 0
    for r in mine:
        path = cache._path(r["kind"], r["key"])
        if not path.exists():
            atomic_write(path, json.dumps({"key": r["key"], "value": r["value"]}, sort_keys=True))
            written += 1
    return len(rows), len(mine), written


def recompute(row: dict, sessions: dict) -> dict:
    """Per-task accuracy of a bundled ``run`` entry, recomputed with no cache on the benchmark whose fingerprint
    its key names."""
    k = row["key"]
    s = sessions[k["bench"]]
    return s.run(
        k["method"],
        k["hparams"],
        k["tasks"],
        eval_tasks=k["eval_tasks"],
        split=k["split"],
        n_exemplars=k["n_exemplars"] if k["n_exemplars"] is not None else 4,
        seed=k["seed"] if k["seed"] is not None else 0,
    )


def check(sample: int, tolerance: float, bundle: Path = BUNDLE, names=EMBEDDED) -> int:
    """Recompute ``sample`` bundled accuracies (``run`` entries of this code, drawn with a seed taken from the
    bundle's content, so the same bundle always checks the same entries) and compare per task. Exit code."""
    from catlib import load_benchmark
    from catlib.protocol import Session

    codes = current_codes()
    runs = [r for r in read(bundle) if r["kind"] == "run" and r["key"].get("code") in codes]
    if not runs:
        print(f"[result-cache] no bundled results for this code in {bundle.name}: nothing to check")
        return 0
    from catlib.benchmarks.tiny import replicate_roots

    sessions = {}
    for name in names:  # every replicate of the tiny zoos (the tables' seeds 1, 2 run on them)
        n = len(replicate_roots("large" if name == "tiny-large" else "default")) if name.startswith("tiny") else 1
        for k in range(n):
            s = Session(load_benchmark(name, **({"replicate": k} if k else {})), cache=None)
            sessions[s.fingerprint] = s
    runs = [r for r in runs if r["key"]["bench"] in sessions]
    rng = random.Random(sha(runs)[:16])
    picked = rng.sample(runs, min(sample, len(runs)))
    worst, failed = 0.0, 0
    for r in picked:
        k, t = r["key"], time.perf_counter()
        got = recompute(r, sessions)
        diff = max(abs(got[task] - r["value"][task]) for task in r["value"])
        worst = max(worst, diff)
        bad = diff > tolerance
        failed += bad
        name = sessions[k["bench"]].bench.name
        print(
            f"[result-cache] {'DIFFERS' if bad else 'ok':7s} {name} {k['method']} {k['hparams']} {k['split']}: "
            f"max |Δ| {diff:.2f} points over {len(r['value'])} tasks ({time.perf_counter() - t:.0f} s)",
            flush=True,
        )
    print(
        f"[result-cache] {len(picked)} of {len(runs)} bundled accuracies recomputed, largest per-task difference "
        f"{worst:.2f} points (tolerance {tolerance})"
    )
    return 1 if failed else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=("pack", "unpack", "check"))
    ap.add_argument(
        "--cache", type=Path, default=None, help="cache folder (default: CATLIB_REPORT_CACHE or .cache/report)"
    )
    ap.add_argument("--bundle", type=Path, default=BUNDLE)
    ap.add_argument("--sample", type=int, default=4, help="check: bundled accuracies to recompute (default 4)")
    ap.add_argument("--tolerance", type=float, default=1.0, help="check: points per task (default 1.0)")
    args = ap.parse_args(argv)
    cache_dir = args.cache or ResultCache().dir
    if args.action == "pack":
        print(f"[result-cache] {pack(cache_dir, args.bundle)} entries for this code -> {args.bundle.name}")
    elif args.action == "unpack":
        total, mine, written = unpack(cache_dir, args.bundle)
        print(f"[result-cache] {args.bundle.name}: {total} entries, {mine} for this code, {written} written")
    else:
        return check(args.sample, args.tolerance, args.bundle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
