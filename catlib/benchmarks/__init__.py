"""Benchmarks by name: ``load_benchmark("tiny")``, ``load_benchmark("vit-b-32", checkpoint_root=..., data_root=...)``.

Each entry maps a name to a loader ``f(**kwargs) -> Benchmark``. Loaders import their heavy dependencies lazily, so
``import catlib`` stays fast and a benchmark that cannot load reports why only when asked for.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from ..core.checks import check_batch_size, check_tasks
from ..core.errors import UnknownBenchmarkError, ZooError
from .base import Benchmark, SPLITS, StateDict

# name -> "module:function"; the function takes keyword arguments (tasks=, device=, ...) and returns a Benchmark.
_BENCHMARKS: Dict[str, str] = {
    "tiny": "catlib.benchmarks.tiny:load_tiny",
    "tiny-large": "catlib.benchmarks.tiny:load_tiny_large",
    "openclip": "catlib.benchmarks.clip:load_openclip",  # any architecture: model_name=...
    "vit-b-32": "catlib.benchmarks.clip:load_vit_b_32",
    "vit-b-16": "catlib.benchmarks.clip:load_vit_b_16",
    "vit-l-14": "catlib.benchmarks.clip:load_vit_l_14",
    "control": "catlib.benchmarks.control:load_control",  # CAT's premise by construction, and its twin without
    "control-shared": "catlib.benchmarks.control:load_control_shared",
    "roberta-glue": "catlib.benchmarks.roberta_glue:load_roberta_glue",  # Table 3: roberta-base experts on GLUE
    "glue-tiny": "catlib.benchmarks.glue_tiny.benchmark:load_glue_tiny",  # Table 3's embedded stand-in
    "blip": "catlib.benchmarks.blip:load_blip",  # Table 4: BLIP experts on six vision-language tasks
    "vl-tiny": "catlib.benchmarks.vl_tiny.benchmark:load_vl_tiny",  # Table 4's embedded stand-in
}


# The benchmarks built from checkpoints and datasets on the user's disk: they need checkpoint_root and data_root.
# Every other one is embedded (the tiny zoos ship in data/tiny/, the controls are generated at load time).
NEEDS_ROOTS = ("openclip", "vit-b-32", "vit-b-16", "vit-l-14", "roberta-glue", "blip")


# The embedded benchmarks shipped as a built zoo: their checkpoint_root (optional) is the zoo's folder (``root=``).
ZOOS = ("tiny", "tiny-large", "glue-tiny", "vl-tiny")


def sha256_file(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks (the zoo manifests' record of every file)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sibling_replicates(base: Path) -> List[Path]:
    """The folders of a built zoo's replicates, in order: ``base`` is replicate 0 and its siblings ``<base>-r1``,
    ``<base>-r2``, ... (experts fine-tuned with other seeds from the same θ0) the next ones, as far as they exist."""
    base = Path(base)
    out = [base]
    while (base.parent / f"{base.name}-r{len(out)}" / "manifest.json").exists():
        out.append(base.parent / f"{base.name}-r{len(out)}")
    return out


def replicate_root(zoo: str, root: Path, replicate: Any) -> Path:
    """The folder of replicate ``replicate`` of a built zoo whose replicate 0 is ``root`` (``glue-tiny``,
    ``vl-tiny``: :func:`sibling_replicates`). ``replicate`` must be a whole number ≥ 0 naming a replicate that exists;
    a missing one names the command that builds it."""
    if isinstance(replicate, bool) or not isinstance(replicate, int) or replicate < 0:
        raise ValueError(f"{zoo}: replicate must be a whole number ≥ 0, got {replicate!r}")
    roots = sibling_replicates(root)
    if replicate >= len(roots):
        build = f"catlib.benchmarks.{zoo.replace('-', '_')}.build"
        raise ZooError(
            f"the {zoo} zoo has {len(roots)} replicate(s) (0-{len(roots) - 1}), not {replicate}; build one with "
            f"python -m {build} --reuse {roots[0]} --replicate {len(roots)} "
            f"--out {roots[0].parent / f'{roots[0].name}-r{len(roots)}'}"
        )
    return roots[replicate]


def zoo_replicates(name: str, root: Optional[Path] = None) -> List[Path]:
    """The replicate folders of the embedded zoo ``name`` (one of :data:`ZOOS`; ``root``: its replicate 0, default
    the shipped one)."""
    if name not in ZOOS:
        raise UnknownBenchmarkError(f"{name!r} is not an embedded zoo; zoos: {', '.join(ZOOS)}")
    if name in ("glue-tiny", "vl-tiny"):
        module = importlib.import_module(f".{name.replace('-', '_')}.benchmark", __name__)
        return sibling_replicates(Path(root) if root is not None else module.default_root())
    from .tiny import replicate_roots

    return replicate_roots("large" if name == "tiny-large" else "default", root)


def benchmark_names() -> List[str]:
    return sorted(_BENCHMARKS)


def load_benchmark(name: str, **kwargs) -> Benchmark:
    """Load a benchmark by name. Keyword arguments go to that benchmark's loader (``tasks``, ``device``, ...);
    ``tasks`` (a list of distinct names) and ``batch_size`` (≥ 1) are checked here for every benchmark."""
    if name not in _BENCHMARKS:
        raise UnknownBenchmarkError(f"unknown benchmark {name!r}; available: {benchmark_names()}")
    if "tasks" in kwargs:
        kwargs["tasks"] = check_tasks(kwargs["tasks"])
    batch_size = check_batch_size(kwargs.pop("batch_size", None))
    module_name, func_name = _BENCHMARKS[name].split(":")
    loader: Callable[..., Benchmark] = getattr(importlib.import_module(module_name), func_name)
    bench = loader(**kwargs)
    if batch_size is not None:  # the default of bench.loader() and catlib.evaluate, on every benchmark
        bench.batch_size = batch_size
    return bench


__all__ = [
    "sha256_file",
    "sibling_replicates",
    "zoo_replicates",
    "Benchmark",
    "SPLITS",
    "StateDict",
    "NEEDS_ROOTS",
    "ZOOS",
    "load_benchmark",
    "benchmark_names",
    "check_tasks",
    "check_batch_size",
]
