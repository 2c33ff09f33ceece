"""AWD's page, cached: the disentanglement's diagnostics and each θ0 + τ̂_i alone beside its fine-tuned model."""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence

from ..benchmarks.base import Benchmark
from .cache import CACHE, ResultCache
from .conflicts import conflict_key
from .runs import awd_result, full_hparams, run_state
from .session import task_label


def awd_summary(bench: Benchmark, hparams: Optional[Mapping[str, Any]] = None,
                tasks: Optional[Sequence[str]] = None, cache: Optional[ResultCache] = None) -> Dict[str, Any]:
    """AWD's diagnostics for the benchmark's task vectors (cached): cosines before/after, ‖δ‖ / mean ‖τ_i‖, the
    objective per step."""
    cache = cache or CACHE
    hp = full_hparams("awd_ta", {**dict(hparams or {}), "alpha": 1.0})
    tasks = list(tasks or bench.tasks)
    key = conflict_key(bench, "awd", penalty=hp["penalty"], steps=hp["steps"], lr=hp["lr"], scope=hp["scope"],
                       tasks=tasks)

    def compute():
        r = awd_result(bench, tasks, hp["penalty"], hp["steps"], hp["lr"], hp["scope"])
        return {"cos_before": r.cos_before, "cos_after": r.cos_after, "delta_rel_norm": r.delta_rel_norm,
                "losses": r.losses}
    return cache.cached("awd", key, compute)


def awd_alone(bench: Benchmark, hparams: Optional[Mapping[str, Any]] = None, split: str = "test",
              cache: Optional[ResultCache] = None):
    """Each θ0 + τ̂_i alone on its own task beside the fine-tuned θ_i = θ0 + τ_i (cached)."""
    import pandas as pd
    from ..statedict import apply
    hp = full_hparams("awd_ta", {**dict(hparams or {}), "alpha": 1.0})
    tasks = list(bench.tasks)
    rows = {}
    for j, t in enumerate(tasks):
        ft = run_state(bench, f"individual/{t}", lambda t=t: bench.finetuned[t], {}, [t], split, cache)[t]
        hat = run_state(bench, f"awd_alone/{t}",
                        lambda j=j: apply(bench.pretrained, awd_result(bench, tasks, hp["penalty"], hp["steps"],
                                                                       hp["lr"], hp["scope"]).vectors[j]),
                        {"hp": {k: hp[k] for k in ("penalty", "steps", "lr", "scope")}, "tasks": tasks}, [t], split,
                        cache)[t]
        rows[task_label(t)] = {"fine-tuned θ0+τ_i": ft, "θ0+τ̂_i (AWD)": hat, "difference": hat - ft}
    return pd.DataFrame.from_dict(rows, orient="index").round(1)
