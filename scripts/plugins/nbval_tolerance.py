"""pytest plugin for scripts/nbval.py: accept an output that differs from the stored one only in displayed numbers,
each within ``units`` of its last displayed digit (default 2: 51.2 against 51.3 or 51.4 passes, 51.5 fails).

Why: another CPU type rounds floats differently (MKL/oneDNN pick other kernels), so a merge evaluated there can flip
one or two test predictions and move a table cell by 0.1-0.2 points. The text around the numbers, the count of
numbers, integers and numbers shown with different precision must still match exactly. Each such match is listed
in the test summary. ``CATLIB_NBVAL_UNITS=0`` (``scripts/nbval.py --strict``) compares outputs exactly.
"""

from __future__ import annotations

import os
import re
from typing import List, Optional, Tuple

_NUMBER = re.compile(r"\d+(?:\.\d+)?")  # a sign stays in the text: a flipped sign is reported
_MATCHES: List[str] = []


def numbers_close(ref: str, test: str, units: int) -> Optional[List[Tuple[str, str]]]:
    """The pairs of numbers that differ when ``ref`` and ``test`` agree up to numbers within ``units`` of their last
    displayed digit; ``None`` when they do not agree so (other text, another count of numbers, an integer or the
    number of decimals changed, or a difference above the tolerance)."""
    if units <= 0 or _NUMBER.split(ref) != _NUMBER.split(test):
        return None
    changed = []  # equal text between the numbers (checked above) means as many numbers on both sides
    for x, y in zip(_NUMBER.findall(ref), _NUMBER.findall(test)):
        if x == y:
            continue
        dx, dy = x.partition(".")[2], y.partition(".")[2]
        if not dx or len(dx) != len(dy):
            return None
        if abs(round((float(x) - float(y)) * 10 ** len(dx))) > units:
            return None
        changed.append((x, y))
    return changed


def _flat(cell, outputs, skip) -> dict:
    """nbval's view of a cell's outputs: MIME type (or output key) -> list of sanitized values."""
    out: dict = {}
    for o in outputs:
        for key, value in o.items():
            if key in skip:
                continue
            items = value.items() if key == "data" else [(key, value)]
            for k, v in items:
                if k not in skip:
                    out.setdefault(k, []).append(cell.sanitize(v))
    return out


def pytest_configure(config):
    from nbval.plugin import IPyNbCell, transform_streams_for_comparison

    units = int(os.environ.get("CATLIB_NBVAL_UNITS", "2"))
    exact = IPyNbCell.compare_outputs
    if getattr(exact, "_catlib_tolerant", False):
        return

    def compare_outputs(self, test, ref, skip_compare=None):
        if exact(self, test, ref, skip_compare):
            return True
        skip = skip_compare or self.parent.skip_compare
        r = _flat(self, transform_streams_for_comparison(ref), skip)
        t = _flat(self, transform_streams_for_comparison(test), skip)
        if units <= 0 or r.keys() != t.keys() or any(len(r[k]) != len(t[k]) for k in r):
            return False
        changed = []
        for k in r:
            for x, y in zip(r[k], t[k]):
                if x == y:
                    continue
                if not (isinstance(x, str) and isinstance(y, str)):
                    return False
                pairs = numbers_close(x, y, units)
                if pairs is None:
                    return False
                changed += pairs
        self.comparison_traceback = []
        _MATCHES.append(
            f"{self.nodeid}: {len(changed)} number(s) within {units} unit(s) of the last digit "
            f"(stored→computed): " + ", ".join(f"{x}→{y}" for x, y in changed[:8]) + (" …" if len(changed) > 8 else "")
        )
        return True

    compare_outputs._catlib_tolerant = True
    IPyNbCell.compare_outputs = compare_outputs


def pytest_terminal_summary(terminalreporter):
    if _MATCHES:
        terminalreporter.write_sep("-", "outputs that matched only within the float tolerance (another CPU type?)")
        for line in _MATCHES:
            terminalreporter.write_line(line)
