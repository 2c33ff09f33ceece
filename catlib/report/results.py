"""Results files, ``notebooks/results/<name>.json`` (folder: ``CATLIB_RESULTS_DIR``): each notebook writes its numbers
atomically; the claims notebook reads them."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from ..protocol.cache import atomic_write, jsonable
from .notebook import REPO


def results_dir() -> Path:
    return Path(os.environ.get("CATLIB_RESULTS_DIR") or REPO / "notebooks" / "results")


def _round_floats(x: Any, digits: int = 4) -> Any:
    if isinstance(x, float):
        return round(x, digits) if math.isfinite(x) else None
    if isinstance(x, Mapping):
        return {str(k): _round_floats(v, digits) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_round_floats(v, digits) for v in x]
    return x


def save_results(name: str, data: Mapping[str, Any], parameters: Optional[Mapping[str, Any]] = None) -> Path:
    """Write ``notebooks/results/<name>.json`` atomically (tmp file + os.replace): ``{"name", "parameters",
    "results"}`` with floats rounded to 4 decimals. Returns the path."""
    path = results_dir() / f"{name}.json"
    doc = {
        "name": name,
        "parameters": _round_floats(jsonable(dict(parameters or {}))),
        "results": _round_floats(jsonable(dict(data))),
    }
    atomic_write(path, json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return path


def load_results(name: str) -> Optional[Dict[str, Any]]:
    """The document :func:`save_results` wrote, or None when the notebook has not run."""
    path = results_dir() / f"{name}.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())
