"""Deprecated module paths from before the layered layout (core / merge / analysis / protocol / benchmarks /
report). ``import catlib.statedict`` and friends keep working: the old name is served by the module that now holds
the code, with a :class:`DeprecationWarning` naming the new path. Nothing else lives here."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

# old module path -> new module path
MOVED = {
    "catlib.statedict": "catlib.core.statedict",
    "catlib.linalg": "catlib.core.linalg",
    "catlib.stats": "catlib.core.stats",
    "catlib.errors": "catlib.core.errors",
    "catlib.device": "catlib.core.device",
    "catlib.progress": "catlib.core.progress",
    "catlib.conflict": "catlib.analysis.conflict",
    "catlib.interference": "catlib.analysis.interference",
    "catlib.experiment": "catlib.protocol",
    "catlib.checkpoints": "catlib.benchmarks.clip.checkpoints",
    "catlib.zeroshot": "catlib.benchmarks.clip.zeroshot",
    "catlib.datasets_real": "catlib.benchmarks.clip.datasets",
    "catlib.real_tasks": "catlib.benchmarks.clip.tasks",
    "catlib.benchmarks.openclip": "catlib.benchmarks.clip",
}


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old path in :data:`MOVED` and loads it as the module at its new path (the same module object)."""

    def find_spec(self, fullname, path=None, target=None):
        return importlib.util.spec_from_loader(fullname, self) if fullname in MOVED else None

    def create_module(self, spec):
        warnings.warn(
            f"{spec.name} moved to {MOVED[spec.name]}; the old path will go away", DeprecationWarning, stacklevel=3
        )
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module):  # already executed under its new name
        pass


def install() -> None:
    """Put the finder on ``sys.meta_path`` once."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
