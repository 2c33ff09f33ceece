"""TIES-Merging (Yadav et al., NeurIPS 2023): trim, elect sign, disjoint merge.

1. Trim: per task, keep the top-``k`` fraction of entries of τ_i by magnitude, over the whole model
   (``scope="global"``, the TIES/AdaMerging convention) or per tensor (``scope="per_tensor"``); zero the rest.
2. Elect: γ = sign(Σ_i τ̂_i) per entry ("mass" rule); entries with γ = 0 take the majority sign of γ overall.
3. Disjoint merge: only entries whose sign agrees with γ contribute; ``merge_func="sum"`` adds them
   (dis-sum, the ViT convention with α ≈ 0.3, our default), ``"mean"`` averages them (dis-mean, the original
   T5 convention with α ≈ 1), ``"max"`` keeps the largest magnitude.
θ = θ0 + α τ_m. The global threshold is exact and streamed (no K×D sort).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Annotated

import torch

from ..core.linalg import kth_largest_abs
from ._common import each_key, keys_of, numel, stacked
from .registry import BOOK_ALPHAS, Knob, register

K_KEPT = Knob("fraction of entries kept per task vector (TIES' top-k%, 0.2 = 20%)", (1e-9, 1.0))
MERGE_FUNC = Knob("disjoint merge: sum (dis-sum, default), mean (dis-mean) or max", choices=("sum", "mean", "max"))


def trim_thresholds(vectors, k: float, scope: str):
    """Per task, the magnitude threshold keeping the top-k fraction: a float per task (global) or a dict
    key → (K,) tensor (per tensor)."""
    if scope == "global":
        D = numel(vectors)
        keep = max(1, int(math.ceil(k * D)))
        rows = lambda: (stacked(vectors, key).reshape(len(vectors), -1) for key in keys_of(vectors))
        return kth_largest_abs(rows, [keep] * len(vectors)).tolist()
    out = {}
    for key in keys_of(vectors):
        t = stacked(vectors, key).reshape(len(vectors), -1).abs()
        keep = max(1, int(math.ceil(k * t.shape[1])))
        out[key] = torch.topk(t, keep, dim=1).values[:, -1]
    return out


def ties_kept(vectors, k: float, scope: str):
    """Steps 1-2 per task: yields ``(key, kept, agree, gamma)`` key by key, ``kept`` the (K, *shape) stack of the
    trimmed τ̂_i restricted to the entries agreeing with the elected sign ``gamma`` (the "++" inputs of
    AdaMerging), ``agree`` that boolean mask."""
    thr = trim_thresholds(vectors, k, scope) if k < 1 else None
    K = len(vectors)

    def trimmed(key, t):
        if thr is None:
            return t
        th = torch.tensor(thr) if scope == "global" else thr[key]
        return t * (t.abs() >= th.view(K, *([1] * (t.dim() - 1))))

    # majority sign for entries whose elected sign is 0 (resolve_zero_signs="majority")
    total = sum(float(torch.sign(trimmed(key, t).sum(0)).sum()) for key, t in each_key(vectors))
    majority = 1.0 if total >= 0 else -1.0
    for key, t in each_key(vectors):
        t = trimmed(key, t)
        gamma = torch.sign(t.sum(0))
        gamma[gamma == 0] = majority
        agree = torch.where(gamma > 0, t > 0, t < 0)
        yield key, t * agree, agree, gamma


def ties_delta(vectors, k: float, merge_func: str, scope: str, alpha: float):
    out = {}
    for key, kept, agree, gamma in ties_kept(vectors, k, scope):
        if merge_func == "sum":
            m = kept.sum(0)
        elif merge_func == "mean":
            m = kept.sum(0) / agree.sum(0).clamp_min(1)
        else:  # max
            m = kept.abs().max(0).values * gamma
        out[key] = alpha * m
    return out


@register("ties", display="Ties-Merging")
def ties(
    pretrained,
    vectors,
    *,
    stats=None,
    alpha: Annotated[
        float,
        Knob(
            "merge coefficient (0.3 with dis-sum; use ≈1 with dis-mean)",
            (0.0, None),
            grid=BOOK_ALPHAS,
            full_grid=(0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0),
        ),
    ] = 0.3,
    k: Annotated[float, replace(K_KEPT, grid=(0.1, 0.2, 0.3), full_grid=(0.1, 0.2, 0.3, 0.4))] = 0.2,
    merge_func: Annotated[str, MERGE_FUNC] = "sum",
    scope: Annotated[
        str, Knob("trim threshold over the whole model (global) or per tensor", choices=("global", "per_tensor"))
    ] = "global",
):
    """Trim, elect sign, disjoint merge."""
    return ties_delta(vectors, k, merge_func, scope, alpha)
