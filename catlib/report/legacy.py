"""Deprecated: the notebook helpers of ``catlib.report`` before :class:`catlib.protocol.Session`. Each takes a
benchmark (or a Session) and forwards to a Session's method; a benchmark gets a new Session per call, so nothing
is shared between calls but the disk cache. Write ``S = Session(bench)`` and ``S.run(...)`` instead."""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

from ..protocol.session import Session, TuneResult, as_session


def run(
    bench,
    method: str,
    hparams=None,
    tasks=None,
    eval_tasks=None,
    split: str = "test",
    n_exemplars: Optional[int] = None,
    seed: int = 0,
    cache=None,
) -> Dict[str, float]:
    return as_session(bench, cache).run(method, hparams, tasks, eval_tasks, split, n_exemplars, seed)


def merged(bench, method: str, hparams=None, tasks=None, n_exemplars: Optional[int] = None, seed: int = 0):
    S = as_session(bench)
    return S.merged(S.spec(method, hparams, tasks, n_exemplars, seed))


def run_state(bench, label: str, state_fn, key, tasks=None, split: str = "test", cache=None) -> Dict[str, float]:
    return as_session(bench, cache).evaluated(label, state_fn, key, tasks, split)


def pretrained_row(bench, split: str = "test", tasks=None, cache=None) -> Dict[str, float]:
    return as_session(bench, cache).pretrained_row(split, tasks)


def references(bench, split: str = "test", tasks=None, cache=None) -> Dict[str, Dict[str, float]]:
    return as_session(bench, cache).references(split, tasks)


def tune(
    bench,
    method: str,
    grid=None,
    fixed=None,
    tasks=None,
    eval_tasks=None,
    n_exemplars: Optional[int] = None,
    seed: int = 0,
    select_split: str = "val",
    report_split: str = "test",
    cache=None,
    **kw,
) -> TuneResult:
    return as_session(bench, cache).tune(
        method, grid, fixed, tasks, eval_tasks, n_exemplars, seed, select_split, report_split, **kw
    )


def tune_over_seeds(bench, method: str, seeds: Sequence[int], cache=None, **kw) -> Dict[str, Any]:
    return as_session(bench, cache).tune_over_seeds(method, seeds, **kw)


def awd_result(bench, tasks=None, penalty: float = 0.1, steps: int = 300, lr: float = 0.01, scope: str = "global"):
    return as_session(bench).prepared("awd_ta", {"penalty": penalty, "steps": steps, "lr": lr, "scope": scope}, tasks)


__all__ = [
    "Session",
    "run",
    "merged",
    "run_state",
    "pretrained_row",
    "references",
    "tune",
    "tune_over_seeds",
    "awd_result",
]
