"""One configuration merged and evaluated, cached (:func:`run`; :func:`merged` keeps the last merged state dict in
memory), a state dict evaluated, cached (:func:`run_state`), and the reference rows (:func:`references`:
Pretrained / Individual / Traditional MTL). A run's key holds the method, its full hyperparameters (defaults filled
in), the merged and evaluated tasks, the split and, for data-dependent methods only, the exemplar count and seed."""
from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional, Sequence

import torch

from ..benchmarks.base import Benchmark
from ..evaluate import evaluate
from ..experiment import merge_on
from ..merge.registry import get_method, validate_hparams
from .cache import CACHE, CACHE_VERSION, ResultCache, _acc_check, _jsonable, _sha, bench_fingerprint, code_fingerprint


def full_hparams(method: str, hparams: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The hyperparameters with every default filled in (so equal configurations share one cache entry)."""
    return dict(validate_hparams(get_method(method), dict(hparams or {})))


def run_key(bench: Benchmark, method: str, hparams: Optional[Mapping[str, Any]] = None,
            tasks: Optional[Sequence[str]] = None, eval_tasks: Optional[Sequence[str]] = None, split: str = "test",
            n_exemplars: int = 4, seed: int = 0) -> Dict[str, Any]:
    tasks = list(tasks or bench.tasks)
    hp = full_hparams(method, hparams)
    data_dependent = bool(get_method(method).needs_for(hp))
    return {"v": CACHE_VERSION, "bench": bench_fingerprint(bench), "code": code_fingerprint(), "method": method,
            "hparams": _jsonable(hp), "tasks": tasks, "eval_tasks": list(eval_tasks or tasks), "split": split,
            "n_exemplars": n_exemplars if data_dependent else None, "seed": seed if data_dependent else None}


_LAST_MERGE: Dict[str, Any] = {}
_AWD_MEMO: Dict[tuple, Any] = {}


def awd_result(bench: Benchmark, tasks: Optional[Sequence[str]] = None, penalty: float = 0.1, steps: int = 300,
               lr: float = 0.01, scope: str = "global"):
    """:func:`catlib.disentangle` of the benchmark's task vectors (the last result is kept in memory: AWD's δ does
    not depend on α, so every α of awd_ta / awd_ties reuses it)."""
    from ..merge.awd import disentangle
    from ..statedict import task_vectors
    tasks = list(tasks or bench.tasks)
    key = (bench_fingerprint(bench), tuple(tasks), float(penalty), int(steps), float(lr), scope)
    if key not in _AWD_MEMO:
        _AWD_MEMO.clear()
        _AWD_MEMO[key] = disentangle(task_vectors(bench.pretrained, bench.finetuned_list(tasks)), penalty, steps, lr,
                                     scope)
    return _AWD_MEMO[key]


def _merge_fast(bench: Benchmark, method: str, hparams: Mapping[str, Any], tasks: Optional[Sequence[str]],
                n_exemplars: int, seed: int):
    """:func:`catlib.experiment.merge_on`, except that awd_ta / awd_ties reuse :func:`awd_result` across α (the
    same computation as ``catlib.merge.awd``: θ0 + α Σ τ̂_i, or TIES on the τ̂_i; tests/test_report.py checks
    they agree)."""
    if method in ("awd_ta", "awd_ties"):
        from ..merge.awd import merge_disentangled
        from ..statedict import apply
        hp = full_hparams(method, hparams)
        hat = awd_result(bench, tasks, hp["penalty"], hp["steps"], hp["lr"], hp["scope"]).vectors
        ties_hp = {k: hp[k] for k in ("k", "merge_func") if k in hp}
        return apply(bench.pretrained, merge_disentangled(hat, method, hp["alpha"], **ties_hp))
    return merge_on(bench, method, dict(hparams or {}), tasks, n_exemplars, seed)


def merged(bench: Benchmark, method: str, hparams: Optional[Mapping[str, Any]] = None,
           tasks: Optional[Sequence[str]] = None, n_exemplars: int = 4, seed: int = 0):
    """The merged state dict (the last one is kept in memory, so evaluating it on another split costs no merge)."""
    k = _sha({k: v for k, v in run_key(bench, method, hparams, tasks, None, "-", n_exemplars, seed).items()
              if k not in ("eval_tasks", "split")})
    if _LAST_MERGE.get("key") != k:
        _LAST_MERGE.clear()
        _LAST_MERGE.update(key=k, sd=_merge_fast(bench, method, dict(hparams or {}), tasks, n_exemplars, seed))
    return _LAST_MERGE["sd"]


def run(bench: Benchmark, method: str, hparams: Optional[Mapping[str, Any]] = None,
        tasks: Optional[Sequence[str]] = None, eval_tasks: Optional[Sequence[str]] = None, split: str = "test",
        n_exemplars: int = 4, seed: int = 0, cache: Optional[ResultCache] = None) -> Dict[str, float]:
    """Per-task accuracy (%) of ``method`` with ``hparams`` merged over ``tasks``, evaluated on ``eval_tasks``
    (default: ``tasks``) and ``split``: cached on disk. ``n_exemplars``/``seed`` matter only for data-dependent
    methods (and are left out of the key otherwise)."""
    cache = cache or CACHE
    tasks = list(tasks or bench.tasks)
    eval_tasks = list(eval_tasks or tasks)
    key = run_key(bench, method, hparams, tasks, eval_tasks, split, n_exemplars, seed)
    return cache.cached("run", key, lambda: evaluate(bench, merged(bench, method, hparams, tasks, n_exemplars, seed),
                                                     split, eval_tasks), _acc_check(eval_tasks))


def run_state(bench: Benchmark, label: str, state_fn: Callable[[], Mapping[str, torch.Tensor]],
              key: Mapping[str, Any], tasks: Optional[Sequence[str]] = None, split: str = "test",
              cache: Optional[ResultCache] = None) -> Dict[str, float]:
    """Cached evaluation of a state dict built by ``state_fn`` (only called on a cache miss); ``label`` and ``key``
    (JSON-able) identify it, e.g. AWD's θ0 + τ̂_i."""
    cache = cache or CACHE
    tasks = list(tasks or bench.tasks)
    full = {"v": CACHE_VERSION, "bench": bench_fingerprint(bench), "code": code_fingerprint(), "label": label,
            "key": _jsonable(dict(key)), "tasks": tasks, "split": split}
    return cache.cached("state", full, lambda: evaluate(bench, state_fn(), split, tasks), _acc_check(tasks))


def pretrained_row(bench: Benchmark, split: str = "test", tasks: Optional[Sequence[str]] = None,
                   cache: Optional[ResultCache] = None) -> Dict[str, float]:
    """Per-task accuracy (%) of θ0, cached (the entry :func:`references` shares)."""
    return run_state(bench, "pretrained", lambda: bench.pretrained, {}, list(tasks or bench.tasks), split, cache)


def references(bench: Benchmark, split: str = "test", tasks: Optional[Sequence[str]] = None,
               cache: Optional[ResultCache] = None) -> Dict[str, Dict[str, float]]:
    """Pretrained, Individual (each task's expert on its own task) and Traditional MTL (when the benchmark has one),
    as :func:`catlib.experiment.reference_rows`, cached."""
    tasks = list(tasks or bench.tasks)
    rows = {"pretrained": pretrained_row(bench, split, tasks, cache)}
    rows["individual"] = {t: run_state(bench, f"individual/{t}", lambda t=t: bench.finetuned[t], {}, [t], split,
                                       cache)[t] for t in tasks}
    if bench.mtl is not None:
        rows["mtl"] = run_state(bench, "mtl", lambda: bench.mtl, {}, tasks, split, cache)
    return rows
