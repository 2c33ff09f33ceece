"""Helpers shared by the notebooks and the book, so each notebook stays a few thin cells.

* :func:`setup` (threads, quiet progress bars, plot style) and :func:`load` (a benchmark from a notebook's
  parameters: ``benchmark``, ``tasks``, ``device``, ``checkpoint_root``, ``data_root``).
* A disk cache of accuracies (:class:`ResultCache`), keyed by the benchmark's identity (the tiny zoo's manifest, or a
  fingerprint of a real benchmark's weights), a fingerprint of catlib's code, the method, its full hyperparameters
  (defaults filled in), the merged tasks, the evaluated tasks, the split and, for data-dependent methods only, the
  exemplar count and seed. Every entry stores its full key and is checked against it (and for well-formed values)
  before use; a bad entry is recomputed. Notebooks share work through it: Table 10 and the claims reuse Table 1's
  runs, the ablation's full-CAT row is Table 1's CAT, and so on.
* :func:`run` (merge + evaluate one configuration, cached), :func:`tune` (validation-tuned, the protocol of
  :func:`catlib.experiment.tune`, with every grid point cached), :func:`references` (Pretrained / Individual / MTL).
* Paper tables (:func:`paper_table`, from ``data/paper/*.csv``), side-by-side comparisons, standard plots, and the
  results files (:func:`save_results` / :func:`load_results`, ``notebooks/results/<name>.json``, written atomically)
  that the claims notebook reads (:func:`claims`).

Environment variables: ``CATLIB_REPORT_CACHE`` (cache folder; default ``<repo>/.cache/report``; ``off`` disables
it), ``CATLIB_RESULTS_DIR`` (where results JSON files go; default ``<repo>/notebooks/results``).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence

import torch

from .benchmarks import load_benchmark
from .benchmarks.base import Benchmark
from .evaluate import average, evaluate
from .experiment import DISPLAY, GRIDS, REFERENCE, TuneResult, grid_points, merge_on, results_table, statistics_for
from .merge.registry import get_method, validate_hparams

REPO = Path(__file__).resolve().parents[1]
PAPER_DIR = REPO / "data" / "paper"
CACHE_VERSION = 1

# The tiny benchmark's tasks and the paper's datasets they stand in for (same order as the paper's columns).
ANALOGUE = {"scenes": "SUN397", "vehicles": "Cars", "aerial": "RESISC45", "landcover": "EuroSAT",
            "streetnum": "SVHN", "signs": "GTSRB", "handwritten": "MNIST", "textures": "DTD"}
PAPER_TASK = {v: v for v in ANALOGUE.values()}


# ---------------------------------------------------------------------------------------------------------------
# session set-up and loading
# ---------------------------------------------------------------------------------------------------------------

def setup(threads: Optional[int] = None, progress: bool = False, seed: int = 0) -> None:
    """Notebook defaults: ``threads`` torch threads (default: ``$CATLIB_THREADS``, else 1; one thread per process is
    fastest on a shared machine), progress bars off (they would
    change the stored outputs), deterministic torch seed, readable plots at book width, compact pandas tables."""
    threads = threads or int(os.environ.get("CATLIB_THREADS") or 1)
    torch.set_num_threads(int(threads))
    if not progress:
        os.environ["CATLIB_PROGRESS"] = "0"
    torch.manual_seed(seed)
    try:
        import matplotlib as mpl
        mpl.rcParams.update({"figure.dpi": 100, "savefig.dpi": 100, "figure.figsize": (7.0, 3.6),
                             "axes.grid": True, "grid.alpha": 0.3, "font.size": 10, "axes.titlesize": 10,
                             "legend.fontsize": 8, "legend.frameon": False})
    except ImportError:  # pragma: no cover
        pass
    try:
        import pandas as pd
        pd.set_option("display.precision", 4)  # values are rounded where they are computed
        pd.set_option("display.max_columns", 30)
        pd.set_option("display.width", 160)
    except ImportError:  # pragma: no cover
        pass


def load(benchmark: str = "tiny", tasks: Optional[Sequence[str]] = None, device: str = "auto",
         checkpoint_root: Optional[str] = None, data_root: Optional[str] = None, batch_size: Optional[int] = None,
         options: Optional[Mapping[str, Any]] = None, **kwargs) -> Benchmark:
    """A benchmark from a notebook's parameters. For the tiny benchmarks ``checkpoint_root`` (optional) is the zoo
    folder (the one holding ``manifest.json``; default ``data/tiny/<size>``) and ``data_root`` is unused; the real
    ones ("vit-b-32", "vit-b-16", "vit-l-14", and "openclip" with ``options={"model_name": ...}``) need both (see
    book/reproduce_gpu.md). ``batch_size``: evaluation batch size (None: the benchmark's default). ``options``
    (the notebooks' ``benchmark_options``) and ``kwargs`` go to the benchmark's loader (``layout``,
    ``trust_pickle``, ``openclip_weights``, ``cache_dir``, ``amp``, ...)."""
    tasks = list(tasks) if tasks else None
    kwargs = {**dict(options or {}), **kwargs}
    if benchmark.startswith("tiny"):
        if checkpoint_root is not None:
            kwargs["root"] = Path(checkpoint_root)
        bench = load_benchmark(benchmark, tasks=tasks, device=device, **kwargs)
        if batch_size:
            bench.batch_size = int(batch_size)
        return bench
    if checkpoint_root is None or data_root is None:
        raise ValueError(f"benchmark {benchmark!r} needs checkpoint_root= and data_root= (papermill: "
                         f"-p checkpoint_root /path/to/ckpt -p data_root /path/to/data); see book/reproduce_gpu.md")
    if batch_size:
        kwargs["batch_size"] = int(batch_size)
    return load_benchmark(benchmark, checkpoint_root=checkpoint_root, data_root=data_root, tasks=tasks,
                          device=device, **kwargs)


def task_label(task: str) -> str:
    """``"scenes (SUN397)"`` for tiny tasks, the name itself otherwise."""
    return f"{task} ({ANALOGUE[task]})" if task in ANALOGUE else task


# ---------------------------------------------------------------------------------------------------------------
# fingerprints and the disk cache
# ---------------------------------------------------------------------------------------------------------------

def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _state_fingerprint(sd: Mapping[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(sd):
        t = sd[k]
        h.update(k.encode())
        h.update(str(tuple(t.shape)).encode())
        if t.is_floating_point():
            t = t.detach().double()
            h.update(f"{float(t.sum()):.12e},{float((t * t).sum()):.12e}".encode())
        else:
            h.update(t.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def bench_fingerprint(bench: Benchmark) -> str:
    """Identity of a benchmark's weights and data: for a tiny zoo, the parts of its manifest that decide the numbers
    (every file's sha256, the generated data's sha256, the configs; notes and recorded results are left out), else a fingerprint of θ0, every fine-tuned model and the heads, plus the data root."""
    cached = getattr(bench, "_report_fingerprint", None)
    if cached:
        return cached
    manifest = getattr(bench, "manifest", None)
    if manifest is not None:  # what decides the numbers: every file's sha256, the data's sha256, the configs
        fp = _sha({"name": bench.name, **{k: manifest.get(k) for k in ("files", "data_sha256", "config", "tasks",
                                                                      "generator_version")}})
    else:
        parts = {"name": bench.name, "pretrained": _state_fingerprint(bench.pretrained),
                 "finetuned": {t: _state_fingerprint(sd) for t, sd in bench.finetuned.items()},
                 "heads": {t: _state_fingerprint(h.state_dict()) for t, h in bench.heads.items()},
                 "data_root": str(getattr(bench, "data_root", ""))}
        fp = _sha(parts)
    bench._report_fingerprint = fp
    return fp


_CODE_FP: Optional[str] = None


_REPORT_LAYER = ("report.py", "interference.py")  # modules that only compose cached runs


def code_fingerprint() -> str:
    """sha256 over the catlib sources that compute merges and accuracies: ``catlib/*.py`` (report.py and
    interference.py excluded: they only compose and format cached runs, whose keys say what was computed),
    ``catlib/merge/``, and the benchmark interface and real loaders. The tiny benchmark's own code is left out: its
    identity is the zoo manifest (sha256 of every weight file and of the generated data)."""
    global _CODE_FP
    if _CODE_FP is None:
        h = hashlib.sha256()
        root = Path(__file__).resolve().parent
        files = [p for p in root.glob("*.py") if p.name not in _REPORT_LAYER] + list((root / "merge").rglob("*.py"))
        files += [root / "benchmarks" / "base.py", root / "benchmarks" / "openclip.py"]
        for p in sorted(f for f in files if f.exists()):
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
        _CODE_FP = h.hexdigest()
    return _CODE_FP


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, torch.Tensor):
        return _jsonable(x.tolist())
    if hasattr(x, "item") and callable(x.item):  # numpy scalars
        return x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class ResultCache:
    """JSON files under ``<dir>/<kind>/<sha256 of key>.json`` holding ``{"key": ..., "value": ...}``.

    :meth:`get` returns ``None`` (and the caller recomputes) when the file is missing, unreadable, stores another
    key, or its value fails the ``check`` given by the caller."""

    def __init__(self, directory: Optional[os.PathLike] = None):
        env = os.environ.get("CATLIB_REPORT_CACHE")
        self.enabled = env != "off"
        self.dir = Path(directory or (env if env and env != "off" else REPO / ".cache" / "report"))
        self.hits = self.misses = 0

    def _path(self, kind: str, key: Mapping[str, Any]) -> Path:
        return self.dir / kind / f"{_sha(key)[:32]}.json"

    def get(self, kind: str, key: Mapping[str, Any], check: Optional[Callable[[Any], bool]] = None):
        if not self.enabled:
            return None
        p = self._path(kind, key)
        try:
            entry = json.loads(p.read_text())
        except (OSError, ValueError):
            self.misses += 1
            return None
        if entry.get("key") != _jsonable(key) or "value" not in entry or (check is not None and not check(entry["value"])):
            self.misses += 1
            return None
        self.hits += 1
        return entry["value"]

    def put(self, kind: str, key: Mapping[str, Any], value: Any) -> None:
        if self.enabled:
            _atomic_write(self._path(kind, key), json.dumps({"key": _jsonable(key), "value": _jsonable(value)},
                                                            sort_keys=True))

    def cached(self, kind: str, key: Mapping[str, Any], fn: Callable[[], Any],
               check: Optional[Callable[[Any], bool]] = None):
        """``get`` or compute with ``fn`` and ``put``."""
        v = self.get(kind, key, check)
        if v is None:
            v = _jsonable(fn())
            self.put(kind, key, v)
        return v

    def __repr__(self) -> str:
        return f"ResultCache({self.dir}, hits={self.hits}, misses={self.misses})"


CACHE = ResultCache()


def _acc_check(tasks: Sequence[str]) -> Callable[[Any], bool]:
    def ok(v):
        return (isinstance(v, dict) and sorted(v) == sorted(tasks)
                and all(isinstance(a, (int, float)) and math.isfinite(a) and 0.0 <= a <= 100.0 for a in v.values()))
    return ok


def full_hparams(method: str, hparams: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The hyperparameters with every default filled in (so equal configurations share one cache entry)."""
    return dict(validate_hparams(get_method(method), dict(hparams or {})))


def run_key(bench: Benchmark, method: str, hparams: Optional[Mapping[str, Any]] = None,
            tasks: Optional[Sequence[str]] = None, eval_tasks: Optional[Sequence[str]] = None, split: str = "test",
            n_exemplars: int = 4, seed: int = 0) -> Dict[str, Any]:
    tasks = list(tasks or bench.tasks)
    hp = full_hparams(method, hparams)
    data_dependent = bool(get_method(method).needs_for(hp))
    return {"v": CACHE_VERSION, "bench": bench_fingerprint(bench), "code": code_fingerprint(), "method": method,
            "hparams": _jsonable(hp), "tasks": tasks, "eval_tasks": list(eval_tasks or tasks), "split": split,
            "n_exemplars": n_exemplars if data_dependent else None, "seed": seed if data_dependent else None}


_LAST_MERGE: Dict[str, Any] = {}
_AWD_MEMO: Dict[tuple, Any] = {}


def awd_result(bench: Benchmark, tasks: Optional[Sequence[str]] = None, penalty: float = 0.1, steps: int = 300,
               lr: float = 0.01, scope: str = "global"):
    """:func:`catlib.disentangle` of the benchmark's task vectors (the last result is kept in memory: AWD's δ does
    not depend on α, so every α of awd_ta / awd_ties reuses it)."""
    from .merge.awd import disentangle
    from .statedict import task_vectors
    tasks = list(tasks or bench.tasks)
    key = (bench_fingerprint(bench), tuple(tasks), float(penalty), int(steps), float(lr), scope)
    if key not in _AWD_MEMO:
        _AWD_MEMO.clear()
        _AWD_MEMO[key] = disentangle(task_vectors(bench.pretrained, bench.finetuned_list(tasks)), penalty, steps, lr,
                                     scope)
    return _AWD_MEMO[key]


def _merge_fast(bench: Benchmark, method: str, hparams: Mapping[str, Any], tasks: Optional[Sequence[str]],
                n_exemplars: int, seed: int):
    """:func:`catlib.experiment.merge_on`, except that awd_ta / awd_ties reuse :func:`awd_result` across α (the
    same computation as ``catlib.merge.awd``: θ0 + α Σ τ̂_i, or TIES on the τ̂_i; tests/test_report.py checks
    they agree)."""
    if method in ("awd_ta", "awd_ties"):
        from .merge.awd import merge_disentangled
        from .statedict import apply
        hp = full_hparams(method, hparams)
        hat = awd_result(bench, tasks, hp["penalty"], hp["steps"], hp["lr"], hp["scope"]).vectors
        ties_hp = {k: hp[k] for k in ("k", "merge_func") if k in hp}
        return apply(bench.pretrained, merge_disentangled(hat, method, hp["alpha"], **ties_hp))
    return merge_on(bench, method, dict(hparams or {}), tasks, n_exemplars, seed)


def merged(bench: Benchmark, method: str, hparams: Optional[Mapping[str, Any]] = None,
           tasks: Optional[Sequence[str]] = None, n_exemplars: int = 4, seed: int = 0):
    """The merged state dict (the last one is kept in memory, so evaluating it on another split costs no merge)."""
    k = _sha({k: v for k, v in run_key(bench, method, hparams, tasks, None, "-", n_exemplars, seed).items()
              if k not in ("eval_tasks", "split")})
    if _LAST_MERGE.get("key") != k:
        _LAST_MERGE.clear()
        _LAST_MERGE.update(key=k, sd=_merge_fast(bench, method, dict(hparams or {}), tasks, n_exemplars, seed))
    return _LAST_MERGE["sd"]


def run(bench: Benchmark, method: str, hparams: Optional[Mapping[str, Any]] = None,
        tasks: Optional[Sequence[str]] = None, eval_tasks: Optional[Sequence[str]] = None, split: str = "test",
        n_exemplars: int = 4, seed: int = 0, cache: Optional[ResultCache] = None) -> Dict[str, float]:
    """Per-task accuracy (%) of ``method`` with ``hparams`` merged over ``tasks``, evaluated on ``eval_tasks``
    (default: ``tasks``) and ``split``: cached on disk. ``n_exemplars``/``seed`` matter only for data-dependent
    methods (and are left out of the key otherwise)."""
    cache = cache or CACHE
    tasks = list(tasks or bench.tasks)
    eval_tasks = list(eval_tasks or tasks)
    key = run_key(bench, method, hparams, tasks, eval_tasks, split, n_exemplars, seed)
    return cache.cached("run", key, lambda: evaluate(bench, merged(bench, method, hparams, tasks, n_exemplars, seed),
                                                     split, eval_tasks), _acc_check(eval_tasks))


def run_state(bench: Benchmark, label: str, state_fn: Callable[[], Mapping[str, torch.Tensor]],
              key: Mapping[str, Any], tasks: Optional[Sequence[str]] = None, split: str = "test",
              cache: Optional[ResultCache] = None) -> Dict[str, float]:
    """Cached evaluation of a state dict built by ``state_fn`` (only called on a cache miss); ``label`` and ``key``
    (JSON-able) identify it, e.g. AWD's θ0 + τ̂_i."""
    cache = cache or CACHE
    tasks = list(tasks or bench.tasks)
    full = {"v": CACHE_VERSION, "bench": bench_fingerprint(bench), "code": code_fingerprint(), "label": label,
            "key": _jsonable(dict(key)), "tasks": tasks, "split": split}
    return cache.cached("state", full, lambda: evaluate(bench, state_fn(), split, tasks), _acc_check(tasks))


def pretrained_row(bench: Benchmark, split: str = "test", tasks: Optional[Sequence[str]] = None,
                   cache: Optional[ResultCache] = None) -> Dict[str, float]:
    """Per-task accuracy (%) of θ0, cached (the entry :func:`references` shares)."""
    return run_state(bench, "pretrained", lambda: bench.pretrained, {}, list(tasks or bench.tasks), split, cache)


def references(bench: Benchmark, split: str = "test", tasks: Optional[Sequence[str]] = None,
               cache: Optional[ResultCache] = None) -> Dict[str, Dict[str, float]]:
    """Pretrained, Individual (each task's expert on its own task) and Traditional MTL (when the benchmark has one),
    as :func:`catlib.experiment.reference_rows`, cached."""
    tasks = list(tasks or bench.tasks)
    rows = {"pretrained": pretrained_row(bench, split, tasks, cache)}
    rows["individual"] = {t: run_state(bench, f"individual/{t}", lambda t=t: bench.finetuned[t], {}, [t], split,
                                       cache)[t] for t in tasks}
    if bench.mtl is not None:
        rows["mtl"] = run_state(bench, "mtl", lambda: bench.mtl, {}, tasks, split, cache)
    return rows


# The book's validation grids: smaller than experiment.GRIDS so that the whole book runs in about 20 minutes on two
# CPU cores (one evaluation of the tiny benchmark's validation split takes ~5 s on one core, the test split ~9 s).
# Every method gets the same three α values (PCB three on its own scale: it rescales the merged vector) and its other
# knobs at their defaults; Fisher and RegMean get their one knob. Notebooks take ``grids=`` / ``full_grids=``.
BOOK_ALPHAS = [0.15, 0.3, 0.5]
BOOK_GRIDS: Dict[str, Dict[str, List[Any]]] = {
    "weight_average": {},
    "task_arithmetic": {"alpha": BOOK_ALPHAS},
    "ties": {"alpha": BOOK_ALPHAS},
    "fisher": {"normalize": [True, False]},
    "regmean": {"reduce_nondiag": [0.5, 0.9]},
    "tatr": {"alpha": BOOK_ALPHAS},
    "ties_tatr": {"alpha": BOOK_ALPHAS},
    "consensus": {"alpha": BOOK_ALPHAS},
    "pcb": {"alpha": [0.5, 1.0, 1.5]},
    "cat": {"alpha": BOOK_ALPHAS},
    "awd_ta": {"alpha": BOOK_ALPHAS},
    "awd_ties": {"alpha": BOOK_ALPHAS},
    # newer data-free methods (not in the paper): their own scales, three points each; WUDI has no α
    "tsv_m": {"alpha": [0.5, 1.0, 1.5]},
    "iso_c": {"alpha": [0.5, 1.0, 1.5]},
    "iso_cts": {"alpha": [0.5, 1.0, 1.5]},
    "wudi": {"lr": [1e-5, 1e-4]},
}
NEWER_METHODS = ["tsv_m", "iso_c", "iso_cts", "wudi"]
METHODS = [m for m in BOOK_GRIDS if m not in NEWER_METHODS]  # the order of the paper's Table 1, then AWD


def grid(method: str, grids: Optional[Mapping[str, Mapping[str, Sequence[Any]]]] = None,
         full_grids: bool = False) -> Dict[str, List[Any]]:
    """The validation grid a notebook uses for ``method``: ``grids[method]`` when given, else
    ``experiment.GRIDS`` (``full_grids=True``) or the book's :data:`BOOK_GRIDS`."""
    if grids and method in grids:
        return {k: list(v) for k, v in grids[method].items()}
    return {k: list(v) for k, v in (GRIDS if full_grids else BOOK_GRIDS).get(method, {}).items()}


def grids_table(methods: Sequence[str], grids=None, full_grids: bool = False):
    """One row per method: its validation grid as text and the number of grid points."""
    import pandas as pd
    rows = {}
    for m in methods:
        g = grid(m, grids, full_grids)
        rows[DISPLAY.get(m, m)] = {"validation grid": "; ".join(f"{k} ∈ {{{', '.join(f'{v:g}' if isinstance(v, float) else str(v) for v in vals)}}}"
                                                             for k, vals in g.items()) or "(nothing to tune)",
                                   "points": len(grid_points(g))}
    return pd.DataFrame.from_dict(rows, orient="index")


def grid_size(methods: Iterable[str], grids=None, full_grids: bool = False) -> int:
    return sum(len(grid_points(grid(m, grids, full_grids))) for m in methods)


def default_subset(bench: Benchmark) -> List[str]:
    """Every other task of the benchmark (4 of 8): the smaller merge shown beside the 8-task table."""
    return list(bench.tasks)[::2]


def tune(bench: Benchmark, method: str, grid: Optional[Mapping[str, Sequence[Any]]] = None,
         fixed: Optional[Mapping[str, Any]] = None, tasks: Optional[Sequence[str]] = None,
         eval_tasks: Optional[Sequence[str]] = None, n_exemplars: int = 4, seed: int = 0,
         select_split: str = "val", report_split: str = "test",
         cache: Optional[ResultCache] = None) -> TuneResult:
    """:func:`catlib.experiment.tune` with every evaluation cached: choose on ``select_split`` (mean over the
    merged tasks; the first maximum in grid order wins), report the choice on ``report_split`` over
    ``eval_tasks``. ``grid`` defaults to ``experiment.GRIDS[method]``."""
    tasks = list(tasks or bench.tasks)
    eval_tasks = list(eval_tasks or tasks)
    grid = GRIDS.get(method, {}) if grid is None else grid
    t0 = time.perf_counter()
    scored = []
    for point in grid_points(grid):
        hp = {**dict(fixed or {}), **point}
        acc = run(bench, method, hp, tasks, tasks, select_split, n_exemplars, seed, cache)
        scored.append({**hp, "val_average": average(acc)})
    best = max(scored, key=lambda r: r["val_average"])
    hp = {k: v for k, v in best.items() if k != "val_average"}
    test = run(bench, method, hp, tasks, eval_tasks, report_split, n_exemplars, seed, cache)
    return TuneResult(method, hp, best["val_average"], test, scored, time.perf_counter() - t0)


def tune_over_seeds(bench: Benchmark, method: str, seeds: Sequence[int], **kw) -> Dict[str, Any]:
    """Tune with the first seed; re-run the chosen configuration with every seed (different exemplars). Returns
    ``{"tune": TuneResult, "per_seed": {seed: {task: acc}}, "mean": {task: acc}, "std_avg": float}``; for methods
    that use no data every seed gives the same numbers and the seeds are not re-run."""
    seeds = list(seeds) or [0]
    tr = tune(bench, method, seed=seeds[0], **kw)
    data_dependent = bool(get_method(method).needs_for(full_hparams(method, {**dict(kw.get("fixed") or {}),
                                                                             **tr.best})))
    per_seed = {seeds[0]: tr.test}
    if data_dependent:
        for s in seeds[1:]:
            per_seed[s] = run(bench, method, {**dict(kw.get("fixed") or {}), **tr.best}, kw.get("tasks"),
                              kw.get("eval_tasks"), kw.get("report_split", "test"), kw.get("n_exemplars", 4), s,
                              kw.get("cache"))
    tasks = list(tr.test)
    mean = {t: sum(r[t] for r in per_seed.values()) / len(per_seed) for t in tasks}
    avgs = [average(r) for r in per_seed.values()]
    m = sum(avgs) / len(avgs)
    std = math.sqrt(sum((a - m) ** 2 for a in avgs) / (len(avgs) - 1)) if len(avgs) > 1 else 0.0
    return {"tune": tr, "per_seed": per_seed, "mean": mean, "std_avg": std, "data_dependent": data_dependent}


# ---------------------------------------------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------------------------------------------

def chosen_table(results: Mapping[str, Mapping[str, Any]], decimals: int = 1):
    """One row per method: the hyperparameters chosen on validation, the validation average, the grid size, and
    (over seeds) the test average ± std. ``results``: method → :func:`tune_over_seeds` output."""
    import pandas as pd
    rows = {}
    for m, r in results.items():
        tr = r["tune"]
        rows[DISPLAY.get(m, m)] = {"chosen": ", ".join(f"{k}={v}" for k, v in tr.best.items()) or "-",
                                   "grid points": len(tr.grid), "val avg": round(tr.val_average, decimals),
                                   "test avg": round(average(r["mean"]), decimals),
                                   "± over seeds": (round(r["std_avg"], decimals) if r["data_dependent"]
                                                    and len(r["per_seed"]) > 1 else "-")}
    return pd.DataFrame.from_dict(rows, orient="index")


def paper_table(name: str):
    """A paper table from ``data/paper/<name>.csv`` (e.g. ``"table1_vit_b32"``), indexed by method, as printed."""
    import pandas as pd
    path = PAPER_DIR / (name if name.endswith(".csv") else f"{name}.csv")
    df = pd.read_csv(path)
    return df.set_index(df.columns[0])


def paper_tables() -> List[str]:
    return sorted(p.stem for p in PAPER_DIR.glob("*.csv"))


def ours_table(rows: Mapping[str, Mapping[str, float]], tasks: Sequence[str], decimals: int = 1):
    """:func:`catlib.experiment.results_table` rounded for display (task names as columns; the tiny tasks'
    analogues are in :data:`ANALOGUE`)."""
    df = results_table(rows, tasks)
    df["avg"] = df["avg"].astype(float)
    out = df.round(decimals)
    out["#best"] = [("-" if v is None or (isinstance(v, float) and math.isnan(v)) else int(v)) for v in df["#best"]]
    return out


def side_by_side(ours, paper, ours_label: str = "ours", paper_label: str = "paper", col: str = "avg",
                 decimals: int = 1):
    """Averages and ranks side by side: one row per method present in both tables (paper order, then the rest of
    ours). Ranks are among merging methods (reference rows excluded); 1 = best."""
    import pandas as pd
    names = [n for n in paper.index if n in ours.index] + [n for n in ours.index if n not in paper.index]
    ref = {DISPLAY[r] for r in REFERENCE}
    df = pd.DataFrame(index=names)
    df[f"{ours_label} {col}"] = [float(ours.loc[n, col]) for n in names]
    df[f"{paper_label} {col}"] = [float(paper.loc[n, col]) if n in paper.index else float("nan") for n in names]
    for label in (ours_label, paper_label):
        merging = [n for n in names if n not in ref and not math.isnan(df.loc[n, f"{label} {col}"])]
        ranks = df.loc[merging, f"{label} {col}"].rank(ascending=False, method="min")
        df[f"{label} rank"] = ["-" if n not in merging else int(ranks[n]) for n in names]
    return df.round(decimals)


def drop_std(individual: Mapping[str, float], merged_acc: Mapping[str, float]) -> float:
    """Table 10's balance measure: the standard deviation over tasks of (individual − merged) accuracy (population
    std, ``numpy.std`` default; the paper does not say which)."""
    d = [individual[t] - merged_acc[t] for t in merged_acc]
    m = sum(d) / len(d)
    return math.sqrt(sum((x - m) ** 2 for x in d) / len(d))


def mean_std(values: Sequence[float]) -> Dict[str, float]:
    v = list(values)
    m = sum(v) / len(v)
    s = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    return {"mean": m, "std": s, "n": len(v)}


# ---------------------------------------------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------------------------------------------

def line_plot(df, x: str, y: str, hue: Optional[str] = None, err: Optional[str] = None, ax=None,
              title: Optional[str] = None, xlabel: Optional[str] = None, ylabel: str = "average accuracy (%)",
              logx: bool = False, hlines: Optional[Mapping[str, float]] = None, markers: bool = True):
    """One line per ``hue`` value (with a ±``err`` band when given), optional horizontal reference lines."""
    import matplotlib.pyplot as plt
    if ax is None:
        _, ax = plt.subplots()
    groups = [(None, df)] if hue is None else list(df.groupby(hue, sort=False))
    for name, g in groups:
        g = g.sort_values(x)
        line, = ax.plot(g[x], g[y], marker="o" if markers else None, ms=4, label=None if name is None else str(name))
        if err is not None:
            ax.fill_between(g[x], g[y] - g[err], g[y] + g[err], alpha=0.2, color=line.get_color())
    for label, v in (hlines or {}).items():
        ax.axhline(v, ls="--", lw=1, color="gray")
        ax.annotate(label, (1.0, v), xycoords=("axes fraction", "data"), ha="right", va="bottom", fontsize=8,
                    color="gray")
    if logx:
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(df[x].unique()))
        ax.get_xaxis().set_major_formatter(__import__("matplotlib").ticker.ScalarFormatter())
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if hue is not None:
        ax.legend()
    return ax


def heatmap(matrix, xlabels: Sequence[str], ylabels: Sequence[str], ax=None, title: Optional[str] = None,
            fmt: str = ".2f", cmap: str = "RdBu_r", center: Optional[float] = 0.0, annot: bool = True,
            xlabel: Optional[str] = None, ylabel: Optional[str] = None, vmin=None, vmax=None, cbar: bool = True,
            ticksize: float = 8):
    """A seaborn heat map of a 2-D array (tensor, numpy or DataFrame values)."""
    import matplotlib.pyplot as plt
    import numpy as np
    import seaborn as sns
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    m = matrix.numpy() if isinstance(matrix, torch.Tensor) else np.asarray(matrix, dtype=float)
    sns.heatmap(m, ax=ax, annot=annot, fmt=fmt, cmap=cmap, center=center, xticklabels=list(xlabels),
                yticklabels=list(ylabels), annot_kws={"fontsize": 7}, vmin=vmin, vmax=vmax, cbar=cbar,
                square=False)
    ax.tick_params(labelsize=ticksize)
    ax.set_yticklabels(ax.get_yticklabels(), rotation=0)
    if title:
        ax.set_title(title)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    return ax


# ---------------------------------------------------------------------------------------------------------------
# results files (read by the claims notebook)
# ---------------------------------------------------------------------------------------------------------------

def results_dir() -> Path:
    return Path(os.environ.get("CATLIB_RESULTS_DIR") or REPO / "notebooks" / "results")


def _round_floats(x: Any, digits: int = 4) -> Any:
    if isinstance(x, float):
        return round(x, digits) if math.isfinite(x) else None
    if isinstance(x, Mapping):
        return {str(k): _round_floats(v, digits) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_round_floats(v, digits) for v in x]
    return x


def save_results(name: str, data: Mapping[str, Any], parameters: Optional[Mapping[str, Any]] = None) -> Path:
    """Write ``notebooks/results/<name>.json`` atomically (tmp file + os.replace): ``{"name", "parameters",
    "results"}`` with floats rounded to 4 decimals. Returns the path."""
    path = results_dir() / f"{name}.json"
    doc = {"name": name, "parameters": _round_floats(_jsonable(dict(parameters or {}))),
           "results": _round_floats(_jsonable(dict(data)))}
    _atomic_write(path, json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return path


def load_results(name: str) -> Optional[Dict[str, Any]]:
    """The document :func:`save_results` wrote, or None when the notebook has not run."""
    path = results_dir() / f"{name}.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


# ---------------------------------------------------------------------------------------------------------------
# cost measurement (Table 9)
# ---------------------------------------------------------------------------------------------------------------

class _PeakRSS:
    """Samples this process's resident set size every few ms (psutil), to report a merge's peak RSS increase."""

    def __init__(self, interval: float = 0.005):
        self.interval, self.peak, self.start = interval, 0, 0
        self._stop = threading.Event()
        try:
            import psutil
            self._proc = psutil.Process()
        except ImportError:  # pragma: no cover
            self._proc = None

    def _loop(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self):
        if self._proc is not None:
            self.start = self.peak = self._proc.memory_info().rss
            self._t = threading.Thread(target=self._loop, daemon=True)
            self._t.start()
        return self

    def __exit__(self, *exc):
        if self._proc is not None:
            self._stop.set()
            self._t.join()
            self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def delta_mb(self) -> float:
        return (self.peak - self.start) / 2 ** 20 if self._proc is not None else float("nan")


def time_merge(bench: Benchmark, method: str, hparams: Optional[Mapping[str, Any]] = None,
               tasks: Optional[Sequence[str]] = None, n_exemplars: int = 4, seed: int = 0,
               repeats: int = 1) -> Dict[str, float]:
    """Wall-clock seconds of one merge (statistics collection and the merge itself, separately; best of
    ``repeats``) and the peak RSS increase during it (MB, sampled). Not cached: a timing is a measurement."""
    from . import experiment
    from .merge.registry import merge as _merge
    hp = dict(hparams or {})
    tasks = list(tasks or bench.tasks)
    best = None
    for _ in range(max(1, repeats)):
        experiment._STATS_CACHE.clear()
        with _PeakRSS() as mem:
            t0 = time.perf_counter()
            stats = statistics_for(bench, method, n_exemplars, seed, tasks, hp)
            t1 = time.perf_counter()
            _merge(method, bench.pretrained, bench.finetuned_list(tasks), stats=stats, **hp)
            t2 = time.perf_counter()
        r = {"stats_s": t1 - t0, "merge_s": t2 - t1, "total_s": t2 - t0, "peak_rss_mb": mem.delta_mb}
        if best is None or r["total_s"] < best["total_s"]:
            best = r
    return best


# ---------------------------------------------------------------------------------------------------------------
# the paper's claims, checked against the results files
# ---------------------------------------------------------------------------------------------------------------

def _get(doc: Optional[Mapping[str, Any]], *path, default=None):
    cur: Any = doc["results"] if doc else None
    for p in path:
        if not isinstance(cur, Mapping) or p not in cur:
            return default
        cur = cur[p]
    return cur


def _ordered(d: Mapping[str, Any]) -> List[tuple]:
    """Items of a method → value mapping in the order of the paper's tables (results files sort their keys)."""
    order = list(DISPLAY)
    return sorted(d.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order))


def _paper_text() -> Dict[str, str]:
    """The paper's numbers quoted on the claims page, read from data/paper/*.csv (as printed, never retyped)."""
    import csv

    def rows(name):
        with open(PAPER_DIR / f"{name}.csv", newline="") as f:
            return list(csv.DictReader(f))

    def cell(name, col, **match):
        for r in rows(name):
            if all(r.get(k) == v for k, v in match.items()):
                return r[col]
        raise KeyError(f"data/paper/{name}.csv has no row {match}")

    t1 = {r["method"]: r["avg"] for r in rows("table1_vit_b32")}
    t2 = {r["method"]: r["avg"] for r in rows("table2_vit_l14")}
    sens = lambda setting, model, q="CAT accuracy": cell("sensitivity_text", model, quantity=q, setting=setting)
    abl = {(r["linear"], r["norm_scale"], r["shift"]): r["ViT-B/32"] for r in rows("table5_ablation")}
    cat_b32 = t1["CAT Merging"]
    bal = {r["model"]: r for r in rows("table10_balance")}["ViT-B/32"]
    gen = {r["method"]: r for r in rows("table8_generalization")}
    gap = lambda col: float(gen["CAT Merging"][col]) - max(float(r[col]) for m, r in gen.items() if m != "CAT Merging")
    cost = {r["model"]: r for r in rows("table9_cost")}["ViT-B/32"]
    refs = ("Pretrained", "Individual", "Traditional MTL")
    drop = lambda t, m: float(t["Individual"]) - float(t[m])  # noqa: E731
    both = [m for m in t1 if m in t2 and m not in refs]
    closer = sum(drop(t2, m) < drop(t1, m) for m in both)
    return {
        "larger": f"gap to Individual, ViT-B/32 → ViT-L/14: TA {drop(t1, 'Task Arithmetic'):.1f} → "
                  f"{drop(t2, 'Task Arithmetic'):.1f}, CAT {drop(t1, 'CAT Merging'):.1f} → "
                  f"{drop(t2, 'CAT Merging'):.1f}; "
                  f"closer for {closer} of {len(both)} merging methods",
        "balance": f"{bal['CAT Merging']} vs PCB {bal['PCB Merging']}, TA {bal['Task Arithmetic']} (ViT-B/32)",
        "generalization": f"{gap('avg_seen'):+.1f} seen, {gap('avg_unseen'):+.1f} unseen over the best baseline "
                          f"(ViT-B/32)",
        "cost": f"B/32: PCB {cost['PCB Merging']} s, CAT {cost['CAT Merging']} s, TATR {cost['TATR']} s (RTX 3090)",
        "best": f"{cat_b32} vs PCB {t1['PCB Merging']} (ViT-B/32); {t2['CAT Merging']} vs PCB {t2['PCB Merging']} "
                f"(ViT-L/14)",
        "exemplars": f"1 exemplar: {sens('1 exemplar per task', 'ViT-B/32')} (B/32) vs {cat_b32} with the default; "
                     f"flat curve",
        "lambda0": f"λ=0: {sens('lambda = 0', 'ViT-B/32')} vs {cat_b32} (ViT-B/32)",
        "c": f"peak at c={sens('', 'ViT-B/32', 'best c')} (B/32), c={sens('', 'ViT-L/14', 'best c')} (L/14); "
             f"c=128: {sens('c = 128', 'ViT-B/32')}",
        "ablation": f"Table 5 (B/32): −linear {abl[('False', 'True', 'True')]}, −norm {abl[('True', 'False', 'True')]}, "
                    f"−shift {abl[('True', 'True', 'False')]}, all {abl[('True', 'True', 'True')]}",
    }


def claims(tolerance: float = 0.5) -> List[Dict[str, Any]]:
    """One row per claim of the paper: what the paper says, what our notebooks measured (read from the results
    files), and a verdict: "reproduced", "not reproduced", "partly" or "not run". ``tolerance`` (accuracy points)
    is what counts as "about equal" (robustness/stability claims)."""
    rows: List[Dict[str, Any]] = []
    P = _paper_text()

    def add(claim, source, paper, ours, verdict):
        rows.append({"claim": claim, "notebook": source, "paper": paper, "ours": ours, "verdict": verdict})

    def f1(x):
        return "n/a" if x is None else f"{x:.1f}"

    # 1. CAT best on average (Table 1, and each further table notebook present)
    for name in ("table1", "table1_subset", "table2", "table2_subset"):
        d = load_results(name)
        if d is None:
            if name == "table1":
                add("CAT has the best average accuracy among merging methods", name, P["best"], "n/a", "not run")
            continue
        avgs = _get(d, "averages") or {}
        merging = {m: v for m, v in avgs.items() if m not in REFERENCE}
        if not merging or "cat" not in merging:
            continue
        best = max(merging, key=merging.get)
        runner = max((m for m in merging if m != "cat"), key=merging.get)
        label = {"table1": "8 tasks", "table1_subset": "task subset", "table2": "Table 2 setting",
                 "table2_subset": "Table 2 setting, task subset"}[name]
        add(f"CAT has the best average accuracy among merging methods ({label}, {d['parameters'].get('benchmark')})",
            name, P["best"],
            f"CAT {f1(merging['cat'])}; best other: {DISPLAY.get(runner, runner)} {f1(merging[runner])}; "
            f"best overall: {DISPLAY.get(best, best)}",
            "reproduced" if best == "cat" else "not reproduced")
    # 1b. the larger encoder merges better (Table 2 against Table 1)
    d1, d2 = load_results("table1"), load_results("table2")
    a1, a2 = _get(d1, "averages") or {}, _get(d2, "averages") or {}
    both = [m for m in a1 if m in a2 and m not in REFERENCE]
    if both and "individual" in a1 and "individual" in a2:
        gap = lambda a, m: a["individual"] - a[m]  # noqa: E731
        closer = [m for m in both if gap(a2, m) < gap(a1, m)]
        shown = [m for m in ("task_arithmetic", "ties", "pcb", "cat") if m in both]
        add(f"The larger model merges better: every merging method is closer to Individual "
            f"({d1['parameters'].get('benchmark')} → {d2['parameters'].get('benchmark')})", "table2", P["larger"],
            "gap to Individual: " + ", ".join(f"{DISPLAY.get(m, m)} {gap(a1, m):.1f} → {gap(a2, m):.1f}"
                                              for m in shown) + f"; closer for {len(closer)} of {len(both)}",
            "reproduced" if len(closer) == len(both) else ("partly" if closer else "not reproduced"))
    # 2. Table 10 balance
    d = load_results("table1")
    if d is not None and _get(d, "drop_std"):
        ds = _get(d, "drop_std")
        others = {m: v for m, v in ds.items() if m != "cat"}
        ok = "cat" in ds and all(ds["cat"] <= v for v in others.values())
        add("CAT's accuracy drop from Individual is the most balanced across tasks (Table 10, lowest std)",
            "table1", P["balance"],
            ", ".join(f"{DISPLAY.get(m, m)} {v:.2f}" for m, v in _ordered(ds)),
            "reproduced" if ok else "not reproduced")
    # 3. exemplars
    d = load_results("exemplars")
    if d is not None:
        curve = {int(k): v for k, v in (_get(d, "cat_mean") or {}).items()}
        if curve:
            top = max(curve.values())
            small = {n: v for n, v in curve.items() if n <= 4}
            best_small = max(small.values()) if small else None
            ok = best_small is not None and best_small >= top - max(tolerance, _get(d, "max_std", default=0) or 0)
            add("A few exemplars (1-4 per task) suffice for CAT", "exemplars",
                P["exemplars"],
                "; ".join(f"{n}: {v:.1f}" for n, v in sorted(curve.items())) + f" (best of 1-4: {f1(best_small)}, "
                f"best overall: {f1(top)})", "reproduced" if ok else "not reproduced")
    else:
        add("A few exemplars (1-4 per task) suffice for CAT", "exemplars", P["exemplars"], "n/a",
            "not run")
    # 4. alpha robustness (the paper's Fig. 2b compares CAT with task arithmetic)
    d = load_results("alpha")
    if d is not None and "cat" in (_get(d, "spread") or {}) and "task_arithmetic" in (_get(d, "spread") or {}):
        spread = _get(d, "spread")
        add("CAT is more robust to α than task arithmetic", "alpha",
            "Fig. 2b (ViT-L/14): CAT's curve flatter than TA's (no numbers in the text)",
            f"accuracy range over the α sweep ({d['parameters'].get('split')} split): CAT {spread['cat']:.1f}, "
            f"TA {spread['task_arithmetic']:.1f}"
            + "".join(f", {DISPLAY.get(m, m)} {v:.1f}" for m, v in _ordered(spread)
                      if m not in ("cat", "task_arithmetic")),
            "reproduced" if spread["cat"] < spread["task_arithmetic"] else "not reproduced")
    else:
        add("CAT is more robust to α than task arithmetic", "alpha", "Fig. 2b", "n/a", "not run")
    # 5. lambda and c
    d = load_results("lambda_c")
    if d is not None:
        lam = {float(k): v for k, v in (_get(d, "lam") or {}).items()}
        cc = {int(float(k)): v for k, v in (_get(d, "c") or {}).items()}
        if lam:
            pos = {k: v for k, v in lam.items() if k > 0}
            ok0 = 0.0 in lam and pos and lam[0.0] < min(pos.values()) - tolerance
            add("λ = 0 hurts CAT (no intra-task deviation term)", "lambda_c", P["lambda0"],
                f"λ=0: {f1(lam.get(0.0))}; λ>0: {f1(min(pos.values()) if pos else None)}–"
                f"{f1(max(pos.values()) if pos else None)}", "reproduced" if ok0 else "not reproduced")
            if pos:
                rng = max(pos.values()) - min(pos.values())
                add("CAT is stable for any λ > 0", "lambda_c", "Fig. 4a: flat for λ > 0",
                    f"range over λ ∈ {sorted(pos)}: {rng:.1f} points",
                    "reproduced" if rng <= 2.0 else ("partly" if rng <= 5.0 else "not reproduced"))
        if cc:
            best_c = max(cc, key=cc.get)
            large = max(cc)
            ok = best_c <= 4 and cc[large] < cc[best_c] - tolerance
            add("A small c is best; a large c hurts", "lambda_c", P["c"],
                f"best c = {best_c} ({f1(cc[best_c])}); c={large}: {f1(cc[large])}",
                "reproduced" if ok else ("partly" if best_c <= 8 else "not reproduced"))
    else:
        add("λ = 0 hurts; λ > 0 stable; small c best", "lambda_c", "Fig. 4", "n/a", "not run")
    # 6. ablation
    d = load_results("ablation")
    if d is not None:
        rows_ab = _get(d, "rows") or {}
        full = rows_ab.get("all")
        if full is not None:
            parts = {k: v for k, v in rows_ab.items() if k.startswith("without")}
            helps = {k: full - v >= 0.05 for k, v in parts.items()}  # at least +0.1 once rounded for display
            ok = all(helps.values())
            partly = sum(helps.values())
            add("Each CAT component (linear projection, norm-scale mask, shift mask) helps", "ablation",
                P["ablation"],
                ", ".join(f"{k} {v:.1f}" for k, v in parts.items()) + f", all {full:.1f}",
                "reproduced" if ok else ("partly" if partly else "not reproduced"))
    else:
        add("Each CAT component helps", "ablation", "Table 5", "n/a", "not run")
    # 7. conflict
    d = load_results("conflict")
    if d is not None:
        ta, cat_ = _get(d, "mean_abs_conflict", "task_arithmetic"), _get(d, "mean_abs_conflict", "cat")
        if ta is not None and cat_ is not None:
            add("CAT lowers pairwise knowledge conflict ΔL", "conflict", "Fig. 3/5: lower conflict at larger α",
                f"mean |ΔL_k|i| over pairs: TA {ta:.3f}, CAT {cat_:.3f}"
                + (f"; pair grids (mean summed ΔL): TA {_get(d, 'grid_mean', 'task_arithmetic'):.3f}, "
                   f"CAT {_get(d, 'grid_mean', 'cat'):.3f}" if _get(d, "grid_mean") else ""),
                "reproduced" if cat_ < ta else "not reproduced")
        b = _get(d, "bound")
        if b:
            add("Theorem 4.4's bound holds for every pair", "conflict", "|ΔL_{k|i}| ≤ β Σ_l Π γ_m ‖Δf̂^l‖",
                f"holds for {b['holds']} of {b['pairs']} pairs; median tightness {b['median_tightness']:.3f}",
                "reproduced" if b["holds"] == b["pairs"] else "not reproduced")
    else:
        add("CAT lowers pairwise knowledge conflict", "conflict", "Fig. 3/5", "n/a", "not run")
    # 8. generalization
    d = load_results("generalization")
    if d is not None:
        seen, unseen = _get(d, "avg_seen") or {}, _get(d, "avg_unseen") or {}
        if "cat" in seen:
            bs = max((v for m, v in seen.items() if m != "cat" and m not in REFERENCE), default=None)
            bu = max((v for m, v in unseen.items() if m != "cat" and m not in REFERENCE), default=None)
            ok_s, ok_u = bs is not None and seen["cat"] > bs, bu is not None and unseen.get("cat", -1) > bu
            add("CAT generalizes best to unseen tasks (Table 8)", "generalization",
                P["generalization"],
                f"seen: CAT {f1(seen['cat'])} vs best other method {f1(bs)}; unseen: CAT {f1(unseen.get('cat'))} "
                f"vs best other method {f1(bu)}"
                + (f" (θ0 on the unseen tasks: {f1(unseen['pretrained'])})" if "pretrained" in unseen else ""),
                "reproduced" if ok_s and ok_u else ("partly" if ok_s or ok_u else "not reproduced"))
    else:
        add("CAT generalizes best to unseen tasks", "generalization", "Table 8", "n/a", "not run")
    # 9. AWD
    d = load_results("awd")
    if d is not None:
        gains = _get(d, "best_gain") or {}
        if gains:
            ok = all(v >= 0.05 for v in gains.values())  # at least +0.1 once rounded for display
            add("AWD improves task arithmetic and TIES", "awd", "AWD paper: +several points on ViT-B/32",
                "test accuracy, AWD minus without, each at its validation-chosen α: "
                + ", ".join(f"{k} {v:+.1f}" for k, v in gains.items()),
                "reproduced" if ok else ("partly" if any(v >= 0.05 for v in gains.values()) else "not reproduced"))
    else:
        add("AWD improves task arithmetic and TIES", "awd", "AWD paper", "n/a", "not run")
    # 10. cost
    d = load_results("cost")
    if d is not None:
        secs = _get(d, "seconds") or {}
        if "cat" in secs and "pcb" in secs:
            add("CAT's merge costs about as much as PCB and far less than TATR (Table 9)", "cost",
                P["cost"],
                ", ".join(f"{DISPLAY.get(m, m)} {v:.2f} s" for m, v in _ordered(secs)),
                "reproduced" if secs["cat"] <= 3 * secs["pcb"] and secs["cat"] <= secs.get("tatr", float("inf"))
                else "not reproduced")
    return rows


# ---------------------------------------------------------------------------------------------------------------
# page helpers (used by the notebooks; each returns a DataFrame, a figure or Markdown)
# ---------------------------------------------------------------------------------------------------------------

def md(text: str):
    """Markdown output for a computed sentence (numbers in prose come from the notebook, never typed)."""
    from IPython.display import Markdown
    return Markdown(text)


def printed_average_check(paper_df, col: str = "avg", tol: float = 0.15):
    """Rows of a paper table whose printed average differs from the mean of its task columns (e.g. Table 2's
    Traditional MTL prints 93.5, its columns average 93.09)."""
    import pandas as pd
    tasks = [c for c in paper_df.columns if c not in (col, "#best")]
    comp = paper_df[tasks].astype(float).mean(axis=1)
    bad = (paper_df[col].astype(float) - comp).abs() > tol
    return pd.DataFrame({"printed avg": paper_df.loc[bad, col], "mean of the columns": comp[bad].round(2)})


def average_bars(ours, paper_df=None, ours_title: str = "ours", paper_title: str = "paper"):
    """Horizontal bars of the average accuracy per method: ours, and the paper's beside it. Returns the figure."""
    import matplotlib.pyplot as plt
    n = 2 if paper_df is not None else 1
    fig, axes = plt.subplots(1, n, figsize=(9.5 if n == 2 else 5.5, 0.28 * len(ours) + 1.2), squeeze=False)
    ref = {DISPLAY[r] for r in REFERENCE}
    for ax, df, title in zip(axes[0], [ours, paper_df], [ours_title, paper_title]):
        if df is None:
            continue
        s = df["avg"].astype(float)[::-1]
        colors = ["#999999" if i in ref else ("#d62728" if i.startswith("CAT") else "#1f77b4") for i in s.index]
        ax.barh(range(len(s)), s.values, color=colors)
        ax.set_yticks(range(len(s)), s.index, fontsize=8)
        for j, v in enumerate(s.values):
            ax.annotate(f"{v:.1f}", (v, j), xytext=(2, 0), textcoords="offset points", va="center", fontsize=7)
        ax.set_xlim(max(0, s.min() - 10), s.max() + 6)
        ax.set_xlabel("average accuracy (%)")
        ax.set_title(title)
        ax.grid(axis="y", visible=False)
    fig.tight_layout()
    return fig


def ranking_summary(rows: Mapping[str, Mapping[str, float]], method: str = "cat", label: str = "") -> str:
    """A sentence on where ``method`` ranks by average among the merging methods, with the numbers."""
    avgs = {m: average(r) for m, r in rows.items() if m not in REFERENCE}
    order = sorted(avgs, key=avgs.get, reverse=True)
    if method not in avgs:
        return f"{DISPLAY.get(method, method)} was not run."
    rank = order.index(method) + 1
    best_other = next(m for m in order if m != method)
    gap = avgs[method] - avgs[best_other]
    name = DISPLAY.get(method, method)
    head = f"**{label}** " if label else ""
    if rank == 1:
        return (f"{head}{name} has the best average, {avgs[method]:.1f}%, {gap:+.1f} points over the runner-up "
                f"{DISPLAY.get(best_other, best_other)} ({avgs[best_other]:.1f}%).")
    return (f"{head}{name} is **not** the best here: rank {rank} of {len(order)} with {avgs[method]:.1f}%, "
            f"{-gap:.1f} points below {DISPLAY.get(best_other, best_other)} ({avgs[best_other]:.1f}%).")


def gains_table(settings: Mapping[str, Mapping[str, Mapping[str, float]]], decimals: int = 1):
    """Per setting (e.g. "8 tasks", "4 tasks"): averages of Pretrained, Individual, TA and CAT and the gains that
    tell how much merging helps: TA − Pretrained, CAT − TA, and the share of the Pretrained→Individual gap closed."""
    import pandas as pd
    out = {}
    for name, rows in settings.items():
        a = {m: average(r) for m, r in rows.items()}
        r = {"Pretrained": a.get("pretrained"), "Individual": a.get("individual"),
             "Task Arithmetic": a.get("task_arithmetic"), "CAT Merging": a.get("cat")}
        if a.get("task_arithmetic") is not None and a.get("pretrained") is not None:
            r["TA − Pretrained"] = a["task_arithmetic"] - a["pretrained"]
        if a.get("cat") is not None and a.get("task_arithmetic") is not None:
            r["CAT − TA"] = a["cat"] - a["task_arithmetic"]
        if None not in (a.get("cat"), a.get("pretrained"), a.get("individual")):
            gap = a["individual"] - a["pretrained"]
            r["gap closed by CAT (%)"] = 100 * (a["cat"] - a["pretrained"]) / gap if gap else float("nan")
        out[name] = r
    return pd.DataFrame(out).T.astype(float).round(decimals)


def balance_table(individual: Mapping[str, float], merged_rows: Mapping[str, Mapping[str, float]],
                  paper_df=None, paper_row: Optional[str] = None, decimals: int = 2):
    """Table 10: std over tasks of (Individual − merged) per method, beside the paper's row ``paper_row`` (e.g.
    ``"ViT-B/32"``) when the paper has one (Table 10 has none for ViT-B/16: the column is then empty)."""
    import pandas as pd
    ours = {DISPLAY.get(m, m): drop_std(individual, r) for m, r in merged_rows.items()}
    df = pd.DataFrame({"ours": ours})
    if paper_df is not None and paper_row not in paper_df.index:
        df[f"paper ({paper_row}: not in the paper)"] = float("nan")
    elif paper_df is not None:
        row = paper_df.loc[paper_row]
        df["paper"] = [float(row[n]) if n in row.index else float("nan") for n in df.index]
    return df.round(decimals)


def eval_batches(bench: Benchmark, tasks: Optional[Sequence[str]] = None, n: int = 64, split: str = "val"):
    """The first ``n`` labelled images of each task's ``split`` (deterministic), one ``(x, y)`` per task."""
    out = []
    for t in bench._check_tasks(tasks):
        x, y = next(iter(bench.loader(t, split, batch_size=n)))
        out.append((x.to(bench.device), y.to(bench.device)))
    return out


def trimmed_vectors(bench: Benchmark, hparams: Mapping[str, Any], tasks: Optional[Sequence[str]] = None,
                    n_exemplars: int = 4, seed: int = 0):
    """CAT's trimmed task vectors τ̃_i (Algorithm 1, steps 1-3) for ``tasks``, with CAT hyperparameters
    ``hparams`` (α only matters with ``features="scaled"``)."""
    from .merge.cat import trim
    from .statedict import task_vectors
    hp = full_hparams("cat", hparams)
    tasks = list(tasks or bench.tasks)
    stats = statistics_for(bench, "cat", n_exemplars, seed, tasks, hp)
    opts = {k: hp[k] for k in ("c", "lam", "c_norm", "lam_norm", "c_shift", "linear", "norm_scale", "shift",
                               "rescale_norm", "solver", "tol")}
    return trim(task_vectors(bench.pretrained, bench.finetuned_list(tasks)), stats, **opts)


def scaled(vectors: Sequence[Mapping[str, torch.Tensor]], alpha: float) -> List[Dict[str, torch.Tensor]]:
    return [{k: alpha * v[k] for k in v} for v in vectors]


def conflict_key(bench: Benchmark, what: str, **parts) -> Dict[str, Any]:
    return {"v": CACHE_VERSION, "bench": bench_fingerprint(bench), "code": code_fingerprint(), "what": what,
            **_jsonable(parts)}


def _compared(name: str, hp: Mapping[str, Any], n_exemplars: int, seed: int) -> Dict[str, Any]:
    """Cache-key parts of one side of a conflict comparison: CAT's depend on its hyperparameters and exemplars,
    task arithmetic's on nothing more."""
    cat = name == "cat"
    return dict(method=name, hp=hp if cat else {}, n_exemplars=n_exemplars if cat else None,
                seed=seed if cat else None)


def _compared_vectors(bench: Benchmark, name: str, hp: Mapping[str, Any], tasks: Optional[Sequence[str]],
                      n_exemplars: int, seed: int):
    """The vectors compared in the conflict pages: τ_i (``"task_arithmetic"``) or CAT's trimmed τ̃_i (``"cat"``)."""
    from .statedict import task_vectors
    if name == "task_arithmetic":
        return task_vectors(bench.pretrained, bench.finetuned_list(tasks))
    return trimmed_vectors(bench, hp, tasks, n_exemplars, seed)


def bound_rows(bench: Benchmark, vectors: Sequence[Mapping[str, torch.Tensor]], batches, tasks: Sequence[str],
               lipschitz: str = "path") -> List[Dict[str, Any]]:
    """Theorem 4.4 for every ordered pair (k, i), k ≠ i: measured ΔL_{k|i}, the bound, tightness, and the stage
    terms (β Π γ ‖Δf̂^l‖) of the bound."""
    from .conflict import theorem44
    module = bench.build_module()
    rows = []
    for k, tk in enumerate(tasks):
        for i, ti in enumerate(tasks):
            if i == k:
                continue
            rep = theorem44(module, bench.heads[tk], bench.finetuned[tk], vectors[i], *batches[k],
                            lipschitz=lipschitz)
            rows.append({"k": tk, "i": ti, "delta_loss": rep.delta_loss, "bound": rep.bound, "holds": rep.holds,
                         "tightness": rep.tightness, "beta": rep.beta,
                         "stage_fhat": dict(zip(rep.stage_names, rep.delta_f_hat))})
    return rows


def matrix_frame(matrix, labels: Sequence[str], decimals: int = 3):
    import pandas as pd
    m = matrix.tolist() if isinstance(matrix, torch.Tensor) else matrix
    return pd.DataFrame(m, index=list(labels), columns=list(labels)).round(decimals)


def bench_tasks(bench: Benchmark, paper_names: Sequence[str]) -> List[str]:
    """Map the paper's dataset names to the benchmark's task names (tiny: via the analogues)."""
    inv = {v: k for k, v in ANALOGUE.items()}
    return [n if n in bench.all_tasks else inv[n] for n in paper_names]


def consecutive_pairs(tasks: Sequence[str]) -> List[List[str]]:
    """Fig. 5's pairs: each task with the next one in the paper's order."""
    return [[tasks[j], tasks[j + 1]] for j in range(len(tasks) - 1)]


def conflict_matrices(bench: Benchmark, cat_hparams: Mapping[str, Any], alpha: float, n: int = 64,
                      n_exemplars: int = 4, seed: int = 0, split: str = "val",
                      cache: Optional[ResultCache] = None) -> Dict[str, torch.Tensor]:
    """ΔL_{k|i} = L_k(θ_k + α v_i) − L_k(θ_k) for every ordered pair, with v_i = τ_i (task arithmetic) and
    v_i = τ̃_i (CAT's trimmed vector, ``cat_hparams``), on the first ``n`` images of each task's ``split``."""
    from .conflict import conflict_matrix
    cache = cache or CACHE
    hp = full_hparams("cat", cat_hparams)
    out = {}
    for name in ("task_arithmetic", "cat"):
        key = conflict_key(bench, "matrix", alpha=alpha, n=n, split=split, tasks=list(bench.tasks),
                           **_compared(name, hp, n_exemplars, seed))

        def compute(name=name):
            vecs = _compared_vectors(bench, name, hp, None, n_exemplars, seed)
            return conflict_matrix(bench.build_module(), bench.head_list(), bench.pretrained, bench.finetuned_list(),
                                   eval_batches(bench, None, n, split), scaled(vecs, alpha))
        out[name] = torch.tensor(cache.cached("conflict", key, compute), dtype=torch.float64)
    return out


def pair_grids(bench: Benchmark, pairs: Sequence[Sequence[str]], cat_hparams: Mapping[str, Any],
               alphas: Sequence[float], n: int = 64, n_exemplars: int = 4, seed: int = 0, split: str = "val",
               cache: Optional[ResultCache] = None) -> Dict[tuple, Dict[str, torch.Tensor]]:
    """Fig. 3/5: for each pair (a, b), the summed conflict ΔL_{a|b} + ΔL_{b|a} of θ0 + α_a v_a + α_b v_b over the
    (α_a, α_b) grid, with v = τ (task arithmetic) and v = τ̃ (CAT, trimmed for the pair: a two-model merge)."""
    from .conflict import pair_conflict_grid
    cache = cache or CACHE
    hp = full_hparams("cat", cat_hparams)
    out: Dict[tuple, Dict[str, torch.Tensor]] = {}
    for a, b in pairs:
        out[(a, b)] = {}
        for name in ("task_arithmetic", "cat"):
            key = conflict_key(bench, "pair", pair=[a, b], alphas=list(alphas), n=n, split=split,
                               **_compared(name, hp, n_exemplars, seed))

            def compute(name=name, a=a, b=b):
                vecs = _compared_vectors(bench, name, hp, [a, b], n_exemplars, seed)
                return pair_conflict_grid(bench.build_module(), bench.head_list([a, b]), bench.pretrained,
                                          (vecs[0], vecs[1]), eval_batches(bench, [a, b], n, split), list(alphas))
            out[(a, b)][name] = torch.tensor(cache.cached("conflict", key, compute), dtype=torch.float64)
    return out


def bound_frames(bench: Benchmark, cat_hparams: Mapping[str, Any], alpha: float, n: int = 64,
                 n_exemplars: int = 4, seed: int = 0, split: str = "val", lipschitz: str = "path",
                 cache: Optional[ResultCache] = None):
    """Theorem 4.4 for every ordered pair, for v_i = α τ_i (task arithmetic) and α τ̃_i (CAT). Returns
    ``{method: DataFrame}`` with columns k, i, ΔL, bound, tightness, holds and one column per stage (‖Δf̂^l‖)."""
    import pandas as pd
    cache = cache or CACHE
    hp = full_hparams("cat", cat_hparams)
    out = {}
    for name in ("task_arithmetic", "cat"):
        key = conflict_key(bench, "bound", alpha=alpha, n=n, split=split, lipschitz=lipschitz,
                           tasks=list(bench.tasks), **_compared(name, hp, n_exemplars, seed))

        def compute(name=name):
            vecs = _compared_vectors(bench, name, hp, None, n_exemplars, seed)
            return bound_rows(bench, scaled(vecs, alpha), eval_batches(bench, None, n, split), bench.tasks,
                              lipschitz)
        rows = cache.cached("conflict", key, compute)
        df = pd.DataFrame([{k: v for k, v in r.items() if k != "stage_fhat"} for r in rows])
        stages_df = pd.DataFrame([r["stage_fhat"] for r in rows])
        out[name] = pd.concat([df, stages_df.add_prefix("‖Δf̂‖ ")], axis=1)
    return out


def bound_summary(frames: Mapping[str, Any], decimals: int = 3):
    """Per method: pairs, how many satisfy the bound, tightness |ΔL|/bound (median, max), mean |ΔL| and bound."""
    import pandas as pd
    rows = {}
    for m, df in frames.items():
        rows[DISPLAY.get(m, m)] = {"pairs": len(df), "bound holds": int(df["holds"].sum()),
                                   "median tightness": df["tightness"].median(), "max tightness": df["tightness"].max(),
                                   "mean |ΔL|": df["delta_loss"].abs().mean(), "mean bound": df["bound"].mean()}
    return pd.DataFrame.from_dict(rows, orient="index").round(decimals)


def awd_summary(bench: Benchmark, hparams: Optional[Mapping[str, Any]] = None,
                tasks: Optional[Sequence[str]] = None, cache: Optional[ResultCache] = None) -> Dict[str, Any]:
    """AWD's diagnostics for the benchmark's task vectors (cached): cosines before/after, ‖δ‖ / mean ‖τ_i‖, the
    objective per step."""
    cache = cache or CACHE
    hp = full_hparams("awd_ta", {**dict(hparams or {}), "alpha": 1.0})
    tasks = list(tasks or bench.tasks)
    key = conflict_key(bench, "awd", penalty=hp["penalty"], steps=hp["steps"], lr=hp["lr"], scope=hp["scope"],
                       tasks=tasks)

    def compute():
        r = awd_result(bench, tasks, hp["penalty"], hp["steps"], hp["lr"], hp["scope"])
        return {"cos_before": r.cos_before, "cos_after": r.cos_after, "delta_rel_norm": r.delta_rel_norm,
                "losses": r.losses}
    return cache.cached("awd", key, compute)


def awd_alone(bench: Benchmark, hparams: Optional[Mapping[str, Any]] = None, split: str = "test",
              cache: Optional[ResultCache] = None):
    """Each θ0 + τ̂_i alone on its own task beside the fine-tuned θ_i = θ0 + τ_i (cached)."""
    import pandas as pd
    from .statedict import apply
    hp = full_hparams("awd_ta", {**dict(hparams or {}), "alpha": 1.0})
    tasks = list(bench.tasks)
    rows = {}
    for j, t in enumerate(tasks):
        ft = run_state(bench, f"individual/{t}", lambda t=t: bench.finetuned[t], {}, [t], split, cache)[t]
        hat = run_state(bench, f"awd_alone/{t}",
                        lambda j=j: apply(bench.pretrained, awd_result(bench, tasks, hp["penalty"], hp["steps"],
                                                                       hp["lr"], hp["scope"]).vectors[j]),
                        {"hp": {k: hp[k] for k in ("penalty", "steps", "lr", "scope")}, "tasks": tasks}, [t], split,
                        cache)[t]
        rows[task_label(t)] = {"fine-tuned θ0+τ_i": ft, "θ0+τ̂_i (AWD)": hat, "difference": hat - ft}
    return pd.DataFrame.from_dict(rows, orient="index").round(1)


def alpha_robustness(df, method_col: str = "method", x: str = "alpha", y: str = "avg", within: float = 2.0,
                     decimals: int = 2):
    """Per method over its α sweep: peak accuracy and its α, minimum, range (max − min), and the fraction of swept
    α values within ``within`` points of the peak."""
    import pandas as pd
    rows = {}
    for m, g in df.groupby(method_col, sort=False):
        g = g.sort_values(x)
        peak = g[y].max()
        rows[m] = {"peak": peak, "α at peak": g.loc[g[y].idxmax(), x], "min": g[y].min(), "range": peak - g[y].min(),
                   f"share of α within {within:g} of peak": float((g[y] >= peak - within).mean())}
    return pd.DataFrame.from_dict(rows, orient="index").round(decimals)


def category_plot(ax, labels: Sequence[Any], values: Sequence[float], xlabel: str, title: Optional[str] = None,
                  ylabel: str = "average accuracy (%)", hlines: Optional[Mapping[str, float]] = None):
    """Values at evenly spaced categorical x positions (for sweeps such as λ ∈ {0, 0.1, 1, 10, 100})."""
    xs = list(range(len(values)))
    ax.plot(xs, list(values), marker="o", ms=4)
    ax.set_xticks(xs, [f"{v:g}" if isinstance(v, (int, float)) else str(v) for v in labels])
    for j, v in enumerate(values):
        ax.annotate(f"{v:.1f}", (j, v), xytext=(0, 4), textcoords="offset points", ha="center", fontsize=7)
    for label, v in (hlines or {}).items():
        ax.axhline(v, ls="--", lw=1, color="gray")
        ax.annotate(label, (1.0, v), xycoords=("axes fraction", "data"), ha="right", va="bottom", fontsize=8,
                    color="gray")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return ax


def claims_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The claims as a Markdown table (verdict in bold)."""
    def esc(s):
        return str(s).replace("|", "\\|").replace("\n", " ")
    lines = ["| claim | verdict | ours | paper | notebook |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {esc(r['claim'])} | **{esc(r['verdict'])}** | {esc(r['ours'])} | {esc(r['paper'])} | "
                     f"{esc(r['notebook'])} |")
    return "\n".join(lines)
