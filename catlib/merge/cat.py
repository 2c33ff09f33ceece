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
``linear``, ``norm_scale``, ``shift`` (Table 5). With c = 0, CAT is task arithmetic.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional

import torch

from ..linalg import top_eigh, torch_threads
from ..stats import LayerInfo
from .registry import register
from ._common import keys_of, stacked
from .regmean import as_out_in, from_out_in


def removal_bases(taus: List[torch.Tensor], factors: List[torch.Tensor], c: int, lam: float,
                  solver: str = "auto", tol: float = 1e-5, seed: int = 0) -> List[torch.Tensor]:
    """B_k (out × c) for every task k, from τ_i (out × in) and Gram factors F_j (r_j × in), ``F_jᵀF_j = G_j``."""
    K, out = len(taus), taus[0].shape[0]
    c = min(c, out)
    if c <= 0:
        return [torch.zeros(out, 0) for _ in range(K)]
    sizes = [f.shape[0] for f in factors]
    F_all = torch.cat(factors)                                   # (Σ r_j, in)
    P = [tau @ F_all.T for tau in taus]                          # P[i][:, block j] = τ_i F_jᵀ
    offs = [0]
    for s in sizes:
        offs.append(offs[-1] + s)
    blk = lambda i, j: P[i][:, offs[j]:offs[j + 1]]
    def solve(k: int) -> torch.Tensor:
        A = torch.cat([blk(i, k) for i in range(K) if i != k], dim=1)   # conflict term: Σ_{i≠k} P_ik P_ikᵀ
        B = torch.cat([blk(i, i) for i in range(K) if i != k], dim=1)   # deviation term: Σ_{i≠k} P_ii P_iiᵀ
        if solver == "dense" or (solver == "auto" and out <= 512):
            M = A @ A.T - lam * (B @ B.T)
            _, U = torch.linalg.eigh(0.5 * (M + M.T).double())
            return U[:, -c:].flip(1).float()                        # eigh is ascending: top-c = last columns
        mv = lambda V: A @ (A.T @ V) - lam * (B @ (B.T @ V))
        return top_eigh(mv, out, c, dtype=torch.float32, tol=tol, seed=seed + k)[1]

    workers = min(K, torch.get_num_threads())
    with torch_threads(1):  # the solves are sequences of skinny products: one thread per solve is faster, and the
        if workers > 1:     # K independent solves run side by side (torch releases the GIL inside its kernels)
            with ThreadPoolExecutor(workers) as pool:
                bases = list(pool.map(solve, range(K)))
        else:
            bases = [solve(k) for k in range(K)]
    return bases


def _topc_mask(score: torch.Tensor, c: int) -> torch.Tensor:
    m = torch.zeros_like(score, dtype=torch.bool)
    c = min(c, score.numel())
    if c > 0:
        m.view(-1)[torch.topk(score.reshape(-1), c).indices] = True
    return m


def trim(vectors, stats, *, c: int = 2, lam: float = 1.0, c_norm: Optional[int] = None,
         lam_norm: Optional[float] = None, c_shift: Optional[int] = None, linear: bool = True,
         norm_scale: bool = True, shift: bool = True, rescale_norm: bool = False, solver: str = "auto",
         tol: float = 1e-5) -> List[dict]:
    """The trimmed task vectors τ̃_i (Algorithm 1, steps 2-3): a list of K state dicts."""
    K = len(vectors)
    out = [dict() for _ in range(K)]
    for key, T in trimmed_stacks(vectors, stats, c=c, lam=lam, c_norm=c_norm, lam_norm=lam_norm, c_shift=c_shift,
                                 linear=linear, norm_scale=norm_scale, shift=shift, rescale_norm=rescale_norm,
                                 solver=solver, tol=tol):
        for i in range(K):
            out[i][key] = T[i]
    return out


