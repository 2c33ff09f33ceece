"""RegMean (Jin et al., ICLR 2023): per linear layer, the weights that best reproduce every expert's outputs on
its own inputs.

For a linear-type parameter (PyTorch layout W: (out, in)) with input Gram matrices G_i = X_iᵀX_i (inputs of expert
i on task i's exemplars): minimise Σ_i ‖X_i W_iᵀ − X_i Wᵀ‖², whose solution is W = (Σ_i W_i G̃_i)(Σ_i G̃_i)^{-1},
with the off-diagonal entries shrunk, G̃_i = a·G_i + (1 − a)·diag(G_i), ``a = reduce_nondiag`` (FusionBench's CLIP
default 0.95). Written on task vectors: δ = (Σ_i τ_i G̃_i)(Σ_i G̃_i)^{-1} since W0 cancels. Covered layers: nn.Linear,
MHA's fused in_proj and out_proj, conv as im2col, open_clip's proj (stored (in, out): transposed). Every other
parameter gets the plain average. Solved in fp64 with a tiny ridge (``ridge`` × mean diagonal).
"""

from __future__ import annotations

from typing import Annotated

import torch

from ._common import as_out_in, from_out_in, keys_of, stacked
from .registry import Knob, register


@register("regmean", display="RegMean", needs=("gram",), exemplars=256)  # FusionBench num_regmean_examples
def regmean(
    pretrained,
    vectors,
    *,
    stats=None,
    reduce_nondiag: Annotated[
        float,
        Knob(
            "factor a on the off-diagonal of each Gram matrix",
            (0.0, 1.0),
            grid=(0.5, 0.9, 1.0),
            full_grid=(0.5, 0.9, 0.95, 1.0),
        ),
    ] = 0.95,
    ridge: Annotated[float, Knob("relative ridge added to Σ G̃ before solving", (0.0, None))] = 1e-6,
):
    """Closed-form regression mean on linear layers; plain average elsewhere."""
    out = {}
    K = len(vectors)
    for key in keys_of(vectors):
        info = stats.layers.get(key)
        t = stacked(vectors, key)
        if info is None or info.kind != "linear" or not all(key in g for g in stats.grams):
            out[key] = t.mean(0)
            continue
        num, den = 0, 0
        for i in range(K):
            G = stats.grams[i][key].matrix()
            G = reduce_nondiag * G + (1 - reduce_nondiag) * torch.diag(G.diagonal())
            num = num + as_out_in(t[i], info.transposed).double() @ G
            den = den + G
        den = den + ridge * den.diagonal().mean().clamp_min(1e-30) * torch.eye(den.shape[0], dtype=den.dtype)
        W = torch.linalg.solve(den, num.T).T  # den symmetric: W = num · den^{-1}
        out[key] = from_out_in(W.float(), t.shape[1:], info.transposed)
    return out
