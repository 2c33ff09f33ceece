"""The disk cache of accuracies that notebooks share (:class:`ResultCache`, ``CATLIB_REPORT_CACHE``: the folder,
default ``<repo>/.cache/report``; ``off`` disables it), and the fingerprints in its keys: the benchmark's identity
(the tiny zoo's manifest, or a fingerprint of a real benchmark's weights) and catlib's code. Every entry stores its
full key and is checked against it (and for well-formed values) before use; a bad entry is recomputed."""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, List, Mapping, Optional, Sequence

import torch

from ..benchmarks.base import Benchmark
from .session import REPO


CACHE_VERSION = 1


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _state_fingerprint(sd: Mapping[str, torch.Tensor]) -> str:
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


def bench_fingerprint(bench: Benchmark) -> str:
    """Identity of a benchmark's weights and data: for a tiny zoo, the parts of its manifest that decide the numbers
    (every file's sha256, the generated data's sha256, the configs; notes and recorded results are left out), else
    a fingerprint of θ0, every fine-tuned model and the heads, plus the data root."""
    cached = getattr(bench, "_report_fingerprint", None)
    if cached:
        return cached
    manifest = getattr(bench, "manifest", None)
    if manifest is not None:  # what decides the numbers: every file's sha256, the data's sha256, the configs
        fp = _sha({"name": bench.name, **{k: manifest.get(k) for k in ("files", "data_sha256", "config", "tasks",
                                                                      "generator_version")}})
    else:
        parts = {"name": bench.name, "pretrained": _state_fingerprint(bench.pretrained),
                 "finetuned": {t: _state_fingerprint(sd) for t, sd in bench.finetuned.items()},
                 "heads": {t: _state_fingerprint(h.state_dict()) for t, h in bench.heads.items()},
                 "data_root": str(getattr(bench, "data_root", ""))}
        fp = _sha(parts)
    bench._report_fingerprint = fp
    return fp


_CATLIB = Path(__file__).resolve().parents[1]
_CODE_FP: Optional[str] = None
_REPORT_LAYER = ("interference.py",)  # catlib/*.py modules that only compose cached runs (like this package)


def fingerprinted_files() -> List[Path]:
    """The catlib sources that compute merges and accuracies, sorted: ``catlib/*.py`` (interference.py excluded,
    and this package, ``catlib/report/``, is not among them: both only compose and format cached runs, whose keys
    say what was computed), ``catlib/merge/``, and the benchmark interface and real loaders. The tiny benchmark's own
    code is left out: its identity is the zoo manifest (sha256 of every weight file and of the generated data)."""
    files = [p for p in _CATLIB.glob("*.py") if p.name not in _REPORT_LAYER] + list((_CATLIB / "merge").rglob("*.py"))
    files += [_CATLIB / "benchmarks" / "base.py", _CATLIB / "benchmarks" / "openclip.py"]
    return sorted(f for f in files if f.exists())


def code_fingerprint() -> str:
    """sha256 over :func:`fingerprinted_files` (their paths relative to ``catlib/`` and their bytes), computed once
    per process: part of every cache key, so a change to merging or evaluation code invalidates the cache."""
    global _CODE_FP
    if _CODE_FP is None:
        h = hashlib.sha256()
        for p in fingerprinted_files():
            h.update(str(p.relative_to(_CATLIB)).encode())
            h.update(p.read_bytes())
        _CODE_FP = h.hexdigest()
    return _CODE_FP


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, torch.Tensor):
        return _jsonable(x.tolist())
    if hasattr(x, "item") and callable(x.item):  # numpy scalars
        return x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class ResultCache:
    """JSON files under ``<dir>/<kind>/<sha256 of key>.json`` holding ``{"key": ..., "value": ...}``.

    :meth:`get` returns ``None`` (and the caller recomputes) when the file is missing, unreadable, stores another
    key, or its value fails the ``check`` given by the caller."""

    def __init__(self, directory: Optional[os.PathLike] = None):
        env = os.environ.get("CATLIB_REPORT_CACHE")
        self.enabled = env != "off"
        self.dir = Path(directory or (env if env and env != "off" else REPO / ".cache" / "report"))
        self.hits = self.misses = 0

    def _path(self, kind: str, key: Mapping[str, Any]) -> Path:
        return self.dir / kind / f"{_sha(key)[:32]}.json"

    def get(self, kind: str, key: Mapping[str, Any], check: Optional[Callable[[Any], bool]] = None):
        if not self.enabled:
            return None
        p = self._path(kind, key)
        try:
            entry = json.loads(p.read_text())
        except (OSError, ValueError):
            self.misses += 1
            return None
        if (entry.get("key") != _jsonable(key) or "value" not in entry
                or (check is not None and not check(entry["value"]))):
            self.misses += 1
            return None
        self.hits += 1
        return entry["value"]

    def put(self, kind: str, key: Mapping[str, Any], value: Any) -> None:
        if self.enabled:
            _atomic_write(self._path(kind, key), json.dumps({"key": _jsonable(key), "value": _jsonable(value)},
                                                            sort_keys=True))

    def cached(self, kind: str, key: Mapping[str, Any], fn: Callable[[], Any],
               check: Optional[Callable[[Any], bool]] = None):
        """``get`` or compute with ``fn`` and ``put``."""
        v = self.get(kind, key, check)
        if v is None:
            v = _jsonable(fn())
            self.put(kind, key, v)
        return v

    def __repr__(self) -> str:
        return f"ResultCache({self.dir}, hits={self.hits}, misses={self.misses})"


CACHE = ResultCache()


def _acc_check(tasks: Sequence[str]) -> Callable[[Any], bool]:
    def ok(v):
        return (isinstance(v, dict) and sorted(v) == sorted(tasks)
                and all(isinstance(a, (int, float)) and math.isfinite(a) and 0.0 <= a <= 100.0 for a in v.values()))
    return ok
