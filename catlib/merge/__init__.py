"""Merge methods, one module each, behind one registry (:mod:`catlib.merge.registry`)."""
from . import (awd, cat, consensus, fisher, iso, pcb, regmean, task_arithmetic, tatr, ties, tsv,  # noqa: F401
               weight_average, wudi)
from .awd import AWDResult, disentangle
from .cat import removal_bases
from .registry import MethodSpec, get_method, merge, methods

__all__ = ["merge", "methods", "get_method", "MethodSpec", "disentangle", "AWDResult", "removal_bases"]
