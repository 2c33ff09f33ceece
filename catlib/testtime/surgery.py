"""Representation Surgery (Yang et al., "Representation Surgery for Multi-Task Model Merging", ICML 2024).

A merged encoder's features z drift from each expert's z_k ("representation bias"). Surgery gives every task a
map z ↦ z − W_up ReLU(W_down z) (W_down: rank × d, Kaiming-uniform; W_up: d × rank, zero, so training starts at
the identity) placed between the merged encoder and that task's frozen head, trained with Adam to minimise the
mean |z − W_up ReLU(W_down z) − z_k| over the task's unlabelled test inputs (rank 16, lr 1e-3, 1000 steps,
batch 16: the paper's settings). The encoder is frozen, so z and z_k are computed once.
"""

from __future__ import annotations

import math
import time
from typing import Annotated

import torch
from torch import nn

from ..core.progress import progress
from ..core.statedict import apply, task_vectors
from ..merge.registry import Knob
from .adamerging import TEST_TIME, TestTimeInputs, TestTimeResult, adamerging, frozen_copies, minibatches


class SurgeryMap(nn.Module):
    """z ↦ z − W_up ReLU(W_down z) on features (B, d), followed by ``head``."""

    def __init__(self, dim: int, rank: int, head: nn.Module):
        super().__init__()
        self.down = nn.Linear(dim, rank, bias=False)
        self.up = nn.Linear(rank, dim, bias=False)
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.up.weight)
        self.head = head

    def correct(self, z: torch.Tensor) -> torch.Tensor:
        return z - self.up(torch.relu(self.down(z)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.correct(z))


@torch.no_grad()
def _features(module: nn.Module, sd, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    return torch.cat(
        [torch.func.functional_call(module, dict(sd), (x[i : i + batch],)) for i in range(0, len(x), batch)]
    )


@TEST_TIME.register("surgery", display="Surgery")
def surgery(
    inputs: TestTimeInputs,
    *,
    base: Annotated[
        str,
        Knob("the merged encoder: task arithmetic (α = 0.3) or AdaMerging", choices=("task_arithmetic", "adamerging")),
    ] = "task_arithmetic",
    alpha: Annotated[float, Knob("task arithmetic's coefficient (base='task_arithmetic')", (0.0, None))] = 0.3,
    rank: Annotated[int, Knob("rank of each task's map", (1, None))] = 16,
    steps: Annotated[int, Knob("Adam steps (one unlabelled batch per task each)", (1, None))] = 1000,
    lr: Annotated[float, Knob("Adam learning rate", (1e-9, None))] = 1e-3,
    batch_size: Annotated[int, Knob("unlabelled inputs per task per step", (1, None))] = 16,
) -> TestTimeResult:
    """Per-task feature maps after a merged encoder, trained toward each expert's features (L1)."""
    inputs.check("surgery")
    t0 = time.perf_counter()
    if base == "adamerging":
        merged = adamerging(inputs)
        sd, coef, keys = merged.state_dict, merged.coefficients, merged.keys
    else:
        sd = apply(inputs.pretrained, _sum(task_vectors(inputs.pretrained, inputs.finetuned, check=False)), alpha)
        coef, keys = torch.full((len(inputs.finetuned),), float(alpha)), []
    losses = []  # Surgery's L1 loss per step
    module, heads = frozen_copies(inputs)
    z = [_features(module, sd, x) for x in inputs.unlabelled]
    z_exp = [_features(module, ft, x) for ft, x in zip(inputs.finetuned, inputs.unlabelled)]
    torch.manual_seed(inputs.seed)
    maps = [SurgeryMap(zi.shape[1], rank, h) for zi, h in zip(z, heads)]
    opt = torch.optim.Adam([p for m in maps for p in (m.down.weight, m.up.weight)], lr=lr)
    index = [torch.arange(len(zi)) for zi in z]
    batches = minibatches(index, batch_size, inputs.seed + 1)
    for _ in progress(range(steps), desc="surgery"):
        idx = next(batches)
        loss = sum((m.correct(zi[b]) - ze[b]).abs().mean() for m, zi, ze, b in zip(maps, z, z_exp, idx))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    for m in maps:
        m.requires_grad_(False).eval()
    return TestTimeResult(sd, maps, coef, keys, losses, time.perf_counter() - t0)


def _sum(vectors):
    return {k: sum(v[k] for v in vectors) for k in vectors[0]}
