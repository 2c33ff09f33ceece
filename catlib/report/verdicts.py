"""The book's one verdict rule: every claim is judged by :func:`verdict`, in three words only.

A claim is measured as an **effect** per seed, signed so that a positive value is the paper's direction (e.g. CAT's
average minus the best other method's, on each seed's replicate). Over n seeds the effect is their mean with
standard error SE = std / √n (:func:`effect`); two independent groups (the two zoo sizes) give the difference of
their means with SE = √(SE_a² + SE_b²) (:func:`effect_between`). Then

* **reproduced**: the mean effect is positive and larger than twice its SE;
* **not reproduced**: it is negative and larger in size than twice its SE;
* **inconclusive**: otherwise, and whenever the noise is not measured: fewer than two seeds, or seeds that are not
  independent runs (one zoo and a data-free method repeat the same number; SE is then unknown, not 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, List, Mapping, Optional, Sequence, Tuple

WORDS = ("reproduced", "not reproduced", "inconclusive")
MARGIN = 2.0  # the effect must exceed MARGIN standard errors


@dataclass(frozen=True)
class Effect:
    """A claim's effect: ``mean`` over ``n`` seeds with standard error ``se`` (``None``: noise not measured);
    ``values``: the per-seed effects (empty for :func:`effect_between`)."""

    mean: float
    se: Optional[float]
    n: int
    values: List[float] = field(default_factory=list)

    def text(self, unit: str = "") -> str:
        """``"+1.2 ± 0.4"`` (± one SE), or ``"+1.2 (SE unknown)"``."""
        u = f" {unit}" if unit else ""
        if self.se is None:
            return f"{self.mean:+.2f}{u} (SE unknown, n={self.n})"
        return f"{self.mean:+.2f} ± {self.se:.2f}{u} (n={self.n})"


def effect(values: Sequence[float], independent: bool = True) -> Effect:
    """The mean of per-seed effects and its standard error; ``independent=False`` (the seeds repeat one
    measurement) leaves the SE unknown."""
    v = [float(x) for x in values]
    if not v:
        return Effect(float("nan"), None, 0, [])
    m = sum(v) / len(v)
    if len(v) < 2 or not independent:
        return Effect(m, None, len(v), v)
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))
    return Effect(m, sd / math.sqrt(len(v)), len(v), v)


def effect_between(a: Sequence[float], b: Sequence[float], independent: bool = True) -> Effect:
    """mean(a) − mean(b) for two independent groups of per-seed values, SE = √(SE_a² + SE_b²)."""
    ea, eb = effect(a, independent), effect(b, independent)
    se = None if ea.se is None or eb.se is None else math.sqrt(ea.se**2 + eb.se**2)
    return Effect(ea.mean - eb.mean, se, min(ea.n, eb.n), [])


def against_best(
    per_seed: Mapping[str, Mapping[Any, float]], replicated: Callable[[str], bool], method: str = "cat"
) -> Tuple[str, Effect, bool]:
    """``method`` against the best other method of ``per_seed`` (``{method: {seed: average}}``, merging methods
    only): the runner-up (highest mean over its seeds), the per-seed effect ``method`` − runner-up over the seeds
    both have, and whether that is measured on independent replicates (``replicated`` true for both). The one
    definition of "the best other method" for the pages and the claims page."""
    runner = max((m for m in per_seed if m != method), key=lambda m: sum(per_seed[m].values()) / len(per_seed[m]))
    independent = bool(replicated(method)) and bool(replicated(runner))
    a, b = per_seed[method], per_seed[runner]
    return runner, effect([a[s] - b[s] for s in a if s in b], independent), independent


def verdict(e: Optional[Effect], margin: float = MARGIN) -> str:
    """ "reproduced", "not reproduced" or "inconclusive" for an effect signed in the paper's direction (module
    docstring); ``None`` (the claim was not measured) is "inconclusive"."""
    if e is None or e.se is None or e.n < 2 or not math.isfinite(e.mean) or e.se <= 0:
        return "inconclusive"
    if e.mean > margin * e.se:
        return "reproduced"
    if e.mean < -margin * e.se:
        return "not reproduced"
    return "inconclusive"


def rule_text(margin: float = MARGIN) -> str:
    """The rule in one paragraph, for the claims page."""
    return (
        "Each claim is measured as an effect on every seed, signed so that a positive effect is the paper's "
        "direction; a seed is a whole replicate (the zoo's experts fine-tuned with that seed from the same θ0, and "
        f"that seed's exemplar draw). **reproduced**: the mean effect exceeds {margin:g} standard errors "
        f"(SE = std/√n over the seeds); **not reproduced**: it is below −{margin:g} SE; **inconclusive**: "
        "otherwise, or when the noise is not measured (one seed, or seeds that repeat one measurement). "
        "No other words are used."
    )
