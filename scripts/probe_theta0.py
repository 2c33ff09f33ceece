"""Probe how strong a pretraining recipe's θ0 is, at both sizes, without fine-tuning anything.

    .venv/bin/python scripts/probe_theta0.py --set pretrain.labels='"glyph_family"' --threads 2 --out probe.json

For each size: θ0 of the shipped recipe with the given ``--set`` changes (pretrained, or taken from the build
cache when a build or probe with the same recipe and threads made it), rounded through fp16 as a zoo stores it;
the recipe's frozen few-shot heads; θ0's accuracy (%) per task on the validation and test splits. The shipped θ0
of each size is measured the same way beside it. θ0's strength is what "the larger size merges better" rests on
(docs/tiny_benchmark_log.md, attempt 6), so a recipe that does not make the large θ0 clearly stronger than the
default one can be ruled out for that target at the cost of the two pretrainings only. The result is written
atomically as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from catlib.core.io import atomic_write_text  # noqa: E402
from catlib.benchmarks.evaluate import average  # noqa: E402
from catlib.benchmarks.tiny import data as D  # noqa: E402
from catlib.benchmarks.tiny.build.recipes import CONFIGS, recipe_with  # noqa: E402
from catlib.benchmarks.tiny.build.results import accuracies  # noqa: E402
from catlib.benchmarks.tiny.build.train import fp16_round, make_heads, pretrained_stage  # noqa: E402
from catlib.benchmarks.tiny.zoo import default_root, load_state, read_manifest, verify_zoo  # noqa: E402


def theta0_accuracy(cfg: dict, theta0: dict) -> dict:
    heads = make_heads(cfg, theta0, D.TASK_NAMES)
    out = {}
    for split in ("val", "test"):
        acc = accuracies(cfg, theta0, heads, D.TASK_NAMES, split)
        out[split] = dict(per_task=acc, average=average(acc))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="recipe change (JSON)")
    ap.add_argument("--sizes", nargs="+", default=["default", "large"], choices=sorted(CONFIGS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    report = dict(changes=args.set, threads=args.threads, sizes={})
    for size in args.sizes:
        cfg = recipe_with(size, args.set, error=ap.error)
        t = time.time()
        theta0 = fp16_round(pretrained_stage(size, cfg, args.threads, log=lambda s: print(s, flush=True)))
        seconds = time.time() - t
        root = default_root(size)
        manifest = read_manifest(root, size)
        verify_zoo(root, manifest)
        shipped = load_state(root, manifest, "pretrained")  # measured with the heads recipe it shipped with
        report["sizes"][size] = dict(
            pretrain_seconds=round(seconds, 1),
            probe=theta0_accuracy(cfg, theta0),
            shipped=theta0_accuracy(manifest["config"], shipped),
        )
        r = report["sizes"][size]
        print(
            f"{size}: θ0 val {r['probe']['val']['average']:.2f} test {r['probe']['test']['average']:.2f} "
            f"(shipped θ0: val {r['shipped']['val']['average']:.2f} test {r['shipped']['test']['average']:.2f})",
            flush=True,
        )
    atomic_write_text(args.out, json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
