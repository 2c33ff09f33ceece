"""Progress bars: tqdm, silenced by ``CATLIB_PROGRESS=0`` (tests and nbval runs set it) or ``disable=True``."""

from __future__ import annotations

import os

from tqdm.auto import tqdm


def progress_enabled() -> bool:
    return os.environ.get("CATLIB_PROGRESS", "1") not in ("0", "false", "False", "")


def progress(iterable=None, **kwargs):
    kwargs.setdefault("disable", not progress_enabled())
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)
