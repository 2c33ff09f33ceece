"""The book's validation grids and the tables about them. The grids themselves are declared by each method
(:meth:`catlib.merge.registry.MethodSpec.grid`): six values of the merge coefficient (0.1 apart where task
arithmetic, TIES and CAT peak and one beyond, 0.7; PCB, TSV-M and the Iso methods on their own scale, as they rescale
the merged vector), then two or three values of each further knob the method's own paper tunes (CAT's c and λ, TIES'
k, ...), searched one knob at a time (:func:`catlib.protocol.search`, ``strategy="coordinate"``). A choice on a
grid's edge widens the search past it (the same rule for every method); :func:`edge_choices` flags a choice still on
the edge."""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

from ..merge.registry import BOOK_ALPHAS, BOOK_SCALES  # noqa: F401  (re-exported for the notebooks)
from ..merge.registry import get_method
from ..protocol import grids as declared_grids
from ..protocol.search import edge_of, grid_cost, judged_knobs
from ..protocol.search import grid as protocol_grid
from ..protocol.session import TuneResult
from .names import DISPLAY

NEWER_METHODS = ["tsv_m", "iso_c", "iso_cts", "wudi"]
# The paper's Table 1 methods in its order, then AWD + TA / TIES.
METHODS = [
    "weight_average",
    "task_arithmetic",
    "ties",
    "fisher",
    "regmean",
    "tatr",
    "ties_tatr",
    "consensus",
    "pcb",
    "cat",
    "awd_ta",
    "awd_ties",
]


def __getattr__(name: str):  # derived from the declarations on each access
    if name == "BOOK_GRIDS":
        return {m: declared_grids()[m] for m in METHODS + NEWER_METHODS}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def grid(
    method: str, grids: Optional[Mapping[str, Mapping[str, Sequence[Any]]]] = None, full_grids: bool = False
) -> Dict[str, List[Any]]:
    """The validation grid a notebook uses for ``method``: ``grids[method]`` when given, else the declared one
    (the book's; ``full_grids=True``: the larger one)."""
    return protocol_grid(method, grids, full_grids)


def full_hparams(method: str, hparams: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """``hparams`` with every default filled in (validated)."""
    return get_method(method).validate(dict(hparams or {}))


def grids_table(methods: Sequence[str], grids=None, full_grids: bool = False):
    """One row per method: its validation grid as text and the number of configurations the book's search scores
    before widening (one knob at a time: at most the sum of the knobs' value counts)."""
    import pandas as pd

    def values(vals):
        return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in vals)

    rows = {}
    for m in methods:
        g = grid(m, grids, full_grids)
        rows[DISPLAY.get(m, m)] = {
            "validation grid": "; ".join(f"{k} ∈ {{{values(vals)}}}" for k, vals in g.items()) or "(nothing to tune)",
            "points": grid_cost(g),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def grid_size(methods: Iterable[str], grids=None, full_grids: bool = False) -> int:
    return sum(grid_cost(grid(m, grids, full_grids)) for m in methods)


def default_subset(bench) -> List[str]:
    """Every other task of the benchmark (4 of 8): the smaller merge shown beside the 8-task table."""
    return list(bench.tasks)[::2]


def edge_choices(result: TuneResult) -> Dict[str, str]:
    """The chosen values that still lie on an edge of the values tried (the grid and what the search added past
    its edges), ``{knob: "largest" | "smallest"}``, for numeric knobs tried at three or more values: there the
    optimum may lie beyond, so a wider search may choose better. Booleans and knobs with fewer values are not
    judged (:func:`catlib.protocol.judged_knobs`)."""
    judged = judged_knobs(result.grid)
    return {k: e for k, v in result.best.items() if k in judged for e in [edge_of(v, judged[k])] if e}


# Table 7's test-time rows (its paper's names), each a method of catlib.testtime.TEST_TIME with its configuration,
# and the column of the paper's Table 9 that times it.
PAPER_COST_COLUMN = {"Surgery Merging": "TA w/ Surgery"}


def test_time_rows(adamerging_steps: int = 500, surgery_steps: int = 1000) -> Dict[str, tuple]:
    """Table 7's test-time rows: display name → (method, hyperparameters), the step counts of their papers by
    default (AdaMerging 500, Surgery 1000)."""
    return {
        "TW AdaMerging": ("adamerging", {"granularity": "task", "steps": adamerging_steps}),
        "TW AdaMerging++": ("adamerging", {"granularity": "task", "plus": True, "steps": adamerging_steps}),
        "LW AdaMerging": ("adamerging", {"granularity": "layer", "steps": adamerging_steps}),
        "LW AdaMerging++": ("adamerging", {"granularity": "layer", "plus": True, "steps": adamerging_steps}),
        "Surgery Merging": ("surgery", {"steps": surgery_steps}),
    }


def paper_cost_column(name: str) -> str:
    """The column of the paper's Table 9 (``data/paper/table9_cost.csv``) that times test-time row ``name``."""
    return PAPER_COST_COLUMN.get(name, "AdaMerging")
