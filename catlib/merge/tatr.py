"""TATR, task arithmetic in the trust region (Sun et al., 2025), and TIES & TATR.

Conflict score per entry: Ω = Σ_i Σ_{j≠i} ḡ_i ⊙ |τ_j| = (Σ_i ḡ_i) ⊙ (Σ_j |τ_j|) − Σ_i ḡ_i ⊙ |τ_i|, where ḡ_i is the
mean absolute per-example gradient of task i's loss at θ0 (labelled exemplars, task i's head). The entries with the
largest Ω (the top ``remove_ratio`` fraction over the whole model, ties at the threshold included; FusionBench's
quantile 0.99 = 1%) are removed from every task vector: θ = θ0 + α Σ_i m ⊙ τ_i with m = 1[Ω < t]. ``zero_shot=True`` uses ḡ_i := |τ_i| (no data).
"""
from __future__ import annotations

import math

import torch

from ..linalg import kth_largest
from .registry import register
from ._common import keys_of, numel, stacked
from .ties import ties_delta


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


def _needs(hp):
    return () if hp.get("zero_shot") else ("grad_abs",)


_DOCS = {"alpha": "merge coefficient", "remove_ratio": "fraction of entries with the largest conflict score removed",
         "zero_shot": "use |τ_i| instead of gradients (no data needed)"}


@register("tatr", needs=_needs, labelled=True, ranges={"alpha": (0.0, None), "remove_ratio": (0.0, 1.0)},
          docs=_DOCS)
def tatr(pretrained, vectors, *, stats=None, alpha: float = 0.3, remove_ratio: float = 0.01,
         zero_shot: bool = False):
    """Task arithmetic restricted to the trust region (low gradient–task-vector conflict)."""
    mask = trust_region_mask(vectors, stats, remove_ratio, zero_shot)
    return {k: alpha * (stacked(vectors, k) * mask[k]).sum(0) for k in keys_of(vectors)}


@register("ties_tatr", needs=_needs, labelled=True,
          ranges={"alpha": (0.0, None), "remove_ratio": (0.0, 1.0), "k": (1e-9, 1.0)},
          choices={"merge_func": ("sum", "mean", "max")},
          docs=dict(_DOCS, k="TIES: fraction kept per task vector", merge_func="TIES disjoint merge"))
def ties_tatr(pretrained, vectors, *, stats=None, alpha: float = 0.3, remove_ratio: float = 0.01,
              zero_shot: bool = False, k: float = 0.2, merge_func: str = "sum"):
    """TIES applied to the trust-region-masked task vectors."""
    mask = trust_region_mask(vectors, stats, remove_ratio, zero_shot)
    return ties_delta([_Masked(v, mask) for v in vectors], k, merge_func, "global", alpha)
