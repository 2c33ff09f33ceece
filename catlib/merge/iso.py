"""Iso-C and Iso-CTS, isotropic merging (Marczak et al., ICML 2025).

Iso-C, per 2-D tensor: Δ = Σ_i τ_i = U S Vᵀ; Δ_iso = mean(S) · U Vᵀ (a flat spectrum). Iso-CTS: keep the top k_c
directions of Δ as the common subspace (k_c from ``common_fraction`` f, rounded so the remaining r − k_c split
evenly over the K tasks), add each task's top k_t directions of τ_i with the common left subspace removed,
orthonormalise the combined bases by polar factors, and flatten the spectrum. Every other tensor: mean_i τ_i.
θ = θ0 + α Δ for all keys.
"""

from __future__ import annotations

from typing import Annotated

import torch

from ..core.linalg import polar
from ._common import each_key
from .registry import BOOK_SCALES, Knob, register


def iso_c_matrix(t: torch.Tensor) -> torch.Tensor:
    U, S, Vh = torch.linalg.svd(t.double().sum(0), full_matrices=False)
    return S.mean() * (U @ Vh)


def iso_cts_matrix(t: torch.Tensor, f: float) -> torch.Tensor:
    K, m, n = t.shape
    r = min(m, n)
    k_c0 = int(r * f)
    n_ts = int(round((r - k_c0) / K)) * K
    k_c, k_t = r - n_ts, n_ts // K
    U, S, Vh = torch.linalg.svd(t.double().sum(0), full_matrices=False)
    Uc = U[:, :k_c]
    Us, Ss, Vs = [], [], []  # task-specific blocks first, then the common subspace
    for i in range(K if k_t > 0 else 0):
        ti = t[i].double()
        u, s, vh = torch.linalg.svd(ti - Uc @ (Uc.T @ ti), full_matrices=False)
        Us.append(u[:, :k_t]), Ss.append(s[:k_t]), Vs.append(vh[:k_t])
    Ucomb = torch.cat(Us + [Uc], 1)
    Scomb = torch.cat(Ss + [S[:k_c]])
    Vcomb = torch.cat(Vs + [Vh[:k_c]], 0)
    return Scomb.mean() * (polar(Ucomb) @ polar(Vcomb))


_FULL = (0.4, 0.6, 0.8, 1.0, 1.5, 2.0)


@register("iso_c", display="Iso-C")
def iso_c(
    pretrained,
    vectors,
    *,
    stats=None,
    alpha: Annotated[
        float,
        Knob(
            "merge coefficient (FusionBench docs use 1.5 for ViT-B/32)", (0.0, None), grid=BOOK_SCALES, full_grid=_FULL
        ),
    ] = 1.0,
):
    """Sum of task vectors with a flattened singular spectrum."""
    return {key: alpha * (iso_c_matrix(t).float() if t.dim() == 3 else t.mean(0)) for key, t in each_key(vectors)}


@register("iso_cts", display="Iso-CTS")
def iso_cts(
    pretrained,
    vectors,
    *,
    stats=None,
    alpha: Annotated[float, Knob("merge coefficient", (0.0, None), grid=BOOK_SCALES, full_grid=_FULL)] = 1.0,
    common_fraction: Annotated[
        float, Knob("fraction of the rank kept as common subspace", (0.0, 1.0), grid=(0.6, 0.8, 0.9))
    ] = 0.8,
):
    """Iso-C on a common subspace plus task-specific directions."""
    return {
        key: alpha * (iso_cts_matrix(t, common_fraction).float() if t.dim() == 3 else t.mean(0))
        for key, t in each_key(vectors)
    }
