"""Command line: ``python -m catlib methods|evaluate|diagnose ...``.

    python -m catlib methods
    python -m catlib evaluate --benchmark tiny --method cat --alpha 0.3 --c 2 --json
    python -m catlib evaluate --benchmark tiny --method individual --json
    python -m catlib evaluate --benchmark vit-b-32 --checkpoint-root DIR --data-root DIR --method cat --json
    python -m catlib evaluate --benchmark openclip --model-name ViT-B-32 --checkpoint-root DIR --data-root DIR ...
    python -m catlib diagnose --benchmark tiny --json

``evaluate`` prints per-task and average scores in points (JSON keys ``method``, ``per_task``, ``metrics``: what
each task's number measures, e.g. ``"accuracy"`` or ``"Matthews correlation"``, ``average``).
``pretrained``, ``individual`` and ``mtl`` are accepted as method names for the reference rows. Every
hyperparameter of every method is a flag (``--alpha``, ``--c``, ``--lam``, ``--k``, ``--merge-func``, ...); only
those of the chosen method may be given, and those not given take ``catlib.merge``'s defaults. ``diagnose``
prints the premise diagnostics of :func:`catlib.analysis.premise.diagnose` from the exemplars and statistics
CAT's merge uses.
"""

from __future__ import annotations

import argparse
import json
import os
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


