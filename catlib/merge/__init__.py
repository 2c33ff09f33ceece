"""Merge methods, one module each, behind one registry (:mod:`catlib.merge.registry`)."""
from . import (awd, cat, consensus, fisher, pcb, regmean, task_arithmetic, tatr, ties,  # noqa: F401 (register)
               weight_average)
from .awd import AWDResult, disentangle
from .cat import removal_bases
from .registry import MethodSpec, get_method, merge, methods

__all__ = ["merge", "methods", "get_method", "MethodSpec", "disentangle", "AWDResult", "removal_bases"]
