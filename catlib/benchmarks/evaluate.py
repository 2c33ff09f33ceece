"""Scores per task: the one place where catlib measures a model.

``evaluate(benchmark, state_dict)`` loads the state dict into the benchmark's encoder, runs each task's split through
encoder + that task's frozen head, and returns each task's number in points: top-1 accuracy, or the metric the
benchmark names for the task (:meth:`~catlib.benchmarks.base.Benchmark.metric`, e.g. GLUE's Matthews correlation);
a generative benchmark's tasks are scored from the text the model generates (CIDEr-D, VQA accuracy).
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Dict, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from .base import Benchmark, SPLITS, StateDict
from ..core.checks import check_batch_size
from ..core.inputs import forward, to_device
from ..core.progress import progress


def load_into(module: nn.Module, state_dict: StateDict) -> nn.Module:
    """Copy ``state_dict`` into ``module`` (strict: every key must match) without keeping references to it."""
    missing, unexpected = [], []
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    if missing or unexpected:
        raise KeyError(f"state dict does not fit the module: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for k, v in own.items():
        if v.shape != state_dict[k].shape:
            raise ValueError(
                f"shape mismatch at {k!r}: module {tuple(v.shape)} vs state dict {tuple(state_dict[k].shape)}"
            )
    with torch.no_grad():
        for k, v in own.items():
            v.copy_(state_dict[k].to(v.dtype))
    return module


@torch.no_grad()
def accuracy(
    encoder: nn.Module, head: nn.Module, loader, device: torch.device, amp: bool = False, desc: Optional[str] = None
) -> float:
    """Top-1 accuracy (percent) of ``head(encoder(x))`` over ``loader``."""
    encoder.eval()
    head = head.to(device).eval()
    correct = total = 0
    ctx = torch.autocast(device.type, dtype=torch.float16) if (amp and device.type == "cuda") else nullcontext()
    for x, y in progress(loader, desc=desc, leave=False):
        x, y = to_device(x, device, non_blocking=True), y.to(device, non_blocking=True)
        with ctx:
            logits = head(forward(encoder, x))
        correct += (logits.float().argmax(dim=1) == y).sum().item()
        total += y.numel()
    if total == 0:
        raise ValueError(f"empty evaluation split ({desc})")
    return 100.0 * correct / total


@torch.no_grad()
def predict(
    encoder: nn.Module,
    head: nn.Module,
    loader,
    device: torch.device,
    loss: str = "classification",
    amp: bool = False,
    desc: Optional[str] = None,
) -> Tuple[list, list]:
    """(predictions, labels) of ``head(encoder(x))`` over ``loader``, whose inputs are tensors or token batches:
    the argmax class, or for ``loss="regression"`` the head's one output value."""
    encoder.eval()
    head = head.to(device).eval()
    ctx = torch.autocast(device.type, dtype=torch.float16) if (amp and device.type == "cuda") else nullcontext()
    pred, gold = [], []
    for x, y in progress(loader, desc=desc, leave=False):
        with ctx:
            out = head(forward(encoder, to_device(x, device, non_blocking=True))).float()
        pred += (out[:, 0] if loss == "regression" else out.argmax(dim=1)).cpu().tolist()
        gold += y.tolist()
    if not gold:
        raise ValueError(f"empty evaluation split ({desc})")
    return pred, gold


def evaluate(
    benchmark: Benchmark,
    state_dict: Optional[StateDict] = None,
    split: str = "test",
    tasks: Optional[Sequence[str]] = None,
    batch_size: Optional[int] = None,
    amp: Optional[bool] = None,
    encoder: Optional[nn.Module] = None,
    heads: Optional[Mapping[str, nn.Module]] = None,
) -> Dict[str, float]:
    """Per-task score (points: top-1 accuracy, or the task's own metric) of one encoder state dict on ``split``.

    ``state_dict`` defaults to θ0. ``tasks`` defaults to ``benchmark.tasks`` (pass other task names to test on tasks
    that were not merged, as Table 8 does). ``encoder`` may be given to reuse one module across calls. ``heads``
    (task → module) replaces the benchmark's heads for those tasks (Surgery's map followed by the head).
    ``batch_size`` and ``amp`` (fp16 autocast, CUDA only) default to the benchmark's attributes of those names
    (256 and False when it has none): the real benchmarks turn mixed precision on when they run on CUDA.
    """
    batch_size = check_batch_size(batch_size) or getattr(benchmark, "batch_size", None) or 256
    amp = bool(getattr(benchmark, "amp", False)) if amp is None else amp
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    sd = benchmark.pretrained if state_dict is None else state_dict
    enc = encoder if encoder is not None else benchmark.build_module()
    load_into(enc, sd)
    enc.to(benchmark.device).eval()
    out: Dict[str, float] = {}
    for t in benchmark._check_tasks(tasks):
        name, fn = benchmark.metric(t)
        if benchmark.generative:  # captions, open answers: the metric scores generated text
            if heads and t in heads:
                raise ValueError(f"{benchmark.name} generates its answers: a replacement head for {t!r} has no effect")
            out[t] = float(fn(*benchmark.generate(enc, t, split, batch_size, amp)))
            continue
        head, loader = (heads or {}).get(t, benchmark.heads[t]), benchmark.loader(t, split, batch_size)
        loss = benchmark.loss(t)
        if name == "accuracy" and loss == "classification":  # counted on the fly, no list of predictions
            out[t] = accuracy(enc, head, loader, benchmark.device, amp=amp, desc=f"eval {t}/{split}")
        else:
            out[t] = float(fn(*predict(enc, head, loader, benchmark.device, loss, amp, f"eval {t}/{split}")))
    return out


def metric_names(benchmark: Benchmark, tasks: Optional[Sequence[str]] = None) -> Dict[str, str]:
    """Task → the name of the number :func:`evaluate` reports for it (e.g. ``"Matthews correlation"``)."""
    return {t: benchmark.metric(t)[0] for t in benchmark._check_tasks(tasks)}


def average(per_task: Dict[str, float]) -> float:
    """Plain mean over tasks (the paper's "Avg" column)."""
    if not per_task:
        raise ValueError("no tasks to average")
    return sum(per_task.values()) / len(per_task)
