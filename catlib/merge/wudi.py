"""WUDI merging, "Whoever started the interference should end it" (Cheng et al., ICML 2025).

Per 2-D weight (rows of τ_i act as surrogate inputs): minimise L(τ_m) = Σ_i ‖(τ_m − τ_i) τ_iᵀ‖_F² / ‖τ_i‖_F² with
Adam from τ_m = Σ_i τ_i (lr 1e-5, 300 steps: the original schedule; the short run is part of the method, a
closed-form solver gives a different result). No merge coefficient. Other tensors: left at θ0 (``others="zero"``,
the original ViT code) or mean_i τ_i (``"mean"``, FusionBench).
"""
from __future__ import annotations

import torch

from .registry import register
from ._common import each_key


def wudi_matrix(t: torch.Tensor, steps: int, lr: float) -> torch.Tensor:
    t = t.float()
    w = (1.0 / (t.reshape(t.shape[0], -1) ** 2).sum(1).clamp_min(1e-30)).view(-1, 1, 1)
    m = torch.nn.Parameter(t.sum(0).clone())
    opt = torch.optim.Adam([m], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = (w * ((m.unsqueeze(0) - t) @ t.transpose(1, 2)) ** 2).sum()
        loss.backward()
        opt.step()
    return m.detach()


@register("wudi", ranges={"steps": (0, 100000), "lr": (0.0, None)}, choices={"others": ("zero", "mean")},
          docs={"steps": "Adam steps", "lr": "Adam learning rate (absolute)",
                "others": "non-matrix tensors: stay at θ0 (zero) or mean task vector"})
def wudi(pretrained, vectors, *, stats=None, steps: int = 300, lr: float = 1e-5, others: str = "zero"):
    """Data-free interference minimisation per linear weight."""
    out = {}
    with torch.enable_grad():
        for key, t in each_key(vectors):
            if t.dim() == 3:
                out[key] = wudi_matrix(t, steps, lr)
            elif others == "mean":
                out[key] = t.mean(0)
    return out
