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

from ..core.linalg import complement, polar, top_svd
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
    Uc, S, Vh = top_svd(t.double().sum(0), k_c)
    Us, Ss, Vs = [], [], []  # task-specific blocks first, then the common subspace
    W = complement(Uc) if m - k_c <= n and k_t > 0 else None  # (I − Uc Ucᵀ) = W Wᵀ: work in W's coordinates
    for i in range(K if k_t > 0 else 0):
        ti = t[i].double()
        if W is None:
            u, s, vh = top_svd(ti, k_t, without=Uc)
        else:  # the SVD of W (Wᵀ τ_i): (m − k_c) rows instead of m
            u, s, vh = top_svd(W.T @ ti, k_t)
            u = W @ u
        Us.append(u), Ss.append(s), Vs.append(vh)
    Ucomb = torch.cat(Us + [Uc], 1)
    Scomb = torch.cat(Ss + [S])
    Vcomb = torch.cat(Vs + [Vh], 0)
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
