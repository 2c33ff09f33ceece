"""The registry of merge methods: one signature for all, every hyperparameter declared once.

A method is a pure function ``fn(pretrained, vectors, *, stats, **hparams) -> delta``: ``vectors`` are the task
vectors τ_k (fp32, floating keys of θ0, sorted), ``stats`` the :class:`catlib.core.stats.Statistics` it declared
it ``needs`` (or ``None``), and ``delta`` the merged update over (a subset of) those keys; :func:`merge` returns
``θ0 + delta``. Its keyword-only arguments are its hyperparameters, each declared once, in the signature::

    @register("ties", display="Ties-Merging")
    def ties(pretrained, vectors, *, stats=None,
             alpha: Annotated[float, Knob("merge coefficient", range=(0, None), grid=BOOK_ALPHAS)] = 0.3, ...):

:class:`Knob` holds the one line of doc, the allowed range or choices, and the validation grids (``grid``: the
book's; ``full_grid``: the larger one). Everything else derives from the declaration: validation
(:meth:`MethodSpec.validate`), :func:`methods`, the CLI flags, the book's tables of defaults and the tuning grids
(:meth:`MethodSpec.grid`). A keyword-only argument annotated with a dataclass contributes that dataclass's fields
as hyperparameters and receives an instance of it (CAT's trimming options).

A method may declare a ``prepare`` stage: a pure function of the task vectors, with hyperparameters of its own,
whose result (an object with ``.vectors``) the method then merges (AWD: the disentangled vectors, then task
arithmetic or TIES). A caller that merges the same models with many other hyperparameters passes a :class:`Memo`
and the stage runs once per value of its own hyperparameters.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import typing
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import torch

from ..core.errors import HyperparameterError, MissingStatisticsError, UnknownMethodError
from ..core.statedict import StateDict, apply, check_compatible, task_vectors, tied_keys

STAT_NEEDING_HEADS = ("fisher", "grad_abs")  # statistics that need a loss, hence labelled exemplars and heads

# Validation grids shared by many methods (the book's): six α values 0.1 apart where task arithmetic, TIES and CAT
# peak, and one point beyond (0.7); methods that rescale the merged vector (PCB, TSV-M, Iso) get six on their scale.
BOOK_ALPHAS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.7)
BOOK_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
ALPHAS = tuple(round(0.05 * i, 2) for i in range(1, 21))  # 0.05 .. 1.0: task arithmetic's full grid


@dataclass(frozen=True)
class Knob:
    """What a hyperparameter's annotation says besides its type: one line of doc, the allowed ``range`` (inclusive
    bounds, None = open) or ``choices``, and the validation grids: ``grid`` (the book's; empty = not tuned) and
    ``full_grid`` (``full_grids=True``; empty = ``grid``)."""

    doc: str = ""
    range: Optional[Tuple[Optional[float], Optional[float]]] = None
    choices: Optional[Tuple] = None
    grid: Tuple = ()
    full_grid: Tuple = ()


@dataclass
class Hyperparameter:
    name: str
    default: Any
    type: Any
    doc: str = ""
    choices: Optional[Tuple] = None
    range: Optional[Tuple[Optional[float], Optional[float]]] = None  # inclusive bounds
    grid: Tuple = ()
    full_grid: Tuple = ()

    def validate(self, method: str, value: Any) -> Any:
        """``value`` if it is allowed, else a :class:`HyperparameterError` naming the parameter and the range."""
        if self.choices is not None:
            if value not in self.choices:
                raise HyperparameterError(f"{method}: {self.name}={value!r} is not one of {list(self.choices)}")
            return value
        if self.type is bool:
            if not isinstance(value, bool):
                raise HyperparameterError(f"{method}: {self.name} must be True or False, got {value!r}")
            return value
        if self.type in (int, float) or self.range is not None:
            if value is None and self.default is None:
                return value
            lo, hi = self.range or (None, None)
            allowed = f"{'an integer' if self.type is int else 'a finite number'} in [{lo}, {hi}]"
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise HyperparameterError(f"{method}: {self.name} must be {allowed}, got {value!r}")
            if self.type is int and not isinstance(value, int):
                raise HyperparameterError(
                    f"{method}: {self.name} must be {allowed}, got the float {value!r} "
                    f"(write {int(value)!r} if that is meant)"
                    if float(value).is_integer()
                    else f"{method}: {self.name} must be {allowed}, got {value!r}"
                )
            if not math.isfinite(value):
                raise HyperparameterError(f"{method}: {self.name} must be {allowed}, got {value!r}")
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                raise HyperparameterError(f"{method}: {self.name}={value!r} is outside [{lo}, {hi}]")
        return value


@dataclass
class MethodSpec:
    """A registered method. ``needs``: the statistics it uses (names of :data:`catlib.core.stats.STAT_KINDS`);
    ``data_free_when``: a boolean hyperparameter that, when True, makes it need none (TATR's ``zero_shot``);
    ``scaled_features``: ``(switch, value, scale)``, statistics from θ0 + hp[scale]·τ_k when hp[switch] == value
    (CAT's ``features="scaled"``); ``exemplars``: for a method that needs statistics, the training examples per task
    its own paper (or reference implementation) collects them from: the count a run uses unless told otherwise."""

    name: str
    fn: Callable
    hyperparameters: Dict[str, Hyperparameter]
    needs: Tuple[str, ...] = ()
    doc: str = ""
    data_free_when: Optional[str] = None
    scaled_features: Optional[Tuple[str, str, str]] = None
    groups: Dict[str, type] = dataclasses.field(default_factory=dict)  # argument -> dataclass of its fields
    prepare: Optional[Callable] = None
    prepare_args: Tuple[str, ...] = ()
    display: str = ""  # the name tables print ("Ties-Merging")
    exemplars: Optional[int] = None  # examples per task of its own paper, for methods with ``needs``

    def defaults(self) -> Dict[str, Any]:
        return {k: h.default for k, h in self.hyperparameters.items()}

    def validate(self, hparams: Mapping[str, Any]) -> Dict[str, Any]:
        """Every hyperparameter, defaults filled in, each checked against its declaration."""
        unknown = sorted(set(hparams) - set(self.hyperparameters))
        if unknown:
            raise HyperparameterError(
                f"{self.name}: unknown hyperparameter {unknown[0]!r}; known: {sorted(self.hyperparameters)}"
            )
        out = self.defaults()
        for k, v in hparams.items():
            out[k] = self.hyperparameters[k].validate(self.name, v)
        return out

    def needs_for(self, hparams: Optional[Mapping[str, Any]] = None) -> Tuple[str, ...]:
        """Statistics this method needs with these hyperparameters (defaults when ``None``)."""
        hp = {**self.defaults(), **dict(hparams or {})}
        return () if self.data_free_when and hp.get(self.data_free_when) else self.needs

    @property
    def labelled(self) -> bool:
        """Whether its statistics need labelled exemplars and one head per task (a loss: Fisher, TATR)."""
        return bool(set(self.needs) & set(STAT_NEEDING_HEADS))

    def expert_scale(self, hparams: Optional[Mapping[str, Any]] = None) -> float:
        """s in θ0 + s·τ_k, the experts the statistics are collected from (1 unless ``scaled_features`` says)."""
        if self.scaled_features is None:
            return 1.0
        hp = {**self.defaults(), **dict(hparams or {})}
        switch, value, scale = self.scaled_features
        return float(hp[scale]) if hp[switch] == value else 1.0

    def grid(self, full: bool = False) -> Dict[str, list]:
        """The validation grid ``{knob: values}`` in signature order: each knob's ``grid`` (the book's), or with
        ``full`` its ``full_grid`` (falling back to ``grid``). ``{}``: nothing to tune."""
        return {
            n: list((h.full_grid or h.grid) if full else h.grid)
            for n, h in self.hyperparameters.items()
            if ((h.full_grid or h.grid) if full else h.grid)
        }

    def prepared(self, vectors, hp: Mapping[str, Any], memo: Optional["Memo"] = None):
        """The ``prepare`` stage's result for validated ``hp`` (from ``memo`` when it holds it)."""
        args = {k: hp[k] for k in self.prepare_args}
        run = lambda: self.prepare(vectors, **args)  # noqa: E731
        return run() if memo is None else memo.get_or((self.prepare.__qualname__, tuple(sorted(args.items()))), run)

    def call(self, pretrained: StateDict, vectors, stats, hp: Mapping[str, Any], memo: Optional["Memo"] = None):
        """``fn`` on validated hyperparameters: dataclass-annotated arguments built from their fields, and the
        vectors passed through the ``prepare`` stage when there is one."""
        grouped = {f for c in self.groups.values() for f in _fields(c)} | set(self.prepare_args)
        kwargs = {k: v for k, v in hp.items() if k not in grouped}
        for arg, cls in self.groups.items():
            kwargs[arg] = cls(**{f: hp[f] for f in _fields(cls)})
        if self.prepare is not None:
            vectors = self.prepared(vectors, hp, memo).vectors
        return self.fn(pretrained, vectors, stats=stats, **kwargs)


class Memo:
    """Results of ``prepare`` stages (AWD's disentanglement), reused across the other hyperparameters. Valid for one
    θ0 and one list of fine-tuned models: the caller owns it and keeps one per input (:mod:`catlib.protocol`
    keeps one per task list). Holds the last ``size`` results."""

    def __init__(self, size: int = 1):
        self.size = size
        self._items: "OrderedDict[Any, Any]" = OrderedDict()

    def get_or(self, key, compute: Callable[[], Any]):
        if key not in self._items:
            self._items[key] = compute()
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return self._items[key]


def _fields(cls: type) -> Tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _declared(owner: str, name: str, annotation: Any, default: Any) -> Hyperparameter:
    """A :class:`Hyperparameter` from ``name: Annotated[type, Knob(...)] = default``."""
    knob = Knob()
    if typing.get_origin(annotation) is typing.Annotated:
        annotation, *extras = typing.get_args(annotation)
        knob = next((e for e in extras if isinstance(e, Knob)), knob)
    if typing.get_origin(annotation) is typing.Union:  # Optional[int] -> int
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if annotation is inspect.Parameter.empty:
        annotation = type(default)
    if default is inspect.Parameter.empty or default is dataclasses.MISSING:
        raise TypeError(f"{owner}: hyperparameter {name} needs a default")
    return Hyperparameter(
        name, default, annotation, knob.doc, knob.choices, knob.range, tuple(knob.grid), tuple(knob.full_grid)
    )


class Registry:
    """Method name → :class:`MethodSpec`. One instance, :data:`REGISTRY`, filled when ``catlib.merge`` is imported."""

    def __init__(self):
        self._specs: Dict[str, MethodSpec] = {}

    def register(
        self,
        name: str,
        *,
        needs: Sequence[str] = (),
        data_free_when: Optional[str] = None,
        scaled_features: Optional[Tuple[str, str, str]] = None,
        prepare: Optional[Callable] = None,
        display: Optional[str] = None,
        doc: Optional[str] = None,
        exemplars: Optional[int] = None,
    ) -> Callable:
        """Decorator: register ``fn`` under ``name``; its keyword-only arguments (except ``stats``) are its
        hyperparameters (see the module docstring)."""

        def deco(fn: Callable) -> Callable:
            if name in self._specs:
                raise ValueError(f"merge method {name!r} registered twice")
            if bool(needs) != (exemplars is not None) or (exemplars is not None and exemplars < 1):
                raise TypeError(
                    f"{name}: a method that needs statistics declares exemplars=N (the examples per task its "
                    "paper uses), and only such a method does"
                )
            hps: Dict[str, Hyperparameter] = {}
            groups: Dict[str, type] = {}
            for f in [fn] + ([prepare] if prepare else []):
                hints = typing.get_type_hints(f, include_extras=True)
                for p in inspect.signature(f).parameters.values():
                    if p.kind is not inspect.Parameter.KEYWORD_ONLY or p.name == "stats":
                        continue
                    ann = hints.get(p.name, inspect.Parameter.empty)
                    if dataclasses.is_dataclass(ann):
                        groups[p.name] = ann
                        sub = typing.get_type_hints(ann, include_extras=True)
                        for fld in dataclasses.fields(ann):
                            hps[fld.name] = _declared(name, fld.name, sub[fld.name], fld.default)
                    else:
                        hps[p.name] = _declared(name, p.name, ann, p.default)
            prepare_args = (
                tuple(
                    p.name
                    for p in inspect.signature(prepare).parameters.values()
                    if p.kind is inspect.Parameter.KEYWORD_ONLY
                )
                if prepare
                else ()
            )
            for switch in [data_free_when] + list(scaled_features or [])[::2]:
                if switch is not None and switch not in hps:
                    raise TypeError(f"{name}: {switch!r} is not one of its hyperparameters")
            self._specs[name] = MethodSpec(
                name,
                fn,
                hps,
                tuple(needs),
                inspect.cleandoc(doc or fn.__doc__ or ""),
                data_free_when,
                scaled_features,
                groups,
                prepare,
                prepare_args,
                display or name,
                exemplars,
            )
            return fn

        return deco

    def get(self, name: str) -> MethodSpec:
        if not isinstance(name, str) or name not in self._specs:
            raise UnknownMethodError(f"unknown merge method {name!r}; available: {sorted(self._specs)}")
        return self._specs[name]

    def names(self):
        return sorted(self._specs)

    def specs(self):
        return [self._specs[n] for n in self.names()]


REGISTRY = Registry()
register = REGISTRY.register
get_method = REGISTRY.get


def methods() -> Dict[str, Dict[str, Any]]:
    """Every registered method → ``{"hyperparameters": {name: default}, "needs": [...], "doc": first line}``."""
    return {
        s.name: {
            "hyperparameters": s.defaults(),
            "needs": list(s.needs_for()),
            "doc": s.doc.splitlines()[0] if s.doc else "",
        }
        for s in REGISTRY.specs()
    }


def validate_hparams(spec: MethodSpec, hparams: Mapping[str, Any]) -> Dict[str, Any]:
    """Deprecated spelling of :meth:`MethodSpec.validate`."""
    return spec.validate(hparams)


def _detached(sd: Mapping[str, torch.Tensor], drop: Optional[Mapping[str, str]] = None) -> StateDict:
    """The same tensors without autograd history (views, no copy), less the keys in ``drop``: a merge never
    builds a graph on its inputs."""
    return {k: v.detach() for k, v in sd.items() if k not in (drop or {})}


def merge(
    method: str,
    pretrained: StateDict,
    finetuned: Sequence[StateDict],
    *,
    stats=None,
    module: Optional[torch.nn.Module] = None,
    exemplars: Optional[Sequence] = None,
    heads: Optional[Sequence[torch.nn.Module]] = None,
    stats_options: Optional[Mapping[str, Any]] = None,
    memo: Optional[Memo] = None,
    **hparams,
) -> StateDict:
    """Merge ``finetuned`` models into one, starting from ``pretrained``; returns a new state dict.

    method: a name from :func:`methods`. pretrained: θ0. finetuned: θ_1..θ_K (same keys, shapes, floating dtypes).
    Data-dependent methods take ``stats`` (from :func:`catlib.collect_statistics`), or ``module`` (the
    architecture) plus ``exemplars`` (one batch per task; (inputs, labels) pairs for Fisher/TATR) and, for
    Fisher/TATR, ``heads`` (one per task); ``stats_options`` go to ``collect_statistics`` (e.g. ``batch_size``).
    ``memo``: a :class:`Memo` the caller keeps for these same models, to reuse a method's ``prepare`` stage.
    Tied weights (keys of ``pretrained`` that share one tensor's memory, e.g. a masked-LM decoder tied to the word
    embeddings) are merged once, as one parameter, and the result ties them again. Inputs are never modified.
    """
    spec = get_method(method)
    hp = spec.validate(hparams)
    if not isinstance(finetuned, (list, tuple)) or len(finetuned) == 0:
        raise ValueError("finetuned must be a non-empty list of state dicts")
    check_compatible(pretrained, finetuned)
    keys = list(pretrained)
    pretrained, finetuned = _detached(pretrained), [_detached(f) for f in finetuned]
    needs = spec.needs_for(hp)
    scale = spec.expert_scale(hp)
    if needs:
        if stats is None:
            if module is None or exemplars is None:
                raise MissingStatisticsError(
                    f"{method} is data-dependent (needs {list(needs)}): pass stats=..., or module=... and "
                    "exemplars=[one batch per task]" + (" and heads=[...]" if spec.labelled else "")
                )
            from ..core.stats import collect_statistics

            opts = {"expert_scale": scale, **dict(stats_options or {})}
            stats = collect_statistics(module, pretrained, finetuned, exemplars, needs=needs, heads=heads, **opts)
        missing = [k for k in needs if not stats.has(k)]
        if missing:
            raise MissingStatisticsError(f"{method}: statistics lack {missing}")
        if spec.scaled_features and abs(stats.expert_scale - scale) > 1e-12:
            raise MissingStatisticsError(
                f"{method}: these hyperparameters need statistics collected with expert_scale={scale}, but the "
                f"given ones used expert_scale={stats.expert_scale}"
            )
        stats.check_sources(pretrained, finetuned, method)
    tied = tied_keys(pretrained)  # one parameter under several keys: merged once, the aliases get its result
    if tied:
        pretrained, finetuned = _detached(pretrained, tied), [_detached(f, tied) for f in finetuned]
    vectors = task_vectors(pretrained, finetuned, check=False, lazy=True)
    out = apply(pretrained, spec.call(pretrained, vectors, stats, hp, memo))
    return {k: out[tied.get(k, k)] for k in keys} if tied else out
