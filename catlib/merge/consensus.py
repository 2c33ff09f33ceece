"""Consensus merging with TALL masks (Wang et al., ICML 2024).

TALL mask of task t: m_t = 1[|τ_t| > λ_t |τ_MTL − τ_t|] with τ_MTL = Σ_i τ_i (or the TIES dis-sum vector when
``base="ties"``). Consensus mask: M = 1[Σ_t m_t ≥ k]; k = 2 removes "catastrophic" (no task) and "selfish"
(one task) weights; k = 0 gives back task arithmetic. θ = θ0 + α M ⊙ τ_MTL.
λ_t is one value for all tasks here (``tall_lambda``); the original picks it per task on validation from
{0.2, ..., 0.6}: tune it there the same way.
"""
from __future__ import annotations

from .registry import register
from ._common import each_key
from .ties import ties_delta


@register("consensus", ranges={"alpha": (0.0, None), "k": (0, None), "tall_lambda": (0.0, None)},
          choices={"base": ("ta", "ties")},
          docs={"alpha": "merge coefficient", "k": "minimum number of tasks whose TALL mask keeps an entry",
                "tall_lambda": "λ_t of the TALL masks", "base": "merged vector the masks act on: ta or ties"})
def consensus(pretrained, vectors, *, stats=None, alpha: float = 0.3, k: int = 2, tall_lambda: float = 0.4,
              base: str = "ta"):
    """Task arithmetic (or TIES) restricted to the weights at least k tasks consider important."""
    base_vec = ties_delta(vectors, 0.2, "sum", "global", 1.0) if base == "ties" else None
    out = {}
    for key, t in each_key(vectors):
        total = t.sum(0)
        masks = t.abs() > tall_lambda * (total.unsqueeze(0) - t).abs()
        keep = masks.sum(0) >= k
        merged = total if base_vec is None else base_vec[key]
        out[key] = alpha * merged * keep
    return out
