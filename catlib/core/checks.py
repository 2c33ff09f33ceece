"""Checks of the arguments every layer takes (task lists, batch sizes, exemplar batches): each returns the value
as meant or raises a ValueError that names the argument and the fix."""

from __future__ import annotations

from typing import Any, List, Optional, Sequence

import torch

from .errors import NonFiniteError
from .inputs import check_inputs, is_mapping


def check_tasks(tasks: Any, what: str = "tasks") -> Optional[List[str]]:
    """``tasks`` as a list of distinct task names, or None (every task). A string, a set (no order: the tasks'
    order would change between runs), an empty list, a repeated name or a non-string entry is a ValueError naming
    ``what`` and the fix (a string would otherwise be read letter by letter)."""
    if tasks is None:
        return None
    if isinstance(tasks, (str, bytes)):
        raise ValueError(f"{what} must be a list of task names, got the string {tasks!r}; pass [{tasks!r}]")
    if isinstance(tasks, (set, frozenset)):
        raise ValueError(f"{what} must be a list of task names, got a set (it has no order); pass a list")
    if not isinstance(tasks, Sequence):
        raise ValueError(f"{what} must be a list of task names, got {type(tasks).__name__}")
    tasks = list(tasks)
    if not tasks:
        raise ValueError(f"{what} is an empty list; pass None (every task) or at least one task name")
    bad = [t for t in tasks if not isinstance(t, str)]
    if bad:
        raise ValueError(f"{what} must hold task names (strings), got {bad!r}")
    dup = sorted({t for t in tasks if tasks.count(t) > 1})
    if dup:
        raise ValueError(f"{what} names {dup} more than once; give each task once")
    return tasks


def check_batch_size(batch_size: Any) -> Optional[int]:
    """``batch_size`` as a whole number ≥ 1, or None (the default); 0, a negative number, a fraction or a boolean
    is a ValueError (0 is a mistake, not "the default")."""
    if batch_size is None:
        return None
    whole = isinstance(batch_size, int) or (isinstance(batch_size, float) and batch_size.is_integer())
    if isinstance(batch_size, bool) or not whole or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number ≥ 1 (None: the default), got {batch_size!r}")
    return int(batch_size)


def check_exemplar_inputs(x, name: str) -> None:
    """An exemplar batch's inputs ``x`` (a tensor with the examples along dim 0, or a token batch: a mapping of
    such tensors, :mod:`catlib.core.inputs`) hold at least one example and, when floating, only finite values: an
    empty batch would give zero statistics and NaN ones a failing eigensolver."""
    check_inputs(x, name)
    if is_mapping(x):
        for k, v in x.items():
            check_exemplar_inputs(v, f"{name}[{k!r}]")
        return
    if x.dim() == 0 or x.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}): pass at least one example per task")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        kind = "NaN" if bool(torch.isnan(x).any()) else "Inf"
        raise NonFiniteError(
            f"{name} contains {kind} values: clean or drop those examples before collecting statistics"
        )
