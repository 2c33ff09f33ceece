"""Model inputs as catlib passes them around, in one place: a tensor (images ``(B, 3, H, W)``, or any inputs with the
examples along dim 0) called as ``module(x)``, or a mapping of tensors that share their first dimension (a token
batch: ``input_ids`` ``(B, T)`` int64 and ``attention_mask`` ``(B, T)``, 1 on real tokens and 0 on padding, as
Hugging Face tokenizers return them) called as ``module(**x)``."""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence, Union

import torch
from torch import nn

Inputs = Union[torch.Tensor, Mapping[str, torch.Tensor]]


def is_mapping(x) -> bool:
    return isinstance(x, Mapping)


def batch_len(x: Inputs) -> int:
    """The number of examples (the first dimension)."""
    return next(iter(x.values())).shape[0] if is_mapping(x) else x.shape[0]


def take(x: Inputs, index) -> Inputs:
    """Examples ``index`` (a slice or an index tensor) of every tensor."""
    return {k: v[index] for k, v in x.items()} if is_mapping(x) else x[index]


def to_device(x: Inputs, device, non_blocking: bool = False) -> Inputs:
    if is_mapping(x):
        return {k: v.to(device, non_blocking=non_blocking) for k, v in x.items()}
    return x.to(device, non_blocking=non_blocking)


def forward(module: nn.Module, x: Inputs):
    """``module(**x)`` for a mapping, ``module(x)`` for a tensor."""
    return module(**x) if is_mapping(x) else module(x)


def token_mask(x: Inputs) -> Optional[torch.Tensor]:
    """``(B, T)`` bool, True on the tokens that count (a mapping's ``attention_mask``), or None (every position
    counts: images, or tokens without padding)."""
    if is_mapping(x) and x.get("attention_mask") is not None:
        return x["attention_mask"].bool()
    return None


def check_inputs(x, name: str) -> None:
    """A tensor, or a non-empty mapping of tensors sharing a first dimension; ValueError naming ``name`` otherwise."""
    if is_mapping(x):
        if not x or not all(torch.is_tensor(v) for v in x.values()):
            raise ValueError(f"{name}: a token batch must be a non-empty mapping of tensors (input_ids, ...)")
        sizes = {k: v.shape[0] if v.dim() else None for k, v in x.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"{name}: the tensors of a token batch must share their first dimension, got {sizes}")
        mask = x.get("attention_mask")
        ids = x.get("input_ids")
        if mask is not None and ids is not None and tuple(mask.shape) != tuple(ids.shape):
            raise ValueError(f"{name}: attention_mask {tuple(mask.shape)} does not match input_ids {tuple(ids.shape)}")
    elif not torch.is_tensor(x):
        raise TypeError(f"{name}: inputs must be a Tensor or a mapping of tensors, got {type(x).__name__}")


def pad_batch(examples: Sequence[Sequence[int]], pad_id: int) -> Dict[str, torch.Tensor]:
    """A token batch from lists of ids: ``input_ids`` (B, T) padded with ``pad_id`` to the longest, and
    ``attention_mask`` (B, T), 1 on the ids and 0 on the padding."""
    if not examples:
        raise ValueError("pad_batch needs at least one example")
    T = max(len(e) for e in examples)
    ids = torch.full((len(examples), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), T), dtype=torch.long)
    for i, e in enumerate(examples):
        ids[i, : len(e)] = torch.as_tensor(list(e), dtype=torch.long)
        mask[i, : len(e)] = 1
    return {"input_ids": ids, "attention_mask": mask}
