"""Building, writing, loading and verifying the tiny benchmark's model zoo.

Build from scratch (data, pretraining, 8 fine-tunes, joint MTL fine-tune, TA/WA measurement, manifest)::

    python -m catlib.benchmarks.tiny.zoo build --size default      # -> data/tiny/default/
    python -m catlib.benchmarks.tiny.zoo build --size large --threads 2 --jobs 2   # -> data/tiny/large/
    python -m catlib.benchmarks.tiny.zoo verify --size default

Every stage is seeded; stage results are cached under the build cache (``$CATLIB_CACHE`` or ``~/.cache/catlib``)
keyed by a hash of the stage's inputs (recipe, renderer versions, the torch thread count it ran with, and for a
fine-tune the sha256 of its task's training data), so re-running after changing one task's renderer re-runs only
that task's fine-tune and the MTL stage; an unreadable cache file is recomputed. ``--reuse DIR`` also takes those
stages from an already built zoo (e.g. the shipped one) whose recorded inputs are identical: a rebuild after a
one-task change then costs minutes, and gives the same files as a from-scratch build with the same ``--threads``
on the same type of CPU (another CPU rounds floats differently; the manifest's ``build`` block names the CPU, and
``build.reused`` what was taken).
The zoo on disk: one fp16 safetensors file per model, ``heads.safetensors`` (fp32 prototypes) and
``manifest.json`` (configs, sha256 of each file, sha256 of the generated data, accuracies).
"""

# This module: the zoo on disk (its folder, file layout, hashes, the cached task data, reading and verifying the
# manifest, loading the models) and the command line. Building a zoo is catlib.benchmarks.tiny.build, imported
# lazily: the build imports this module, and the names it held before the split are re-exported (see __getattr__).
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import torch

from ...core.errors import ZooError
from ...core.io import atomic_path
from .. import sha256_file
from . import data as D
from .model import PrototypeHead

FORMAT_VERSION = 1


def repo_root() -> Path:
    return Path(__file__).resolve().parents[3]


def default_root(size: str) -> Path:
    env = os.environ.get("CATLIB_TINY_ROOT")
    return Path(env) / size if env else repo_root() / "data" / "tiny" / size


def cache_dir() -> Path:
    return Path(os.environ.get("CATLIB_CACHE", Path.home() / ".cache" / "catlib")) / "tiny"


