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

def setup(threads: Optional[int] = 1, progress: bool = False, seed: int = 0) -> None:
    """Notebook defaults: ``threads`` torch threads (None: leave torch's choice), progress bars off (they would
    change the stored outputs), deterministic torch seed, readable plots at book width, compact pandas tables."""
    if threads:
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
        pd.set_option("display.precision", 2)
        pd.set_option("display.max_columns", 30)
        pd.set_option("display.width", 160)
    except ImportError:  # pragma: no cover
        pass


def load(benchmark: str = "tiny", tasks: Optional[Sequence[str]] = None, device: str = "auto",
         checkpoint_root: Optional[str] = None, data_root: Optional[str] = None, **kwargs) -> Benchmark:
    """A benchmark from a notebook's parameters. For the tiny benchmarks ``checkpoint_root`` (optional) is the zoo
    folder (the one holding ``manifest.json``; default ``data/tiny/<size>``) and ``data_root`` is unused; the real
    ones ("vit-b-32", "vit-b-16", "vit-l-14") need both (see book/reproduce_gpu.md)."""
    tasks = list(tasks) if tasks else None
    if benchmark.startswith("tiny"):
        if checkpoint_root is not None:
            kwargs["root"] = Path(checkpoint_root)
        return load_benchmark(benchmark, tasks=tasks, device=device, **kwargs)
    if checkpoint_root is None or data_root is None:
        raise ValueError(f"benchmark {benchmark!r} needs checkpoint_root= and data_root= (papermill: "
                         f"-p checkpoint_root /path/to/ckpt -p data_root /path/to/data); see book/reproduce_gpu.md")
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
    """Identity of a benchmark's weights and data: the tiny zoo's manifest (which records every file's sha256 and
    the data hashes), else a fingerprint of θ0, every fine-tuned model and the heads, plus the data root."""
    cached = getattr(bench, "_report_fingerprint", None)
    if cached:
        return cached
    manifest = getattr(bench, "manifest", None)
    if manifest is not None:
        fp = _sha({"name": bench.name, "manifest": manifest})
    else:
        parts = {"name": bench.name, "pretrained": _state_fingerprint(bench.pretrained),
                 "finetuned": {t: _state_fingerprint(sd) for t, sd in bench.finetuned.items()},
                 "heads": {t: _state_fingerprint(h.state_dict()) for t, h in bench.heads.items()},
                 "data_root": str(getattr(bench, "data_root", ""))}
        fp = _sha(parts)
    bench._report_fingerprint = fp
    return fp


_CODE_FP: Optional[str] = None


def code_fingerprint() -> str:
    """sha256 over catlib's source files (report.py itself excluded: it only formats), so cached numbers are
    recomputed whenever a merge method, the statistics or the evaluation change."""
    global _CODE_FP
    if _CODE_FP is None:
        h = hashlib.sha256()
        root = Path(__file__).resolve().parent
        for p in sorted(root.rglob("*.py")):
            if p.name == "report.py":
                continue
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


def merged(bench: Benchmark, method: str, hparams: Optional[Mapping[str, Any]] = None,
           tasks: Optional[Sequence[str]] = None, n_exemplars: int = 4, seed: int = 0):
    """The merged state dict (the last one is kept in memory, so evaluating it on another split costs no merge)."""
    k = _sha({k: v for k, v in run_key(bench, method, hparams, tasks, None, "-", n_exemplars, seed).items()
              if k not in ("eval_tasks", "split")})
    if _LAST_MERGE.get("key") != k:
        _LAST_MERGE.clear()
        _LAST_MERGE.update(key=k, sd=merge_on(bench, method, dict(hparams or {}), tasks, n_exemplars, seed))
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


def references(bench: Benchmark, split: str = "test", tasks: Optional[Sequence[str]] = None,
               cache: Optional[ResultCache] = None) -> Dict[str, Dict[str, float]]:
    """Pretrained, Individual (each task's expert on its own task) and Traditional MTL (when the benchmark has one),
    as :func:`catlib.experiment.reference_rows`, cached."""
    tasks = list(tasks or bench.tasks)
    rows = {"pretrained": run_state(bench, "pretrained", lambda: bench.pretrained, {}, tasks, split, cache)}
    rows["individual"] = {t: run_state(bench, f"individual/{t}", lambda t=t: bench.finetuned[t], {}, [t], split,
                                       cache)[t] for t in tasks}
    if bench.mtl is not None:
        rows["mtl"] = run_state(bench, "mtl", lambda: bench.mtl, {}, tasks, split, cache)
    return rows


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

