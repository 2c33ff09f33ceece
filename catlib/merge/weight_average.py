"""Weight averaging: θ = (1/K) Σ_k θ_k = θ0 + (1/K) Σ_k τ_k (task arithmetic with α = 1/K)."""

from __future__ import annotations

from ._common import keys_of, summed
from .registry import register


@register("weight_average", display="Weight Averaging")
def weight_average(pretrained, vectors, *, stats=None):
    """Plain average of the fine-tuned weights (no hyperparameters)."""
    return {k: summed(vectors, k).div_(len(vectors)) for k in keys_of(vectors)}