def config_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def sha256_array(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------------------------
# data (cached arrays, verified by their content hash before use)
# ----------------------------------------------------------------------------------------------------------------

GENERATOR_VERSION = 1  # bump when the shared rendering helpers change (one task's renderer: its "version" in D.TASKS)


class TaskDataError(ZooError):
    """Task data generated from the seed whose sha256 differs from the one the zoo manifest records (``task`` and
    ``split`` are attributes): this environment does not reproduce the data the zoo was built on."""

    def __init__(self, message: str, task: str, split: str):
        self.task, self.split = task, split
        super().__init__(message)


def split_size(data_cfg: dict, split: str) -> int:
    return data_cfg[f"n_{split}"]


def _read_cached(path: Path, h: str, expected_sha256: Optional[str]):
    """``((x, y), None)`` when the cache file verifies, else ``(digest or None, problem)``: problem None for a file of
    the format before data hashes or one removed meanwhile (regenerated without a warning), else what is wrong
    with it."""
    try:
        with np.load(path, allow_pickle=False) as z:
            x, y = z["x"], z["y"]
            stored = str(z["data_sha256"]) if "data_sha256" in z.files else None
            cfg_ok = "config_hash" in z.files and str(z["config_hash"]) == h
    except FileNotFoundError:  # removed since it was seen (another process cleaning the cache): nothing to use
        return None, None
    except Exception as e:  # noqa: BLE001 - any unreadable file is damaged
        return None, f"cannot be read ({type(e).__name__})"
    digest = sha256_array(x, y)
    if not cfg_ok:
        return digest, "holds the hash of another configuration"
    if stored is not None and digest != stored:
        return digest, "holds arrays whose sha256 differs from the one stored beside them"
    if expected_sha256 is not None and digest != expected_sha256:
        return digest, "holds arrays whose sha256 differs from the one the zoo manifest records"
    if stored is None and expected_sha256 is None:
        return digest, None  # written before the cache stored data hashes: unverifiable, so regenerated
    return (x, y), None


def task_data_path(task: str, split: str, data_cfg: dict) -> Path:
    """The cache file of one task and split: ``<cache>/data/<task>-<split>-<config hash>.npz``."""
    key = dict(
        v=GENERATOR_VERSION,
        rv=D.task_version(task),
        task=task,
        split=split,
        n=split_size(data_cfg, split),
        seed=data_cfg["seed"],
    )
    return cache_dir() / "data" / f"{task}-{split}-{config_hash(key)}.npz"


def task_data(task: str, split: str, data_cfg: dict, use_cache: bool = True, expected_sha256: Optional[str] = None):
    """(images uint8 (N, 32, 32, 3), labels int64) of one task and split; cached as .npz keyed by the config hash.

    The cache file stores ``data_sha256`` (:func:`sha256_array` of x and y) beside the arrays; they are used only
    when their sha256 equals it and, when given, ``expected_sha256`` (the zoo manifest's ``data_sha256`` of this
    task and split). Otherwise the file was damaged or altered: one ``RuntimeWarning`` says so, the split is
    regenerated from the seed (deterministic) and the file rewritten. Generated data whose sha256 differs from
    ``expected_sha256`` raises :class:`TaskDataError`: unverified data is never returned.
    """
    path = task_data_path(task, split, data_cfg)
    h = path.stem.rsplit("-", 1)[1]
    cached_digest, problem = None, None
    if use_cache and path.exists():
        got, problem = _read_cached(path, h, expected_sha256)
        if isinstance(got, tuple):
            return got
        cached_digest = got
    x, y = D.generate_split(task, split, split_size(data_cfg, split), data_cfg["seed"])
    digest = sha256_array(x, y)
    if problem is not None and cached_digest != digest:  # not when the file only holds what this generator draws
        warnings.warn(
            f"tiny data cache file {path} ({task}/{split}) {problem}: it was damaged or altered, so it is not used; "
            f"the split is regenerated from its seed ({data_cfg['seed']}) and the file rewritten",
            RuntimeWarning,
            stacklevel=2,
        )
    if use_cache:
        with atomic_path(path) as tmp:  # concurrent builds may write the same split: each renames its own file
            np.savez(tmp, x=x, y=y, config_hash=np.array(h), data_sha256=np.array(digest))
    if expected_sha256 is not None and digest != expected_sha256:
        raise TaskDataError(
            f"tiny task data {task}/{split} regenerated from seed {data_cfg['seed']} has sha256 {digest[:12]}..., "
            f"the zoo manifest records {expected_sha256[:12]}...: this environment does not reproduce the data the "
            f"zoo was built on (another numpy / Pillow / FreeType version, or a changed renderer), so the zoo's "
            f"accuracies and cached results would not hold for it",
            task,
            split,
        )
    return x, y


# ----------------------------------------------------------------------------------------------------------------
# zoo files
# ----------------------------------------------------------------------------------------------------------------


def model_files(tasks: Sequence[str]) -> Dict[str, str]:
    files = {"pretrained": "pretrained.safetensors", "mtl": "mtl.safetensors", "heads": "heads.safetensors"}
    files.update({f"finetuned/{t}": f"finetuned_{t}.safetensors" for t in tasks})
    return files


def read_manifest(root: Path, size: str = "default") -> dict:
    if Path(root).is_file():
        raise ZooError(f"{root} is a file, not a tiny zoo folder: pass the folder that holds manifest.json")
    mpath = Path(root) / "manifest.json"
    if not mpath.exists():
        raise ZooError(
            f"the tiny zoo '{size}' is not built: {mpath} does not exist; build it with "
            f"python -m catlib.benchmarks.tiny.zoo build --size {size} (about an hour on one CPU thread, "
            f"or 40 minutes (large) with --threads 2 --jobs 2 on two cores)"
        )
    with open(mpath) as f:
        return json.load(f)


def verify_zoo(root: Path, manifest: dict) -> None:
    """Raise :class:`ZooError` naming the file when a zoo file is missing, changed or truncated."""
    for key, info in manifest["files"].items():
        p = Path(root) / info["path"]
        if not p.exists():
            raise ZooError(f"tiny zoo file missing: {p} (manifest entry {key!r}); rebuild the zoo")
        size = p.stat().st_size
        if size != info["bytes"]:
            raise ZooError(
                f"tiny zoo file {p} has {size} bytes, the manifest says {info['bytes']}: the file is "
                f"truncated or changed; restore it (git checkout) or rebuild the zoo"
            )
        digest = sha256_file(p)
        if digest != info["sha256"]:
            raise ZooError(
                f"tiny zoo file {p} fails its sha256 check (got {digest[:12]}..., manifest "
                f"{info['sha256'][:12]}...): the file was changed; restore it or rebuild the zoo"
            )


def load_state(root: Path, manifest: dict, key: str) -> Dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    p = Path(root) / manifest["files"][key]["path"]
    try:
        sd = load_file(str(p))
    except Exception as e:  # pragma: no cover - caught by verify_zoo first
        raise ZooError(f"cannot read tiny zoo file {p}: {e}") from e
    return {k: v.to(torch.float32) for k, v in sd.items()}


def load_heads(root: Path, manifest: dict) -> Dict[str, PrototypeHead]:
    raw = load_state(root, manifest, "heads")
    scale = manifest["config"]["heads"]["logit_scale"]
    return {t: PrototypeHead(raw[t], scale) for t in manifest["tasks"]}


# ----------------------------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------------------------


def main(argv=None):
    from .build import build
    from .build.recipes import CONFIGS, recipe_with

    ap = argparse.ArgumentParser(
        prog="python -m catlib.benchmarks.tiny.zoo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build data and zoo from scratch")
    b.add_argument("--size", choices=sorted(CONFIGS), default="default")
    b.add_argument("--out", type=Path, default=None, help="output folder (default data/tiny/<size>)")
    b.add_argument("--threads", type=int, default=1, help="torch threads (the shipped zoo was built with 1)")
    b.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="worker processes for the nine fine-tuning stages (one thread each; e.g. 2 on 2 cores)",
    )
    b.add_argument("--no-cache", action="store_true", help="ignore and do not write the stage cache")
    b.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="change one recipe value (VALUE in JSON) for a probe build, e.g. "
        "pretrain.attribute_weight=1.0; needs --out, so a shipped zoo keeps its recipe",
    )
    b.add_argument(
        "--reuse",
        type=Path,
        default=None,
        metavar="DIR",
        help="take the stages whose inputs are unchanged from the built zoo in DIR (e.g. data/tiny/<size>)",
    )
    v = sub.add_parser("verify", help="check the sha256 of every zoo file against the manifest")
    v.add_argument("--size", choices=sorted(CONFIGS), default="default")
    v.add_argument("--root", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.cmd == "build":
        cfg = recipe_with(args.size, args.set, error=ap.error)
        if args.set and args.out is None:
            ap.error("--set builds a probe with another recipe: give --out (the shipped zoo keeps its recipe)")
        m = build(
            args.size,
            args.out,
            cfg=cfg,
            use_cache=not args.no_cache,
            threads=args.threads,
            jobs=args.jobs,
            reuse=args.reuse,
            log=lambda s: print(s, flush=True),
        )
        print(json.dumps(m["results"]["acceptance"], indent=1))
        print(json.dumps(m["build"], indent=1))
    else:
        root = args.root or default_root(args.size)
        try:
            m = read_manifest(root, args.size)
            verify_zoo(root, m)
        except (ZooError, OSError) as e:  # a damaged or missing zoo is a finding, not a crash: one line, exit 1
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"{root}: {len(m['files'])} files OK")