def paper_table(name: str):
    """A paper table from ``data/paper/<name>.csv`` (e.g. ``"table1_vit_b32"``), indexed by method, as printed."""
    import pandas as pd
    path = PAPER_DIR / (name if name.endswith(".csv") else f"{name}.csv")
    df = pd.read_csv(path)
    return df.set_index(df.columns[0])


def paper_tables() -> List[str]:
    return sorted(p.stem for p in PAPER_DIR.glob("*.csv"))


def ours_table(rows: Mapping[str, Mapping[str, float]], tasks: Sequence[str], decimals: int = 1):
    """:func:`catlib.experiment.results_table` rounded for display, with tiny tasks labelled by their analogue."""
    df = results_table(rows, tasks)
    df = df.rename(columns={t: task_label(t) for t in tasks})
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
            xlabel: Optional[str] = None, ylabel: Optional[str] = None, vmin=None, vmax=None, cbar: bool = True):
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


def claims(tolerance: float = 0.5) -> List[Dict[str, Any]]:
    """One row per claim of the paper: what the paper says, what our notebooks measured (read from the results
    files), and a verdict: "reproduced", "not reproduced", "partly" or "not run". ``tolerance`` (accuracy points)
    is what counts as "about equal" (robustness/stability claims)."""
    rows: List[Dict[str, Any]] = []

    def add(claim, source, paper, ours, verdict):
        rows.append({"claim": claim, "notebook": source, "paper": paper, "ours": ours, "verdict": verdict})

    def f1(x):
        return "n/a" if x is None else f"{x:.1f}"

    # 1. CAT best on average (Table 1, and each further table notebook present)
    for name in ("table1", "table1_subset", "table2"):
        d = load_results(name)
        if d is None:
            if name == "table1":
                add("CAT has the best average accuracy among merging methods", name, "78.3 vs PCB 75.8 (ViT-B/32)",
                    "n/a", "not run")
            continue
        avgs = _get(d, "averages") or {}
        merging = {m: v for m, v in avgs.items() if m not in REFERENCE}
        if not merging or "cat" not in merging:
            continue
        best = max(merging, key=merging.get)
        runner = max((m for m in merging if m != "cat"), key=merging.get)
        label = {"table1": "8 tasks", "table1_subset": "task subset", "table2": "Table 2 setting"}[name]
        add(f"CAT has the best average accuracy among merging methods ({label}, {d['parameters'].get('benchmark')})",
            name, "78.3 vs PCB 75.8 (ViT-B/32); 89.6 vs PCB 87.6 (ViT-L/14)",
            f"CAT {f1(merging['cat'])}; best other: {DISPLAY.get(runner, runner)} {f1(merging[runner])}; "
            f"best overall: {DISPLAY.get(best, best)}",
            "reproduced" if best == "cat" else "not reproduced")
    # 2. Table 10 balance
    d = load_results("table1")
    if d is not None and _get(d, "drop_std"):
        ds = _get(d, "drop_std")
        others = {m: v for m, v in ds.items() if m != "cat"}
        ok = "cat" in ds and all(ds["cat"] <= v for v in others.values())
        add("CAT's accuracy drop from Individual is the most balanced across tasks (Table 10, lowest std)",
            "table1", "6.21 vs PCB 6.85, TA 8.95 (ViT-B/32)",
            ", ".join(f"{DISPLAY.get(m, m)} {v:.2f}" for m, v in ds.items()),
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
                "1 exemplar: 76.61 (B/32) vs 78.3 with the default; flat curve",
                "; ".join(f"{n}: {v:.1f}" for n, v in sorted(curve.items())) + f" (best of 1-4: {f1(best_small)}, "
                f"best overall: {f1(top)})", "reproduced" if ok else "not reproduced")
    else:
        add("A few exemplars (1-4 per task) suffice for CAT", "exemplars", "1 exemplar: 76.61 (B/32)", "n/a",
            "not run")
    # 4. alpha robustness
    d = load_results("alpha")
    if d is not None:
        spread = _get(d, "spread") or {}
        width = _get(d, "width_within_2") or {}
        if "cat" in spread:
            others = {m: v for m, v in spread.items() if m != "cat"}
            ok = all(spread["cat"] <= v for v in others.values())
            add("CAT is more robust to α than the other methods (smaller accuracy range over the α sweep)",
                "alpha", "Fig. 2b: CAT's curve flatter than TA's (ViT-L/14, no numbers)",
                "range max−min: " + ", ".join(f"{DISPLAY.get(m, m)} {v:.1f}" for m, v in spread.items())
                + ("; α-width within 2 points of the peak: " + ", ".join(
                    f"{DISPLAY.get(m, m)} {v:.2f}" for m, v in width.items()) if width else ""),
                "reproduced" if ok else "not reproduced")
    else:
        add("CAT is more robust to α than the other methods", "alpha", "Fig. 2b", "n/a", "not run")
    # 5. lambda and c
    d = load_results("lambda_c")
    if d is not None:
        lam = {float(k): v for k, v in (_get(d, "lam") or {}).items()}
        cc = {int(float(k)): v for k, v in (_get(d, "c") or {}).items()}
        if lam:
            pos = {k: v for k, v in lam.items() if k > 0}
            ok0 = 0.0 in lam and pos and lam[0.0] < min(pos.values()) - tolerance
            add("λ = 0 hurts CAT (no intra-task deviation term)", "lambda_c", "λ=0: 65.33 vs 78.3 (ViT-B/32)",
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
            add("A small c is best; a large c hurts", "lambda_c", "peak at c=2 (B/32), c=3 (L/14); c=128: 69.89",
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
            ok = all(full > v for v in parts.values())
            partly = sum(full > v for v in parts.values())
            add("Each CAT component (linear projection, norm-scale mask, shift mask) helps", "ablation",
                "Table 5 (B/32): −linear 71.5, −norm 76.8, −shift 77.8, all 78.3",
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
            bs = max((v for m, v in seen.items() if m != "cat"), default=None)
            bu = max((v for m, v in unseen.items() if m != "cat"), default=None)
            ok_s, ok_u = bs is not None and seen["cat"] > bs, bu is not None and unseen.get("cat", -1) > bu
            add("CAT generalizes best to unseen tasks (Table 8)", "generalization",
                "+3.4 seen, +2.6 unseen over the best baseline (ViT-B/32)",
                f"seen: CAT {f1(seen['cat'])} vs best other {f1(bs)}; unseen: CAT {f1(unseen.get('cat'))} vs "
                f"best other {f1(bu)}",
                "reproduced" if ok_s and ok_u else ("partly" if ok_s or ok_u else "not reproduced"))
    else:
        add("CAT generalizes best to unseen tasks", "generalization", "Table 8", "n/a", "not run")
    # 9. AWD
    d = load_results("awd")
    if d is not None:
        gains = _get(d, "best_gain") or {}
        if gains:
            ok = all(v > 0 for v in gains.values())
            add("AWD improves task arithmetic and TIES", "awd", "AWD paper: +several points on ViT-B/32",
                ", ".join(f"{k}: {v:+.1f} at the best α of each" for k, v in gains.items()),
                "reproduced" if ok else ("partly" if any(v > 0 for v in gains.values()) else "not reproduced"))
    else:
        add("AWD improves task arithmetic and TIES", "awd", "AWD paper", "n/a", "not run")
    # 10. cost
    d = load_results("cost")
    if d is not None:
        secs = _get(d, "seconds") or {}
        if "cat" in secs and "pcb" in secs:
            add("CAT's merge costs about as much as PCB and far less than TATR (Table 9)", "cost",
                "B/32: PCB 43 s, CAT 46 s, TATR 176 s (RTX 3090)",
                ", ".join(f"{DISPLAY.get(m, m)} {v:.2f} s" for m, v in secs.items()),
                "reproduced" if secs["cat"] <= 3 * secs["pcb"] and secs["cat"] <= secs.get("tatr", float("inf"))
                else "not reproduced")
    return rows
