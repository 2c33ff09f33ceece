"""scripts/plugins/nbval_tolerance.py: which output differences the notebook check accepts (float rounding of
another CPU) and which it must still report."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "plugins"))
from nbval_tolerance import numbers_close  # noqa: E402


def test_numbers_within_two_units_of_the_last_digit_match():
    assert numbers_close("<td>51.2</td><td>60.4</td>", "<td>51.3</td><td>60.4</td>", 2) == [("51.2", "51.3")]
    assert numbers_close("c=128: 93.2 | 13.90", "c=128: 93.4 | 13.91", 2) == [("93.2", "93.4"), ("13.90", "13.91")]
    assert numbers_close("same 1.5", "same 1.5", 2) == []


def test_larger_or_structural_differences_are_still_reported():
    assert numbers_close("<td>51.2</td>", "<td>51.5</td>", 2) is None  # 3 units
    assert numbers_close("56 of 56 pairs", "55 of 56 pairs", 2) is None  # integers are exact
    assert numbers_close("acc 51.2", "acc 51.20", 2) is None  # precision changed
    assert numbers_close("reproduced 51.2", "not reproduced 51.2", 2) is None  # words changed
    assert numbers_close("51.2 60.1", "51.2", 2) is None  # a number missing
    assert numbers_close("-0.1", "0.1", 2) is None  # sign is text
    assert numbers_close("<td>51.2</td>", "<td>51.3</td>", 0) is None  # strict