def trimmed_stacks(vectors, stats, *, c, lam, c_norm, lam_norm, c_shift, linear, norm_scale, shift, rescale_norm,
                   solver, tol):
    """Yields ``(key, (K, *shape) stack of the trimmed τ̃_i[key])`` key by key (bases from the original τ)."""
    K = len(vectors)
    c_norm = c if c_norm is None else c_norm
    c_shift = c if c_shift is None else c_shift
    lam_norm = lam if lam_norm is None else lam_norm
    for key in keys_of(vectors):
        info = stats.layers.get(key, LayerInfo("other"))
        T = stacked(vectors, key)
        orig_norms = T.reshape(K, -1).norm(dim=1)
        if info.kind == "linear" and linear and all(key in g for g in stats.grams):
            taus = [as_out_in(T[i], info.transposed) for i in range(K)]
            bases = removal_bases(taus, [g[key].factor() for g in stats.grams], c, lam, solver, tol)
            trimmed = []
            for i in range(K):
                t = taus[i]
                for k in range(K):
                    if k != i and bases[k].shape[1]:
                        t = t - bases[k] @ (bases[k].T @ t)
                trimmed.append(from_out_in(t, T.shape[1:], info.transposed))
            T = torch.stack(trimmed)
        elif info.kind == "norm_scale" and norm_scale and all(key in s for s in stats.norm_sq):
            S = torch.stack([s[key].float() for s in stats.norm_sq])          # (K, d)
            sq = T.reshape(K, -1) ** 2
            keep = torch.ones_like(sq, dtype=torch.bool)
            for k in range(K):
                others = [i for i in range(K) if i != k]
                g = sum(sq[i] * (S[k] - lam_norm * S[i]) for i in others)
                m = _topc_mask(g, c_norm)
                for i in others:
                    keep[i] &= ~m
            T = (T.reshape(K, -1) * keep).reshape(T.shape)
        elif info.kind == "shift" and shift:
            sq = T.reshape(K, -1) ** 2
            keep = torch.ones_like(sq, dtype=torch.bool)
            total = sq.sum(0)
            for k in range(K):
                m = _topc_mask(total - sq[k], c_shift)
                keep[[i for i in range(K) if i != k]] &= ~m
            T = (T.reshape(K, -1) * keep).reshape(T.shape)
        if rescale_norm:
            new = T.reshape(K, -1).norm(dim=1).clamp_min(1e-30)
            T = T * (orig_norms / new).view(K, *([1] * (T.dim() - 1)))
        yield key, T


@register("cat", needs=("gram", "norm_sq"),
          ranges={"alpha": (0.0, None), "c": (0, None), "lam": (0.0, None), "c_norm": (0, None),
                  "c_shift": (0, None), "lam_norm": (0.0, None), "tol": (1e-12, 1e-1)},
          choices={"features": ("expert", "scaled"), "solver": ("auto", "krylov", "dense")},
          docs={"alpha": "merge coefficient", "c": "removal basis size / mask size for linear weights",
                "lam": "λ, weight of the intra-task deviation term (linear)",
                "c_norm": "mask size for norm scales (None: c)", "lam_norm": "λ for norm scales (None: lam)",
                "c_shift": "mask size for shifts (None: c)", "linear": "project linear weights",
                "norm_scale": "mask norm scales", "shift": "mask shifts",
                "features": "statistics from θ0+τ_k (expert) or θ0+ατ_k (scaled)",
                "rescale_norm": "rescale each trimmed tensor to its original Frobenius norm",
                "solver": "top-c eigensolver: Krylov on the implicit operator, dense eigh, or auto",
                "tol": "relative residual tolerance of the Krylov solver"})
def cat(pretrained, vectors, *, stats=None, alpha: float = 0.3, c: int = 2, lam: float = 1.0,
        c_norm: Optional[int] = None, lam_norm: Optional[float] = None, c_shift: Optional[int] = None,
        linear: bool = True, norm_scale: bool = True, shift: bool = True, features: str = "expert",
        rescale_norm: bool = False, solver: str = "auto", tol: float = 1e-5):
    """Conflict-aware trimming of every task vector against every other task, then task arithmetic."""
    stacks = trimmed_stacks(vectors, stats, c=c, lam=lam, c_norm=c_norm, lam_norm=lam_norm, c_shift=c_shift,
                            linear=linear, norm_scale=norm_scale, shift=shift, rescale_norm=rescale_norm,
                            solver=solver, tol=tol)
    return {key: alpha * T.sum(0) for key, T in stacks}


def _stats_options(hp):
    return {"expert_scale": hp["alpha"] if hp["features"] == "scaled" else 1.0}


cat.stats_options = _stats_options
