"""Atomic writes (catlib.core.io) and the writers that use them: a failed write leaves the old file and no
temporary file, concurrent writers of one file (processes and threads) all succeed and leave one complete write,
and the pickled-checkpoint converter never overwrites its input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from catlib.core import io as _io
from catlib.core.io import atomic_path, atomic_write_text
from catlib.benchmarks.clip import checkpoints as ck
from catlib.benchmarks.clip import zeroshot as zs
from catlib.benchmarks.tiny import zoo as Z

N_WRITES = 20


def _names(d: Path):
    return sorted(p.name for p in d.iterdir())


def _threads(n: int, fn):
    """Run ``fn(i)`` in ``n`` threads at once; re-raise the first failure."""
    barrier = threading.Barrier(n)

    def run(i):
        barrier.wait()
        return fn(i)

    with ThreadPoolExecutor(n) as pool:
        return [f.result() for f in [pool.submit(run, i) for i in range(n)]]


# ---------------------------------------------------------------------------------------------------------------
# the context manager
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_failed_write_keeps_old_file_and_no_temporary(tmp_path, exc):
    target = tmp_path / "out.json"
    target.write_text('{"good": 1}')
    with pytest.raises(exc):
        with atomic_path(target) as tmp:
            assert tmp != target and tmp.parent == tmp_path and tmp.name.startswith(".out.json.")
            assert tmp.suffix == ".json"  # the real extension is kept
            tmp.write_text('{"trunc')
            raise exc()
    assert target.read_text() == '{"good": 1}'
    assert _names(tmp_path) == ["out.json"]
    with pytest.raises(RuntimeError):  # a new file is not created by a failed write
        with atomic_path(tmp_path / "new.npz") as tmp:
            raise RuntimeError
    assert _names(tmp_path) == ["out.json"]


def test_unique_temporaries_extension_and_mode(tmp_path):
    target = tmp_path / "a.npz"
    with atomic_path(target) as t1, atomic_path(target) as t2:
        assert t1 != t2
        np.savez(t1, x=np.arange(3))  # np.savez would append .npz to a name without it
        np.savez(t2, x=np.arange(4))
    assert np.load(target)["x"].tolist() == [0, 1, 2]  # the outer context exits last
    assert _names(tmp_path) == ["a.npz"]
    assert (target.stat().st_mode & 0o777) == _io._MODE  # as open() would create it, not mkstemp's 0600
    atomic_write_text(tmp_path / "sub" / "t.json", "[1]")
    assert json.loads((tmp_path / "sub" / "t.json").read_text()) == [1]


CHILD = r"""
import importlib.util, json, os, sys, time
import numpy as np
spec = importlib.util.spec_from_file_location("catlib_atomic_io", sys.argv[1])
io = importlib.util.module_from_spec(spec)
spec.loader.exec_module(io)
target, who, n, go = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
open(go + "." + who, "w").close()
while not os.path.exists(go):
    time.sleep(0.001)
for i in range(n):
    if target.endswith(".npz"):
        with io.atomic_path(target) as tmp:
            np.savez(tmp, x=np.full(200_000, i), who=np.array(who))
    else:
        io.atomic_write_text(target, json.dumps({"who": who, "i": i, "pad": [who] * 50_000}))
"""


@pytest.mark.parametrize("name", ["out.json", "out.npz"])
def test_two_processes_write_one_file(tmp_path, name):
    target, go = tmp_path / "d" / name, tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, _io.__file__, str(target), who, str(N_WRITES), str(go)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for who in "ab"
    ]
    try:
        t0 = time.time()
        while not all(Path(f"{go}.{w}").exists() for w in "ab") and time.time() - t0 < 60:
            time.sleep(0.01)
        go.touch()  # both start writing together
        errs = [p.communicate(timeout=60)[1] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], errs
    if name.endswith(".npz"):
        z = np.load(target)
        who, x = str(z["who"]), z["x"]
        assert who in "ab" and x.shape == (200_000,) and (x == N_WRITES - 1).all()
    else:
        doc = json.loads(target.read_text())
        assert doc["who"] in "ab" and doc["i"] == N_WRITES - 1 and doc["pad"] == [doc["who"]] * 50_000
    assert _names(target.parent) == [name]  # no temporary left behind


# ---------------------------------------------------------------------------------------------------------------
# the writers
# ---------------------------------------------------------------------------------------------------------------
def test_zoo_data_cache_concurrent_writers(tmp_path, monkeypatch):
    monkeypatch.setenv("CATLIB_CACHE", str(tmp_path))
    cfg = dict(seed=0, n_train=30, n_val=20, n_test=20)
    x0, y0 = Z.task_data("aerial", "val", cfg, use_cache=False)
    monkeypatch.setattr(Z.D, "generate_split", lambda *a: (x0.copy(), y0.copy()))  # only the write is under test
    data = tmp_path / "tiny" / "data"

    def work(i):
        for _ in range(N_WRITES):
            for f in data.glob("aerial-val-*.npz") if data.exists() else ():
                f.unlink(missing_ok=True)  # so that every call writes the cache file again
            x, y = Z.task_data("aerial", "val", cfg)
            assert np.array_equal(x, x0) and np.array_equal(y, y0)

    _threads(4, work)
    files = _names(data)
    assert len(files) == 1 and files[0].startswith("aerial-val-") and files[0].endswith(".npz")
    z = np.load(data / files[0])
    assert np.array_equal(z["x"], x0) and np.array_equal(z["y"], y0)


def test_head_cache_concurrent_writers(tmp_path):
    path, key = tmp_path / "heads" / "head-x.safetensors", "k" * 24
    g = torch.Generator().manual_seed(0)
    heads = [zs.ZeroShotHead(torch.randn(10, 16, generator=g)) for _ in range(4)]

    def work(i):
        for _ in range(N_WRITES):
            zs.save_cached_head(path, heads[i], key, {"writer": i})

    _threads(4, work)
    assert _names(path.parent) == [path.name]
    got = zs.load_cached_head(path, key, 10)
    assert got is not None and any(torch.equal(got.weight, h.weight) for h in heads)


def test_converter_refuses_to_overwrite_its_input(tmp_path):
    src = tmp_path / "finetuned.pt"
    sd = {"w": torch.randn(3, 4), "b": torch.randn(3)}
    torch.save(sd, src)
    before = src.read_bytes()
    (tmp_path / "sub").mkdir()
    link = tmp_path / "link.pt"
    link.symlink_to(src)
    for dst in (src, str(src), tmp_path / "sub" / ".." / "finetuned.pt", link):
        with pytest.raises(ValueError, match="is the input") as e:
            ck.convert_pickled_checkpoint(src, dst)
        assert str(src) in str(e.value) and str(dst) in str(e.value)
    assert src.read_bytes() == before
    for name in ("out.safetensors", "out.pt"):
        out = ck.convert_pickled_checkpoint(src, tmp_path / name)
        got = ck.read_file(out)
        assert set(got) == set(sd) and all(torch.equal(got[k], sd[k]) for k in sd)
    assert _names(tmp_path) == ["finetuned.pt", "link.pt", "out.pt", "out.safetensors", "sub"]
    assert os.path.samefile(link, src) and src.read_bytes() == before
