"""Seeds as replicates: every table of the book is a mean ± std over seeds, and a seed is a whole replicate.

Seed ``s`` runs on replicate ``s`` of the benchmark where the benchmark ships several (the tiny zoos: the eight
experts fine-tuned with another seed from the same θ0, ``data/tiny/<size>-r<s>``), else on its only one (real
checkpoints), and draws its exemplars with ``s``. So the spread over seeds of a data-free method is the spread
over fine-tuning seeds, and a data-dependent method's adds the exemplar draw. On a benchmark with one replicate a
data-free method gives one number for every seed: its spread is unknown (``None``), never 0.

    runs = Seeds([S0, S1, S2])                         # one Session per seed (seed s = position s)
    r = runs.tune("cat")                               # chosen on seed 0's validation split, run on every seed
    r.per_seed, r.mean, r.std, r.averages              # {seed: {task: acc}}, {task: mean}, {task: std}, {seed: avg}
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence

from ..benchmarks.evaluate import average
from ..merge.registry import get_method
from .session import Session, TuneResult


def mean_std(values: Sequence[float]) -> tuple:
    """(mean, sample standard deviation) of ``values``; the std is ``None`` for fewer than two values."""
    v = [float(x) for x in values]
    m = sum(v) / len(v)
    return m, (math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else None)


@dataclass
class SeedResult:
    """One configuration run on every seed. ``tune``: the validation choice (on the first seed; ``None`` for a
    plain run); ``per_seed``: ``{seed: {task: accuracy %}}``; ``replicated``: whether the seeds are independent
    runs (other zoos, or other exemplar draws for a data-dependent method); when not, ``std`` and ``avg_std`` are
    ``None`` (one measurement repeated is no spread)."""

    method: str
    hparams: Dict[str, Any]
    per_seed: Dict[int, Dict[str, float]]
    replicated: bool
    tune: Optional[TuneResult] = None

    @property
    def tasks(self) -> List[str]:
        return list(next(iter(self.per_seed.values())))

    @property
    def averages(self) -> Dict[int, float]:
        return {s: average(r) for s, r in self.per_seed.items()}

    @property
    def mean(self) -> Dict[str, float]:
        return {t: mean_std([r[t] for r in self.per_seed.values()])[0] for t in self.tasks}

    @property
    def std(self) -> Optional[Dict[str, float]]:
        if not self.replicated:
            return None
        return {t: mean_std([r[t] for r in self.per_seed.values()])[1] for t in self.tasks}

    @property
    def avg_mean(self) -> float:
        return mean_std(list(self.averages.values()))[0]

    @property
    def avg_std(self) -> Optional[float]:
        return mean_std(list(self.averages.values()))[1] if self.replicated else None

    def __getitem__(self, key):  # the dict of Session.tune_over_seeds, for notebooks written against it
        if key == "data_dependent":
            return bool(get_method(self.method).needs_for(self.hparams))
        if key == "std_avg":
            return self.avg_std
        return {"tune": self.tune, "per_seed": self.per_seed, "mean": self.mean}[key]


class Seeds:
    """One :class:`Session` per seed (``sessions[i]`` runs seed ``seeds[i]``); sessions on the same benchmark
    replicate may be the same object (their statistics are kept per exemplar seed)."""

    def __init__(self, sessions: Sequence[Session], seeds: Optional[Sequence[int]] = None):
        if not sessions:
            raise ValueError("Seeds needs at least one session (one per seed)")
        self.seeds = list(seeds) if seeds is not None else list(range(len(sessions)))
        if len(self.seeds) != len(sessions):
            raise ValueError(f"{len(self.seeds)} seeds for {len(sessions)} sessions: give one session per seed")
        self.sessions = dict(zip(self.seeds, sessions))

    @classmethod
    def of(cls, sessions: Sequence[Session], seeds: Optional[Sequence[int]] = None) -> "Seeds":
        """Deprecated spelling of ``Seeds(sessions, seeds)``."""
        return cls(sessions, seeds)

    @property
    def first(self) -> Session:
        return self.sessions[self.seeds[0]]

    @property
    def bench(self):
        """The first seed's benchmark (names, tasks, heads: the same for every replicate)."""
        return self.first.bench

    @property
    def zoos(self) -> int:
        """How many distinct benchmark replicates the seeds run on."""
        return len({S.fingerprint for S in self.sessions.values()})

    def replicated(self, method: str, hparams: Optional[Mapping[str, Any]] = None) -> bool:
        """Whether ``method`` with ``hparams`` gives independent numbers per seed: other zoos, or other exemplar
        draws for a data-dependent method (and at least two seeds)."""
        if len(self.seeds) < 2:
            return False
        hp = get_method(method).validate(dict(hparams or {}))
        return self.zoos > 1 or bool(get_method(method).needs_for(hp))

    def run(self, method: str, hparams: Optional[Mapping[str, Any]] = None, **kw) -> SeedResult:
        """``Session.run`` on every seed (keywords as there, ``seed`` excepted)."""
        per = {s: S.run(method, hparams, seed=s, **kw) for s, S in self.sessions.items()}
        return SeedResult(method, dict(hparams or {}), per, self.replicated(method, hparams))

    def tune(self, method: str, grid: Optional[Mapping[str, Sequence[Any]]] = None, **kw) -> SeedResult:
        """Choose on the first seed (``Session.tune``), then run the chosen configuration on every seed. The same
        rule for every method: the choice is one configuration, its spread is over replicates."""
        first = self.seeds[0]
        tr = self.sessions[first].tune(method, grid, seed=first, **kw)
        chosen = {**dict(kw.get("fixed") or {}), **tr.best}
        run_kw = {k: kw[k] for k in ("tasks", "eval_tasks", "n_exemplars") if k in kw}
        per = {first: tr.test}
        for s in self.seeds[1:]:
            per[s] = self.sessions[s].run(method, chosen, split=kw.get("report_split", "test"), seed=s, **run_kw)
        return SeedResult(method, chosen, per, self.replicated(method, chosen), tr)

    def references(self, split: str = "test", tasks: Optional[Sequence[str]] = None) -> Dict[str, SeedResult]:
        """The reference rows (θ0, Individual, MTL) on every seed's replicate."""
        per = {s: S.references(split, tasks) for s, S in self.sessions.items()}
        out = {}
        for name in next(iter(per.values())):
            rows = {s: per[s][name] for s in self.seeds}
            varies = any(r != rows[self.seeds[0]] for r in rows.values())  # θ0 (and MTL) are shared by replicates
            out[name] = SeedResult(name, {}, rows, varies)
        return out

    def __repr__(self) -> str:
        return f"Seeds({self.bench.name}, seeds={self.seeds}, zoos={self.zoos})"
