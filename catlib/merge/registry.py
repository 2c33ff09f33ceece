"""The registry of merge methods: one signature for all.

A method is a pure function ``fn(pretrained, vectors, *, stats, **hparams) -> delta`` where ``vectors`` are the task
vectors τ_k (fp32, floating keys of θ0, sorted), ``stats`` the :class:`catlib.stats.Statistics` it declared it
``needs`` (or ``None``), and ``delta`` the merged update over (a subset of) those keys; :func:`merge` returns
``θ0 + delta``. Its keyword-only arguments, with their annotations and defaults, are its documented hyperparameters.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from ..errors import HyperparameterError, MissingStatisticsError, UnknownMethodError
from ..statedict import StateDict, apply, check_compatible, task_vectors


@dataclass
class Hyperparameter:
    name: str
    default: Any
    type: Any
    doc: str = ""
    choices: Optional[Tuple] = None
    range: Optional[Tuple[Optional[float], Optional[float]]] = None  # inclusive bounds

    def validate(self, method: str, value: Any) -> Any:
        if self.choices is not None:
            if value not in self.choices:
                raise HyperparameterError(f"{method}: {self.name}={value!r} is not one of {list(self.choices)}")
            return value
        if self.type in (int, float) or self.range is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                if value is None and self.default is None:
                    return value
                raise HyperparameterError(f"{method}: {self.name} must be a number, got {value!r}")
            if self.type is int and int(value) != value:
                raise HyperparameterError(f"{method}: {self.name} must be an integer, got {value!r}")
            if value != value:  # NaN
                raise HyperparameterError(f"{method}: {self.name} is NaN")
            lo, hi = self.range or (None, None)
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                raise HyperparameterError(f"{method}: {self.name}={value!r} is outside [{lo}, {hi}]")
        if self.type is bool and not isinstance(value, bool):
            raise HyperparameterError(f"{method}: {self.name} must be True or False, got {value!r}")
        return value


@dataclass
class MethodSpec:
    name: str
    fn: Callable
    hyperparameters: Dict[str, Hyperparameter]
    needs: Any = ()  # tuple of statistic kinds, or a function hparams -> tuple
    doc: str = ""
    labelled: bool = False  # whether its statistics need labelled exemplars (TATR)
    extra: Dict[str, Any] = field(default_factory=dict)

    def defaults(self) -> Dict[str, Any]:
        return {k: h.default for k, h in self.hyperparameters.items()}

    def needs_for(self, hparams: Optional[Mapping[str, Any]] = None) -> Tuple[str, ...]:
        """Statistics this method needs with these hyperparameters (defaults when ``None``)."""
        hp = self.defaults() if hparams is None else {**self.defaults(), **hparams}
        return tuple(self.needs(hp) if callable(self.needs) else self.needs)


_REGISTRY: Dict[str, MethodSpec] = {}


def register(name: str, *, needs: Sequence[str] = (), doc: Optional[str] = None, labelled: bool = False,
             ranges: Optional[Mapping[str, Tuple]] = None, choices: Optional[Mapping[str, Tuple]] = None,
             docs: Optional[Mapping[str, str]] = None) -> Callable:
    """Register ``fn`` under ``name``; its keyword-only parameters (except ``stats``) become hyperparameters."""
    ranges, choices, docs = dict(ranges or {}), dict(choices or {}), dict(docs or {})

    def deco(fn: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"merge method {name!r} registered twice")
        sig = inspect.signature(fn)
        hps = {}
        for p in sig.parameters.values():
            if p.kind is not inspect.Parameter.KEYWORD_ONLY or p.name == "stats":
                continue
            if p.default is inspect.Parameter.empty:
                raise TypeError(f"{name}: hyperparameter {p.name} needs a default")
            ann = p.annotation if p.annotation is not inspect.Parameter.empty else type(p.default)
            if isinstance(ann, str):  # from __future__ annotations
                ann = {"float": float, "int": int, "bool": bool, "str": str}.get(ann, ann)
            hps[p.name] = Hyperparameter(p.name, p.default, ann, docs.get(p.name, ""), choices.get(p.name),
                                         ranges.get(p.name))
        unknown = (set(ranges) | set(choices) | set(docs)) - set(hps)
        if unknown:
            raise TypeError(f"{name}: constraints for unknown hyperparameters {sorted(unknown)}")
        _REGISTRY[name] = MethodSpec(name, fn, hps, needs if callable(needs) else tuple(needs), inspect.cleandoc(doc or fn.__doc__ or ""),
                                     labelled)
        return fn

    return deco


def get_method(name: str) -> MethodSpec:
    if not isinstance(name, str) or name not in _REGISTRY:
        raise UnknownMethodError(f"unknown merge method {name!r}; available: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def methods() -> Dict[str, Dict[str, Any]]:
    """Every registered method → ``{"hyperparameters": {name: default}, "needs": [...], "doc": first line}``."""
    return {n: {"hyperparameters": s.defaults(), "needs": list(s.needs_for()),
                "doc": s.doc.splitlines()[0] if s.doc else ""} for n, s in sorted(_REGISTRY.items())}


def validate_hparams(spec: MethodSpec, hparams: Mapping[str, Any]) -> Dict[str, Any]:
    unknown = sorted(set(hparams) - set(spec.hyperparameters))
    if unknown:
        raise HyperparameterError(f"{spec.name}: unknown hyperparameter {unknown[0]!r}; known: "
                                  f"{sorted(spec.hyperparameters)}")
    out = spec.defaults()
    for k, v in hparams.items():
        out[k] = spec.hyperparameters[k].validate(spec.name, v)
    return out


def merge(method: str, pretrained: StateDict, finetuned: Sequence[StateDict], *, stats=None,
          module: Optional[torch.nn.Module] = None, exemplars: Optional[Sequence] = None,
          heads: Optional[Sequence[torch.nn.Module]] = None, stats_options: Optional[Mapping[str, Any]] = None,
          **hparams) -> StateDict:
    """Merge ``finetuned`` models into one, starting from ``pretrained``; returns a new state dict.

    method: a name from :func:`methods`. pretrained: θ0. finetuned: θ_1..θ_K (same keys, shapes, floating dtypes).
    Data-dependent methods take ``stats`` (from :func:`catlib.stats.collect_statistics`), or ``module`` (the
    architecture) plus ``exemplars`` (one batch per task; (inputs, labels) pairs for TATR) and, for Fisher/TATR,
    ``heads`` (one per task); ``stats_options`` go to ``collect_statistics`` (e.g. ``expert_scale``).
    Inputs are never modified.
    """
    spec = get_method(method)
    hp = validate_hparams(spec, hparams)
    if not isinstance(finetuned, (list, tuple)) or len(finetuned) == 0:
        raise ValueError("finetuned must be a non-empty list of state dicts")
    check_compatible(pretrained, finetuned)
    needs = spec.needs_for(hp)
    implied = spec.fn.stats_options(hp) if hasattr(spec.fn, "stats_options") else {}
    if needs:
        if stats is None:
            if module is None or exemplars is None:
                raise MissingStatisticsError(
                    f"{method} is data-dependent (needs {list(needs)}): pass stats=..., or module=... and "
                    "exemplars=[one batch per task]" + (" and heads=[...]" if {"fisher", "grad_abs"} & set(needs) else ""))
            from ..stats import collect_statistics
            opts = {**implied, **dict(stats_options or {})}
            stats = collect_statistics(module, pretrained, finetuned, exemplars, needs=needs, heads=heads, **opts)
        missing = [k for k in needs if not stats.has(k)]
        if missing:
            raise MissingStatisticsError(f"{method}: statistics lack {missing}")
        if "expert_scale" in implied and abs(stats.expert_scale - implied["expert_scale"]) > 1e-12:
            raise MissingStatisticsError(
                f"{method}: these hyperparameters need statistics collected with expert_scale="
                f"{implied['expert_scale']}, but the given ones used expert_scale={stats.expert_scale}")
        if stats.num_tasks != len(finetuned):
            raise MissingStatisticsError(f"{method}: statistics cover {stats.num_tasks} tasks, "
                                         f"got {len(finetuned)} fine-tuned models")
    vectors = task_vectors(pretrained, finetuned, check=False, lazy=True)
    delta = spec.fn(pretrained, vectors, stats=stats, **hp)
    return apply(pretrained, delta)


def merged_delta(method: str, pretrained: StateDict, vectors: List[StateDict], stats=None, **hparams) -> StateDict:
    """Call a registered method on task vectors directly (for methods built on other methods)."""
    spec = get_method(method)
    return spec.fn(pretrained, vectors, stats=stats, **validate_hparams(spec, hparams))
