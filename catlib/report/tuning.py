"""The book's validation grids (:data:`BOOK_GRIDS`) and validation-tuned runs (:func:`tune`, :func:`tune_over_seeds`):
the protocol of :func:`catlib.experiment.tune`, with every grid point a cached :func:`~catlib.report.runs.run`."""
from __future__ import annotations

import math
import time
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

from ..benchmarks.base import Benchmark
from ..evaluate import average
from ..experiment import DISPLAY, GRIDS, WIDEN, TuneResult, accepts, edge_of, grid_points, judged_knobs, search
from ..merge.registry import get_method
from .cache import ResultCache
from .runs import full_hparams, run


# The book's validation grids: smaller than experiment.GRIDS so that the whole book runs in about 45 minutes on two
# CPU cores from an empty cache (one evaluation of the tiny benchmark's validation split takes ~11 s on one core,
# the large size's ~14 s). Every method gets the same six α values, 0.1 apart where task arithmetic, TIES and CAT
# peak and one point beyond (0.7) so that an optimum near 0.5 is bracketed; PCB, TSV-M and the Iso methods rescale
# the merged vector, so they get six points on their own scale. Other knobs stay at their defaults; Fisher and
# RegMean get their one knob. A choice on a grid's edge widens the search past it (:func:`tune`'s ``widen``, the
# same rule for every method); :func:`edge_choices` flags a choice still on the edge. Notebooks take ``grids=`` /
# ``full_grids=``.
BOOK_ALPHAS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.7]
BOOK_SCALES = [0.5, 0.75, 1.0, 1.25, 1.5, 2.0]
BOOK_GRIDS: Dict[str, Dict[str, List[Any]]] = {
    "weight_average": {},
    "task_arithmetic": {"alpha": BOOK_ALPHAS},
    "ties": {"alpha": BOOK_ALPHAS},
    "fisher": {"normalize": [True, False]},
    "regmean": {"reduce_nondiag": [0.5, 0.9]},
    "tatr": {"alpha": BOOK_ALPHAS},
    "ties_tatr": {"alpha": BOOK_ALPHAS},
    "consensus": {"alpha": BOOK_ALPHAS},
    "pcb": {"alpha": BOOK_SCALES},
    "cat": {"alpha": BOOK_ALPHAS},
    "awd_ta": {"alpha": BOOK_ALPHAS},
    "awd_ties": {"alpha": BOOK_ALPHAS},
    # newer data-free methods (not in the paper): their own scale; WUDI has no α
    "tsv_m": {"alpha": BOOK_SCALES},
    "iso_c": {"alpha": BOOK_SCALES},
    "iso_cts": {"alpha": BOOK_SCALES},
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

    def values(vals):
        return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in vals)
    rows = {}
    for m in methods:
        g = grid(m, grids, full_grids)
        rows[DISPLAY.get(m, m)] = {"validation grid": "; ".join(f"{k} ∈ {{{values(vals)}}}" for k, vals in g.items())
                                   or "(nothing to tune)", "points": len(grid_points(g))}
    return pd.DataFrame.from_dict(rows, orient="index")


def grid_size(methods: Iterable[str], grids=None, full_grids: bool = False) -> int:
    return sum(len(grid_points(grid(m, grids, full_grids))) for m in methods)


def default_subset(bench: Benchmark) -> List[str]:
    """Every other task of the benchmark (4 of 8): the smaller merge shown beside the 8-task table."""
    return list(bench.tasks)[::2]


def edge_choices(result: TuneResult) -> Dict[str, str]:
    """The chosen values that still lie on an edge of the values tried (the grid and what :func:`tune` added past
    its edges), ``{knob: "largest" | "smallest"}``, for numeric knobs tried at three or more values: there the
    optimum may lie beyond, so a wider search may choose better. Booleans and knobs with fewer values are not
    judged (:func:`catlib.experiment.judged_knobs`)."""
    judged = judged_knobs(result.grid)
    return {k: e for k, v in result.best.items() if k in judged for e in [edge_of(v, judged[k])] if e}


def tune(bench: Benchmark, method: str, grid: Optional[Mapping[str, Sequence[Any]]] = None,
         fixed: Optional[Mapping[str, Any]] = None, tasks: Optional[Sequence[str]] = None,
         eval_tasks: Optional[Sequence[str]] = None, n_exemplars: int = 4, seed: int = 0,
         select_split: str = "val", report_split: str = "test",
         cache: Optional[ResultCache] = None, widen: int = WIDEN) -> TuneResult:
    """:func:`catlib.experiment.tune` with every evaluation cached: choose on ``select_split`` (mean over the
    merged tasks; the first maximum in grid order wins; up to ``widen`` values past an edge choice, per knob and
    direction, :func:`catlib.experiment.search`), report the choice on ``report_split`` over ``eval_tasks``.
    ``grid`` defaults to ``experiment.GRIDS[method]``."""
    tasks = list(tasks or bench.tasks)
    eval_tasks = list(eval_tasks or tasks)
    grid = GRIDS.get(method, {}) if grid is None else grid
    t0 = time.perf_counter()

    def score(hp):
        return average(run(bench, method, hp, tasks, tasks, select_split, n_exemplars, seed, cache))
    hp, val, scored, widened = search(grid, score, fixed, widen, f"{method} grid", lambda p: accepts(method, p))
    test = run(bench, method, hp, tasks, eval_tasks, report_split, n_exemplars, seed, cache)
    return TuneResult(method, hp, val, test, scored, time.perf_counter() - t0, widened)


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
