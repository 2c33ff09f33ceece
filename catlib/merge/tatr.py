"""TATR, task arithmetic in the trust region (Sun et al., 2025), and TIES & TATR.

Conflict score per entry: Ω = Σ_i Σ_{j≠i} ḡ_i ⊙ |τ_j| = (Σ_i ḡ_i) ⊙ (Σ_j |τ_j|) − Σ_i ḡ_i ⊙ |τ_i|, where ḡ_i is the
mean absolute per-example gradient of task i's loss at θ0 (labelled exemplars, task i's head). The entries with the
largest Ω (the top ``remove_ratio`` fraction over the whole model, ties at the threshold included; FusionBench's
quantile 0.99 = 1%) are removed from every task vector: θ = θ0 + α Σ_i m ⊙ τ_i with m = 1[Ω < t].
``zero_shot=True`` uses ḡ_i := |τ_i| (no data).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Annotated

import torch

from ..core.linalg import kth_largest
from ._common import keys_of, numel, stacked
from .registry import BOOK_ALPHAS, Knob, register
from .ties import K_KEPT, MERGE_FUNC, ties_delta

ALPHA = Knob("merge coefficient", (0.0, None), grid=BOOK_ALPHAS)
REMOVE = Knob("fraction of entries with the largest conflict score removed", (0.0, 1.0))
ZERO_SHOT = Knob("use |τ_i| instead of gradients (no data needed)")


def _omega(vectors, stats, zero_shot: bool, key: str) -> torch.Tensor:
    t = stacked(vectors, key).abs()
    g = t if zero_shot else torch.stack([s[key].float() for s in stats.grad_abs])
    return g.sum(0) * t.sum(0) - (g * t).sum(0)


def trust_region_mask(vectors, stats, remove_ratio: float, zero_shot: bool):
    """key → boolean mask of the entries kept (Ω below its (1 − remove_ratio)-quantile)."""
    keys = keys_of(vectors)
    if remove_ratio <= 0:
        return {k: torch.ones_like(vectors[0][k], dtype=torch.bool) for k in keys}
    n_remove = max(1, int(math.ceil(remove_ratio * numel(vectors))))
    thr = kth_largest(lambda: (_omega(vectors, stats, zero_shot, k) for k in keys), n_remove)
    return {k: _omega(vectors, stats, zero_shot, k) < thr for k in keys}


class _Masked:
    """Task vectors seen through a mask (lazily)."""

    def __init__(self, vector, mask):
        self.vector, self.mask = vector, mask

    def __getitem__(self, k):
        return self.vector[k] * self.mask[k]

    def __iter__(self):
        return iter(self.vector)

    def __len__(self):
        return len(self.vector)

    def keys(self):
        return self.vector.keys()


# exemplars: FusionBench max_samples (the TATR paper gives no count)
@register("tatr", display="TATR", needs=("grad_abs",), data_free_when="zero_shot", exemplars=128)
def tatr(
    pretrained,
    vectors,
    *,
    stats=None,
    alpha: Annotated[float, replace(ALPHA, full_grid=(0.2, 0.3, 0.4, 0.5, 0.6))] = 0.3,
    remove_ratio: Annotated[float, replace(REMOVE, grid=(0.01, 0.05, 0.1))] = 0.01,
    zero_shot: Annotated[bool, ZERO_SHOT] = False,
):
    """Task arithmetic restricted to the trust region (low gradient–task-vector conflict)."""
    mask = trust_region_mask(vectors, stats, remove_ratio, zero_shot)
    return {k: alpha * (stacked(vectors, k) * mask[k]).sum(0) for k in keys_of(vectors)}


@register("ties_tatr", display="Ties-Merging & TATR", needs=("grad_abs",), data_free_when="zero_shot", exemplars=128)
def ties_tatr(
    pretrained,
    vectors,
    *,
    stats=None,
    alpha: Annotated[float, replace(ALPHA, full_grid=(0.2, 0.3, 0.4, 0.5, 0.6, 0.8))] = 0.3,
    remove_ratio: Annotated[float, replace(REMOVE, grid=(0.01, 0.05, 0.1))] = 0.01,
    zero_shot: Annotated[bool, ZERO_SHOT] = False,
    k: Annotated[float, K_KEPT] = 0.2,
    merge_func: Annotated[str, MERGE_FUNC] = "sum",
):
    """TIES applied to the trust-region-masked task vectors."""
    mask = trust_region_mask(vectors, stats, remove_ratio, zero_shot)
    return ties_delta([_Masked(v, mask) for v in vectors], k, merge_func, "global", alpha)
