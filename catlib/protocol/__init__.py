"""The experiment protocol, one for the command line and the notebooks: a :class:`Session` on a benchmark runs
:class:`RunSpec` merges through the content-keyed :class:`ResultCache`, gives the reference rows and tunes every
method on validation with the same rule (:func:`search`, grids from the methods' declarations, :func:`grid`).

The module-level functions below (``merge_on``, ``statistics_for``, ``reference_rows``, ``tune``) are the
deprecated spellings of ``catlib.experiment``: each opens a throw-away :class:`Session` without a disk cache.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence

from ..merge.registry import ALPHAS, REGISTRY, get_method
from .cache import ResultCache, bench_fingerprint, code_fingerprint, fingerprinted_files
from .search import WIDEN, accepts, edge_of, grid, grid_points, judged_knobs, search, step_past
from .seeds import SeedResult, Seeds, mean_std
from .session import REFERENCE, RunSpec, Session, TuneResult, as_session

REFERENCE_DISPLAY = {"pretrained": "Pretrained", "individual": "Individual", "mtl": "Traditional MTL"}


def display_names() -> Dict[str, str]:
    """Method name → the name tables print: the reference rows, then every registered method's ``display``."""
    return {**REFERENCE_DISPLAY, **{s.name: s.display for s in REGISTRY.specs()}}


def grids(full: bool = False) -> Dict[str, Dict[str, list]]:
    """Every method's declared validation grid (the book's; ``full=True``: the larger one)."""
    return {s.name: s.grid(full) for s in REGISTRY.specs()}


def __getattr__(name: str):  # derived tables, built on each access (no module state)
    if name == "GRIDS":
        return grids(full=True)
    if name == "DISPLAY":
        return display_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def statistics_for(
    bench,
    method: str,
    n_exemplars: Optional[int] = None,
    seed: int = 0,
    tasks: Optional[Sequence[str]] = None,
    hparams: Optional[Mapping[str, Any]] = None,
):
    """Deprecated: ``Session(bench).statistics(RunSpec)``."""
    S = Session(bench, cache=None)
    return S.statistics(S.spec(method, hparams, tasks, n_exemplars, seed))


def merge_on(
    bench,
    method: str,
    hparams: Optional[Mapping[str, Any]] = None,
    tasks: Optional[Sequence[str]] = None,
    n_exemplars: Optional[int] = None,
    seed: int = 0,
):
    """Deprecated: ``Session(bench).merged(RunSpec)``: the fine-tuned models of ``tasks`` merged with one
    configuration."""
    S = Session(bench, cache=None)
    return S.merged(S.spec(method, hparams, tasks, n_exemplars, seed))


def reference_rows(bench, split: str = "test", tasks: Optional[Sequence[str]] = None) -> Dict[str, Dict[str, float]]:
    """Deprecated: ``Session(bench).references(split, tasks)``."""
    return Session(bench, cache=None).references(split, tasks)


def tune(bench, method: str, grid: Optional[Mapping[str, Sequence[Any]]] = None, **kw) -> TuneResult:
    """Deprecated: ``Session(bench).tune(method, grid, ...)``, without a disk cache; ``grid`` defaults to the
    method's full grid, as ``catlib.experiment.tune`` did."""
    return Session(bench, cache=None).tune(method, get_method(method).grid(True) if grid is None else grid, **kw)


__all__ = [
    "Session",
    "Seeds",
    "SeedResult",
    "mean_std",
    "RunSpec",
    "TuneResult",
    "ResultCache",
    "REFERENCE",
    "REFERENCE_DISPLAY",
    "WIDEN",
    "ALPHAS",
    "as_session",
    "display_names",
    "grids",
    "grid",
    "grid_points",
    "judged_knobs",
    "edge_of",
    "step_past",
    "accepts",
    "search",
    "bench_fingerprint",
    "code_fingerprint",
    "fingerprinted_files",
    "statistics_for",
    "merge_on",
    "reference_rows",
    "tune",
]
