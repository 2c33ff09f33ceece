"""Notebook set-up and loading: :func:`setup` (threads, quiet progress bars, deterministic seed, plot and table
style) and :func:`load` (a benchmark from a notebook's parameters), :func:`seeds` (one Session per seed)."""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

import torch

from ..benchmarks import NEEDS_ROOTS, ZOOS, load_benchmark
from ..benchmarks.base import Benchmark
from ..protocol.cache import REPO


PAPER_DIR = REPO / "data" / "paper"


def _scalar(text: str) -> Any:
    """A list item papermill left as text: an int or float where it reads as one, else the text."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def as_list(value: Any, name: str, cast: Callable[[str], Any] = _scalar) -> Any:
    """A papermill string where a list is meant (``-p tasks scenes,vehicles`` or ``-p tasks "['scenes']"``) as the
    list it names (a Python list literal, or items split on commas, stripped and passed through ``cast``: by default
    numbers become numbers); anything else unchanged. Without this a string would be read
    letter by letter."""
    if not isinstance(value, str):
        return value
    if value.strip().startswith("["):  # -p tasks "['scenes', 'vehicles']"
        try:
            value = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            raise ValueError(f"{name}: cannot read {value!r} as a list") from None
        return list(value) if isinstance(value, (list, tuple)) else value
    try:
        return [cast(v.strip()) for v in value.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{name}: cannot read {value!r} as a comma-separated list") from None


_PARAMETER_TYPES = {"str": str, "int": int, "float": float, "bool": bool, "list": list, "dict": dict}


def declared_parameters(source: str) -> Dict[str, Optional[type]]:
    """Name → declared type (None when not annotated with a plain type) of the assignments in a parameters cell's
    ``source`` (``benchmark: str = "tiny"``, ``alpha = 0.3``)."""
    out: Dict[str, Optional[type]] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            ann = node.annotation.id if isinstance(node.annotation, ast.Name) else None
            out[node.target.id] = _PARAMETER_TYPES.get(ann)
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    out[t.id] = None
    return out


def check_parameters(namespace: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Check the parameters papermill injected into a running notebook against its parameters cell; return the
    injected ones (after conversion). Papermill itself only warns about a name the notebook does not declare, so a
    misspelt ``-p seed 3`` (for ``seeds``) would silently run the defaults: here it is a ValueError listing the
    notebook's parameters. A value of the wrong type is a ValueError naming the parameter and its type; a string
    given for a ``list`` parameter (``-p tasks scenes,vehicles``) is split on commas in the namespace (see
    :func:`as_list`) and a single number becomes a one-item list (``-p seeds 0``); an int for a float parameter is
    accepted. ``namespace``: the kernel's user namespace (default:
    IPython's); outside IPython, or when papermill injected nothing, it does nothing."""
    if namespace is None:
        try:
            namespace = get_ipython().user_ns  # type: ignore[name-defined]  # noqa: F821
        except NameError:
            return {}
    cells = [c for c in namespace.get("In", []) if isinstance(c, str)]
    at = next((i for i, c in enumerate(cells) if c.lstrip().startswith("# Parameters")), None)
    if at is None or at == 0:
        return {}
    declared = declared_parameters(cells[at - 1])
    injected = list(declared_parameters(cells[at]))
    unknown = [n for n in injected if n not in declared]
    if unknown:
        raise ValueError(
            f"unknown notebook parameter(s) {unknown}; this notebook's parameters are {sorted(declared)} "
            "(papermill -p NAME VALUE; see the parameters cell)"
        )
    out = {}
    for name in injected:
        want, value = declared[name], namespace.get(name)
        if want is list:
            value = as_list(value, name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):  # -p seeds 0: one item
                value = [value]
            namespace[name] = value
        if value is not None and want is not None:
            ok = isinstance(value, want) and not (want in (int, float) and isinstance(value, bool))
            ok = ok or (want is float and isinstance(value, int) and not isinstance(value, bool))
            if not ok:
                raise ValueError(
                    f"notebook parameter {name} must be a {want.__name__} (or None where its default is None), "
                    f"got {type(value).__name__} {value!r}"
                )
        out[name] = value
    return out


def setup(threads: Optional[int] = None, progress: bool = False, seed: int = 0) -> None:
    """Check the papermill parameters (:func:`check_parameters`), then set the notebook defaults: ``threads``
    torch threads (default: ``$CATLIB_THREADS``, else 1; one thread per process is fastest on a shared machine),
    progress bars off (they would change the stored outputs), deterministic torch seed, readable plots at book
    width, compact pandas tables."""
    check_parameters()
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
                "svg.hashsalt": "catlib",  # deterministic ids in saved SVG figures
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
    tasks = as_list(tasks, "tasks")  # load_benchmark checks the list and the batch size
    if options is not None and not isinstance(options, Mapping):
        raise ValueError(f"benchmark_options must be a dict of loader arguments, got {type(options).__name__}")
    kwargs = {**dict(options or {}), **kwargs}
    if batch_size is not None:
        kwargs["batch_size"] = batch_size
    if benchmark in ZOOS:
        if checkpoint_root is not None:
            kwargs["root"] = Path(checkpoint_root)
        return load_benchmark(benchmark, tasks=tasks, device=device, **kwargs)
    if benchmark not in NEEDS_ROOTS:  # generated at load time (the controls)
        return load_benchmark(benchmark, tasks=tasks, device=device, **kwargs)
    if checkpoint_root is None or data_root is None:
        raise ValueError(
            f"benchmark {benchmark!r} needs checkpoint_root= and data_root= (papermill: "
            f"-p checkpoint_root /path/to/ckpt -p data_root /path/to/data); see book/reproduce_gpu.md"
        )
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
    from ..benchmarks import ZOOS, zoo_replicates
    from ..protocol import Session
    from ..protocol.seeds import Seeds

    seeds = as_list(seeds, "seeds", int)
    seeds = [0] if seeds is None or len(seeds) == 0 else seeds
    if any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        raise ValueError(f"seeds must be whole numbers, got {seeds!r}")
    if len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"seeds must be distinct non-negative integers, got {seeds}")
    n = 1
    if benchmark in ZOOS:
        roots = zoo_replicates(benchmark, Path(checkpoint_root) if checkpoint_root else None)
        n = len(roots)
        if n > 1 and max(seeds) >= n:
            out = roots[0].parent / f"{roots[0].name}-r{n}"
            size = "large" if benchmark == "tiny-large" else "default"
            how = (
                f"python -m catlib.benchmarks.{benchmark.replace('-', '_')}.build --reuse {roots[0]} --replicate {n} "
                f"--out {out}"
                if benchmark in ("glue-tiny", "vl-tiny")
                else f"python -m catlib.benchmarks.tiny.zoo build --size {size} --reuse {roots[0]} "
                f"--set finetune.seed=<seed> --out {out}"
            )
            raise ValueError(
                f"{benchmark} ships {n} replicates (seeds 0-{n - 1}); seed {max(seeds)} needs another zoo, built "
                f"with {how}"
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
