"""Old module paths from before the layered layout still import, warn, and are the very modules at the new paths;
old names of catlib.experiment and catlib.report still work."""

from __future__ import annotations

import importlib
import sys

import pytest

from catlib import _compat


@pytest.mark.parametrize("old,new", sorted(_compat.MOVED.items()))
def test_old_module_paths_warn_and_give_the_new_module(old, new):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {new}"):
        mod = importlib.import_module(old)
    assert mod is importlib.import_module(new)


def test_catlib_evaluate_stays_the_function_after_importing_its_old_module():
    import catlib
    from catlib.evaluate import evaluate  # the module's old path

    assert catlib.evaluate is evaluate and callable(catlib.evaluate)


def test_old_experiment_names():
    sys.modules.pop("catlib.experiment", None)
    with pytest.warns(DeprecationWarning):
        E = importlib.import_module("catlib.experiment")
    assert E.GRIDS["cat"] == {"alpha": [0.2, 0.3, 0.4, 0.5, 0.6, 0.8], "c": [1, 2, 3, 4], "lam": [0.1, 1.0, 5.0, 10.0]}
    assert E.DISPLAY["cat"] == "CAT Merging" and E.REFERENCE == ("pretrained", "individual", "mtl")
    assert E.step_past([0.1, 0.2], "largest") == pytest.approx(0.3)
    for name in ("tune", "merge_on", "statistics_for", "reference_rows", "search", "grid_points", "TuneResult"):
        assert callable(getattr(E, name))


def test_old_report_names():
    from catlib import report as R

    for name in (
        "run",
        "tune",
        "tune_over_seeds",
        "references",
        "merged",
        "run_state",
        "pretrained_row",
        "awd_result",
        "full_hparams",
        "BOOK_GRIDS",
        "GRIDS",
        "CACHE",
        "METHODS",
        "ResultCache",
    ):
        assert getattr(R, name) is not None
    assert R.BOOK_GRIDS["cat"] == {"alpha": [0.1, 0.2, 0.3, 0.4, 0.5, 0.7], "c": [1, 2, 4], "lam": [0.1, 1.0, 10.0]}
