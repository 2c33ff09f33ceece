"""AWD's page, cached in a :class:`~catlib.protocol.Session`: the disentanglement's diagnostics and each θ0 + τ̂_i
alone beside its fine-tuned model. Each function takes a Session (or a benchmark, for which it opens one)."""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence

from ..core.statedict import apply
from ..merge.registry import get_method
from ..protocol.session import Session, as_session
from .names import task_label


def _stage_hp(hparams: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """The disentanglement's own hyperparameters (penalty, steps, lr, scope), defaults filled in."""
    spec = get_method("awd_ta")
    hp = spec.validate(dict(hparams or {}))
    return {k: hp[k] for k in spec.prepare_args}


def awd_summary(
    session: Session, hparams: Optional[Mapping[str, Any]] = None, tasks: Optional[Sequence[str]] = None, cache=None
) -> Dict[str, Any]:
    """AWD's diagnostics for the benchmark's task vectors (cached): cosines before/after, ‖δ‖ / mean ‖τ_i‖, the
    objective per step."""
    S = as_session(session, cache)
    hp, tasks = _stage_hp(hparams), S.tasks(tasks)

    def compute():
        r = S.prepared("awd_ta", hp, tasks)
        return {
            "cos_before": r.cos_before,
            "cos_after": r.cos_after,
            "delta_rel_norm": r.delta_rel_norm,
            "losses": r.losses,
        }

    return S.cached("awd", S.key("awd", **hp, tasks=tasks), compute)


def awd_alone(session: Session, hparams: Optional[Mapping[str, Any]] = None, split: str = "test", cache=None):
    """Each θ0 + τ̂_i alone on its own task beside the fine-tuned θ_i = θ0 + τ_i (cached)."""
    import pandas as pd

    S = as_session(session, cache)
    hp, tasks, b = _stage_hp(hparams), list(S.bench.tasks), S.bench
    rows = {}
    for j, t in enumerate(tasks):
        ft = S.evaluated(f"individual/{t}", lambda t=t: b.finetuned[t], {}, [t], split)[t]
        hat = S.evaluated(
            f"awd_alone/{t}",
            lambda j=j: apply(b.pretrained, S.prepared("awd_ta", hp, tasks).vectors[j]),
            {"hp": hp, "tasks": tasks},
            [t],
            split,
        )[t]
        rows[task_label(t)] = {"fine-tuned θ0+τ_i": ft, "θ0+τ̂_i (AWD)": hat, "difference": hat - ft}
    return pd.DataFrame.from_dict(rows, orient="index").round(1)
