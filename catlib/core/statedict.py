"""State dicts and task vectors: checks, arithmetic, flattening.

Conventions
-----------
* A state dict is ``Dict[str, Tensor]``. Only floating-point tensors take part in merging; integer buffers (e.g.
  ``position_ids``) are carried over from θ0 unchanged.
* A task vector is ``τ_k = θ_k − θ0`` key by key, computed in fp32.
* Flattening always uses **sorted key order** (the order of the TIES/TALL/PCB code bases).
* Nothing here modifies its inputs: every function returns new tensors.
"""

from __future__ import annotations

import hashlib
import math
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

import torch

from .errors import IncompatibleStateDictError, NonFiniteError

StateDict = Dict[str, torch.Tensor]


# ----------------------------------------------------------------------------------------------------------------
# checks
# ----------------------------------------------------------------------------------------------------------------
def float_keys(sd: Mapping[str, torch.Tensor]) -> List[str]:
    """Sorted keys of the floating-point tensors of ``sd``."""
    return sorted(k for k, v in sd.items() if torch.is_tensor(v) and v.is_floating_point())


def check_finite(sd: Mapping[str, torch.Tensor], name: str = "state dict") -> None:
    """Raise :class:`NonFiniteError` naming the first key holding NaN or Inf."""
    for k in sorted(sd):
        v = sd[k]
        if not (torch.is_tensor(v) and v.is_floating_point()):
            continue
        if bool(torch.isfinite(v.sum())):  # fast path: a finite sum means no NaN/Inf (overflow falls through)
            continue
        if not bool(torch.isfinite(v).all()):
            kind = "NaN" if bool(torch.isnan(v).any()) else "Inf"
            raise NonFiniteError(f"{name}: key {k!r} contains {kind} values")


def _check_tensor(v: torch.Tensor, key: str, name: str) -> None:
    """A tensor merging can read: holding data (not ``meta``) and real (not complex)."""
    if v.is_meta:
        raise IncompatibleStateDictError(
            f"{name}: key {key!r} is a meta tensor (shape only, no values); load the weights before merging "
            "(e.g. load the checkpoint without device_map='meta' / low_cpu_mem_usage, or module.to_empty() then "
            "load_state_dict)"
        )
    if v.is_complex():
        raise IncompatibleStateDictError(
            f"{name}: key {key!r} is complex ({v.dtype}); merging is defined for real tensors: pass "
            "torch.view_as_real(t) or t.real if that is meant"
        )


def tied_keys(sd: Mapping[str, torch.Tensor]) -> Dict[str, str]:
    """Keys whose tensor is the same memory as an earlier key's (tied weights, e.g. a masked-LM decoder that shares
    the word embeddings), as ``{alias: first key}`` in the state dict's order: a merge treats them as one
    parameter, merged once, and gives the alias the merged tensor of its first key."""
    seen: Dict[tuple, str] = {}
    out: Dict[str, str] = {}
    for k, v in sd.items():
        if not torch.is_tensor(v) or v.device.type == "meta" or v.numel() == 0:
            continue
        ident = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape), tuple(v.stride()), v.dtype)
        if ident in seen:
            out[k] = seen[ident]
        else:
            seen[ident] = k
    return out


def quick_digest(sd: Mapping[str, torch.Tensor], stride: int = 1009) -> str:
    """A cheap identity of a state dict (about 0.1% of its values read): keys, shapes, dtypes and, per floating
    tensor, the fp64 sum of every ``stride``-th entry. Tells another model or another task's expert apart (they
    differ almost everywhere); not a content hash (:func:`catlib.protocol.cache.state_fingerprint` is)."""
    h = hashlib.sha256()
    for k in sorted(sd):
        t = sd[k]
        h.update(f"{k}|{tuple(t.shape)}|{t.dtype}|".encode())
        if torch.is_tensor(t) and t.is_floating_point() and not t.is_meta and t.numel():
            h.update(f"{float(t.detach().reshape(-1)[::stride].double().sum()):.10e}".encode())
    return h.hexdigest()[:16]


