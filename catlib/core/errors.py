"""Every catlib error, in one place. Each subclasses the built-in error a user would expect, so ``except ValueError``
(or ``FileNotFoundError``, ``KeyError``) still works, and :class:`CatlibError` catches them all."""

from __future__ import annotations

import os
from typing import Optional, Union

PathLike = Union[str, "os.PathLike[str]"]


class CatlibError(Exception):
    """Base class of catlib's own errors."""


class IncompatibleStateDictError(CatlibError, ValueError):
    """State dicts that cannot be merged together (missing/extra key, shape or dtype mismatch)."""


class NonFiniteError(CatlibError, ValueError):
    """NaN or Inf in an input."""


class UnknownMethodError(CatlibError, KeyError):
    """A merge method name that is not registered."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class HyperparameterError(CatlibError, ValueError):
    """An unknown hyperparameter name or a value out of range."""


class MissingStatisticsError(CatlibError, ValueError):
    """A data-dependent method called without the statistics (or module + exemplars) it needs."""


class CheckpointError(CatlibError, ValueError):
    """A checkpoint that cannot be used. ``path`` and ``key`` (when known) are attributes and in the message."""

    def __init__(self, message: str, path: Optional[PathLike] = None, key: Optional[str] = None):
        self.path = None if path is None else str(path)
        self.key = key
        parts = [message]
        if key is not None:
            parts.append(f"key {key!r}")
        if path is not None:
            parts.append(f"file {str(path)!r}")
        super().__init__(" | ".join(parts))


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A checkpoint file or directory that does not exist (a missing task, a wrong root)."""


class CorruptCheckpointError(CheckpointError):
    """A file that exists but cannot be read (truncated, not a checkpoint, damaged archive)."""


class UntrustedPickleError(CheckpointError):
    """A file holding pickled Python objects, read without ``trust_pickle=True``."""


class ArchitectureMismatchError(CheckpointError):
    """Keys, shapes or config of a checkpoint that do not fit the requested open_clip architecture."""


class DatasetMissingError(CatlibError, FileNotFoundError):
    """A dataset (or split) that is not under ``data_root`` where the task_vectors layout puts it."""

    def __init__(self, task: str, expected: PathLike, detail: str = ""):
        self.task, self.expected = task, str(expected)
        msg = f"dataset {task!r} not found: expected {str(expected)!r}"
        super().__init__(msg + (f" ({detail})" if detail else "") + "; catlib never downloads datasets")


class ZooError(CatlibError, RuntimeError):
    """The zoo on disk is missing, not built, or does not match its manifest."""


class UnknownBenchmarkError(CatlibError, KeyError):
    """A benchmark name that is not registered."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
