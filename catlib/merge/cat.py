"""CAT Merging, Conflict-Aware Task merging (Sun, Li, Geng, Li; ICML 2025), Algorithm 1.

For every task k and every parameter, a trimming operator Φ_k is computed from the ORIGINAL task vectors; then each
τ_i is trimmed by every Φ_k with k ≠ i (in order k = 1..K); finally θ = θ0 + α Σ_i τ̃_i.

* linear weights (PyTorch layout τ: (out, in); the paper's T = τᵀ): removal basis B_k (out × c), the top-c
  eigenvectors of   M_k = Σ_{i≠k} τ_i (G_k − λ G_i) τ_iᵀ,   G_j = X_jᵀX_j the layer's input Gram matrix under
  expert j on task j's exemplars; Φ_k(τ_i) = (I − B_k B_kᵀ) τ_i (the paper's T_i − T_i B_k B_kᵀ).
  M_k is never formed: with G_j = F_jᵀF_j (F_j: the stored token rows), M_k V = Σ_{i≠k} P_ik P_ikᵀ V − λ P_ii P_iiᵀ V
  with P_ij = τ_i F_jᵀ, and a block Krylov solver (:func:`catlib.linalg.top_eigh`) finds the top c.
* normalization scales: mask m_k on the top-c entries of g_z = Σ_{i≠k} τ_{i,z}² (S_{k,z} − λ_norm S_{i,z}),
  S_{j,z} = Σ_x x̂_{j,z}² over the normalized inputs; Φ_k(τ_i) = τ_i ⊙ (1 − m_k).
* shifts (biases, norm shifts, other 1-D parameters): mask on the top-c entries of Σ_{i≠k} τ_{i,z}² (no data,
  no λ; the paper's A.6 with equal token counts and 0 < λ < 1).
* everything else (embeddings, 2-D tensors without an input) enters the α-sum untouched.

Choices the paper leaves open, as switches: ``features`` ("expert": X from θ0 + τ_k, Algorithm 1; "scaled": from
θ0 + α τ_k, the third-party port), ``rescale_norm`` (rescale each trimmed tensor to its original norm, off), c and λ
per parameter kind (``c_norm``, ``c_shift``, ``lam_norm``; None = same as ``c`` / ``lam``), and component switches
``linear``, ``norm_scale``, ``shift`` (Table 5): the trimming knobs are the fields of :class:`Trim`. With c = 0, CAT
is task arithmetic. The eigensolver plumbing is in :mod:`catlib.merge._solver`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, List, Optional

import torch

from ..core.stats import LayerInfo
from ._common import as_out_in, from_out_in, keys_of, stacked
from ._solver import removal_bases
from .registry import BOOK_ALPHAS, Knob, register


@dataclass(frozen=True)
class Trim:
    """CAT's trimming knobs (Algorithm 1, steps 1-3); each field is a hyperparameter of ``cat``."""

    c: Annotated[
        int,
        Knob("removal basis size / mask size for linear weights", (0, None), grid=(1, 2, 4), full_grid=(1, 2, 3, 4)),
    ] = 2
    lam: Annotated[
        float,
        Knob(
            "λ, weight of the intra-task deviation term (linear)",
            (0.0, None),
            grid=(0.1, 1.0, 10.0),
            full_grid=(0.1, 1.0, 5.0, 10.0),
        ),
    ] = 1.0
    c_norm: Annotated[Optional[int], Knob("mask size for norm scales (None: c)", (0, None))] = None
    lam_norm: Annotated[Optional[float], Knob("λ for norm scales (None: lam)", (0.0, None))] = None
    c_shift: Annotated[Optional[int], Knob("mask size for shifts (None: c)", (0, None))] = None
    linear: Annotated[bool, Knob("project linear weights")] = True
    norm_scale: Annotated[bool, Knob("mask norm scales")] = True
    shift: Annotated[bool, Knob("mask shifts")] = True
    rescale_norm: Annotated[bool, Knob("rescale each trimmed tensor to its original Frobenius norm")] = False
    solver: Annotated[
        str,
        Knob(
            "top-c eigensolver: Krylov on the implicit operator, dense eigh, or auto",
            choices=("auto", "krylov", "dense"),
        ),
    ] = "auto"
    tol: Annotated[float, Knob("relative residual tolerance of the Krylov solver", (1e-12, 1e-1))] = 1e-5


