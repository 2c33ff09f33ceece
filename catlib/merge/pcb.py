"""PCB merging, Parameter Competition Balancing (Du et al., NeurIPS 2024); the ViT code's variant (``pcb_ES.py``).

Per task row i over the whole flattened model (D entries):
1. clamp: a_i = clamp(|τ_i|, Q_i(ρ), Q_i(1−ρ)), τ̄_i = sign(τ_i) ⊙ a_i (ρ = ``clamp``, 0.01 in the vision code).
2. Norm(x) = (x − min)/(max − min) per row; for a_i, min/max are the clamp bounds.
3. intra-balancing β_intra,i = exp(K · Norm(a_i)²); inter-balancing β_inter,i = Σ_j tanh(ñ_i ⊙ ñ_j) with
   ñ_i = sign(τ_i) ⊙ Norm(a_i) (j = i included); β_i = β_intra,i ⊙ β_inter,i.
4. drop: t_i = (1−r)-quantile of β_i, s_i = Norm(max(β_i, t_i)), so all but the top ``ratio`` fraction become 0.
5. τ_m = α Σ_i τ̄_i ⊙ s_i / max(Σ_i s_i, 1e-12); θ = θ0 + τ_m (α = λ of the paper; 1.2 in the vision code).
Quantiles and min/max are streamed key by key (no K×D sort); the scores β (K × D fp32) are computed once
and held. The other code variants (``pcb.py``:
tanh(τ_i ⊙ Σ_j ñ_j)) are selectable with ``inter="sum_first"``.
"""

from __future__ import annotations

import math
from typing import Annotated

import torch

from ..core.linalg import kth_largest, kth_largest_abs
from ._common import keys_of, numel, stacked
from .registry import BOOK_SCALES, Knob, register


def _rows(vectors, fn):
    """A callable streaming (K, n) chunks ``fn(key)`` key by key, for the per-row selections."""
    K = len(vectors)
    return lambda: (fn(key).reshape(K, -1) for key in keys_of(vectors))


@register("pcb", display="PCB Merging")
def pcb(
    pretrained,
    vectors,
    *,
    stats=None,
    alpha: Annotated[
        float, Knob("merge coefficient (PCB's λ)", (0.0, None), grid=BOOK_SCALES, full_grid=(0.6, 0.8, 1.0, 1.2, 1.5))
    ] = 1.2,
    ratio: Annotated[float, Knob("fraction of entries kept per task (r)", (1e-9, 1.0), grid=(0.05, 0.1, 0.2))] = 0.05,
    clamp: Annotated[float, Knob("outlier clamp quantile ρ", (0.0, 0.5))] = 0.01,
    inter: Annotated[str, Knob("inter-balancing variant", choices=("pairwise", "sum_first"))] = "pairwise",
):
    """Intra- and inter-balancing scores, drop all but the top ratio, rescaled weighted merge."""
    K, D = len(vectors), numel(vectors)
    keys = keys_of(vectors)
    absrows = _rows(vectors, lambda key: stacked(vectors, key))
    ranks = [max(1, int(math.ceil(clamp * D))), max(1, D - int(math.floor(clamp * D)))]
    hi, lo = kth_largest_abs(absrows, [ranks] * K).unbind(1)  # both clamp bounds from the same two passes
    span = (hi - lo).clamp_min(1e-30)
    iu, ju = torch.triu_indices(K, K)  # the K(K+1)/2 pairs i ≤ j: tanh(ñ_i ⊙ ñ_j) is symmetric
    pair = torch.zeros(K, K, dtype=torch.long)
    pair[iu, ju] = pair[ju, iu] = torch.arange(len(iu))

    def clamped(t, shape):
        """a = clamp(|τ|, lo, hi) per task row, (K, *shape)."""
        a = t.abs()
        return torch.minimum(torch.maximum(a, lo.view(shape), out=a), hi.view(shape), out=a)

    def balance(key, chunk=1 << 16):
        """β = β_intra ⊙ β_inter of one key, (K, *shape)."""
        t = stacked(vectors, key)
        shape = (K,) + (1,) * (t.dim() - 1)
        na = clamped(t, shape).sub_(lo.view(shape)).div_(span.view(shape))
        n = torch.sign(t).mul_(na).reshape(K, -1)
        beta = torch.exp_(na.square_().mul_(K))  # intra, in place of na
        if inter == "pairwise":  # Σ_j tanh(ñ_i ⊙ ñ_j): each pair's tanh once, summed over j as (K, K, c).sum(1)
            flat = beta.view(K, -1)
            for s in range(0, n.shape[1], chunk):
                nc = n[:, s : s + chunk]
                flat[:, s : s + chunk] *= torch.tanh_(nc[iu] * nc[ju])[pair].sum(1)
        else:
            beta *= torch.tanh(t * n.sum(0).view(t.shape[1:]))
        return beta

    betas = {key: balance(key) for key in keys}  # the K² balancing once (K × D fp32 held), not once per pass
    beta_rows = _rows(vectors, betas.__getitem__)
    thr = kth_largest(beta_rows, [max(1, int(math.ceil(ratio * D)))] * K)
    bmax = torch.stack([b.max(1).values for b in beta_rows()]).max(0).values
    denom = (bmax - thr).clamp_min(1e-30)
    out = {}
    for key in keys:
        t = stacked(vectors, key)
        shape = (K,) + (1,) * (t.dim() - 1)
        tbar = clamped(t, shape).mul_(torch.sign(t))
        s = betas.pop(key)  # s = (max(β, t) − t) / (max β − t), in place of β
        s = torch.maximum(s, thr.view(shape), out=s).sub_(thr.view(shape)).div_(denom.view(shape))
        out[key] = alpha * tbar.mul_(s).sum(0) / s.sum(0).clamp_min(1e-12)
    return out
