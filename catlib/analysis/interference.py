"""Interference between task vectors, measured in accuracy under task arithmetic (θ0 + α Σ_k τ_k).

Two matrices, rows = the task evaluated (i), columns = the task vector (j), in accuracy points:

* :func:`transfer_matrix`: ``acc_i(θ0 + α τ_j) − acc_i(θ0)``, what each vector does alone to every task (the
  diagonal is the task's own gain at this α; off-diagonal entries are transfer, positive or negative);
* :func:`leave_one_out`: ``acc_i(θ0 + α Σ_{k≠j} τ_k) − acc_i(θ0 + α Σ_k τ_k)``, what task i gains when τ_j is left
  out of the full merge (positive off the diagonal: τ_j hurts task i inside the merge; the diagonal is minus what
  τ_i contributes to its own task).

Every accuracy comes from a :class:`catlib.protocol.Session`'s ``run`` (cached on disk like the tables' runs), on the
validation split unless told otherwise: the functions take the Session (anything with ``run``, ``pretrained_row``
and ``bench``), so this module imports nothing above it. The paper's loss-based view of the same question (ΔL,
Fig. 3/5) is in :mod:`catlib.analysis.conflict`.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence


def _frame(rows: Dict[str, Dict[str, float]], tasks: Sequence[str]):
    import pandas as pd

    return pd.DataFrame({j: [rows[j][i] for i in tasks] for j in tasks}, index=list(tasks)).rename_axis(
        index="task evaluated", columns="task vector"
    )


def _session(x):
    """``x`` when it is a Session; a benchmark (the deprecated first argument) gets one with the book's cache."""
    if hasattr(x, "run") and hasattr(x, "pretrained_row"):
        return x
    from ..protocol import Session

    return Session(x)


def _check_alpha(alpha: float) -> float:
    alpha = float(alpha)
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    return alpha


def transfer_matrix(session, alpha: float, split: str = "val", tasks: Optional[Sequence[str]] = None):
    """DataFrame ``(tasks × tasks)``: entry (i, j) = ``acc_i(θ0 + α τ_j) − acc_i(θ0)`` in points."""
    session = _session(session)
    alpha, tasks = _check_alpha(alpha), session.tasks(tasks)
    base = session.pretrained_row(split, tasks)
    rows = {}
    for j in tasks:
        acc = session.run("task_arithmetic", {"alpha": alpha}, tasks=[j], eval_tasks=tasks, split=split)
        rows[j] = {i: acc[i] - base[i] for i in tasks}
    return _frame(rows, tasks)


def leave_one_out(session, alpha: float, split: str = "val", tasks: Optional[Sequence[str]] = None):
    """DataFrame ``(tasks × tasks)``: entry (i, j) = ``acc_i(θ0 + α Σ_{k≠j} τ_k) − acc_i(θ0 + α Σ_k τ_k)`` in
    points."""
    session = _session(session)
    alpha, tasks = _check_alpha(alpha), session.tasks(tasks)
    if len(tasks) < 2:
        raise ValueError(f"leave_one_out needs at least 2 tasks, got {tasks}")
    full = session.run("task_arithmetic", {"alpha": alpha}, tasks=tasks, split=split)
    rows = {}
    for j in tasks:
        rest = [t for t in tasks if t != j]
        acc = session.run("task_arithmetic", {"alpha": alpha}, tasks=rest, eval_tasks=tasks, split=split)
        rows[j] = {i: acc[i] - full[i] for i in tasks}
    return _frame(rows, tasks)


def most_harmful(loo):
    """For each task i of a :func:`leave_one_out` matrix: the other task vector whose removal raises task i's
    accuracy most, and by how many points (negative: every other vector helps task i)."""
    import pandas as pd

    off = loo.astype(float).copy()
    for t in off.index:
        off.loc[t, t] = float("-inf")
    return pd.DataFrame({"most harmful vector": off.idxmax(axis=1), "gain without it": off.max(axis=1)})
