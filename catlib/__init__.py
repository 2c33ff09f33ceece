"""catlib: model merging on PyTorch state dicts — task vectors, the merging methods of the CAT Merging paper's
tables (weight averaging, Fisher, RegMean, task arithmetic, TIES, TATR, Consensus, PCB, CAT) and AWD, with the
statistics they need and the knowledge-conflict diagnostics.

Public face::

    import catlib
    catlib.methods()                                   # names, hyperparameters, defaults
    merged = catlib.merge("ties", theta0, [theta1, theta2], alpha=0.3)
    merged = catlib.merge("cat", theta0, thetas, module=encoder, exemplars=[x1, x2], alpha=0.3, c=2, lam=1.0)
    bench = catlib.load_benchmark("tiny"); catlib.evaluate(bench, merged)

Layers (imports point one way): ``core`` (state dicts, linear algebra, statistics, errors) ← ``merge`` (the
registry and one module per method) ← ``protocol`` (runs, the result cache, grids, validation tuning) ← ``report``
(tables, plots, claims for the book); ``analysis`` (conflicts, Theorem 4.4, interference, premise diagnostics) and
``benchmarks`` (the tiny zoos, clip, glue-tiny and roberta-glue for text, vl-tiny and blip for vision-language) sit
beside ``protocol``.
"""

import sys as _sys

from . import _compat
from .benchmarks import Benchmark, benchmark_names, load_benchmark
from .benchmarks import evaluate as _evaluate_module
from .benchmarks import metrics
from .benchmarks.evaluate import average, evaluate
from .core.errors import (
    CatlibError,
    HyperparameterError,
    IncompatibleStateDictError,
    MissingStatisticsError,
    NonFiniteError,
    UnknownMethodError,
)
from .core.statedict import TaskVector, check_compatible, cosine_matrix, task_vector, task_vectors
from .core.stats import Statistics, collect_statistics
from .merge import AWDResult, disentangle, get_method, merge, methods

_compat.install()
# ``catlib.evaluate`` is the function; the module it came from keeps its old path for ``from catlib.evaluate import``
_sys.modules.setdefault(__name__ + ".evaluate", _evaluate_module)
# ``catlib.metrics``: the task metrics (GLUE, CIDEr-D, VQA accuracy) of catlib.benchmarks.metrics, importable by both
_sys.modules.setdefault(__name__ + ".metrics", metrics)

__version__ = "0.1.0"

__all__ = [
    "merge",
    "methods",
    "get_method",
    "TaskVector",
    "task_vector",
    "task_vectors",
    "check_compatible",
    "cosine_matrix",
    "collect_statistics",
    "Statistics",
    "disentangle",
    "AWDResult",
    "load_benchmark",
    "benchmark_names",
    "Benchmark",
    "evaluate",
    "average",
    "metrics",
    "CatlibError",
    "HyperparameterError",
    "IncompatibleStateDictError",
    "MissingStatisticsError",
    "NonFiniteError",
    "UnknownMethodError",
]
