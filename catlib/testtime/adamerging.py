"""AdaMerging (Yang et al., "AdaMerging: Adaptive Model Merging for Multi-Task Learning", ICLR 2024).

θ(λ) = θ0 + Σ_k λ_k ⊙ τ_k, with λ_k one scalar per task ("task-wise") or one per task and parameter tensor
("layer-wise", the paper's layers are the parameter tensors of its code), clamped to [0, 1] and initialised at
the prior 0.3. λ minimises Σ_k H(softmax(head_k(f(x; θ(λ))))) (mean Shannon entropy) over unlabelled batches of
each task's test inputs, one batch per task per step, with Adam (lr 1e-3, 500 steps, batch 16: the paper's
settings). "++" (AdaMerging++): τ_k first trimmed to its top-k fraction and restricted to the entries agreeing
with TIES' elected sign (:func:`catlib.merge.ties.ties_kept`, k = 0.2). Integer buffers are θ0's.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Annotated, Dict, List, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..core.progress import progress
from ..core.statedict import StateDict, check_compatible, task_vectors
from ..merge.registry import Knob, Registry
from ..merge.ties import ties_kept

TEST_TIME = Registry()  # the test-time methods (AdaMerging, Surgery), beside catlib.merge's REGISTRY


@dataclass
class TestTimeInputs:
    """What a test-time method adapts on. ``module``: the encoder architecture (its weights are not used);
    ``heads``: one frozen head per task (encoder features → logits); ``unlabelled``: one tensor of inputs per task
    (the test split's, without labels), in the order of ``finetuned``; ``seed``: the mini-batch draws and any
    initialisation."""

    __test__ = False  # not a pytest test class
    module: nn.Module
    pretrained: StateDict
    finetuned: Sequence[StateDict]
    heads: Sequence[nn.Module]
    unlabelled: Sequence[torch.Tensor]
    seed: int = 0

    def check(self, name: str) -> None:
        K = len(self.finetuned)
        if K == 0 or not (len(self.heads) == len(self.unlabelled) == K):
            raise ValueError(
                f"{name}: needs one head and one batch of unlabelled inputs per fine-tuned model, got "
                f"{K} models, {len(self.heads)} heads, {len(self.unlabelled)} input tensors"
            )
        check_compatible(self.pretrained, self.finetuned)
        for i, x in enumerate(self.unlabelled):
            if not torch.is_tensor(x) or x.dim() == 0 or x.shape[0] == 0:
                raise ValueError(f"{name}: unlabelled[{i}] must be a non-empty tensor of inputs")
            if x.is_floating_point() and not bool(torch.isfinite(x).all()):
                raise ValueError(f"{name}: unlabelled[{i}] contains NaN or Inf values")


@dataclass
class TestTimeResult:
    """The adapted model: ``state_dict`` (the merged encoder), ``heads`` (one per task: the given heads, or the
    surgery map followed by a copy of each), what was learned (``coefficients``: (K,) or (K, len(keys)); ``keys``: the
    parameter tensors of a layer-wise λ), the loss per step and the seconds spent."""

    __test__ = False

    state_dict: StateDict
    heads: List[nn.Module]
    coefficients: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    keys: List[str] = field(default_factory=list)
    losses: List[float] = field(default_factory=list)
    seconds: float = 0.0


def frozen_copies(inputs: TestTimeInputs):
    """Copies of the encoder and the heads in eval mode with no gradient, so that adapting never changes the
    caller's modules (their mode, their ``requires_grad`` flags or their ``.grad``)."""
    module = copy.deepcopy(inputs.module).eval().requires_grad_(False)
    return module, [copy.deepcopy(h).eval().requires_grad_(False) for h in inputs.heads]


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean Shannon entropy (nats) of softmax(logits) over the batch; logits (B, classes)."""
    logp = F.log_softmax(logits.float(), dim=1)
    return -(logp.exp() * logp).sum(1).mean()


def minibatches(unlabelled: Sequence[torch.Tensor], batch_size: int, seed: int):
    """An endless stream of one batch per task: each task's inputs in a seeded random order, epoch after epoch."""
    g = torch.Generator().manual_seed(seed)
    orders = [torch.randperm(x.shape[0], generator=g) for x in unlabelled]
    pos = [0] * len(unlabelled)
    while True:
        out = []
        for i, x in enumerate(unlabelled):
            if pos[i] + batch_size > x.shape[0]:
                orders[i], pos[i] = torch.randperm(x.shape[0], generator=g), 0
            idx = orders[i][pos[i] : pos[i] + batch_size]
            pos[i] += batch_size
            out.append(x[idx])
        yield out


def _vectors(inputs: TestTimeInputs, plus: bool, ties_k: float) -> Dict[str, torch.Tensor]:
    """key → (K, *shape) fp32 stack of the task vectors (TIES-processed with ``plus``)."""
    vectors = task_vectors(inputs.pretrained, inputs.finetuned, check=False)
    if plus:
        return {key: kept for key, kept, _, _ in ties_kept(vectors, ties_k, "global")}
    return {key: torch.stack([v[key] for v in vectors]) for key in sorted(vectors[0])}


@TEST_TIME.register("adamerging", display="AdaMerging")
def adamerging(
    inputs: TestTimeInputs,
    *,
    granularity: Annotated[
        str, Knob("one λ per task, or per task and parameter tensor", choices=("task", "layer"))
    ] = "layer",
    plus: Annotated[bool, Knob("AdaMerging++: learn λ over TIES-processed task vectors")] = False,
    init: Annotated[float, Knob("initial λ (the paper's prior)", (0.0, 1.0))] = 0.3,
    steps: Annotated[int, Knob("Adam steps (one unlabelled batch per task each)", (1, None))] = 500,
    lr: Annotated[float, Knob("Adam learning rate", (1e-9, None))] = 1e-3,
    batch_size: Annotated[int, Knob("unlabelled inputs per task per step", (1, None))] = 16,
    ties_k: Annotated[float, Knob("fraction kept by TIES' trimming (plus=True)", (1e-9, 1.0))] = 0.2,
) -> TestTimeResult:
    """Entropy-minimising merging coefficients on unlabelled test inputs (task-wise or layer-wise, ++)."""
    inputs.check("adamerging")
    t0 = time.perf_counter()
    torch.manual_seed(inputs.seed)
    p0 = inputs.pretrained
    stacks = _vectors(inputs, plus, ties_k)
    keys = sorted(stacks)
    K = len(inputs.finetuned)
    lam = torch.full((K,) if granularity == "task" else (K, len(keys)), float(init), requires_grad=True)
    base = {k: (v.detach().float() if k in stacks else v.detach()) for k, v in p0.items()}
    module, heads = frozen_copies(inputs)

    def merged(coef: torch.Tensor) -> Dict[str, torch.Tensor]:
        out = dict(base)
        for j, key in enumerate(keys):
            c = coef if coef.dim() == 1 else coef[:, j]
            out[key] = base[key] + torch.tensordot(c, stacks[key], dims=1)
        return out

    opt = torch.optim.Adam([lam], lr=lr, betas=(0.9, 0.999))
    batches = minibatches(inputs.unlabelled, batch_size, inputs.seed)
    losses = []
    for _ in progress(range(steps), desc="adamerging"):
        params = merged(lam.clamp(0.0, 1.0))
        xs = next(batches)
        z = torch.func.functional_call(module, params, (torch.cat(xs),)).split([len(x) for x in xs])  # one pass
        loss = sum(entropy(heads[i](z[i])) for i in range(K))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    with torch.no_grad():
        coef = lam.detach().clamp(0.0, 1.0)
        sd = {k: (v.to(p0[k].dtype) if k in stacks else p0[k].clone()) for k, v in merged(coef).items()}
    return TestTimeResult(
        sd, list(inputs.heads), coef, keys if granularity == "layer" else [], losses, time.perf_counter() - t0
    )


def as_inputs(module: nn.Module, pretrained: Mapping, finetuned, heads, unlabelled, seed: int = 0) -> TestTimeInputs:
    """:class:`TestTimeInputs` from its parts (lists copied; tensors are not)."""
    return TestTimeInputs(module, dict(pretrained), list(finetuned), list(heads), list(unlabelled), seed)