def _topc_mask(score: torch.Tensor, c: int) -> torch.Tensor:
    m = torch.zeros_like(score, dtype=torch.bool)
    c = min(c, score.numel())
    if c > 0:
        m.view(-1)[torch.topk(score.reshape(-1), c).indices] = True
    return m


def trimmed_stacks(vectors, stats, opt: Trim):
    """Yields ``(key, (K, *shape) stack of the trimmed τ̃_i[key])`` key by key (bases from the original τ)."""
    K = len(vectors)
    c_norm = opt.c if opt.c_norm is None else opt.c_norm
    c_shift = opt.c if opt.c_shift is None else opt.c_shift
    lam_norm = opt.lam if opt.lam_norm is None else opt.lam_norm
    for key in keys_of(vectors):
        info = stats.layers.get(key, LayerInfo("other"))
        T = stacked(vectors, key)
        orig_norms = T.reshape(K, -1).norm(dim=1)
        if K < 2:  # one task: no other task to conflict with, every Φ is the identity (CAT = task arithmetic)
            pass
        elif info.kind == "linear" and opt.linear and all(key in g for g in stats.grams):
            taus = [as_out_in(T[i], info.transposed) for i in range(K)]
            bases = removal_bases(taus, [g[key].factor() for g in stats.grams], opt.c, opt.lam, opt.solver, opt.tol)
            trimmed = []
            for i in range(K):
                t = taus[i]
                for k in range(K):
                    if k != i and bases[k].shape[1]:
                        t = t - bases[k] @ (bases[k].T @ t)  # Φ_k(τ_i) = (I − B_k B_kᵀ) τ_i
                trimmed.append(from_out_in(t, T.shape[1:], info.transposed))
            T = torch.stack(trimmed)
        elif info.kind == "norm_scale" and opt.norm_scale and all(key in s for s in stats.norm_sq):
            S = torch.stack([s[key].float() for s in stats.norm_sq])  # (K, d)
            sq = T.reshape(K, -1) ** 2
            keep = torch.ones_like(sq, dtype=torch.bool)
            for k in range(K):
                others = [i for i in range(K) if i != k]
                g = sum(sq[i] * (S[k] - lam_norm * S[i]) for i in others)
                m = _topc_mask(g, c_norm)
                for i in others:
                    keep[i] &= ~m
            T = (T.reshape(K, -1) * keep).reshape(T.shape)
        elif info.kind == "shift" and opt.shift:
            sq = T.reshape(K, -1) ** 2
            keep = torch.ones_like(sq, dtype=torch.bool)
            total = sq.sum(0)
            for k in range(K):
                m = _topc_mask(total - sq[k], c_shift)
                keep[[i for i in range(K) if i != k]] &= ~m
            T = (T.reshape(K, -1) * keep).reshape(T.shape)
        if opt.rescale_norm:
            new = T.reshape(K, -1).norm(dim=1).clamp_min(1e-30)
            T = T * (orig_norms / new).view(K, *([1] * (T.dim() - 1)))
        yield key, T


def trim(vectors, stats, **options) -> List[dict]:
    """The trimmed task vectors τ̃_i (Algorithm 1, steps 2-3): a list of K state dicts. ``options``: the fields of
    :class:`Trim` (defaults for those not given)."""
    K = len(vectors)
    out = [dict() for _ in range(K)]
    for key, T in trimmed_stacks(vectors, stats, Trim(**options)):
        for i in range(K):
            out[i][key] = T[i]
    return out


@register(
    "cat",
    display="CAT Merging",
    needs=("gram", "norm_sq"),
    scaled_features=("features", "scaled", "alpha"),
    exemplars=3,  # "a small number of unlabeled samples, typically two or three per task" (CAT paper, §5)
)
def cat(
    pretrained,
    vectors,
    *,
    stats=None,
    alpha: Annotated[
        float, Knob("merge coefficient", (0.0, None), grid=BOOK_ALPHAS, full_grid=(0.2, 0.3, 0.4, 0.5, 0.6, 0.8))
    ] = 0.3,
    features: Annotated[
        str, Knob("statistics from θ0+τ_k (expert) or θ0+ατ_k (scaled)", choices=("expert", "scaled"))
    ] = "expert",
    trim: Trim = Trim(),
):
    """Conflict-aware trimming of every task vector against every other task, then task arithmetic."""
    return {key: alpha * T.sum(0) for key, T in trimmed_stacks(vectors, stats, trim)}