def check_compatible(
    reference: Mapping[str, torch.Tensor],
    others: Sequence[Mapping[str, torch.Tensor]],
    names: Optional[Sequence[str]] = None,
    ref_name: str = "pretrained",
    check_values: bool = True,
) -> None:
    """Check that every state dict in ``others`` matches ``reference``: same keys, same shapes, floating dtypes
    where the reference is floating, and finite values. Errors name the offending state dict and key."""
    if not isinstance(reference, Mapping):
        raise TypeError(f"{ref_name} must be a mapping of str to Tensor, got {type(reference).__name__}")
    if len(reference) == 0:
        raise IncompatibleStateDictError(f"{ref_name} state dict is empty")
    names = list(names) if names is not None else [f"finetuned[{i}]" for i in range(len(others))]
    for k, v in reference.items():
        if not torch.is_tensor(v):
            raise TypeError(f"{ref_name}: key {k!r} is a {type(v).__name__}, not a Tensor")
        _check_tensor(v, k, ref_name)
    if check_values:
        check_finite(reference, ref_name)
    ref_keys = set(reference)
    for name, sd in zip(names, others):
        if not isinstance(sd, Mapping):
            raise TypeError(f"{name} must be a mapping of str to Tensor, got {type(sd).__name__}")
        keys = set(sd)
        missing, extra = sorted(ref_keys - keys), sorted(keys - ref_keys)
        if missing:
            raise IncompatibleStateDictError(
                f"{name}: missing key {missing[0]!r}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            )
        if extra:
            raise IncompatibleStateDictError(
                f"{name}: unexpected key {extra[0]!r} not in {ref_name}"
                + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else "")
            )
        for k in sorted(reference):
            a, b = reference[k], sd[k]
            if not torch.is_tensor(b):
                raise TypeError(f"{name}: key {k!r} is a {type(b).__name__}, not a Tensor")
            _check_tensor(b, k, name)
            if a.shape != b.shape:
                raise IncompatibleStateDictError(
                    f"{name}: shape mismatch at key {k!r}: {tuple(b.shape)} vs {ref_name} {tuple(a.shape)}"
                )
            if a.is_floating_point() != b.is_floating_point():
                raise IncompatibleStateDictError(
                    f"{name}: dtype mismatch at key {k!r}: {b.dtype} vs "
                    f"{ref_name} {a.dtype} (floating and non-floating)"
                )
        if check_values:
            check_finite(sd, name)


# ----------------------------------------------------------------------------------------------------------------
# task vectors and arithmetic
# ----------------------------------------------------------------------------------------------------------------
def task_vector(
    pretrained: Mapping[str, torch.Tensor], finetuned: Mapping[str, torch.Tensor], keys: Optional[Iterable[str]] = None
) -> StateDict:
    """τ = θ_ft − θ0 over the floating keys (fp32)."""
    keys = float_keys(pretrained) if keys is None else sorted(keys)
    return {k: finetuned[k].float() - pretrained[k].float() for k in keys}


def task_vectors(
    pretrained: Mapping[str, torch.Tensor],
    finetuned: Sequence[Mapping[str, torch.Tensor]],
    check: bool = True,
    lazy: bool = False,
) -> List[Mapping[str, torch.Tensor]]:
    """One task vector per fine-tuned state dict, after :func:`check_compatible`. With ``lazy``, each is a
    read-only :class:`LazyTaskVector` that computes ``θ_k[key] − θ0[key]`` on access (no K×D copy)."""
    if check:
        check_compatible(pretrained, finetuned)
    if lazy:
        return [LazyTaskVector(pretrained, ft) for ft in finetuned]
    return [task_vector(pretrained, ft) for ft in finetuned]


class LazyTaskVector(Mapping):
    """τ = θ_ft − θ0 over θ0's floating keys, computed key by key when read (fp32); never stored."""

    def __init__(self, pretrained: Mapping[str, torch.Tensor], finetuned: Mapping[str, torch.Tensor]):
        self._p, self._f, self._keys = pretrained, finetuned, float_keys(pretrained)

    def __getitem__(self, k: str) -> torch.Tensor:
        if k not in self._p or not self._p[k].is_floating_point():
            raise KeyError(k)
        return self._f[k].float() - self._p[k].float()

    def __contains__(self, k) -> bool:  # without computing the difference
        return k in self._p and self._p[k].is_floating_point()

    def __iter__(self):
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def parts(self):
        """(θ0, θ_ft): lets sums use Σ θ_i − K θ0 instead of K subtractions."""
        return self._p, self._f


def apply(pretrained: Mapping[str, torch.Tensor], delta: Mapping[str, torch.Tensor], scale: float = 1.0) -> StateDict:
    """θ0 + scale·δ as a new state dict: keys of ``delta`` are added (in fp32, cast back to θ0's dtype); every
    other key of θ0 (integer buffers, keys a method left out) is copied unchanged. The result holds plain tensors
    (no autograd graph, ``requires_grad`` False) even when the inputs require gradients."""
    out: StateDict = {}
    with torch.no_grad():
        for k, v in pretrained.items():
            if k in delta:
                out[k] = torch.add(v.detach().float(), delta[k].detach().float(), alpha=scale).to(v.dtype)
            else:
                out[k] = v.detach().clone()
    return out


