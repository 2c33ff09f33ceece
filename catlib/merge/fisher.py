"""Fisher merging (Matena & Raffel, NeurIPS 2022), diagonal Fisher.

θ* = Σ_i w_i ⊙ θ_i / Σ_i w_i with w_i = F̃_i + ε, i.e. θ0 + Σ_i w_i ⊙ τ_i / Σ_i w_i (no merge coefficient).
F_i is the diagonal Fisher of expert i on task i's exemplars with task i's head (see
:func:`catlib.stats.collect_statistics`; estimator "sampled" by default: one label drawn from the model per
example, per-example gradients — not the batch-summed approximation). With ``normalize`` (default) each F_i is
divided by its global L2 norm before ε is added, so models with very different Fisher scales count equally and ε
does not swamp small raw values. Parameters without a Fisher (buffers) get equal weights, i.e. the average.
"""

from __future__ import annotations

import math
from typing import Annotated

import torch

from ._common import keys_of, stacked
from .registry import Knob, register


@register("fisher", display="Fisher Merging", needs=("fisher",), exemplars=256)  # FusionBench num_fisher_examples
def fisher(
    pretrained,
    vectors,
    *,
    stats=None,
    eps: Annotated[
        float, Knob("smoothing: added to every (normalized) Fisher entry", (0.0, None), grid=(1e-6, 1e-4))
    ] = 1e-6,
    normalize: Annotated[
        bool, Knob("divide each task's Fisher by its global L2 norm first", grid=(True, False))
    ] = True,
):
    """Fisher-weighted average of the fine-tuned weights."""
    K = len(vectors)
    scales = [1.0] * K
    if normalize:
        norms = [math.sqrt(sum(float((f**2).sum()) for f in stats.fisher[i].values())) for i in range(K)]
        scales = [1.0 / n if n > 0 else 1.0 for n in norms]
    out = {}
    for key in keys_of(vectors):
        t = stacked(vectors, key)
        if all(key in stats.fisher[i] for i in range(K)):
            w = torch.stack([stats.fisher[i][key].float() * scales[i] for i in range(K)]) + eps
        else:
            w = None
        out[key] = t.mean(0) if w is None else (w * t).sum(0) / w.sum(0)
    return out
