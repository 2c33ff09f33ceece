"""Task arithmetic (Ilharco et al., ICLR 2023): θ = θ0 + α Σ_k τ_k."""

from __future__ import annotations

from typing import Annotated

from ._common import keys_of, summed
from .registry import ALPHAS, BOOK_ALPHAS, Knob, register


@register("task_arithmetic", display="Task Arithmetic")
def task_arithmetic(
    pretrained,
    vectors,
    *,
    stats=None,
    alpha: Annotated[
        float,
        Knob(
            "merge coefficient; 0.3 is the AdaMerging/FusionBench ViT-B/32 default",
            (0.0, None),
            grid=BOOK_ALPHAS,
            full_grid=ALPHAS,
        ),
    ] = 0.3,
):
    """Sum of task vectors scaled by α."""
    return {k: summed(vectors, k).mul_(alpha) for k in keys_of(vectors)}
