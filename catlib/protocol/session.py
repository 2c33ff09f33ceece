"""The paper's protocol on one benchmark, shared by the command line and every notebook.

A :class:`RunSpec` names one merge: the method, its full hyperparameters (defaults filled in), the merged tasks,
and, for data-dependent methods, the exemplar count and seed. A :class:`Session` holds a benchmark and everything
reused across runs: the disk cache of results (:class:`~catlib.protocol.cache.ResultCache`, keyed by content:
benchmark fingerprint, code fingerprint, the spec, the evaluated tasks and split), the statistics collected from
exemplars, the ``prepare`` stages of methods (AWD's disentanglement) and the last merged state dict. From a
notebook cell to ``catlib.merge``: ``Session.tune`` → :func:`~catlib.protocol.search.search` → ``Session.run`` →
``Session.merged`` → :func:`catlib.merge`.

    S = Session(catlib.load_benchmark("tiny"))
    S.run("ties", {"alpha": 0.4}, split="val")           # {task: accuracy %}, cached
    r = S.tune("cat", grid={"alpha": [0.2, 0.3]})         # chosen on val, reported on test
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from ..benchmarks.evaluate import average, evaluate
from ..core.checks import check_tasks
from ..core.statedict import task_vectors
from ..core.stats import Statistics, collect_statistics
from ..merge.registry import Memo, get_method, merge
from .cache import CACHE_VERSION, ResultCache, accuracy_check, bench_fingerprint, code_fingerprint, jsonable, sha
from .search import STRATEGY, WIDEN, accepts, grid as method_grid, search

REFERENCE = ("pretrained", "individual", "mtl")  # the rows that are not merges
_DEFAULT = object()


@dataclass(frozen=True)
class RunSpec:
    """One merge: ``method`` with ``hparams`` (all of them, validated) over ``tasks``; ``n_exemplars`` and ``seed``
    are ``None`` for methods that use no data (they cannot change the result). ``n_exemplars=None`` in :meth:`of`:
    the method's own count (``exemplars`` of its registration: RegMean and Fisher 256, TATR 128, CAT 3)."""

    method: str
    hparams: Tuple[Tuple[str, Any], ...]
    tasks: Tuple[str, ...]
    n_exemplars: Optional[int]
    seed: Optional[int]

    @classmethod
    def of(
        cls,
        method: str,
        hparams: Optional[Mapping[str, Any]],
        tasks: Sequence[str],
        n_exemplars: Optional[int] = None,
        seed: int = 0,
    ) -> "RunSpec":
        spec = get_method(method)
        hp = spec.validate(dict(hparams or {}))
        if not spec.needs_for(hp):
            return cls(method, tuple(hp.items()), tuple(tasks), None, None)
        n = spec.exemplars if n_exemplars is None else n_exemplars
        return cls(method, tuple(hp.items()), tuple(tasks), n, seed)

    @property
    def hp(self) -> Dict[str, Any]:
        return dict(self.hparams)

    @property
    def needs(self) -> Tuple[str, ...]:
        return get_method(self.method).needs_for(self.hp)

    def key(self) -> Dict[str, Any]:
        """The parts of a cache key this spec decides (JSON)."""
        return {
            "method": self.method,
            "hparams": jsonable(self.hp),
            "tasks": list(self.tasks),
            "n_exemplars": self.n_exemplars,
            "seed": self.seed,
        }


@dataclass
class TuneResult:
    method: str
    best: Dict[str, Any]  # chosen hyperparameters
    val_average: float  # validation average of the chosen configuration
    test: Dict[str, float]  # per-task test accuracy of the chosen configuration
    grid: List[Dict[str, Any]] = field(default_factory=list)  # every configuration with its val average
    seconds: float = 0.0
    widened: Dict[str, List[Any]] = field(default_factory=dict)  # values tried past a grid edge, per knob

    @property
    def test_average(self) -> float:
        return average(self.test)


