"""Task arithmetic (Ilharco et al., ICLR 2023): θ = θ0 + α Σ_k τ_k."""
from __future__ import annotations

from .registry import register
from ._common import keys_of, summed


@register("task_arithmetic", ranges={"alpha": (0.0, None)},
          docs={"alpha": "merge coefficient; 0.3 is the AdaMerging/FusionBench ViT-B/32 default"})
def task_arithmetic(pretrained, vectors, *, stats=None, alpha: float = 0.3):
    """Sum of task vectors scaled by α."""
    return {k: summed(vectors, k).mul_(alpha) for k in keys_of(vectors)}
