"""catlib.protocol.s validation search: the grid is widened past an edge choice, the same rule for every method."""

from __future__ import annotations

import pytest

from catlib import protocol as E
from catlib import report as R


def peaked_at(center):
    calls = []

    def score(hp):
        calls.append(dict(hp))
        return -abs(hp["alpha"] - center) - 0.01 * abs(hp.get("k", 0.2) - 0.2)

    return score, calls


ALPHAS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.7]


def test_step_past_repeats_the_edge_step_and_stays_positive():
    assert E.step_past(ALPHAS, "largest") == 0.9
    assert E.step_past([0.5, 0.75, 1.0, 2.0], "largest") == 3.0
    assert E.step_past(ALPHAS, "smallest") == 0.05  # 0.1 - 0.1 would be 0: halve instead
    assert E.step_past([-1.0, 0.0, 1.0], "smallest") == -2.0  # a grid that is not positive keeps its step
    assert E.step_past([2, 4, 6], "largest") == 8 and isinstance(E.step_past([2, 4, 6], "largest"), int)
    assert E.step_past([2, 4, 6], "smallest") == 1
    assert E.step_past([1, 2, 3], "smallest") is None  # no positive integer below 1


def test_search_inside_the_grid_tries_the_grid_only():
    score, calls = peaked_at(0.3)
    best, val, scored, widened = E.search({"alpha": ALPHAS}, score)
    assert best == {"alpha": 0.3} and widened == {} and len(scored) == len(calls) == 6
    assert val == pytest.approx(0.0)


def test_search_widens_past_the_top_edge_until_the_choice_is_inside():
    score, _ = peaked_at(1.1)
    best, _, scored, widened = E.search({"alpha": ALPHAS}, score, fixed={"k": 0.2})
    assert widened == {"alpha": [0.9, 1.1, 1.3]} and best == {"k": 0.2, "alpha": 1.1}
    assert [p["alpha"] for p in scored] == ALPHAS + [0.9, 1.1, 1.3]


def test_search_stops_after_widen_steps_and_the_choice_is_then_flagged():
    score, _ = peaked_at(5.0)
    best, val, scored, widened = E.search({"alpha": ALPHAS}, score, widen=2)
    assert widened == {"alpha": [0.9, 1.1]} and best == {"alpha": 1.1}
    tr = E.TuneResult("m", best, val, {}, scored, widened=widened)
    assert R.edge_choices(tr) == {"alpha": "largest"}
    assert E.search({"alpha": ALPHAS}, score, widen=0)[3] == {}  # widen=0: the plain grid


def test_search_widens_below_and_with_every_value_of_the_other_knobs():
    score, _ = peaked_at(0.02)
    best, _, scored, widened = E.search({"alpha": ALPHAS, "k": [0.1, 0.2]}, score, strategy="product")
    assert widened == {"alpha": [0.05, 0.025, 0.0125]} and best == {"alpha": 0.025, "k": 0.2}
    assert len(scored) == 6 * 2 + 3 * 2  # each new α with both k values; k has two values: never widened


def test_search_prefers_the_grid_on_ties():
    best, _, scored, widened = E.search({"alpha": ALPHAS}, lambda hp: 1.0)
    assert best == {"alpha": 0.1} and widened == {"alpha": [0.05]} and len(scored) == 7


def test_search_does_not_widen_into_values_the_method_rejects():
    grid = {"reduce_nondiag": [0.5, 0.9, 0.95, 1.0]}  # RegMean's factor lies in [0, 1]: 1.05 is out of range
    assert E.accepts("regmean", {"reduce_nondiag": 1.0}) and not E.accepts("regmean", {"reduce_nondiag": 1.05})
    score = lambda hp: hp["reduce_nondiag"]  # noqa: E731  (best at the top edge)
    best, _, scored, widened = E.search(grid, score, accept=lambda hp: E.accepts("regmean", hp))
    assert best == {"reduce_nondiag": 1.0} and widened == {} and len(scored) == 4
    tr = E.TuneResult("regmean", best, 1.0, {}, scored)
    assert R.edge_choices(tr) == {"reduce_nondiag": "largest"}  # still flagged for the reader
    # integer knobs: nothing below 1, so only the top edge widens
    best, _, _, widened = E.search({"c": [1, 2, 3]}, lambda hp: -hp["c"])
    assert best == {"c": 1} and widened == {}
