"""TSV-M, Task Singular Vectors: Merge (Gargiulo et al., CVPR 2025).

For every 2-D tensor: per task the top-k singular triplets of τ_i (k = ⌊min(m, n)/K⌋), concatenated
U_cat (m × Kk), S_cat, V_catᵀ (Kk × n); the task subspaces are decorrelated by replacing U_cat and V_catᵀ with their
nearest orthonormal matrices (polar factors); τ_m = U⊥ diag(S_cat) V⊥ᵀ. Every other tensor: mean_i τ_i.
θ = θ0 + α τ_m (α scales every key). With one task and α = 1, τ_1 is reproduced exactly.
"""

from __future__ import annotations

from typing import Annotated

import torch

from ..core.linalg import polar, top_svd
from ._common import each_key
from .registry import BOOK_SCALES, Knob, register


def tsv_matrix(t: torch.Tensor) -> torch.Tensor:
    """t: (K, m, n) → the TSV-M merged (m, n) matrix."""
    K, m, n = t.shape
    k = max(1, min(m, n) // K)
    Us, Ss, Vhs = zip(*(top_svd(t[i], k) for i in range(K)))
    U, S, Vh = torch.cat(Us, 1), torch.cat(Ss), torch.cat(Vhs, 0)
    return (polar(U) * S) @ polar(Vh)


@register("tsv_m", display="TSV-M")
def tsv_m(
    pretrained,
    vectors,
    *,
    stats=None,
    alpha: Annotated[
        float,
        Knob(
            "merge coefficient (1.0 in FusionBench)",
            (0.0, None),
            grid=BOOK_SCALES,
            full_grid=(0.4, 0.6, 0.8, 1.0, 1.2, 1.5),
        ),
    ] = 1.0,
):
    """Low-rank task subspaces per matrix, decorrelated by polar factors."""
    return {key: alpha * (tsv_matrix(t).float() if t.dim() == 3 else t.mean(0)) for key, t in each_key(vectors)}
