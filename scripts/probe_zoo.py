"""How CLIP-like a built tiny zoo merges: the premise page's acceptance criteria for one zoo folder.

    .venv/bin/python scripts/probe_zoo.py --root DIR --seeds 0 1 2 --out probe.json

For a zoo built with ``python -m catlib.benchmarks.tiny.zoo build ... --out DIR`` (a probe recipe, before it is
shipped): weight averaging, task arithmetic, Fisher merging and RegMean, each tuned on validation with the book's
grid and its own paper's exemplar count (the book's protocol: chosen on the first seed, run on every seed; a seed is
an exemplar draw, since a probe is one zoo), the reference rows, and the mean off-diagonal task-vector cosine, then
every criterion of :data:`catlib.report.CLIP_LIKE` with its target and whether it is met (test averages). The same
numbers as the Table 1 and premise pages would show for that zoo, without re-executing the book; results are cached
in the book's result cache, so a zoo that is then shipped starts warm. Written atomically as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from catlib import report as R  # noqa: E402
from catlib.analysis.premise import task_vector_cosines  # noqa: E402
from catlib.core.io import atomic_write_text  # noqa: E402
from catlib.core.statedict import task_vectors  # noqa: E402

METHODS = ("weight_average", "task_arithmetic", "fisher", "regmean")


def probe(root: Path, seeds, log=print) -> dict:
    manifest = json.loads((root / "manifest.json").read_text())
    benchmark = manifest["config"]["benchmark"]
    t0 = time.time()
    runs = R.seeds(seeds, benchmark, checkpoint_root=str(root), device="cpu")
    bench = runs.bench
    averages, chosen = {}, {}
    for m in METHODS:
        r = runs.tune(m, R.grid(m))
        averages[m], chosen[m] = r.avg_mean, r.tune.best if r.tune else r.hparams
        log(f"{m}: {r.avg_mean:.2f} (chosen {chosen[m]}; {time.time() - t0:.0f} s)")
    refs = runs.references("test")
    individual = refs["individual"].mean
    averages.update({name: refs[name].avg_mean for name in ("pretrained", "individual")})
    C = task_vector_cosines(task_vectors(bench.pretrained, bench.finetuned_list()))
    K = C.shape[0]
    cosine = float((C.sum() - C.diagonal().sum()) / (K * (K - 1)))
    criteria = {}
    for label, lo, hi, f in R.CLIP_LIKE:
        v = float(f(averages, individual, cosine))
        criteria[label] = {
            "value": v,
            "low": lo,
            "high": hi,
            "met": (lo is None or v >= lo) and (hi is None or v <= hi),
        }
    return {
        "root": str(root),
        "benchmark": benchmark,
        "recipe": manifest["config"],
        "seeds": list(seeds),
        "averages": averages,
        "individual_per_task": individual,
        "chosen": chosen,
        "task_vector_cosine": cosine,
        "criteria": criteria,
        "met": sum(c["met"] for c in criteria.values()),
        "seconds": time.time() - t0,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, required=True, help="the built zoo folder (with manifest.json)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="exemplar draws (default 0 1 2)")
    ap.add_argument("--out", type=Path, default=None, help="write the result as JSON here")
    a = ap.parse_args(argv)
    if not (a.root / "manifest.json").is_file():
        print(f"error: {a.root} holds no manifest.json: give the folder a zoo build wrote (--out)", file=sys.stderr)
        return 2
    R.setup()
    out = probe(a.root, a.seeds)
    for label, c in out["criteria"].items():
        print(f"  {'met ' if c['met'] else 'MISS'} {label}: {c['value']:+.2f}")
    print(f"{out['met']} of {len(out['criteria'])} criteria met ({out['seconds']:.0f} s)")
    if a.out:
        atomic_write_text(a.out, json.dumps(out, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