# ----------------------------------------------------------------------------------------------------------------
# the build's names, importable from here as before the split into zoo and build/
# ----------------------------------------------------------------------------------------------------------------

_MOVED = {  # module (relative to this package) -> the names it holds
    ".build.recipes": ["ALPHAS", "CONFIGS", "OPTIONAL_KEYS", "option", "recipe_with"],
    ".build.train": [
        "BUILD_VERSION",
        "attribute_loss",
        "features",
        "finetune",
        "fp16_round",
        "head_exemplars",
        "make_heads",
        "pretrain",
        "pretrained_stage",
        "reusable_stages",
        "sd_cpu",
        "stage_dir",
        "stage_threads",
    ],
    ".build.results": ["acceptance", "accuracies", "evaluate_zoo"],
    ".build": ["build", "cpu_model", "write_zoo"],
}
_HOME = {name: (module, name) for module, names in _MOVED.items() for name in names}
_HOME["mean"] = ("..evaluate", "average")  # the zoo's mean: the same sum / len


def __getattr__(name):
    """``zoo.CONFIGS``, ``zoo.build``, ...: the build's names, from their modules under :mod:`.build`, imported on
    first use (the build imports this module)."""
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    module, attr = _HOME[name]
    return getattr(importlib.import_module(module, __package__), attr)


def __dir__():
    return sorted(set(globals()) | set(_HOME))


if __name__ == "__main__":
    sys.exit(main())
