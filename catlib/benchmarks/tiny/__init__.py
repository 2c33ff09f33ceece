"""The embedded tiny benchmark: eight procedural 32x32 tasks, a CLIP-style ViT encoder, a shipped model zoo.

``load_tiny()`` (benchmark name ``"tiny"``, a ViT-B/32-like encoder) and ``load_tiny_large()`` (``"tiny-large"``,
wider and deeper, L/14-like) return a :class:`~catlib.benchmarks.base.Benchmark`. The zoo lives in
``data/tiny/<size>/`` and is built by ``python -m catlib.benchmarks.tiny.zoo build --size default|large``.

For the book: :func:`task_table` (one dict per task) and :func:`example_grid` (a grid of example images per task).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from ...core.errors import ZooError
from ..base import SPLITS, Benchmark
from ..in_memory import InMemorySplits
from . import data as _data
from .data import TASK_NAMES, task_info
from .model import PrototypeHead, build_encoder, to_tensor

# zoo is imported lazily (inside functions) so that ``python -m catlib.benchmarks.tiny.zoo`` runs cleanly


class TinyBenchmark(InMemorySplits, Benchmark):
    """The tiny benchmark at one size, loaded from its zoo (sha256-verified).

    ``verify`` (default True): the zoo files are checked against the manifest's sha256, and every task split (cached
    or generated) against the manifest's ``data_sha256``; a cached split that fails is regenerated from the seed
    with a warning, generated data that fails raises :class:`~catlib.benchmarks.tiny.zoo.TaskDataError`. With
    ``verify=False`` the files are not checked and a data mismatch only warns (the cache file's own content hash
    is still checked)."""

    def __init__(
        self,
        size: str = "default",
        tasks: Optional[Sequence[str]] = None,
        device="auto",
        root: Optional[Path] = None,
        verify: bool = True,
    ):
        from ...core.device import resolve_device
        from .zoo import default_root, load_heads, load_state, read_manifest, verify_zoo

        self.size = size
        self.verify = verify
        self.root = Path(root) if root is not None else default_root(size)
        self.manifest = read_manifest(self.root, size)
        if verify:
            verify_zoo(self.root, self.manifest)
        self.config = self.manifest["config"]
        self.name = self.manifest["benchmark"]
        self.all_tasks = list(self.manifest["tasks"])
        self.tasks = self._check_tasks(tasks) if tasks is not None else list(self.all_tasks)
        self.device = resolve_device(device)
        self.pretrained = load_state(self.root, self.manifest, "pretrained")
        self.finetuned = {t: load_state(self.root, self.manifest, f"finetuned/{t}") for t in self.all_tasks}
        self.mtl = load_state(self.root, self.manifest, "mtl")
        self.heads: Dict[str, nn.Module] = {
            t: h.to(self.device).eval() for t, h in load_heads(self.root, self.manifest).items()
        }
        self.task_info = {t: self.manifest["task_info"][t] for t in self.all_tasks}
        self._data: Dict = {}
        self._tensors: Dict = {}

    # architecture
    def build_module(self) -> nn.Module:
        enc = build_encoder(self.config["model"])
        enc.load_state_dict(self.pretrained)
        return enc.to(self.device).eval()

    # data
    def _arrays(self, task: str, split: str):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if task not in self.all_tasks:
            raise KeyError(f"{self.name}: unknown task {task!r}; available: {self.all_tasks}")
        key = (task, split)
        if key not in self._data:
            from .zoo import TaskDataError, sha256_array, task_data

            want = self.manifest.get("data_sha256", {}).get(task, {}).get(split)
            built = self.manifest.get("task_versions", {}).get(task, 1)  # zoos before the field: version 1
            if built != _data.task_version(task):
                warnings.warn(
                    f"{self.name}: the zoo was built on version {built} of the {task} renderer, this "
                    f"catlib draws version {_data.task_version(task)}: its accuracies on {task} do not "
                    f"hold; rebuild it (python -m catlib.benchmarks.tiny.zoo build --size {self.size} "
                    f"--reuse {self.root})",
                    RuntimeWarning,
                    stacklevel=3,
                )
                want = None  # the manifest's hash is of the other version's data
            if not self.verify:  # the caller opted out of checks against the manifest: warn only
                x, y = task_data(task, split, self.config["data"])
                if want is not None and sha256_array(x, y) != want:
                    warnings.warn(
                        f"{self.name}: generated data for {task}/{split} differs from the data the zoo was "
                        f"built on (another numpy/Pillow/FreeType version?); loaded anyway (verify=False): "
                        f"accuracies may differ from the manifest",
                        RuntimeWarning,
                        stacklevel=3,
                    )
            else:
                try:  # cached arrays are checked against the manifest's hash, regenerated when they fail it
                    x, y = task_data(task, split, self.config["data"], expected_sha256=want)
                except TaskDataError as e:
                    b = self.manifest.get("build", {})
                    raise TaskDataError(
                        f"{self.name} zoo at {self.root}: {e}. Rebuild the zoo in this environment (python -m "
                        f"catlib.benchmarks.tiny.zoo build --size {self.size} --reuse {self.root}), or use the "
                        f"versions it was built with (numpy {b.get('numpy', '?')}, torch {b.get('torch', '?')}, "
                        f"python {b.get('python', '?')}); load_tiny(..., verify=False) loads it anyway, with a "
                        f"warning",
                        task,
                        split,
                    ) from e
            self._data[key] = (x, y)
        return self._data[key]

    def tensors(self, task: str, split: str):
        key = (task, split)
        if key not in self._tensors:
            x, y = self._arrays(task, split)
            self._tensors[key] = (to_tensor(x), torch.from_numpy(y))
        return self._tensors[key]

    def class_names(self, task: str) -> List[str]:
        if task not in self.all_tasks:
            raise KeyError(f"{self.name}: unknown task {task!r}; available: {self.all_tasks}")
        return list(self.task_info[task]["class_names"])


def replicate_roots(size: str = "default", root: Optional[Path] = None) -> List[Path]:
    """The zoo folders of a size's replicates, in order: ``root`` (default ``data/tiny/<size>``) is replicate 0 and
    its siblings ``<root>-r1``, ``<root>-r2``, ... (experts fine-tuned with other seeds from the same θ0) the next
    ones, as far as they exist (:func:`catlib.benchmarks.sibling_replicates`)."""
    from .. import sibling_replicates
    from .zoo import default_root

    return sibling_replicates(Path(root) if root is not None else default_root(size))


def _replicate_root(size: str, root: Optional[Path], replicate: int) -> Optional[Path]:
    if replicate == 0:
        return root
    roots = replicate_roots(size, root)
    if not 0 <= replicate < len(roots):
        raise ZooError(
            f"the tiny zoo '{size}' has {len(roots)} replicate(s) (0-{len(roots) - 1}), not {replicate}; build one "
            f"with python -m catlib.benchmarks.tiny.zoo build --size {size} --reuse {roots[0]} "
            f"--set finetune.seed=<seed> --out {roots[0].parent / f'{roots[0].name}-r{len(roots)}'}"
        )
    return roots[replicate]


def load_tiny(
    tasks: Optional[Sequence[str]] = None,
    device="auto",
    root: Optional[Path] = None,
    verify: bool = True,
    replicate: int = 0,
) -> TinyBenchmark:
    """The tiny benchmark (ViT-B/32-like encoder, name ``"tiny"``); ``replicate`` k > 0: the zoo whose experts
    were fine-tuned with another seed (:func:`replicate_roots`)."""
    root = _replicate_root("default", root, replicate)
    return TinyBenchmark("default", tasks=tasks, device=device, root=root, verify=verify)


def load_tiny_large(
    tasks: Optional[Sequence[str]] = None,
    device="auto",
    root: Optional[Path] = None,
    verify: bool = True,
    replicate: int = 0,
) -> TinyBenchmark:
    """The large tiny benchmark (wider/deeper, L/14-like encoder, name ``"tiny-large"``); ``replicate`` as in
    :func:`load_tiny`."""
    root = _replicate_root("large", root, replicate)
    return TinyBenchmark("large", tasks=tasks, device=device, root=root, verify=verify)


def task_table() -> List[dict]:
    """One dict per task: name, analogue (the paper's dataset), n_classes, description, class_names."""
    return [task_info()[t] for t in TASK_NAMES]


def example_grid(
    task: str, n: int = 8, rows: Optional[int] = None, seed: int = 0, scale: int = 2, as_figure: bool = False
):
    """Example images of ``task``: up to ``rows`` classes (default 8), ``n`` images per class, as a uint8 array
    ``(H, W, 3)``; with ``as_figure=True`` a matplotlib figure with the class names on the left."""
    arr = _data.example_grid_array(task, n=n, seed=seed, scale=scale, classes=rows)
    if not as_figure:
        return arr
    import matplotlib.pyplot as plt

    names = task_info()[task]["class_names"]
    nrows = min(len(names), rows or 8)
    fig, ax = plt.subplots(figsize=(arr.shape[1] / 60 + 1.6, arr.shape[0] / 60))
    ax.imshow(arr, interpolation="nearest")
    tile = arr.shape[0] / nrows
    ax.set_yticks([tile * (r + 0.5) for r in range(nrows)], names[:nrows], fontsize=8)
    ax.set_xticks([])
    ax.set_title(f"{task} (analogue of {task_info()[task]['analogue']})", fontsize=9)
    fig.tight_layout()
    return fig


def acceptance_table(sizes: Sequence[str] = ("default", "large")):
    """The acceptance checks each built zoo's manifest records (test split, hyperparameters chosen on validation),
    one column per built size, and, when both sizes are built, whether the larger one merges better (task
    arithmetic and weight averaging higher, gap to Individual smaller). A pandas DataFrame: one row per check,
    columns ``target`` and ``<size>`` (value, then "met" / "MISSED"); the replicates of a size (experts fine-tuned
    with other seeds, :func:`replicate_roots`) follow as ``<size>-r<k>``."""
    import pandas as pd

    from .zoo import default_root, read_manifest

    res, reps = {}, {}
    for size in sizes:
        if (default_root(size) / "manifest.json").exists():
            res[size] = read_manifest(default_root(size), size)["results"]
            for k, root in enumerate(replicate_roots(size)[1:], start=1):
                reps[f"{size}-r{k}"] = read_manifest(root, size)["results"]
    rows: Dict[str, dict] = {}
    for size, r in {**res, **reps}.items():
        for name, chk in r["acceptance"].items():
            row = rows.setdefault(name, {"target": chk["target"]})
            row[size] = f"{chk['value']:.2f} {'met' if chk['met'] else 'MISSED'}"
    if len(res) == 2:
        (small, a), (big, b) = res.items()
        ta = lambda r: r["average"]["task_arithmetic"]  # noqa: E731
        cross = {
            "larger_ta_higher": (f"TA avg: {big} - {small} > 0", ta(b) - ta(a)),
            "larger_wa_higher": (
                f"WA avg: {big} - {small} > 0",
                b["average"]["weight_averaging"] - a["average"]["weight_averaging"],
            ),
            "larger_ta_gap_smaller": (
                f"Ind - TA: {small} - {big} > 0",
                (a["average"]["individual"] - ta(a)) - (b["average"]["individual"] - ta(b)),
            ),
        }
        for name, (target, value) in cross.items():
            rows[name] = {"target": target, big: f"{value:.2f} {'met' if value > 0 else 'MISSED'}"}
    return pd.DataFrame(rows).T.reindex(columns=["target", *res, *reps]).fillna("")


__all__ = [
    "TinyBenchmark",
    "load_tiny",
    "load_tiny_large",
    "task_table",
    "example_grid",
    "task_info",
    "acceptance_table",
    "replicate_roots",
    "TASK_NAMES",
    "PrototypeHead",
    "ZooError",
]
