"""Consensus merging with TALL masks (Wang et al., ICML 2024).

TALL mask of task t: m_t = 1[|τ_t| > λ_t |τ_MTL − τ_t|] with τ_MTL = Σ_i τ_i (or the TIES dis-sum vector when
``base="ties"``). Consensus mask: M = 1[Σ_t m_t ≥ k]; k = 2 removes "catastrophic" (no task) and "selfish"
(one task) weights; k = 0 gives back task arithmetic. θ = θ0 + α M ⊙ τ_MTL.
λ_t is one value for all tasks here (``tall_lambda``); the original picks it per task on validation from
{0.2, ..., 0.6}: tune it there the same way.
"""

from __future__ import annotations

from typing import Annotated

from ._common import each_key
from .registry import BOOK_ALPHAS, Knob, register
from .ties import ties_delta


@register("consensus", display="Consensus Merging")
def consensus(
    pretrained,
    vectors,
    *,
    stats=None,
    alpha: Annotated[
        float, Knob("merge coefficient", (0.0, None), grid=BOOK_ALPHAS, full_grid=(0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0))
    ] = 0.3,
    k: Annotated[int, Knob("minimum number of tasks whose TALL mask keeps an entry", (0, None), grid=(1, 2, 3))] = 2,
    tall_lambda: Annotated[float, Knob("λ_t of the TALL masks", (0.0, None), grid=(0.2, 0.4, 0.6))] = 0.4,
    base: Annotated[str, Knob("merged vector the masks act on: ta or ties", choices=("ta", "ties"))] = "ta",
):
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
