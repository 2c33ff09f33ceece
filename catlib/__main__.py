"""Command line: ``python -m catlib evaluate|methods|merge-cost ...``.

    python -m catlib methods
    python -m catlib evaluate --benchmark tiny --method cat --alpha 0.3 --c 2 --json
    python -m catlib evaluate --benchmark tiny --method individual --json
    python -m catlib evaluate --benchmark vit-b-32 --checkpoint-root DIR --data-root DIR --method cat --json
    python -m catlib evaluate --benchmark openclip --model-name ViT-B-32 --checkpoint-root DIR --data-root DIR ...

``evaluate`` prints per-task and average accuracy (%, JSON keys ``method``, ``per_task``, ``average``).
``pretrained``, ``individual`` and ``mtl`` are accepted as method names for the reference rows. Every
hyperparameter of every method is a flag (``--alpha``, ``--c``, ``--lam``, ``--k``, ``--merge-func``, ...); only
those of the chosen method may be given, and those not given take ``catlib.merge``'s defaults.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, List, Optional


def _parse_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _all_hyperparameters() -> Dict[str, str]:
    from .merge.registry import _REGISTRY
    names: Dict[str, str] = {}
    for spec in _REGISTRY.values():
        for n, h in spec.hyperparameters.items():
            names.setdefault(n, h.doc)
    return names


def build_parser() -> argparse.ArgumentParser:
    from .benchmarks import benchmark_names
    ap = argparse.ArgumentParser(prog="python -m catlib", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("methods", help="list merge methods, their hyperparameters and defaults (JSON)")
    ev = sub.add_parser("evaluate", help="merge on a benchmark and report accuracy per task")
    ev.add_argument("--benchmark", default="tiny", choices=benchmark_names())
    ev.add_argument("--method", required=True, help="a merge method, or pretrained / individual / mtl")
    ev.add_argument("--tasks", nargs="*", default=None, help="tasks to merge (default: all)")
    ev.add_argument("--split", default="test", choices=["train", "val", "test"])
    ev.add_argument("--exemplars", type=int, default=4, help="exemplars per task for data-dependent methods")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--device", default="auto")
    ev.add_argument("--batch-size", type=int, default=None, help="evaluation batch size (default: the benchmark's)")
    ev.add_argument("--json", action="store_true", help="print JSON only")
    real = ev.add_argument_group("real checkpoints (vit-b-32, vit-b-16, vit-l-14, openclip)")
    real.add_argument("--model-name", default=None, help="--benchmark openclip: the open_clip architecture (or a "
                      "name described by open_clip_config.json in the checkpoint root)")
    real.add_argument("--no-amp", action="store_true", help="evaluate in fp32 on CUDA too (default: fp16 autocast)")
    real.add_argument("--checkpoint-root", default=None)
    real.add_argument("--data-root", default=None)
    real.add_argument("--layout", default=None, choices=["auto", "task_vectors", "hf"])
    real.add_argument("--trust-pickle", action="store_true", help="allow unpickling whole modules (trusted files)")
    real.add_argument("--openclip-weights", default=None, help="open_clip pretrained weight file (text tower)")
    real.add_argument("--cache-dir", default=None)
    hp = ev.add_argument_group("hyperparameters (those of --method only)")
    for name, doc in sorted(_all_hyperparameters().items()):
        hp.add_argument("--" + name.replace("_", "-"), dest="hp_" + name, default=None, metavar="V",
                        help=(doc or "").replace("%", "%%") or None)
    return ap


def _benchmark_kwargs(a) -> Dict[str, Any]:
    kw: Dict[str, Any] = {"device": a.device}
    if a.tasks:
        kw["tasks"] = a.tasks
    if not a.benchmark.startswith("tiny"):
        if not a.checkpoint_root or not a.data_root:
            raise SystemExit(f"--benchmark {a.benchmark} needs --checkpoint-root and --data-root")
        if a.benchmark == "openclip" and not a.model_name:
            raise SystemExit("--benchmark openclip needs --model-name (e.g. ViT-B-32)")
        if a.benchmark != "openclip" and a.model_name:
            raise SystemExit(f"--model-name is for --benchmark openclip; {a.benchmark} fixes its architecture")
        kw.update(checkpoint_root=a.checkpoint_root, data_root=a.data_root, trust_pickle=a.trust_pickle)
        if a.batch_size:
            kw["batch_size"] = a.batch_size
        if a.no_amp:
            kw["amp"] = False
        for name in ("layout", "openclip_weights", "cache_dir", "model_name"):
            if getattr(a, name) is not None:
                kw[name] = getattr(a, name)
    return kw


def evaluate_command(a) -> Dict[str, Any]:
    from . import experiment
    from .benchmarks import load_benchmark
    from .evaluate import average, evaluate
    from .merge.registry import get_method
    hps = {k[3:]: _parse_value(v) for k, v in vars(a).items() if k.startswith("hp_") and v is not None}
    if a.method not in experiment.REFERENCE:
        get_method(a.method)  # an unknown name fails before any loading
    bench = load_benchmark(a.benchmark, **_benchmark_kwargs(a))
    tasks = list(bench.tasks)
    if a.method in experiment.REFERENCE:
        if hps:
            raise SystemExit(f"{a.method} takes no hyperparameters (got {sorted(hps)})")
        if a.method == "pretrained":
            per_task = evaluate(bench, bench.pretrained, a.split, tasks, batch_size=a.batch_size)
        elif a.method == "individual":
            per_task = {t: evaluate(bench, bench.finetuned[t], a.split, [t], batch_size=a.batch_size)[t]
                        for t in tasks}
        else:
            if bench.mtl is None:
                raise SystemExit(f"benchmark {a.benchmark} has no jointly fine-tuned (mtl) model")
            per_task = evaluate(bench, bench.mtl, a.split, tasks, batch_size=a.batch_size)
        used: Dict[str, Any] = {}
    else:
        spec = get_method(a.method)
        unknown = sorted(set(hps) - set(spec.hyperparameters))
        if unknown:
            raise SystemExit(f"{a.method} has no hyperparameter(s) {unknown}; it has {sorted(spec.hyperparameters)}")
        merged = experiment.merge_on(bench, a.method, hps, tasks, a.exemplars, a.seed)
        per_task = evaluate(bench, merged, a.split, tasks, batch_size=a.batch_size)
        used = {**spec.defaults(), **hps}
    return {"method": a.method, "benchmark": a.benchmark, "split": a.split, "hyperparameters": used,
            "per_task": {t: round(v, 4) for t, v in per_task.items()}, "average": round(average(per_task), 4)}


def main(argv: Optional[List[str]] = None) -> int:
    from .errors import CatlibError
    a = build_parser().parse_args(argv)
    if a.command == "methods":
        from .merge import methods
        print(json.dumps(methods(), indent=2, ensure_ascii=False))
        return 0
    try:
        out = evaluate_command(a)
    except (CatlibError, KeyError, ValueError, TypeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.json:
        print(json.dumps(out))
    else:
        print(f"{out['method']} on {out['benchmark']} ({out['split']}), hyperparameters {out['hyperparameters']}")
        for t, v in out["per_task"].items():
            print(f"  {t:<14} {v:6.2f}")
        print(f"  {'average':<14} {out['average']:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