def add(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> StateDict:
    _same_keys(a, b)
    return {k: a[k] + b[k] for k in a}


def sub(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> StateDict:
    _same_keys(a, b)
    return {k: a[k] - b[k] for k in a}


def scale(a: Mapping[str, torch.Tensor], s: float) -> StateDict:
    return {k: v * s for k, v in a.items()}


def dot(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float:
    _same_keys(a, b)
    return float(sum((a[k].double() * b[k].double()).sum() for k in a))


def norm(a: Mapping[str, torch.Tensor]) -> float:
    """Euclidean norm of the flattened vector."""
    return math.sqrt(sum(float((v.double() ** 2).sum()) for v in a.values()))


def cosine(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor], eps: float = 1e-12) -> float:
    return dot(a, b) / max(norm(a) * norm(b), eps)


def cosine_matrix(vectors: Sequence[Mapping[str, torch.Tensor]]) -> torch.Tensor:
    """(K, K) matrix of pairwise cosines of flattened task vectors (one pass over the keys: each key's K slices are
    stacked and their Gram accumulated in fp64, so lazy vectors are read once per key)."""
    K = len(vectors)
    for v in vectors[1:]:
        _same_keys(vectors[0], v)
    g = torch.zeros(K, K, dtype=torch.float64)
    for k in vectors[0]:
        T = torch.stack([v[k].reshape(-1) for v in vectors]).double()
        g += T @ T.T
    d = g.diagonal().clamp_min(1e-24).sqrt()
    return g / d[:, None] / d[None, :]


def _same_keys(a: Mapping, b: Mapping) -> None:
    if set(a) != set(b):
        diff = sorted(set(a) ^ set(b))
        raise IncompatibleStateDictError(f"key sets differ, e.g. {diff[0]!r}")


# ----------------------------------------------------------------------------------------------------------------
# TaskVector: arithmetic on state dicts, nothing more
# ----------------------------------------------------------------------------------------------------------------
class TaskVector:
    """A task vector τ = θ_ft − θ0 with arithmetic.

    >>> tv = TaskVector.from_models(theta0, theta_ft)
    >>> merged = (tv1 + tv2).scale(0.3).apply_to(theta0)
    """

    def __init__(self, vector: Mapping[str, torch.Tensor]):
        self.vector: StateDict = {k: v.float().clone() for k, v in vector.items()}

    @classmethod
    def from_models(cls, pretrained: Mapping[str, torch.Tensor], finetuned: Mapping[str, torch.Tensor]) -> "TaskVector":
        check_compatible(pretrained, [finetuned], names=["finetuned"])
        return cls(task_vector(pretrained, finetuned))

    def __add__(self, other: "TaskVector") -> "TaskVector":
        return TaskVector(add(self.vector, other.vector))

    def __radd__(self, other):
        if other == 0:  # lets sum([tv1, tv2, ...]) work
            return self
        return self.__add__(other)

    def __sub__(self, other: "TaskVector") -> "TaskVector":
        return TaskVector(sub(self.vector, other.vector))

    def __neg__(self) -> "TaskVector":
        return TaskVector(scale(self.vector, -1.0))

    def __mul__(self, s: float) -> "TaskVector":
        return TaskVector(scale(self.vector, float(s)))

    __rmul__ = __mul__

    def scale(self, s: float) -> "TaskVector":
        return self * s

    def norm(self) -> float:
        return norm(self.vector)

    def cosine(self, other: "TaskVector") -> float:
        return cosine(self.vector, other.vector)

    def dot(self, other: "TaskVector") -> float:
        return dot(self.vector, other.vector)

    def apply_to(self, pretrained: Mapping[str, torch.Tensor], scaling: float = 1.0) -> StateDict:
        missing = sorted(set(self.vector) - set(pretrained))
        if missing:
            raise IncompatibleStateDictError(f"pretrained: missing key {missing[0]!r} of the task vector")
        return apply(pretrained, self.vector, scaling)

    def keys(self):
        return self.vector.keys()

    def __getitem__(self, k: str) -> torch.Tensor:
        return self.vector[k]

    def __repr__(self) -> str:
        return f"TaskVector({len(self.vector)} tensors, norm={self.norm():.4g})"
