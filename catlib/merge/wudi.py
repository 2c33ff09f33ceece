"""WUDI merging, "Whoever started the interference should end it" (Cheng et al., ICML 2025).

Per 2-D weight (rows of τ_i act as surrogate inputs): minimise L(τ_m) = Σ_i ‖(τ_m − τ_i) τ_iᵀ‖_F² / ‖τ_i‖_F² with
Adam from τ_m = Σ_i τ_i (lr 1e-5, 300 steps: the original schedule; the short run is part of the method, a
closed-form solver gives a different result). No merge coefficient. Other tensors: left at θ0 (``others="zero"``,
the original ViT code) or mean_i τ_i (``"mean"``, FusionBench).
"""

from __future__ import annotations

from typing import Annotated

import torch

from ._common import each_key
from .registry import Knob, register


def wudi_matrix(t: torch.Tensor, steps: int, lr: float, betas=(0.9, 0.999), eps: float = 1e-8) -> torch.Tensor:
    """Adam on L(m) = Σ_i w_i ‖(m − τ_i) τ_iᵀ‖_F², w_i = 1/‖τ_i‖_F², from m = Σ_i τ_i. ``t``: (K, out, in).

    The gradient 2 Σ_i w_i (m − τ_i) τ_iᵀτ_i = 2 (m S − C) with S = Σ_i w_i τ_iᵀτ_i (in × in) and
    C = Σ_i w_i τ_i τ_iᵀτ_i (out × in) computed once, so a step costs one (out × in) @ (in × in) product instead of
    2K products through the (out × out) residuals (the same Adam as torch.optim.Adam, default settings)."""
    t = t.float()
    w = 1.0 / (t.reshape(t.shape[0], -1) ** 2).sum(1).clamp_min(1e-30)
    S = t.new_zeros(t.shape[2], t.shape[2])
    C = t.new_zeros(t.shape[1], t.shape[2])
    for wi, ti in zip(w.tolist(), t):
        G = ti.T @ ti
        S.add_(G, alpha=wi)
        C.add_(ti @ G, alpha=wi)
    m = t.sum(0)
    m1, m2 = torch.zeros_like(m), torch.zeros_like(m)
    for step in range(1, steps + 1):
        g = (m @ S - C).mul_(2.0)
        m1.mul_(betas[0]).add_(g, alpha=1 - betas[0])
        m2.mul_(betas[1]).addcmul_(g, g, value=1 - betas[1])
        denom = (m2 / (1 - betas[1] ** step)).sqrt_().add_(eps)
        m.addcdiv_(m1, denom, value=-lr / (1 - betas[0] ** step))
    return m


@register("wudi", display="WUDI")
def wudi(
    pretrained,
    vectors,
    *,
    stats=None,
    steps: Annotated[int, Knob("Adam steps", (0, 100000))] = 300,
    lr: Annotated[float, Knob("Adam learning rate (absolute)", (0.0, None), grid=(1e-5, 1e-4))] = 1e-5,
    others: Annotated[
        str, Knob("non-matrix tensors: stay at θ0 (zero) or mean task vector", choices=("zero", "mean"))
    ] = "zero",
):
    """Data-free interference minimisation per linear weight."""
    out = {}
    for key, t in each_key(vectors):
        if t.dim() == 3:
            out[key] = wudi_matrix(t, steps, lr)
        elif others == "mean":
            out[key] = t.mean(0)
    return out
