"""Merge methods, one module each, behind one registry (:mod:`catlib.merge.registry`)."""

from . import (
    awd,
    cat,
    consensus,
    fisher,
    iso,
    pcb,
    regmean,
    task_arithmetic,
    tatr,
    ties,
    tsv,  # noqa: F401
    weight_average,
    wudi,
)
from ._solver import removal_bases
from .awd import AWDResult, disentangle
from .registry import REGISTRY, Knob, Memo, MethodSpec, get_method, merge, methods

__all__ = [
    "merge",
    "methods",
    "get_method",
    "MethodSpec",
    "Knob",
    "Memo",
    "REGISTRY",
    "disentangle",
    "AWDResult",
    "removal_bases",
]
