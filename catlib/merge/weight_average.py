"""Weight averaging: θ = (1/K) Σ_k θ_k = θ0 + (1/K) Σ_k τ_k (task arithmetic with α = 1/K)."""
from __future__ import annotations

from .registry import register
from ._common import each_key


@register("weight_average")
def weight_average(pretrained, vectors, *, stats=None):
    """Plain average of the fine-tuned weights (no hyperparameters)."""
    return {k: t.mean(0) for k, t in each_key(vectors)}