def _positive_int(text: str) -> int:
    """argparse type: an integer ≥ 1 (0 or a negative count is a mistake, not "the default")."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ 1, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ 1, got {v}")
    return v


def _usage_problem(a) -> Optional[str]:
    """A mistake caught before anything is loaded (the device, the task list), or None."""
    import torch

    try:
        dev = torch.device("cpu" if a.device == "auto" else a.device)
    except RuntimeError:
        return f"--device {a.device!r} is not a device; use auto, cpu, cuda or cuda:N"
    if dev.type == "cuda" and not torch.cuda.is_available():
        return f"--device {a.device!r}: CUDA is not available on this machine; use --device cpu"
    if a.tasks is not None and not a.tasks:
        return "--tasks was given without task names; leave it out to use every task"
    dup = sorted({t for t in a.tasks or [] if a.tasks.count(t) > 1})
    if dup:
        return f"--tasks names {dup} more than once; give each task once"
    from .benchmarks import NEEDS_ROOTS, ZOOS

    if a.benchmark not in NEEDS_ROOTS and (a.data_root or (a.checkpoint_root and a.benchmark not in ZOOS)):
        return (
            f"--benchmark {a.benchmark} is embedded: it reads no --data-root, and --checkpoint-root only as the "
            "folder of a built zoo (tiny, tiny-large, glue-tiny); leave them out"
        )
    return None


def _all_hyperparameters() -> Dict[str, str]:
    """Every hyperparameter name of every method → its doc (the first method's that declares it)."""
    from .merge.registry import REGISTRY

    names: Dict[str, str] = {}
    for spec in REGISTRY.specs():
        for n, h in spec.hyperparameters.items():
            names.setdefault(n, h.doc)
    return names


def _benchmark_options() -> argparse.ArgumentParser:
    """The options that choose and load a benchmark, shared by ``evaluate`` and ``diagnose``."""
    from .benchmarks import benchmark_names
    from .merge import REGISTRY

    own = ", ".join(f"{s.name} {s.exemplars}" for s in REGISTRY.specs() if s.exemplars)
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--benchmark", default="tiny", choices=benchmark_names())
    p.add_argument("--tasks", nargs="*", default=None, help="tasks to merge (default: all)")
    p.add_argument(
        "--exemplars",
        type=_positive_int,
        default=None,
        help=f"training examples per task for data-dependent methods (default: each method's own paper's count: {own})",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--batch-size", type=_positive_int, default=None, help="evaluation batch size (default: the benchmark's)"
    )
    p.add_argument("--json", action="store_true", help="print JSON only")
    real = p.add_argument_group("real checkpoints (vit-b-32, vit-b-16, vit-l-14, openclip)")
    real.add_argument(
        "--model-name",
        default=None,
        help="--benchmark openclip: the open_clip architecture (or a "
        "name described by open_clip_config.json in the checkpoint root)",
    )
    real.add_argument("--no-amp", action="store_true", help="evaluate in fp32 on CUDA too (default: fp16 autocast)")
    real.add_argument("--checkpoint-root", default=None)
    real.add_argument("--data-root", default=None)
    real.add_argument("--layout", default=None, choices=["auto", "task_vectors", "hf"])
    real.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow unpickling checkpoints that hold whole pickled models (torch.save or pickle.dump of a module, "
        "TorchScript archives); runs code the files name, so only for files from a trusted source",
    )
    real.add_argument(
        "--quick-gelu",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the towers' MLP activation: QuickGELU (OpenAI CLIP weights: the default of vit-b-32, vit-b-16, "
        "vit-l-14) or, with --no-quick-gelu, GELU (most other open_clip weights); --benchmark openclip defaults to "
        "the model config's choice (the *-quickgelu configs), else GELU. A file that says otherwise is refused",
    )
    real.add_argument("--openclip-weights", default=None, help="open_clip pretrained weight file (text tower)")
    real.add_argument("--cache-dir", default=None)
    return p


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m catlib", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("methods", help="list merge methods, their hyperparameters and defaults (JSON)")
    shared = _benchmark_options()
    ev = sub.add_parser("evaluate", parents=[shared], help="merge on a benchmark and report accuracy per task")
    ev.add_argument("--method", required=True, help="a merge method, or pretrained / individual / mtl")
    ev.add_argument("--split", default="test", choices=["train", "val", "test"])
    hp = ev.add_argument_group("hyperparameters (those of --method only)")
    for name, doc in sorted(_all_hyperparameters().items()):
        hp.add_argument(
            "--" + name.replace("_", "-"),
            dest="hp_" + name,
            default=None,
            metavar="V",
            help=(doc or "").replace("%", "%%") or None,
        )
    dg = sub.add_parser(
        "diagnose",
        parents=[shared],
        help="the premise diagnostics of CAT Merging on a benchmark: "
        "input-subspace overlap, Gram and task-vector cosines, interference and what CAT removes",
    )
    dg.add_argument("--c", type=int, default=2, help="CAT's basis size for the captured-interference share")
    dg.add_argument("--lam", type=float, default=1.0, help="CAT's λ for the captured-interference share")
    dg.add_argument("--energy", type=float, default=0.9, help="share of a task's input energy its top subspace holds")
    return ap


def _benchmark_kwargs(a) -> Dict[str, Any]:
    kw: Dict[str, Any] = {"device": a.device}
    if a.tasks:
        kw["tasks"] = a.tasks
    from .benchmarks import NEEDS_ROOTS, ZOOS

    if a.benchmark in NEEDS_ROOTS:
        if not a.checkpoint_root or not a.data_root:
            raise SystemExit(f"--benchmark {a.benchmark} needs --checkpoint-root and --data-root")
        if a.benchmark == "openclip" and not a.model_name:
            raise SystemExit("--benchmark openclip needs --model-name (e.g. ViT-B-32)")
        if a.benchmark != "openclip" and a.model_name:
            raise SystemExit(f"--model-name is for --benchmark openclip; {a.benchmark} fixes its architecture")
        kw.update(checkpoint_root=a.checkpoint_root, data_root=a.data_root)
        if a.batch_size:
            kw["batch_size"] = a.batch_size
        if a.benchmark not in ("roberta-glue", "blip"):  # the CLIP loaders' own options
            kw["trust_pickle"] = a.trust_pickle
            if a.no_amp:
                kw["amp"] = False
            for name in ("layout", "openclip_weights", "cache_dir", "model_name", "quick_gelu"):
                if getattr(a, name) is not None:
                    kw[name] = getattr(a, name)
    elif a.benchmark in ZOOS and a.checkpoint_root:  # a built zoo's folder, as the notebooks take it
        kw["root"] = a.checkpoint_root
    return kw


def evaluate_command(a) -> Dict[str, Any]:
    from .benchmarks import load_benchmark
    from .benchmarks.evaluate import average, evaluate, metric_names
    from .merge.registry import get_method
    from .protocol import REFERENCE, Session

    hps = {k[3:]: _parse_value(v) for k, v in vars(a).items() if k.startswith("hp_") and v is not None}
    if a.method not in REFERENCE:
        get_method(a.method)  # an unknown name fails before any loading
    bench = load_benchmark(a.benchmark, **_benchmark_kwargs(a))
    tasks = list(bench.tasks)
    if a.method in REFERENCE:
        if hps:
            raise SystemExit(f"{a.method} takes no hyperparameters (got {sorted(hps)})")
        if a.method == "pretrained":
            per_task = evaluate(bench, bench.pretrained, a.split, tasks, batch_size=a.batch_size)
        elif a.method == "individual":
            per_task = {t: evaluate(bench, bench.finetuned[t], a.split, [t], batch_size=a.batch_size)[t] for t in tasks}
        else:
            if bench.mtl is None:
                raise SystemExit(f"benchmark {a.benchmark} has no jointly fine-tuned (mtl) model")
            per_task = evaluate(bench, bench.mtl, a.split, tasks, batch_size=a.batch_size)
        used: Dict[str, Any] = {}
        n_exemplars = None
    else:
        spec = get_method(a.method)
        unknown = sorted(set(hps) - set(spec.hyperparameters))
        if unknown:
            raise SystemExit(f"{a.method} has no hyperparameter(s) {unknown}; it has {sorted(spec.hyperparameters)}")
        S = Session(bench, cache=None)
        run = S.spec(a.method, hps, tasks, a.exemplars, a.seed)
        per_task = evaluate(bench, S.merged(run), a.split, tasks, batch_size=a.batch_size)
        used, n_exemplars = run.hp, run.n_exemplars
    return {
        "method": a.method,
        "benchmark": a.benchmark,
        "split": a.split,
        "hyperparameters": used,
        "exemplars": n_exemplars,  # training examples per task its statistics came from (None: a data-free method)
        "per_task": {t: round(v, 4) for t, v in per_task.items()},
        "metrics": metric_names(bench, list(per_task)),  # what each per-task number measures (points)
        "average": round(average(per_task), 4),
    }


def diagnose_command(a) -> Dict[str, Any]:
    from .analysis.premise import diagnose
    from .benchmarks import load_benchmark
    from .core.statedict import task_vectors
    from .protocol import Session

    bench = load_benchmark(a.benchmark, **_benchmark_kwargs(a))
    S = Session(bench, cache=None)
    spec = S.spec("cat", {"c": a.c, "lam": a.lam}, None, a.exemplars, a.seed)  # CAT's statistics and exemplars
    vectors = task_vectors(bench.pretrained, bench.finetuned_list(spec.tasks))
    out = diagnose(vectors, S.statistics(spec), c=a.c, lam=a.lam, tasks=list(spec.tasks), energy=a.energy)
    return {"benchmark": a.benchmark, "exemplars": spec.n_exemplars, "seed": a.seed, **out}


def _print_diagnosis(out: Dict[str, Any]) -> None:
    s = out["summary"]
    print(
        f"premise diagnostics on {out['benchmark']} ({len(out['tasks'])} tasks, {s['num_layers']} linear layers, "
        f"{out['exemplars']} exemplars per task, seed {out['seed']}); means over layers and task pairs:"
    )
    rows = [
        ("energy of task k's inputs in task i's top input subspace", s["subspace_energy"], s["subspace_energy_chance"]),
        ("cosine of the tasks' input Gram matrices", s["gram_cosine"], s["gram_cosine_chance"]),
        ("task-vector cosine (whole model)", s["task_vector_cosine"], 0.0),
        ("interference ratio Σ_{i≠k} ‖τ_i X_k‖² / ‖τ_k X_k‖²", s["interference_ratio"], None),
        (
            f"share of it in CAT's top-{out['settings']['c']} directions",
            s["captured_interference"],
            s["captured_chance"],
        ),
    ]
    for name, v, chance in rows:
        print(f"  {name:<58} {v:8.3f}" + (f"   (chance {chance:.3f})" if chance is not None else ""))


def main(argv: Optional[List[str]] = None) -> int:
    from .core.errors import CatlibError

    a = build_parser().parse_args(argv)
    if a.command == "methods":
        from .merge import methods

        return _emit(lambda: print(json.dumps(methods(), indent=2, ensure_ascii=False)))
    problem = _usage_problem(a)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        out = evaluate_command(a) if a.command == "evaluate" else diagnose_command(a)
    except (CatlibError, KeyError, ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a missing, unreadable or unwritable file or folder: the problem and the path
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        print(f"error: {e.strerror or e}{where}", file=sys.stderr)
        return 1
    return _emit(lambda: _print_result(a, out))


def _emit(write) -> int:
    """Run ``write`` (printing to stdout): 0, or 1 when the reader left (`... | head`, said nowhere) or a number
    is not finite (never printed as JSON's non-standard Infinity/NaN)."""
    try:
        write()
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def _print_result(a, out: Dict[str, Any]) -> None:
    if a.json:
        print(json.dumps(out, allow_nan=False))
    elif a.command == "diagnose":
        _print_diagnosis(out)
    else:
        print(f"{out['method']} on {out['benchmark']} ({out['split']}), hyperparameters {out['hyperparameters']}")
        for t, v in out["per_task"].items():
            print(f"  {t:<14} {v:6.2f}  {out['metrics'][t]}")
        print(f"  {'average':<14} {out['average']:6.2f}")


if __name__ == "__main__":
    sys.exit(main())