class Session:
    """One benchmark under the protocol: hyperparameters chosen on ``val``, accuracy reported on ``test``,
    exemplars for data-dependent methods drawn from ``train``. ``cache``: a :class:`ResultCache` (default: the
    book's folder), or ``None`` to compute everything (the command line)."""

    def __init__(self, bench, cache: Any = _DEFAULT):
        self.bench = bench
        self.cache: Optional[ResultCache] = ResultCache() if cache is _DEFAULT else cache
        self.fingerprint = bench_fingerprint(bench)
        self.code = code_fingerprint(getattr(bench, "code_files", ()))
        self._stats: Dict[tuple, Statistics] = {}
        self._memos: Dict[Tuple[str, ...], Memo] = {}
        self._last: Tuple[Optional[str], Any] = (None, None)

    # --- keys and the disk cache ----------------------------------------------------------------------------------
    def key(self, what: str, **parts) -> Dict[str, Any]:
        """A cache key: cache version, benchmark and code fingerprints, ``what``, and ``parts``."""
        return {"v": CACHE_VERSION, "bench": self.fingerprint, "code": self.code, "what": what, **jsonable(parts)}

    def numbers_check(self, tasks: Sequence[str]) -> Callable[[Any], bool]:
        """The cache's check of stored per-task numbers: exactly ``tasks``, each finite and within the benchmark's
        ``metric_range`` (a correlation may be negative, CIDEr-D × 100 above 100)."""
        return accuracy_check(tasks, {t: self.bench.metric_range(t) for t in tasks})

    def cached(
        self,
        kind: str,
        key: Mapping[str, Any],
        compute: Callable[[], Any],
        check: Optional[Callable[[Any], bool]] = None,
    ):
        """``compute()`` through the disk cache (or directly without one)."""
        return jsonable(compute()) if self.cache is None else self.cache.cached(kind, key, compute, check)

    def tasks(self, tasks: Optional[Sequence[str]] = None) -> List[str]:
        """``tasks`` checked (a list of distinct names; an empty list is an error), or every task when None."""
        return list(self.bench.tasks) if tasks is None else check_tasks(tasks)

    def spec(
        self,
        method: str,
        hparams: Optional[Mapping[str, Any]] = None,
        tasks: Optional[Sequence[str]] = None,
        n_exemplars: Optional[int] = None,
        seed: int = 0,
    ) -> RunSpec:
        return RunSpec.of(method, hparams, self.tasks(tasks), n_exemplars, seed)

    # --- merging ------------------------------------------------------------------------------------------------
    def statistics(self, spec: RunSpec) -> Optional[Statistics]:
        """The statistics ``spec``'s method needs, from ``n_exemplars`` training examples per task (kept)."""
        needs = spec.needs
        if not needs:
            return None
        method = get_method(spec.method)
        scale = method.expert_scale(spec.hp)
        key = (spec.tasks, tuple(sorted(needs)), spec.n_exemplars, spec.seed, scale)
        if key not in self._stats:
            b = self.bench
            ex = b.exemplar_batches(spec.n_exemplars, seed=spec.seed, labelled=True, tasks=list(spec.tasks))
            if not method.labelled:
                ex = [e[0] for e in ex]
            self._stats[key] = collect_statistics(
                b.build_module(),
                b.pretrained,
                b.finetuned_list(spec.tasks),
                ex,
                needs=needs,
                heads=b.head_list(spec.tasks),
                seed=spec.seed,
                expert_scale=scale,
                losses=[b.loss(t) for t in spec.tasks],
            )
        return self._stats[key]

    def memo(self, tasks: Sequence[str]) -> Memo:
        """The :class:`~catlib.merge.registry.Memo` of ``prepare`` stages for these merged tasks."""
        return self._memos.setdefault(tuple(tasks), Memo())

    def merged(self, spec: RunSpec):
        """The merged state dict of ``spec`` (the last one is kept, so another split costs no merge)."""
        k = sha(spec.key())
        if self._last[0] != k:
            self._last = (None, None)  # free the previous one first
            b = self.bench
            sd = merge(
                spec.method,
                b.pretrained,
                b.finetuned_list(spec.tasks),
                stats=self.statistics(spec),
                memo=self.memo(spec.tasks),
                **spec.hp,
            )
            self._last = (k, sd)
        return self._last[1]

    def prepared(self, method: str, hparams: Optional[Mapping[str, Any]] = None, tasks: Optional[Sequence[str]] = None):
        """The result of ``method``'s ``prepare`` stage on these tasks (AWD: the :class:`AWDResult`), shared with
        the merges."""
        spec = get_method(method)
        tasks = self.tasks(tasks)
        vectors = task_vectors(self.bench.pretrained, self.bench.finetuned_list(tasks))
        return spec.prepared(vectors, spec.validate(dict(hparams or {})), self.memo(tasks))

    # --- evaluation -----------------------------------------------------------------------------------------------
    def run(
        self,
        method: str,
        hparams: Optional[Mapping[str, Any]] = None,
        tasks: Optional[Sequence[str]] = None,
        eval_tasks: Optional[Sequence[str]] = None,
        split: str = "test",
        n_exemplars: Optional[int] = None,
        seed: int = 0,
    ) -> Dict[str, float]:
        """Per-task accuracy (%) of ``method`` with ``hparams`` merged over ``tasks`` and evaluated on
        ``eval_tasks`` (default: ``tasks``) and ``split``."""
        spec = self.spec(method, hparams, tasks, n_exemplars, seed)
        eval_tasks = list(spec.tasks) if eval_tasks is None else check_tasks(eval_tasks, "eval_tasks")
        key = self.key("run", **spec.key(), eval_tasks=eval_tasks, split=split)
        return self.cached(
            "run",
            key,
            lambda: evaluate(self.bench, self.merged(spec), split, eval_tasks),
            check=self.numbers_check(eval_tasks),
        )

    def evaluated(
        self,
        label: str,
        state: Callable[[], Mapping[str, torch.Tensor]],
        key: Mapping[str, Any],
        tasks: Optional[Sequence[str]] = None,
        split: str = "test",
    ) -> Dict[str, float]:
        """Per-task accuracy of a state dict built by ``state()`` (called only on a cache miss); ``label`` and
        ``key`` (JSON) identify it, e.g. AWD's θ0 + τ̂_i."""
        tasks = self.tasks(tasks)
        full = self.key("state", label=label, key=dict(key), tasks=tasks, split=split)
        return self.cached(
            "state", full, lambda: evaluate(self.bench, state(), split, tasks), check=self.numbers_check(tasks)
        )

    def pretrained_row(self, split: str = "test", tasks: Optional[Sequence[str]] = None) -> Dict[str, float]:
        """Per-task accuracy of θ0."""
        return self.evaluated("pretrained", lambda: self.bench.pretrained, {}, tasks, split)

    def references(self, split: str = "test", tasks: Optional[Sequence[str]] = None) -> Dict[str, Dict[str, float]]:
        """Pretrained (θ0), Individual (each task's expert on its own task) and Traditional MTL (when the benchmark
        has one)."""
        b, tasks = self.bench, self.tasks(tasks)
        rows = {
            "pretrained": self.pretrained_row(split, tasks),
            "individual": {
                t: self.evaluated(f"individual/{t}", lambda t=t: b.finetuned[t], {}, [t], split)[t] for t in tasks
            },
        }
        if b.mtl is not None:
            rows["mtl"] = self.evaluated("mtl", lambda: b.mtl, {}, tasks, split)
        return rows

    # --- test-time methods ----------------------------------------------------------------------------------------
    def unlabelled(self, tasks: Sequence[str], split: str = "test") -> List[torch.Tensor]:
        """Every input of ``split`` for each task, without labels (what a test-time method adapts on)."""
        b = self.bench
        return [torch.cat([x for x, _ in b.loader(t, split, getattr(b, "batch_size", None) or 256)]) for t in tasks]

    def test_time(
        self,
        method: str,
        hparams: Optional[Mapping[str, Any]] = None,
        tasks: Optional[Sequence[str]] = None,
        split: str = "test",
        seed: int = 0,
    ) -> Dict[str, Any]:
        """A test-time method (:mod:`catlib.testtime`) adapted on ``split``'s unlabelled inputs of ``tasks`` and
        evaluated on the same split (the transductive protocol of AdaMerging and Surgery), cached. Returns
        ``{"accuracy": {task: %}, "seconds": adaptation time on the machine that computed it, "coefficients":
        the learned λ (K,) or (K, parameter tensors)}``."""
        from ..testtime import TEST_TIME, TestTimeInputs

        spec = TEST_TIME.get(method)
        hp = spec.validate(dict(hparams or {}))
        tasks = self.tasks(tasks)
        key = self.key("testtime", method=method, hparams=jsonable(hp), tasks=tasks, split=split, seed=seed)

        def compute():
            b = self.bench
            inputs = TestTimeInputs(
                b.build_module(),
                b.pretrained,
                b.finetuned_list(tasks),
                b.head_list(tasks),
                self.unlabelled(tasks, split),
                seed,
            )
            r = spec.fn(inputs, **hp)
            acc = evaluate(self.bench, r.state_dict, split, tasks, heads=dict(zip(tasks, r.heads)))
            return {"accuracy": acc, "seconds": r.seconds, "coefficients": r.coefficients.tolist()}

        def check(v):
            return isinstance(v, dict) and self.numbers_check(tasks)(v.get("accuracy"))

        return self.cached("testtime", key, compute, check)

    # --- tuning ---------------------------------------------------------------------------------------------------
    def tune(
        self,
        method: str,
        grid: Optional[Mapping[str, Sequence[Any]]] = None,
        fixed: Optional[Mapping[str, Any]] = None,
        tasks: Optional[Sequence[str]] = None,
        eval_tasks: Optional[Sequence[str]] = None,
        n_exemplars: Optional[int] = None,
        seed: int = 0,
        select_split: str = "val",
        report_split: str = "test",
        widen: int = WIDEN,
        strategy: str = STRATEGY,
    ) -> TuneResult:
        """Choose ``method``'s hyperparameters on ``select_split`` (mean over the merged tasks; the first maximum
        in grid order wins; knobs one at a time with ``strategy="coordinate"``, every combination with
        ``"product"``; values past an edge choice are tried, :func:`~catlib.protocol.search.search`) and
        report the choice on ``report_split`` over ``eval_tasks`` (default: the merged tasks; Table 8 adds unseen
        ones). ``grid``: default the method's declared (book) grid."""
        tasks = self.tasks(tasks)
        grid = method_grid(method) if grid is None else grid
        t0 = time.perf_counter()

        def score(hp):
            return average(self.run(method, hp, tasks, tasks, select_split, n_exemplars, seed))

        hp, val, scored, widened = search(
            grid,
            score,
            fixed,
            widen,
            f"{method} grid",
            lambda p: accepts(method, p),
            strategy,
            start={**get_method(method).defaults(), **dict(fixed or {})},
        )
        test = self.run(method, hp, tasks, eval_tasks, report_split, n_exemplars, seed)
        return TuneResult(method, hp, val, test, scored, time.perf_counter() - t0, widened)

    def tune_over_seeds(self, method: str, seeds: Sequence[int], **kw):
        """Tune with the first seed; re-run the chosen configuration with every seed (other exemplars, this one
        benchmark): :meth:`catlib.protocol.Seeds.tune` with this session for every seed. The result also reads as
        the dict ``{"tune", "per_seed", "mean", "std_avg", "data_dependent"}`` (``std_avg`` is None where the seeds
        are no replicates: a data-free method gives one number repeated)."""
        from .seeds import Seeds  # seeds.py builds on this module

        seeds = list(seeds) or [0]
        return Seeds([self] * len(seeds), seeds).tune(method, **kw)

    def __repr__(self) -> str:
        return f"Session({self.bench.name}, tasks={list(self.bench.tasks)}, cache={self.cache})"


def as_session(x, cache: Any = _DEFAULT) -> Session:
    """``x`` if it is a :class:`Session`, else a new one on the benchmark ``x``."""
    return x if isinstance(x, Session) else Session(x, cache=cache if cache is not None else _DEFAULT)
