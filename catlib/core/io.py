"""Atomic file writes: every file catlib writes (zoos, caches, results files, the book's pages) goes through a
unique temporary file in the target's folder, is fsynced and renamed over the target, so an interruption never
leaves a truncated file where a good one was and concurrent writers of the same file (threads or processes) never
collide; the last rename wins."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Union

PathLike = Union[str, os.PathLike]


def _umask() -> int:
    """The process umask, read without changing it where /proc allows (os.umask is set-and-return)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_MODE = 0o666 & ~_umask()  # what open() would have given a new file (mkstemp creates it 0600)


def _fsync(path: PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a unique temporary path beside ``path`` (``.<name>.<random>.tmp<ext>``: the real extension kept, as
    ``np.savez`` appends ``.npz`` otherwise) for the body to write; on success fsync it and ``os.replace`` it onto
    ``path``; on any exception, KeyboardInterrupt included, remove it and leave ``path`` as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + path.suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, _MODE)
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable (best effort)
        _fsync(path.parent)


def atomic_write_text(path: PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically through :func:`atomic_path`. Returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically through :func:`atomic_path`. Returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


__all__ = ["atomic_path", "atomic_write_text", "atomic_write_bytes"]
