"""Notebook set-up and loading: :func:`setup` (threads, quiet progress bars, deterministic seed, plot and table
style) and :func:`load` (a benchmark from a notebook's parameters), :func:`seeds` (one Session per seed)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch

from ..benchmarks import NEEDS_ROOTS, load_benchmark
from ..benchmarks.base import Benchmark
from ..protocol.cache import REPO


PAPER_DIR = REPO / "data" / "paper"


def setup(threads: Optional[int] = None, progress: bool = False, seed: int = 0) -> None:
    """Notebook defaults: ``threads`` torch threads (default: ``$CATLIB_THREADS``, else 1; one thread per process is
    fastest on a shared machine), progress bars off (they would
    change the stored outputs), deterministic torch seed, readable plots at book width, compact pandas tables."""
    threads = threads or int(os.environ.get("CATLIB_THREADS") or 1)
    torch.set_num_threads(int(threads))
    if not progress:
        os.environ["CATLIB_PROGRESS"] = "0"
    torch.manual_seed(seed)
    try:
        import matplotlib as mpl

        mpl.rcParams.update(
            {
                "figure.dpi": 100,
                "savefig.dpi": 100,
                "figure.figsize": (7.0, 3.6),
                "axes.grid": True,
                "grid.alpha": 0.3,
                "font.size": 10,
                "axes.titlesize": 10,
                "legend.fontsize": 8,
                "legend.frameon": False,
            }
        )
    except ImportError:  # pragma: no cover
        pass
    try:
        import pandas as pd

        pd.set_option("display.precision", 4)  # values are rounded where they are computed
        pd.set_option("display.max_columns", 30)
        pd.set_option("display.width", 160)
    except ImportError:  # pragma: no cover
        pass


def load(
    benchmark: str = "tiny",
    tasks: Optional[Sequence[str]] = None,
    device: str = "auto",
    checkpoint_root: Optional[str] = None,
    data_root: Optional[str] = None,
    batch_size: Optional[int] = None,
    options: Optional[Mapping[str, Any]] = None,
    **kwargs,
) -> Benchmark:
    """A benchmark from a notebook's parameters. For the tiny benchmarks ``checkpoint_root`` (optional) is the zoo
    folder (the one holding ``manifest.json``; default ``data/tiny/<size>``) and ``data_root`` is unused; the real
    ones ("vit-b-32", "vit-b-16", "vit-l-14", and "openclip" with ``options={"model_name": ...}``) need both (see
    book/reproduce_gpu.md). ``batch_size``: evaluation batch size (None: the benchmark's default). ``options``
    (the notebooks' ``benchmark_options``) and ``kwargs`` go to the benchmark's loader (``layout``,
    ``trust_pickle``, ``openclip_weights``, ``cache_dir``, ``amp``, ...)."""
    tasks = list(tasks) if tasks else None
    kwargs = {**dict(options or {}), **kwargs}
    if benchmark.startswith("tiny"):
        if checkpoint_root is not None:
            kwargs["root"] = Path(checkpoint_root)
        bench = load_benchmark(benchmark, tasks=tasks, device=device, **kwargs)
        if batch_size:
            bench.batch_size = int(batch_size)
        return bench
    if benchmark not in NEEDS_ROOTS:  # generated at load time (the controls)
        bench = load_benchmark(benchmark, tasks=tasks, device=device, **kwargs)
        if batch_size:
            bench.batch_size = int(batch_size)
        return bench
    if checkpoint_root is None or data_root is None:
        raise ValueError(
            f"benchmark {benchmark!r} needs checkpoint_root= and data_root= (papermill: "
            f"-p checkpoint_root /path/to/ckpt -p data_root /path/to/data); see book/reproduce_gpu.md"
        )
    if batch_size:
        kwargs["batch_size"] = int(batch_size)
    return load_benchmark(
        benchmark, checkpoint_root=checkpoint_root, data_root=data_root, tasks=tasks, device=device, **kwargs
    )


def seeds(
    seeds: Optional[Sequence[int]] = None,
    benchmark: str = "tiny",
    tasks: Optional[Sequence[str]] = None,
    device: str = "auto",
    checkpoint_root: Optional[str] = None,
    data_root: Optional[str] = None,
    batch_size: Optional[int] = None,
    options: Optional[Mapping[str, Any]] = None,
):
    """One :class:`~catlib.protocol.Session` per seed, as :class:`~catlib.protocol.seeds.Seeds` (arguments as in
    :func:`load`). Seed s runs on the benchmark's replicate s where it ships several (the tiny zoos: experts
    fine-tuned with seed s's fine-tuning seed, ``data/tiny/<size>-r<s>``), else on its only one, and draws its
    exemplars with s."""
    from ..benchmarks.tiny import replicate_roots
    from ..protocol import Session
    from ..protocol.seeds import Seeds

    seeds = [0] if seeds is None or len(seeds) == 0 else [int(s) for s in seeds]
    if len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"seeds must be distinct non-negative integers, got {seeds}")
    n = 1
    if benchmark.startswith("tiny"):
        size = "large" if benchmark == "tiny-large" else "default"
        n = len(replicate_roots(size, Path(checkpoint_root) if checkpoint_root else None))
        if n > 1 and max(seeds) >= n:
            raise ValueError(
                f"{benchmark} ships {n} replicates (seeds 0-{n - 1}); seed {max(seeds)} needs another zoo, built "
                f"with python -m catlib.benchmarks.tiny.zoo build --size {size} --set finetune.seed=<seed> "
                f"--out data/tiny/{size}-r{max(seeds)}"
            )
    by_replicate: dict = {}
    for s in seeds:
        r = s if n > 1 else 0
        if r not in by_replicate:
            extra = {"replicate": r} if r else {}
            by_replicate[r] = Session(
                load(benchmark, tasks, device, checkpoint_root, data_root, batch_size, {**dict(options or {}), **extra})
            )
    return Seeds([by_replicate[s if n > 1 else 0] for s in seeds], seeds)


def session(bench: Benchmark, cache: Any = None):
    """The :class:`~catlib.protocol.Session` a notebook runs in (``cache``: a ResultCache, default the book's)."""
    from ..protocol import Session, as_session

    return as_session(bench, cache) if cache is not None else Session(bench)
