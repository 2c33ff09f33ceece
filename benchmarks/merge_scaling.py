"""How each method's merge time and memory grow with the number of experts and with the width of the model.

Two sweeps on open_clip vision transformers with random weights and synthetic fine-tuned models
(:func:`merge_cost.make_inputs`), one fresh process per point in which every method runs in turn: the inputs and
each kind of statistics made once, then per method the merge timed with its statistics given and the memory it
allocates measured (the peak resident memory during the merge above the resident memory just before it, the peak
counter restarted first):

* experts: ``--experts`` (default 2 4 8 16) fine-tuned models at width ``--base-width`` (default 256);
* width: ``--widths`` (default 128 256 512 768) at ``--base-experts`` (default 8) experts;

six layers throughout; a point both sweeps share is measured once. Every method with the hyperparameters of
:data:`merge_cost.HPARAMS`, AWD with 20 and WUDI with 30 of their Adam steps (their total grows linearly with the
step count; the cost page measures that on the tiny zoo). The JSON (``--json``) is what the book's cost page plots.

    python benchmarks/merge_scaling.py --json benchmarks/merge_scaling_cpu.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import merge_cost  # noqa: E402

LAYERS = 6
STEPS = {"awd_ta": {"steps": 20}, "awd_ties": {"steps": 20}, "wudi": {"steps": 30}}


def log(msg: str) -> None:
    print(f"[scaling] {msg}", flush=True)


def hparams(method: str) -> dict:
    return {**merge_cost.HPARAMS.get(method, {}), **STEPS.get(method, {})}


def point_child(methods, K: int, width: int, n_ex: int, seed: int) -> list:
    """Every method on one point (K experts, this width), in this process: the inputs and each kind of statistics
    made once, then per method the peak counter restarted, the merge timed and what it allocates measured."""
    import gc

    import catlib

    visual, p, fts = merge_cost.make_inputs(K, seed, width, LAYERS)
    inputs_mb = sum(v.numel() * v.element_size() for sd in [p] + fts for v in sd.values()) / 2**20
    ex, heads = merge_cost.exemplars(K, n_ex, seed, visual.output_dim)
    stats_for = {}  # each kind of statistics collected once per point
    rows = []
    for m in methods:
        hp = hparams(m)
        spec = catlib.get_method(m)
        key = (tuple(sorted(spec.needs_for(hp) or ())), spec.labelled)
        if key not in stats_for:
            stats_for[key] = merge_cost.statistics_for(m, hp, visual, p, fts, ex, heads)
        gc.collect()
        seconds, peak, before = merge_cost.timed_merge(m, p, fts, stats_for[key], hp)
        rows.append(
            {"method": m, "hparams": hp, "seconds": seconds, "merge_alloc_mb": peak - before, "inputs_mb": inputs_mb}
        )
    return rows


def measure(methods, K: int, width: int, n_ex: int, seed: int) -> list:
    """:func:`point_child` in a fresh process."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(K), str(width), "--methods", *methods]
    cmd += ["--exemplars", str(n_ex), "--seed", str(seed)]
    return merge_cost.result_of(cmd, f"K={K} width={width}")


def main(argv=None) -> None:
    import catlib
    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="*", default=None, help="default: every registered method")
    ap.add_argument("--experts", nargs="*", type=int, default=[2, 4, 8, 16])
    ap.add_argument("--widths", nargs="*", type=int, default=[128, 256, 512, 768])
    ap.add_argument("--base-width", type=int, default=256)
    ap.add_argument("--base-experts", type=int, default=8)
    ap.add_argument("--exemplars", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--child", nargs=2, type=int, default=None, help=argparse.SUPPRESS)  # K, width
    a = ap.parse_args(argv)
    methods = a.methods or list(catlib.methods())
    if a.child:
        print("RESULT " + json.dumps(point_child(methods, a.child[0], a.child[1], a.exemplars, a.seed)))
        return
    points = [("experts", k, a.base_width) for k in a.experts] + [("width", a.base_experts, w) for w in a.widths]
    measured, rows = {}, []
    t0 = time.perf_counter()
    for sweep, K, width in points:
        if (K, width) not in measured:
            measured[(K, width)] = measure(methods, K, width, a.exemplars, a.seed)
        rows += [{"sweep": sweep, "experts": K, "width": width, "layers": LAYERS, **r} for r in measured[(K, width)]]
        log(
            f"{sweep}: K={K} width={width}: "
            + ", ".join(f"{r['method']} {r['seconds']:.2f} s" for r in rows[-len(methods) :])
        )
    doc = {
        "setting": f"open_clip VisionTransformer (random weights), {LAYERS} layers, patch 32, 224 px; synthetic "
        f"fine-tuned models, statistics from {a.exemplars} random images per task; CPU, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; AWD 20 and WUDI 30 Adam steps",
        "machine": merge_cost.machine(),
        "measured_in_s": round(time.perf_counter() - t0, 1),
        "rows": rows,
    }
    print(json.dumps(doc))
    if a.json:
        from catlib.core.io import atomic_write_text

        atomic_write_text(a.json, json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
