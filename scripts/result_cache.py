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
    python scripts/result_cache.py rekey --since REV   # after a change that cannot alter a valid result

``rekey`` is for a change to the fingerprinted code that only refuses bad input, refactors or documents: it
recomputes a sample of every method's bundled results with ``REV``'s code and with the new code on this machine,
and only if every pair is identical renames the bundle's results of ``REV``'s code to the new code's (see
:func:`rekey`). A sample cannot prove a change neutral: ``--drop`` the methods a change alters, and the next
notebook run recomputes them.
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import random
import sys
import time
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "notebooks" / ".result-cache.jsonl.xz"
# The catlib to import: this checkout's, or (rekey's child process) another revision's tree.
sys.path.insert(0, os.environ.get("CATLIB_CODE_ROOT", str(REPO)))

from catlib.core.io import atomic_write_bytes  # noqa: E402
from catlib.protocol.cache import CACHE_VERSION, ResultCache, atomic_write, code_fingerprint, sha  # noqa: E402

# The benchmarks whose results the book's notebooks compute on a CPU (the others need checkpoints on a user's disk).
EMBEDDED = ("tiny", "tiny-large", "glue-tiny", "vl-tiny", "control", "control-shared")


def code_files() -> tuple:
    """The benchmark code a result's fingerprint may cover (``Benchmark.code_files``): none (the tiny zoos and the
    controls), the CLIP code, and the glue-tiny and vl-tiny benchmarks' own (read from their classes)."""
    from catlib.benchmarks.glue_tiny.benchmark import GlueTinyBenchmark
    from catlib.benchmarks.vl_tiny.benchmark import VLTinyBenchmark

    return ((), ("clip",), tuple(GlueTinyBenchmark.code_files), tuple(VLTinyBenchmark.code_files))


def current_codes() -> set:
    """The code fingerprints of this checkout, one per entry of :func:`code_files`."""
    return {code_fingerprint(cf) for cf in code_files()}


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
    write_bundle(lines, bundle)
    return len(lines)


def write_bundle(lines: list, bundle: Path = BUNDLE) -> None:
    """JSON lines, xz-compressed, written atomically."""
    atomic_write_bytes(bundle, lzma.compress(("\n".join(lines) + "\n").encode(), preset=9))


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


def embedded_sessions(names=EMBEDDED) -> dict:
    """Benchmark fingerprint → uncached :class:`Session` for every embedded benchmark as the book loads it by
    default, with every replicate of the built zoos (the tables' seeds 1, 2 run on them)."""
    from catlib import load_benchmark
    from catlib.benchmarks import ZOOS, zoo_replicates
    from catlib.protocol import Session

    sessions = {}
    for name in names:
        n = len(zoo_replicates(name)) if name in ZOOS else 1
        for k in range(n):
            s = Session(load_benchmark(name, **({"replicate": k} if k else {})), cache=None)
            sessions[s.fingerprint] = s
    return sessions


def recompute_state(row: dict, sessions: dict) -> dict:
    """Per-task accuracy of a bundled ``state`` entry of θ0, an expert or the MTL model, recomputed with no cache."""
    k = row["key"]
    s = sessions[k["bench"]]
    label, b = k["label"], s.bench
    sd = b.pretrained if label == "pretrained" else b.mtl if label == "mtl" else b.finetuned[label.split("/", 1)[1]]
    return s.evaluated(label, lambda: sd, k["key"], k["tasks"], k["split"])


REKEYABLE_STATES = ("pretrained", "mtl", "individual")  # state entries rekey can recompute from the weights alone
TEST_TIME_SAMPLE = 1  # test-time entries rekey recomputes per method: one AdaMerging run takes minutes on 2 cores


def recompute_testtime(row: dict, sessions: dict) -> dict:
    """Per-task accuracy of a bundled ``testtime`` entry (AdaMerging, Surgery), re-adapted with no cache."""
    k = row["key"]
    return sessions[k["bench"]].test_time(k["method"], k["hparams"], k["tasks"], k["split"], k["seed"])["accuracy"]


def accuracy_of(row: dict) -> dict:
    """The per-task accuracy a bundled entry stores (a ``testtime`` entry keeps it beside its seconds and λ)."""
    return row["value"]["accuracy"] if row["kind"] == "testtime" else row["value"]


