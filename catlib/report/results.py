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
    _show_link(f"Raw results: [{name}.json]({_link_dir()}/{name}.json)")
    return path


def _show_link(text: str) -> None:
    """Display a Markdown download line when running in a notebook kernel (nothing elsewhere)."""
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:
        return
    if get_ipython() is not None:
        display(Markdown(text))


def load_results(name: str) -> Optional[Dict[str, Any]]:
    """The document :func:`save_results` wrote, or None when the notebook has not run."""
    path = results_dir() / f"{name}.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


DASH = "–"


def _link_dir() -> str:
    """Where a notebook page links its downloads: ``results/`` beside the notebook (the default results folder; a
    run with another ``CATLIB_RESULTS_DIR`` writes there and prints the same links, so outputs do not depend on it)."""
    return "results"


def show_table(df, name: str, note: Optional[str] = None):
    """Display ``df`` as a page's table, its missing values shown as "–" (with ``note``, the footnote saying why,
    when there are any), and write it as ``<results>/tables/<name>.csv`` (atomically) with a download link under
    it. Returns None (everything is displayed)."""
    from IPython.display import Markdown, display

    path = results_dir() / "tables" / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, df.to_csv())
    missing = bool(df.isna().to_numpy().any())
    display(df.astype(object).where(df.notna(), DASH) if missing else df)
    lines = []
    if missing:
        if not note:
            raise ValueError(f"table {name!r} has missing values: say why (note=...)")
        lines.append(f"{DASH} : {note}.")
    lines.append(f"Download: [{name}.csv]({_link_dir()}/tables/{name}.csv)")
    display(Markdown("  \n".join(lines)))


def save_figure(fig, name: str) -> None:
    """Write ``fig`` as ``<results>/figures/<name>.png`` and ``.svg`` (atomically, deterministic SVG ids and no
    date, so a re-run writes the same bytes) and display download links to both."""
    import io

    from IPython.display import Markdown, display

    from ..core.io import atomic_write_bytes

    folder = results_dir() / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    for ext in ("png", "svg"):
        buf = io.BytesIO()
        meta = {"Date": None} if ext == "svg" else {"Software": None}
        fig.savefig(buf, format=ext, bbox_inches="tight", metadata=meta)
        atomic_write_bytes(folder / f"{name}.{ext}", buf.getvalue())
    d = _link_dir()
    display(Markdown(f"Download: [{name}.png]({d}/figures/{name}.png), [{name}.svg]({d}/figures/{name}.svg)"))
