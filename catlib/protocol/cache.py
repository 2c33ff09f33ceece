"""The disk cache of results (:class:`ResultCache`) and the content fingerprints in its keys: the benchmark's
(:func:`bench_fingerprint`: the tiny zoo's manifest, which hashes every weight file and the generated data, or a
fingerprint of a real benchmark's weights and data root) and catlib's code (:func:`code_fingerprint`). Every entry
stores its full key and is checked against it (and for well-formed values) before use; a bad entry is recomputed.

Folder: ``CATLIB_REPORT_CACHE`` (default ``<repo>/.cache/report``; ``off`` disables the cache).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Callable, List, Mapping, Optional, Sequence, Tuple


import torch

from ..core.io import atomic_write_text

CACHE_VERSION = 1
CATLIB = Path(__file__).resolve().parents[1]
REPO = CATLIB.parent


def sha(obj: Any) -> str:
    """sha256 of ``obj`` as canonical JSON (sorted keys)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def jsonable(x: Any) -> Any:
    """``x`` with tensors, numpy scalars and tuples made JSON types; non-finite floats become None/"inf"/"-inf"."""
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, torch.Tensor):
        return jsonable(x.tolist())
    if hasattr(x, "item") and callable(x.item):  # numpy scalars
        return x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


def state_fingerprint(sd: Mapping[str, torch.Tensor]) -> str:
    """Content fingerprint of a state dict: keys, shapes, and per floating tensor its sum and sum of squares (fp64)
    (integer tensors: their bytes)."""
    h = hashlib.sha256()
    for k in sorted(sd):
        t = sd[k]
        h.update(k.encode())
        h.update(str(tuple(t.shape)).encode())
        if t.is_floating_point():
            t = t.detach().double()
            h.update(f"{float(t.sum()):.12e},{float((t * t).sum()):.12e}".encode())
        else:
            h.update(t.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def bench_fingerprint(bench) -> str:
    """Identity of a benchmark's weights and data: for a tiny zoo, the parts of its manifest that decide the numbers
    (every file's sha256, the generated data's sha256, the configs; notes and recorded results are left out), else
    a fingerprint of θ0, every fine-tuned model and the heads, plus the data root."""
    manifest = getattr(bench, "manifest", None)
    if manifest is not None:
        return sha(
            {
                "name": bench.name,
                **{k: manifest.get(k) for k in ("files", "data_sha256", "config", "tasks", "generator_version")},
            }
        )
    return sha(
        {
            "name": bench.name,
            "pretrained": state_fingerprint(bench.pretrained),
            "finetuned": {t: state_fingerprint(sd) for t, sd in bench.finetuned.items()},
            "heads": {t: state_fingerprint(h.state_dict()) for t, h in bench.heads.items()},
            "data_root": str(getattr(bench, "data_root", "")),
        }
    )


SHARED_CODE = ("core", "merge", "testtime", "protocol", "analysis", "benchmarks/base.py", "benchmarks/evaluate.py")


def fingerprinted_files(code_files: Sequence[str] = (), root: Path = CATLIB) -> List[Path]:
    """The catlib sources that decide a benchmark's merges, statistics, accuracies and conflicts, sorted: the shared
    code (``core/``, ``merge/``, ``testtime/``, ``protocol/``, ``analysis/`` except ``interference.py``, which only
    composes runs, and the benchmark interface and evaluation; not the table of benchmark names, which computes
    nothing) plus the benchmark's own ``code_files`` (paths relative to ``catlib/benchmarks/``: ``("clip",)`` for
    the real CLIP benchmarks, with their class names and templates). Left out: ``report/`` (views over cached runs,
    whose keys say what was computed), other benchmarks' code, and the tiny benchmark's own code (its identity is
    the zoo manifest: sha256 of every weight file and of the generated data). ``root``: the ``catlib/`` folder to
    read (another revision's, to name the results it computed)."""
    roots = [root / p for p in SHARED_CODE] + [root / "benchmarks" / p for p in code_files]
    files = [f for r in roots for f in ([r] if r.is_file() else [*r.rglob("*.py"), *r.rglob("*.json")])]
    return sorted({f for f in files if f.name != "interference.py" and "__pycache__" not in f.parts})


def code_fingerprint(code_files: Sequence[str] = (), root: Path = CATLIB) -> str:
    """sha256 over :func:`fingerprinted_files` (their paths relative to ``catlib/`` and their bytes): part of every
    cache key, so a change to the code that computed a result invalidates it."""
    h = hashlib.sha256()
    for p in fingerprinted_files(code_files, root):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`catlib.core.io.atomic_write_text`)."""
    atomic_write_text(path, text)


class ResultCache:
    """JSON files under ``<dir>/<kind>/<sha256 of key>.json`` holding ``{"key": ..., "value": ...}``.

    :meth:`get` returns ``None`` (and the caller recomputes) when the file is missing, unreadable, not a JSON
    object, stores another key, or its value fails the caller's ``check``. :meth:`put` that cannot write (a
    read-only folder) warns once and goes on: the result is still returned."""

    def __init__(self, directory: Optional[os.PathLike] = None):
        env = os.environ.get("CATLIB_REPORT_CACHE")
        self.enabled = env != "off"
        self.dir = Path(directory or (env if env and env != "off" else REPO / ".cache" / "report"))
        self.hits = self.misses = 0
        self._warned = False

    def _path(self, kind: str, key: Mapping[str, Any]) -> Path:
        return self.dir / kind / f"{sha(key)[:32]}.json"

    def get(self, kind: str, key: Mapping[str, Any], check: Optional[Callable[[Any], bool]] = None):
        if not self.enabled:
            return None
        try:
            entry = json.loads(self._path(kind, key).read_text())
        except (OSError, ValueError):
            entry = None
        if (
            not isinstance(entry, dict)
            or entry.get("key") != jsonable(key)
            or "value" not in entry
            or (check is not None and not check(entry["value"]))
        ):
            self.misses += 1
            return None
        self.hits += 1
        return entry["value"]

    def put(self, kind: str, key: Mapping[str, Any], value: Any) -> None:
        if not self.enabled:
            return
        try:
            atomic_write(
                self._path(kind, key), json.dumps({"key": jsonable(key), "value": jsonable(value)}, sort_keys=True)
            )
        except OSError as e:
            if not self._warned:
                warnings.warn(
                    f"result cache {self.dir} is not writable ({e.strerror}); results are computed but "
                    "not stored (set CATLIB_REPORT_CACHE to a writable folder, or to 'off')"
                )
                self._warned = True

    def cached(
        self, kind: str, key: Mapping[str, Any], fn: Callable[[], Any], check: Optional[Callable[[Any], bool]] = None
    ):
        """``get``, or compute with ``fn`` and ``put``."""
        v = self.get(kind, key, check)
        if v is None:
            v = jsonable(fn())
            self.put(kind, key, v)
        return v

    def __repr__(self) -> str:
        return f"ResultCache({self.dir}, hits={self.hits}, misses={self.misses})"


def accuracy_check(
    tasks: Sequence[str], ranges: Optional[Mapping[str, Tuple[float, float]]] = None
) -> Callable[[Any], bool]:
    """A ``check`` for cached per-task numbers: exactly ``tasks``, finite, each within its task's ``ranges``
    (``Benchmark.metric_range``: [-100, 100] for a correlation, [0, 1000] for CIDEr-D × 100; default [0, 100])."""
    ranges = dict(ranges or {})

    def ok(v):
        return (
            isinstance(v, dict)
            and sorted(v) == sorted(tasks)
            and all(
                isinstance(a, (int, float))
                and math.isfinite(a)
                and ranges.get(t, (0.0, 100.0))[0] <= a <= ranges.get(t, (0.0, 100.0))[1]
                for t, a in v.items()
            )
        )

    return ok