def revision_tree(rev: str, dest: Path) -> Path:
    """``rev``'s ``catlib/`` extracted under ``dest`` (``git archive``, never checked out), beside a link to this
    checkout's ``data/`` (the zoos' weights are not code); returns the tree's root."""
    import io
    import subprocess
    import tarfile

    data = subprocess.run(["git", "archive", rev, "catlib"], cwd=REPO, capture_output=True, check=False)
    if data.returncode:
        raise SystemExit(f"[result-cache] cannot read revision {rev!r}: {data.stderr.decode().strip()}")
    with tarfile.open(fileobj=io.BytesIO(data.stdout)) as tar:
        tar.extractall(dest, filter="data")
    (dest / "data").symlink_to(REPO / "data")
    return dest


def recompute_rows(rows: list, sessions: Optional[dict] = None) -> list:
    """Per-task accuracies of bundled ``run`` / reference ``state`` / ``testtime`` rows, recomputed with no cache
    by the catlib this process imports (``sessions``: :func:`embedded_sessions` of that catlib, loaded when not
    given)."""
    sessions = embedded_sessions() if sessions is None else sessions
    how = {"run": recompute, "state": recompute_state, "testtime": recompute_testtime}
    return [how[r["kind"]](r, sessions) for r in rows]


def rekey(rev: str, per_method: int, tolerance: float, drop=(), bundle: Path = BUNDLE) -> int:
    """Carry the bundle's results computed by revision ``rev``'s code over to this checkout's code, for a change
    that leaves every valid input's result as it was (a new check of bad input, a refactor, a speed-up that does
    the same arithmetic).

    Never on trust: ``per_method`` entries of every method (and of every kind of reference row) are recomputed on
    the embedded benchmarks twice on this machine, by ``rev``'s code (a child process importing its tree) and by
    this checkout's; they must agree within ``tolerance`` points per task (0: identical), else nothing is written.
    (Against the bundled values they may differ where another CPU computed them, as AWD's 300 Adam steps do by a
    few tenths; that is printed, not judged.) A sample cannot prove a change neutral: ``--drop`` every method the
    change is meant to alter. Rekeyed: ``run`` entries of the verified methods not in ``drop``, the θ0 / expert
    / MTL rows, and the test-time runs (AdaMerging, Surgery; :data:`TEST_TIME_SAMPLE` recomputed per method, as
    each takes minutes). Dropped (recomputed by the next notebook run): every other kind (premise, conflict, AWD
    diagnostics), the methods in ``drop``, and any method with no entry on an embedded benchmark to verify on."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tree = revision_tree(rev, Path(tmp) / "tree")
        mapping = {code_fingerprint(cf, tree / "catlib"): code_fingerprint(cf) for cf in code_files()}
        if all(old == new for old, new in mapping.items()):
            print(f"[result-cache] {rev}'s code fingerprints equal this checkout's: nothing to rekey")
            return 0
        rows = read(bundle)
        mine = current_codes()
        keep = [r for r in rows if r["key"].get("v") == CACHE_VERSION and r["key"].get("code") in mine]
        old = [r for r in rows if r["key"].get("v") == CACHE_VERSION and r["key"].get("code") in mapping]
        if not old:
            print(f"[result-cache] the bundle holds no results of {rev}'s code: nothing to rekey")
            return 0

        def group(r):
            if r["kind"] in ("run", "testtime") and r["key"]["method"] not in drop:
                return f"{r['kind']} {r['key']['method']}"
            label = r["key"].get("label", "").split("/")[0] if r["kind"] == "state" else ""
            return f"state {label}" if label in REKEYABLE_STATES else None

        sessions = embedded_sessions()  # this checkout's; the child process loads its own with rev's code
        groups: dict = {}
        for r in old:
            if group(r) is not None and r["key"]["bench"] in sessions:
                groups.setdefault(group(r), []).append(r)
        rng = random.Random(sha(old)[:16])
        size = lambda g: min(TEST_TIME_SAMPLE if g.startswith("testtime") else per_method, len(groups[g]))  # noqa: E731
        sample = [(g, r) for g in sorted(groups) for r in rng.sample(groups[g], size(g))]
        todo, done = Path(tmp) / "sample.json", Path(tmp) / "old.json"
        todo.write_text(json.dumps([r for _, r in sample]))
        t = time.perf_counter()
        print(
            f"[result-cache] recomputing {len(sample)} results of {len(groups)} groups with {rev}'s code ...",
            flush=True,
        )
        child = subprocess.run(
            [sys.executable, __file__, "recompute", "--rows", str(todo), "--out", str(done)],
            env={**os.environ, "CATLIB_CODE_ROOT": str(tree)},
            check=False,
        )
        if child.returncode:
            raise SystemExit(f"[result-cache] recomputing with {rev}'s code failed (exit {child.returncode})")
        before = json.loads(done.read_text())
        print(f"[result-cache] ... and with this checkout's ({time.perf_counter() - t:.0f} s so far)", flush=True)
        after = recompute_rows([r for _, r in sample], sessions)
    worst, failed = 0.0, 0
    for (g, r), a, b in zip(sample, before, after):
        diff = max(abs(a[task] - b[task]) for task in a)
        bundled = max(abs(b[task] - accuracy_of(r)[task]) for task in b)
        worst, failed = max(worst, diff), failed + (diff > tolerance)
        print(
            f"[result-cache] {'DIFFERS' if diff > tolerance else 'ok':7s} {g} ({r['key']['split']}): "
            f"max |Δ| {diff:.2f} points between the two codes ({bundled:.2f} from the bundled value)",
            flush=True,
        )
    if failed:
        print(f"[result-cache] {failed} of {len(sample)} results differ between the two codes: nothing written")
        return 1
    verified = set(groups)
    for g in sorted({group(r) for r in old} - verified - {None}):
        print(f"[result-cache] {g}: no entry on an embedded benchmark to verify on; its entries are dropped")
    moved = [{**r, "key": {**r["key"], "code": mapping[r["key"]["code"]]}} for r in old if group(r) in verified]
    lines = [json.dumps(r, sort_keys=True) for r in keep + moved]
    write_bundle(lines, bundle)
    print(
        f"[result-cache] {len(moved)} results of {rev}'s code rekeyed to this code ({len(sample)} recomputed in "
        f"{len(verified)} groups, identical within {tolerance} points: largest difference {worst:.2f}); "
        f"{len(old) - len(moved)} dropped (the next notebook run recomputes them); {len(keep)} already this code's"
    )
    return 0


def check(sample: int, tolerance: float, bundle: Path = BUNDLE, names=EMBEDDED) -> int:
    """Recompute ``sample`` bundled accuracies (``run`` entries of this code, drawn with a seed taken from the
    bundle's content, so the same bundle always checks the same entries) and compare per task. Exit code."""
    codes = current_codes()
    runs = [r for r in read(bundle) if r["kind"] == "run" and r["key"].get("code") in codes]
    if not runs:
        print(f"[result-cache] no bundled results for this code in {bundle.name}: nothing to check")
        return 0
    sessions = embedded_sessions(names)
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
    ap.add_argument("action", choices=("pack", "unpack", "check", "rekey", "recompute"))
    ap.add_argument(
        "--cache", type=Path, default=None, help="cache folder (default: CATLIB_REPORT_CACHE or .cache/report)"
    )
    ap.add_argument("--bundle", type=Path, default=BUNDLE)
    ap.add_argument("--sample", type=int, default=4, help="check: bundled accuracies to recompute (default 4)")
    ap.add_argument(
        "--tolerance", type=float, default=None, help="points per task (default: check 1.0, rekey 0 = identical)"
    )
    ap.add_argument("--since", default=None, help="rekey: the git revision whose code computed the bundle")
    ap.add_argument("--per-method", type=int, default=2, help="rekey: results recomputed per method (default 2)")
    ap.add_argument("--drop", nargs="*", default=(), help="rekey: methods whose results the change alters")
    ap.add_argument("--rows", type=Path, help="recompute (rekey's child): JSON list of bundle rows")
    ap.add_argument("--out", type=Path, help="recompute (rekey's child): where to write their accuracies")
    args = ap.parse_args(argv)
    cache_dir = args.cache or ResultCache().dir
    if args.action == "pack":
        print(f"[result-cache] {pack(cache_dir, args.bundle)} entries for this code -> {args.bundle.name}")
    elif args.action == "unpack":
        total, mine, written = unpack(cache_dir, args.bundle)
        print(f"[result-cache] {args.bundle.name}: {total} entries, {mine} for this code, {written} written")
    elif args.action == "recompute":
        atomic_write(args.out, json.dumps(recompute_rows(json.loads(args.rows.read_text()))))
    elif args.action == "rekey":
        if not args.since:
            ap.error("rekey needs --since REV (the revision whose code computed the bundle)")
        tol = 0.0 if args.tolerance is None else args.tolerance
        return rekey(args.since, args.per_method, tol, tuple(args.drop), args.bundle)
    else:
        return check(args.sample, 1.0 if args.tolerance is None else args.tolerance, args.bundle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
