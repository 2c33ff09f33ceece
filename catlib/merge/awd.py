"""AWD, Adaptive Weight Disentanglement (Xiong et al., arXiv 2411.18729), reconstructed (no code was released).

Each τ_i is split into a shared redundant vector δ and disentangled vectors τ̂_i = τ_i − δ, with δ minimising

    L(δ) = mean_{i<j} |cos(τ̂_i, τ̂_j)| + penalty · ‖δ‖ / mean_i ‖τ_i‖

(|cos|, a plain L2 norm smoothed by ε, and the penalty scaled by the task-vector norm so it has no units: our
choices: the paper gives no formula for them). δ starts at 0 and is optimised by Adam (``lr`` is relative to the RMS
entry of the τ_i, since Adam's step is in parameter units). L depends on δ only through u_i = ⟨τ_i, δ⟩ and q = ‖δ‖²
(⟨τ̂_i, τ̂_j⟩ = ⟨τ_i, τ_j⟩ − u_i − u_j + q), so each step is two streaming passes over the τ_i and the gradient is
exact: ∇L = Σ_i (∂L/∂u_i) τ_i + 2 (∂L/∂q) δ. ``scope="global"`` uses one δ over the whole flattened model;
``"per_tensor"`` one δ per tensor, with the cosines of that tensor's slices (losses summed).
The disentangled vectors then go to task arithmetic (``awd_ta``) or TIES (``awd_ties``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, List, Mapping, Sequence

import torch

from ..core.statedict import StateDict, cosine_matrix
from ._common import keys_of
from .registry import BOOK_ALPHAS, Knob, register
from .ties import K_KEPT, MERGE_FUNC, ties_delta


class Disentangled(Mapping):
    """τ̂ = τ − δ, computed key by key when read (fp32) so that the K disentangled vectors are never all stored."""

    def __init__(self, vector: Mapping[str, torch.Tensor], delta: Mapping[str, torch.Tensor]):
        self._v, self._d = vector, delta

    def __getitem__(self, k: str) -> torch.Tensor:
        return self._v[k].float() - self._d[k]

    def __contains__(self, k) -> bool:
        return k in self._d

    def __iter__(self):
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)


@dataclass
class AWDResult:
    vectors: List[Mapping[str, torch.Tensor]]  # the disentangled τ̂_i (lazy: τ_i − δ per key when read)
    delta: StateDict  # the redundant vector δ
    losses: List[float]  # L(δ) per step (before each update), then the final value
    cos_before: torch.Tensor  # (K, K) cosines of the τ_i
    cos_after: torch.Tensor  # (K, K) cosines of the τ̂_i
    delta_rel_norm: float  # ‖δ‖ / mean_i ‖τ_i‖


def _block_loss(
    A: torch.Tensor, u: torch.Tensor, q: torch.Tensor, scale: torch.Tensor, penalty: float, eps: float = 1e-12
) -> torch.Tensor:
    K = A.shape[0]
    M = A - u[:, None] - u[None, :] + q
    d = M.diagonal().clamp_min(eps)
    cos = M / torch.sqrt(d[:, None] * d[None, :])
    iu = torch.triu_indices(K, K, 1)
    return cos[iu[0], iu[1]].abs().mean() + penalty * torch.sqrt(q + eps) / scale


def disentangle(
    vectors: Sequence[Mapping[str, torch.Tensor]],
    penalty: float = 0.1,
    steps: int = 300,
    lr: float = 0.01,
    scope: str = "global",
    betas=(0.9, 0.999),
) -> AWDResult:
    """Optimise δ (see the module docstring) and return τ̂_i = τ_i − δ with diagnostics. Inputs are not modified."""
    if scope not in ("global", "per_tensor"):
        raise ValueError(f"scope must be 'global' or 'per_tensor', got {scope!r}")
    K = len(vectors)
    if K < 2:
        raise ValueError("AWD needs at least two task vectors")
    keys = keys_of(vectors)
    blocks = [keys] if scope == "global" else [[k] for k in keys]
    # per block: Gram of the τ_i, norm scale, lr
    A, scale, step_size = [], [], []
    for blk in blocks:
        G = torch.zeros(K, K, dtype=torch.float64)
        n = 0
        for k in blk:
            T = torch.stack([v[k].double().reshape(-1) for v in vectors])
            G += T @ T.T
            n += T.shape[1]
        A.append(G)
        norms = G.diagonal().clamp_min(0).sqrt()
        scale.append(norms.mean().clamp_min(1e-30))
        step_size.append(lr * math.sqrt(float(G.diagonal().mean()) / max(n, 1)))
    delta = {k: torch.zeros_like(vectors[0][k], dtype=torch.float32) for k in keys}
    m1 = {k: torch.zeros_like(d) for k, d in delta.items()}
    m2 = {k: torch.zeros_like(d) for k, d in delta.items()}

    def dot(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(torch.dot(a.reshape(-1).float(), b.reshape(-1)))

    def evaluate(with_grad: bool):
        total, grads = 0.0, []
        for b, blk in enumerate(blocks):
            u = torch.tensor(
                [sum(dot(v[k], delta[k]) for k in blk) for v in vectors], dtype=torch.float64, requires_grad=with_grad
            )
            q = torch.tensor(sum(dot(delta[k], delta[k]) for k in blk), dtype=torch.float64, requires_grad=with_grad)
            loss = _block_loss(A[b], u, q, scale[b], penalty)
            total += float(loss.detach())
            if with_grad:
                gu, gq = torch.autograd.grad(loss, [u, q])
                grads.append((gu.tolist(), float(gq)))
        return total, grads

    losses = []
    for t in range(1, steps + 1):
        loss, grads = evaluate(True)
        losses.append(loss)
        bc1, bc2 = 1 - betas[0] ** t, 1 - betas[1] ** t
        for b, blk in enumerate(blocks):
            gu, gq = grads[b]
            for k in blk:
                g = delta[k] * (2 * gq)  # ∇L = Σ_i (∂L/∂u_i) τ_i + 2 (∂L/∂q) δ
                for i in range(K):
                    g.add_(vectors[i][k].float(), alpha=gu[i])
                m1[k].mul_(betas[0]).add_(g, alpha=1 - betas[0])
                m2[k].mul_(betas[1]).addcmul_(g, g, value=1 - betas[1])
                denom = m2[k].sqrt().div_(math.sqrt(bc2)).add_(1e-30)
                delta[k].addcdiv_(m1[k], denom, value=-step_size[b] / bc1)
    losses.append(evaluate(False)[0])
    hat = [Disentangled(v, delta) for v in vectors]
    tv_norm = sum(math.sqrt(float(sum((v[k].double() ** 2).sum() for k in keys))) for v in vectors) / K
    d_norm = math.sqrt(sum(float((d.double() ** 2).sum()) for d in delta.values()))
    return AWDResult(hat, delta, losses, cosine_matrix(vectors), cosine_matrix(hat), d_norm / max(tv_norm, 1e-30))


def disentangled(
    vectors,
    *,
    penalty: Annotated[float, Knob("weight of ‖δ‖ (relative to mean ‖τ_i‖)", (0.0, None), grid=(0.01, 0.1, 1.0))] = 0.1,
    steps: Annotated[int, Knob("Adam steps", (0, 100000))] = 300,
    lr: Annotated[float, Knob("Adam step size relative to the RMS entry of the task vectors", (0.0, None))] = 0.01,
    scope: Annotated[
        str, Knob("one δ for the whole model (global) or one per tensor", choices=("global", "per_tensor"))
    ] = "global",
) -> AWDResult:
    """The prepare stage of ``awd_ta`` and ``awd_ties`` (:func:`disentangle`): it does not depend on α, so a caller
    holding a :class:`~catlib.merge.registry.Memo` computes it once for every α."""
    return disentangle(vectors, penalty, steps, lr, scope)


ALPHA = Knob("merge coefficient", (0.0, None), grid=BOOK_ALPHAS, full_grid=(0.2, 0.3, 0.4, 0.5, 0.6, 0.8))


@register("awd_ta", display="AWD + TA", prepare=disentangled)
def awd_ta(pretrained, vectors, *, stats=None, alpha: Annotated[float, ALPHA] = 0.3):
    """Task arithmetic on AWD-disentangled task vectors: θ0 + α Σ_i (τ_i − δ)."""
    return {key: alpha * torch.stack([h[key] for h in vectors]).sum(0) for key in keys_of(vectors)}


@register("awd_ties", display="AWD + TIES", prepare=disentangled)
def awd_ties(
    pretrained,
    vectors,
    *,
    stats=None,
    alpha: Annotated[float, ALPHA] = 0.3,
    k: Annotated[float, K_KEPT] = 0.2,
    merge_func: Annotated[str, MERGE_FUNC] = "sum",
):
    """TIES on AWD-disentangled task vectors."""
    return ties_delta(vectors, k, merge_func, "global", alpha)
