"""Validation grids and the one search loop every method is tuned with.

* :func:`grid` is a method's validation grid, derived from its declaration (:meth:`MethodSpec.grid`): the book's
  by default, the larger one with ``full=True``, or an explicit one a notebook passes.
* :func:`search` scores a grid (higher is better) and, when the choice lies on the edge of a numeric knob's values,
  tries values past it (:func:`step_past`, at most :data:`WIDEN` per knob and direction), the same rule for every
  method. Two strategies: ``"coordinate"`` (the book's: the knobs one at a time, in the order the method declares
  them, α first, each over its values with the others at their best so far) and ``"product"`` (every combination).
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from ..core.errors import HyperparameterError
from ..core.progress import progress
from ..merge.registry import get_method

# Values tried past a grid's edge, per numeric knob and direction, when the validation choice lies on that edge.
WIDEN = 3
# How a grid with several knobs is searched: the book's rule for every method (see :func:`search`).
STRATEGY = "coordinate"
STRATEGIES = ("coordinate", "product")


def grid(
    method: str, grids: Optional[Mapping[str, Mapping[str, Sequence[Any]]]] = None, full: bool = False
) -> Dict[str, List[Any]]:
    """The validation grid of ``method``: ``grids[method]`` when given, else its declared grid (the book's, or the
    larger ``full_grid`` with ``full=True``)."""
    if grids and method in grids:
        return {k: list(v) for k, v in grids[method].items()}
    return get_method(method).grid(full)


def grid_points(grid: Mapping[str, Sequence[Any]]) -> List[Dict[str, Any]]:
    """Cartesian product of a grid ({} → one empty configuration)."""
    names = list(grid)
    return [dict(zip(names, vals)) for vals in itertools.product(*[grid[n] for n in names])]


def grid_cost(grid: Mapping[str, Sequence[Any]], strategy: str = STRATEGY) -> int:
    """Configurations :func:`search` scores before widening: the product of the knobs' value counts, or with
    ``"coordinate"`` at most their sum."""
    sizes = [len(v) for v in grid.values()]
    return (sum(sizes) if strategy == "coordinate" else math.prod(sizes)) if sizes else 1


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
        get_method(method).validate(hparams)
    except HyperparameterError:
        return False
    return True


def search(
    grid: Mapping[str, Sequence[Any]],
    score: Callable[[Dict[str, Any]], float],
    fixed: Optional[Mapping[str, Any]] = None,
    widen: int = WIDEN,
    desc: str = "grid",
    accept: Optional[Callable[[Dict[str, Any]], bool]] = None,
    strategy: str = STRATEGY,
    start: Optional[Mapping[str, Any]] = None,
):
    """Choose a configuration of ``grid`` (each merged into ``fixed``) by ``score(hp) -> float`` (higher is better).

    ``strategy="coordinate"`` (the book's rule): the knobs one at a time in ``grid``'s order (a method's
    declaration order, α first); each is searched over its values, with every knob before it at its chosen value
    and every knob after it at its ``start`` value (the method's default; else its first grid value), by the
    product rule below (so its edges widen the same way); one pass. ``"product"``: every combination of every
    knob at once. A one-knob grid is the same under both.

    Returns ``(best_hp, best_score, scored, widened)``: ``scored`` lists every configuration scored (each once) with
    its ``"val_average"``; ``widened`` is ``{knob: [values added past an edge]}``."""
    if strategy not in STRATEGIES:
        raise HyperparameterError(f"search strategy must be one of {STRATEGIES}, got {strategy!r}")
    if strategy == "product" or len(grid) <= 1:
        return _product(grid, score, fixed, widen, desc, accept)
    memo: Dict[tuple, float] = {}
    scored: List[Dict[str, Any]] = []

    def once(hp):  # a configuration met again in a later pass is not re-scored
        key = tuple(sorted((k, repr(v)) for k, v in hp.items()))
        if key not in memo:
            memo[key] = score(hp)
            scored.append({**hp, "val_average": memo[key]})
        return memo[key]

    chosen = {k: start[k] if start and k in start else list(v)[0] for k, v in grid.items()}
    widened: Dict[str, List[Any]] = {}
    best_val = float("-inf")
    for knob, values in grid.items():
        base = {**dict(fixed or {}), **{k: v for k, v in chosen.items() if k != knob}}
        hp, best_val, _, w = _product({knob: values}, once, base, widen, f"{desc} ({knob})", accept)
        chosen[knob] = hp[knob]
        for k, v in w.items():
            widened.setdefault(k, []).extend(v)
    return {**dict(fixed or {}), **chosen}, best_val, scored, widened


def _product(
    grid: Mapping[str, Sequence[Any]],
    score: Callable[[Dict[str, Any]], float],
    fixed: Optional[Mapping[str, Any]] = None,
    widen: int = WIDEN,
    desc: str = "grid",
    accept: Optional[Callable[[Dict[str, Any]], bool]] = None,
):
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
        edge = next(
            (
                (k, e)
                for k in values
                if k in judged
                for e in [edge_of(best[k], judged[k])]
                if e and used.get((k, e), 0) < widen
            ),
            None,
        )
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
