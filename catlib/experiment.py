"""Running methods on a benchmark the way the paper's protocol says: hyperparameters chosen on the validation
split, accuracy reported on the test split. Shared by the command line and every notebook.

* :func:`statistics_for` collects (and memoises per benchmark) the statistics a method needs from ``n`` exemplars
  per task of the training split.
* :func:`merge_on` merges a benchmark's fine-tuned models with one configuration.
* :func:`reference_rows` gives Pretrained, Individual and Traditional MTL.
* :func:`tune` evaluates a grid on ``val`` and reports the best configuration on ``test``; when the choice lies
  on the edge of a numeric knob's values, :func:`search` tries values past it (``widen``, :func:`step_past`).
* :data:`GRIDS` holds the validation grids; every method gets a grid over its merge coefficient and its main
  method-specific knob, no method more than the others.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence

from .benchmarks.base import Benchmark, StateDict
from .errors import HyperparameterError
from .evaluate import average, evaluate
from .merge.registry import get_method, merge, validate_hparams
from .progress import progress
from .stats import Statistics, collect_statistics

ALPHAS = [round(0.05 * i, 2) for i in range(1, 21)]  # 0.05 .. 1.0
# Values tried past a grid's edge, per numeric knob and direction, when the validation choice lies on that edge.
WIDEN = 3

# Validation grids (hyperparameters chosen on "val" for every method alike).
GRIDS: Dict[str, Dict[str, List[Any]]] = {
    "weight_average": {},
    "task_arithmetic": {"alpha": ALPHAS},
    "ties": {"alpha": [0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0], "k": [0.1, 0.2, 0.4]},
    "fisher": {"normalize": [True, False]},
    "regmean": {"reduce_nondiag": [0.5, 0.9, 0.95, 1.0]},
    "tatr": {"alpha": [0.2, 0.3, 0.4, 0.5, 0.6], "remove_ratio": [0.01, 0.05, 0.1]},
    "ties_tatr": {"alpha": [0.2, 0.3, 0.4, 0.5, 0.6, 0.8], "remove_ratio": [0.01, 0.05]},
    "consensus": {"alpha": [0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0], "tall_lambda": [0.2, 0.4, 0.6]},
    "pcb": {"alpha": [0.6, 0.8, 1.0, 1.2, 1.5], "ratio": [0.05, 0.1, 0.2]},
    "cat": {"alpha": [0.2, 0.3, 0.4, 0.5, 0.6, 0.8], "c": [2, 4], "lam": [1.0, 5.0]},
    "awd_ta": {"alpha": [0.2, 0.3, 0.4, 0.5, 0.6, 0.8], "penalty": [0.1, 1.0]},
    "awd_ties": {"alpha": [0.2, 0.3, 0.4, 0.5, 0.6, 0.8], "penalty": [0.1, 1.0]},
    "tsv_m": {"alpha": [0.4, 0.6, 0.8, 1.0, 1.2, 1.5]},
    "iso_c": {"alpha": [0.4, 0.6, 0.8, 1.0, 1.5, 2.0]},
    "iso_cts": {"alpha": [0.4, 0.6, 0.8, 1.0, 1.5, 2.0]},
    "wudi": {"lr": [1e-5, 1e-4]},
}

# Display names, in the order of the paper's Table 1 (then AWD rows).
DISPLAY = {
    "pretrained": "Pretrained", "individual": "Individual", "mtl": "Traditional MTL",
    "weight_average": "Weight Averaging", "fisher": "Fisher Merging", "regmean": "RegMean",
    "task_arithmetic": "Task Arithmetic", "ties": "Ties-Merging", "tatr": "TATR",
    "ties_tatr": "Ties-Merging & TATR", "consensus": "Consensus Merging", "pcb": "PCB Merging",
    "cat": "CAT Merging", "awd_ta": "AWD + TA", "awd_ties": "AWD + TIES",
    "tsv_m": "TSV-M", "iso_c": "Iso-C", "iso_cts": "Iso-CTS", "wudi": "WUDI",
}
REFERENCE = ("pretrained", "individual", "mtl")


def grid_points(grid: Mapping[str, Sequence[Any]]) -> List[Dict[str, Any]]:
    """Cartesian product of a grid ({} → one empty configuration)."""
    names = list(grid)
    return [dict(zip(names, vals)) for vals in itertools.product(*[grid[n] for n in names])]


def judged_knobs(points: Sequence[Mapping[str, Any]]) -> Dict[str, List[Any]]:
    """The knobs whose edges mean something: numeric (not bool) and tried at three or more values across
    ``points`` (configurations). Returns ``{knob: sorted distinct values}``."""
    out = {}
    for k in dict.fromkeys(k for p in points for k in p):  # first-seen order
        vals = [p[k] for p in points if k in p]
        if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in vals) and len(set(vals)) >= 3:
            out[k] = sorted(set(vals))
    return out


def edge_of(value: Any, values: Sequence[Any]) -> Optional[str]:
    """``"largest"`` / ``"smallest"`` when ``value`` is the largest / smallest of ``values``, else None."""
    return "largest" if value == max(values) else "smallest" if value == min(values) else None


def step_past(values: Sequence[float], edge: str) -> Optional[float]:
    """The next value past an edge of sorted numeric ``values`` (≥ 2): above, the last step again (0.5, 0.7 → 0.9);
    below, the first step again, or half the smallest value when that would not stay positive (0.1, 0.2 → 0.05).
    Integer grids give integers; None when no integer lies past the edge that way (1, 2, 3 → nothing below 1)."""
    vals = sorted(values)
    if edge == "largest":
        v = vals[-1] + (vals[-1] - vals[-2])
    else:
        v = vals[0] - (vals[1] - vals[0])
        if vals[0] > 0 and v <= 0:
            v = vals[0] / 2
    if all(isinstance(x, int) for x in vals):
        v = int(v)  # toward zero: half of 1 is 0, which a positive grid does not take
        return None if vals[0] > 0 and v <= 0 else v
    return round(float(v), 10)


def accepts(method: str, hparams: Mapping[str, Any]) -> bool:
    """Whether ``method`` accepts ``hparams`` (names and ranges of its registry entry)."""
    try:
        validate_hparams(get_method(method), hparams)
    except HyperparameterError:
        return False
    return True


def search(grid: Mapping[str, Sequence[Any]], score: Callable[[Dict[str, Any]], float],
           fixed: Optional[Mapping[str, Any]] = None, widen: int = WIDEN, desc: str = "grid",
           accept: Optional[Callable[[Dict[str, Any]], bool]] = None):
    """Score every configuration of ``grid`` (each merged into ``fixed``) with ``score(hp) -> float`` (higher is
    better); then, while the best configuration's value of a judged knob (:func:`judged_knobs`) lies on an edge of
    the values tried, try one more value past that edge (:func:`step_past`) with every combination of the other
    knobs' values, at most ``widen`` times per knob and direction. A value past the edge that ``accept(hp)``
    rejects (e.g. out of the method's range, :func:`accepts`) ends the widening in that direction. The first
    maximum wins: ties go to the earlier configuration, so a value past the edge must be strictly better to be
    chosen.

    Returns ``(best_hp, best_score, scored, widened)``: ``scored`` lists every configuration with its
    ``"val_average"``; ``widened`` is ``{knob: [values added past an edge]}``."""
    fixed = dict(fixed or {})
    values = {k: list(v) for k, v in grid.items()}
    scored: List[Dict[str, Any]] = []

    def add(points):
        for point in progress(points, desc=desc, leave=False):
            hp = {**fixed, **point}
            scored.append({**hp, "val_average": score(hp)})

    add(grid_points(values))
    widened: Dict[str, List[Any]] = {}
    used: Dict[tuple, int] = {}
    while True:
        best = max(scored, key=lambda r: r["val_average"])
        judged = judged_knobs(grid_points(values))
        edge = next(((k, e) for k in values if k in judged
                     for e in [edge_of(best[k], judged[k])] if e and used.get((k, e), 0) < widen), None)
        if edge is None:
            break
        k, e = edge
        used[edge] = used.get(edge, 0) + 1
        v = step_past(judged[k], e)
        points = grid_points({**values, k: [v]})
        if v is None or (accept is not None and not all(accept({**fixed, **p}) for p in points)):
            used[edge] = widen  # nothing valid past this edge
            continue
        values[k] = values[k] + [v] if e == "largest" else [v] + values[k]
        widened.setdefault(k, []).append(v)
        add(points)
    return {k: v for k, v in best.items() if k != "val_average"}, best["val_average"], scored, widened


_STATS_CACHE: Dict[tuple, Statistics] = {}


def statistics_for(bench: Benchmark, method: str, n_exemplars: int = 4, seed: int = 0,
                   tasks: Optional[Sequence[str]] = None, hparams: Optional[Mapping[str, Any]] = None,
                   **options) -> Optional[Statistics]:
    """Statistics ``method`` needs on ``bench`` from ``n_exemplars`` training images per task (memoised)."""
    spec = get_method(method)
    hp = dict(hparams or {})
    needs = spec.needs_for(hp)
    if not needs:
        return None
    implied = spec.fn.stats_options({**spec.defaults(), **hp}) if hasattr(spec.fn, "stats_options") else {}
    opts = {**implied, **options}
    tasks = list(tasks or bench.tasks)
    key = (id(bench), tuple(tasks), tuple(sorted(needs)), n_exemplars, seed, tuple(sorted(opts.items())))
    if key not in _STATS_CACHE:
        ex = bench.exemplar_batches(n_exemplars, seed=seed, labelled=True, tasks=tasks)
        if not spec.labelled and "fisher" not in needs:
            ex = [e[0] for e in ex]
        _STATS_CACHE[key] = collect_statistics(bench.build_module(), bench.pretrained, bench.finetuned_list(tasks),
                                               ex, needs=needs, heads=bench.head_list(tasks), seed=seed, **opts)
    return _STATS_CACHE[key]


def merge_on(bench: Benchmark, method: str, hparams: Optional[Mapping[str, Any]] = None,
             tasks: Optional[Sequence[str]] = None, n_exemplars: int = 4, seed: int = 0) -> StateDict:
    """Merge the fine-tuned models of ``tasks`` (default: the benchmark's) with one configuration."""
    hp = dict(hparams or {})
    stats = statistics_for(bench, method, n_exemplars, seed, tasks, hp)
    return merge(method, bench.pretrained, bench.finetuned_list(tasks), stats=stats, **hp)


def reference_rows(bench: Benchmark, split: str = "test", tasks: Optional[Sequence[str]] = None) -> Dict[str, Dict[str, float]]:
    """Pretrained (θ0), Individual (each task's own expert) and Traditional MTL (when the benchmark has one)."""
    tasks = list(tasks or bench.tasks)
    rows = {"pretrained": evaluate(bench, bench.pretrained, split, tasks)}
    rows["individual"] = {t: evaluate(bench, bench.finetuned[t], split, [t])[t] for t in tasks}
    if bench.mtl is not None:
        rows["mtl"] = evaluate(bench, bench.mtl, split, tasks)
    return rows


@dataclass
class TuneResult:
    method: str
    best: Dict[str, Any]                       # chosen hyperparameters
    val_average: float                         # validation average of the chosen configuration
    test: Dict[str, float]                     # per-task test accuracy of the chosen configuration
    grid: List[Dict[str, Any]] = field(default_factory=list)  # every configuration with its val average
    seconds: float = 0.0
    widened: Dict[str, List[Any]] = field(default_factory=dict)  # values tried past a grid edge, per knob

    @property
    def test_average(self) -> float:
        return average(self.test)


def tune(bench: Benchmark, method: str, grid: Optional[Mapping[str, Sequence[Any]]] = None,
         fixed: Optional[Mapping[str, Any]] = None, tasks: Optional[Sequence[str]] = None,
         eval_tasks: Optional[Sequence[str]] = None, n_exemplars: int = 4, seed: int = 0,
         select_split: str = "val", report_split: str = "test", widen: int = WIDEN) -> TuneResult:
    """Choose ``method``'s hyperparameters on ``select_split`` (mean accuracy over the merged tasks; the grid is
    widened past an edge choice, see :func:`search`) and report the chosen configuration on ``report_split``.
    ``eval_tasks`` (default: ``tasks``) are the tasks tested, e.g. seen + unseen for Table 8; selection always
    uses the merged tasks only."""
    tasks = list(tasks or bench.tasks)
    eval_tasks = list(eval_tasks or tasks)
    grid = GRIDS.get(method, {}) if grid is None else grid
    t0 = time.perf_counter()

    def score(hp):
        return average(evaluate(bench, merge_on(bench, method, hp, tasks, n_exemplars, seed), select_split, tasks))
    hp, val, scored, widened = search(grid, score, fixed, widen, f"{method} grid", lambda p: accepts(method, p))
    merged = merge_on(bench, method, hp, tasks, n_exemplars, seed)
    test = evaluate(bench, merged, report_split, eval_tasks)
    return TuneResult(method, hp, val, test, scored, time.perf_counter() - t0, widened)


def results_table(rows: Mapping[str, Mapping[str, float]], tasks: Iterable[str]):
    """A pandas DataFrame: one row per method (display names), per-task columns, ``avg`` and ``#best`` (number of
    tasks where a merging method is best; reference rows excluded, ties count for each)."""
    import pandas as pd
    tasks = list(tasks)
    df = pd.DataFrame({DISPLAY.get(m, m): {t: r[t] for t in tasks} for m, r in rows.items()}).T[tasks]
    df["avg"] = df[tasks].mean(axis=1)
    merging = [DISPLAY.get(m, m) for m in rows if m not in REFERENCE]
    best = df.loc[merging, tasks].round(1).max(axis=0) if merging else None
    df["#best"] = [int((df.loc[n, tasks].round(1) == best).sum()) if n in merging else None for n in df.index]
    return df
