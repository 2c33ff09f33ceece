"""Small helpers shared by the merge methods."""

from __future__ import annotations

from typing import Iterator, List, Mapping, Sequence

import torch

Vectors = Sequence[Mapping[str, torch.Tensor]]


def keys_of(vectors: Vectors) -> List[str]:
    """Sorted keys of the task vectors (all share them)."""
    return sorted(vectors[0])


def stacked(vectors: Vectors, key: str) -> torch.Tensor:
    """(K, *shape) fp32 stack of one key across the task vectors."""
    return torch.stack([v[key].float() for v in vectors])


def each_key(vectors: Vectors) -> Iterator[tuple]:
    """Yields ``(key, (K, *shape) stack)`` key by key: the loop of every per-tensor method."""
    for k in keys_of(vectors):
        yield k, stacked(vectors, k)


def summed(vectors: Vectors, key: str) -> torch.Tensor:
    """Σ_i τ_i[key] in fp32, accumulated in place (no (K, *shape) stack)."""
    lazy = [getattr(v, "parts", None) for v in vectors]
    if all(lazy) and all(l[0] is lazy[0][0] for l in lazy):  # Σ (θ_i − θ0) = Σ θ_i − K θ0: half the traffic
        acc = lazy[0][1][key].float().clone()
        for l in lazy[1:]:
            acc += l[1][key]
        return acc.sub_(lazy[0][0][key].float(), alpha=len(vectors))
    acc = vectors[0][key].float().clone()
    for v in vectors[1:]:
        acc += v[key].float()
    return acc


def numel(vectors: Vectors) -> int:
    return sum(vectors[0][k].numel() for k in keys_of(vectors))


def as_out_in(t: torch.Tensor, transposed: bool) -> torch.Tensor:
    """View a weight as a 2-D (out, in) matrix (conv kernels flattened; (in, out) parameters transposed)."""
    t = t.reshape(t.shape[0], -1) if t.dim() > 2 else t
    return t.T if transposed else t


def from_out_in(m: torch.Tensor, shape, transposed: bool) -> torch.Tensor:
    """The inverse of :func:`as_out_in`: back to the parameter's own ``shape``."""
    return (m.T if transposed else m).reshape(shape)
