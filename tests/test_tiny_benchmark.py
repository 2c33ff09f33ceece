"""The embedded tiny benchmark: data generation, a reduced zoo build (reproducible), zoo verification, and the
Benchmark interface on the shipped zoo."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import numpy as np
import pytest
import torch

os.environ.setdefault("CATLIB_PROGRESS", "0")

from conftest import reduced_zoo_config  # noqa: E402
from catlib.benchmarks.tiny import data as D  # noqa: E402
from catlib.benchmarks.tiny import zoo as Z  # noqa: E402
from catlib.benchmarks.tiny.build import build, cpu_model  # noqa: E402
from catlib.benchmarks.tiny.build import recipes, train  # noqa: E402

SHIPPED = Z.default_root("default")
shipped = pytest.mark.skipif(not (SHIPPED / "manifest.json").exists(), reason="default tiny zoo not built")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    d = tmp_path_factory.mktemp("catlib-cache")
    old = os.environ.get("CATLIB_CACHE")
    os.environ["CATLIB_CACHE"] = str(d)
    yield d
    if old is None:
        os.environ.pop("CATLIB_CACHE", None)
    else:
        os.environ["CATLIB_CACHE"] = old


@pytest.fixture(scope="module")
def reduced_zoos(tmp_path_factory, cache):
    """The reduced recipe built twice from scratch (no stage cache)."""
    out = []
    for k in range(2):
        root = tmp_path_factory.mktemp(f"zoo{k}")
        m = build("default", out=root, cfg=reduced_zoo_config(), use_cache=False, log=lambda s: None)
        out.append((root, m))
    return out


# ---------------------------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------------------------


def test_generation_is_deterministic():
    for task in D.TASK_NAMES:
        x1, y1 = D.generate_split(task, "val", 24, seed=3)
        x2, y2 = D.generate_split(task, "val", 24, seed=3)
        assert x1.dtype == np.uint8 and x1.shape == (len(y1), 32, 32, 3)
        assert np.array_equal(x1, x2) and np.array_equal(y1, y2), task
    x3, _ = D.generate_split("textures", "val", 24, seed=4)
    assert not np.array_equal(x3, D.generate_split("textures", "val", 24, seed=3)[0])


def _hashes(x):
    return {hashlib.sha1(im.tobytes()).hexdigest() for im in x}


@pytest.mark.parametrize("task", D.TASK_NAMES)
def test_splits_disjoint_and_class_counts(task):
    C = len(D.TASKS[task]["classes"])
    splits = {sp: D.generate_split(task, sp, 3 * C, seed=0) for sp in ("train", "val", "test")}
    h = {sp: _hashes(x) for sp, (x, _) in splits.items()}
    assert not (h["train"] & h["val"]) and not (h["train"] & h["test"]) and not (h["val"] & h["test"])
    for sp, (x, y) in splits.items():
        assert y.min() >= 0 and y.max() < C
    # procedural tasks are exactly class-balanced; every class appears
    _, y = splits["train"]
    if task == "handwritten":  # train draws augmented originals at random: every class, not exactly balanced
        y = D.generate_split(task, "train", 200, seed=0)[1]
    assert len(np.unique(y)) == C
    if task != "handwritten":
        assert np.bincount(y, minlength=C).tolist() == [3] * C


def test_handwritten_uses_disjoint_originals():
    imgs8, _ = D._sk_digits()
    # val/test are un-augmented renders of distinct sklearn originals
    xv, _ = D.generate_split("handwritten", "val", 10_000, 0)
    xt, _ = D.generate_split("handwritten", "test", 10_000, 0)
    assert len(xv) + len(xt) < len(imgs8) and not (_hashes(xv) & _hashes(xt))


def test_task_table_and_class_names():
    info = D.task_info()
    assert list(info) == D.TASK_NAMES and len(info) == 8
    counts = [v["n_classes"] for v in info.values()]
    assert min(counts) >= 10 and max(counts) <= 50 and len(set(counts)) > 1
    for v in info.values():
        assert len(set(v["class_names"])) == v["n_classes"] and v["analogue"]
    assert not set(D.SOURCE_TEXT) & set("0123456789"), "source classes must not be task classes"


def test_example_grid():
    from catlib.benchmarks.tiny import example_grid

    g = example_grid("signs", n=4, rows=3, scale=1)
    assert g.dtype == np.uint8 and g.ndim == 3 and g.shape[2] == 3 and g.shape[0] < g.shape[1] * 2


def test_data_cache_validated(cache):
    cfg = dict(seed=0, n_train=30, n_val=20, n_test=20)
    x1, y1 = Z.task_data("aerial", "val", cfg)
    files = list((cache / "tiny" / "data").glob("aerial-val-*.npz"))
    assert len(files) == 1
    files[0].write_bytes(b"garbage")  # a broken cache file is regenerated, not trusted
    with pytest.warns(RuntimeWarning, match="cannot be read .*damaged or altered"):
        x2, y2 = Z.task_data("aerial", "val", cfg)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)


def _cache_file(cache, task, split):
    files = list((cache / "tiny" / "data").glob(f"{task}-{split}-*.npz"))
    assert len(files) == 1
    return files[0]


def _rewrite_npz(path, restamp=False, drop=(), **changes):
    """Alter a cache file in place; ``restamp``: also recompute the hash stored beside the arrays."""
    with np.load(path) as z:
        d = {k: z[k] for k in z.files if k not in drop}
    d.update(changes)
    if restamp:
        d["data_sha256"] = np.array(Z.sha256_array(d["x"], d["y"]))
    np.savez(path, **d)


def _damage_warnings(rec):
    return [w for w in rec if "damaged or altered" in str(w.message)]


def test_altered_label_in_data_cache_is_regenerated(cache):
    """One label changed in a cached .npz: the arrays fail the sha256 stored beside them, so the split is
    regenerated from the seed (equal to the original), with exactly one warning naming the file, and the file is
    rewritten (the next load is silent). A file whose stored hash was recomputed after the change passes its own
    check but not the manifest's hash: regenerated too. A file of the format before data hashes is regenerated."""
    cfg = dict(seed=0, n_train=30, n_val=20, n_test=20)
    x0, y0 = Z.task_data("landcover", "test", cfg)
    f = _cache_file(cache, "landcover", "test")
    with np.load(f) as z:
        assert str(z["data_sha256"]) == Z.sha256_array(x0, y0)
    y = y0.copy()
    y[3] = (y[3] + 1) % len(D.TASKS["landcover"]["classes"])
    _rewrite_npz(f, y=y)
    with pytest.warns(RuntimeWarning) as rec:
        x1, y1 = Z.task_data("landcover", "test", cfg)
    assert np.array_equal(x1, x0) and np.array_equal(y1, y0)
    (w,) = _damage_warnings(rec)
    assert str(f) in str(w.message) and "landcover/test" in str(w.message) and "regenerated" in str(w.message)
    with np.load(f) as z:
        assert np.array_equal(z["y"], y0)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(Z.task_data("landcover", "test", cfg)[1], y0)
    manifest_sha = Z.sha256_array(x0, y0)
    _rewrite_npz(f, y=y, restamp=True)  # consistent with its own stored hash, not with the manifest's
    with pytest.warns(RuntimeWarning) as rec:
        x2, y2 = Z.task_data("landcover", "test", cfg, expected_sha256=manifest_sha)
    assert np.array_equal(x2, x0) and np.array_equal(y2, y0) and len(_damage_warnings(rec)) == 1
    assert "zoo manifest" in str(_damage_warnings(rec)[0].message)
    _rewrite_npz(f, drop=("data_sha256",))  # the old format: no hash of x and y, so never trusted
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x3, y3 = Z.task_data("landcover", "test", cfg)
    assert np.array_equal(x3, x0) and np.array_equal(y3, y0)
    with np.load(f) as z:
        assert str(z["data_sha256"]) == manifest_sha


def test_data_manifest_mismatch_after_regeneration_raises(cache):
    """Data regenerated from the seed that still differs from the manifest's hash: TaskDataError (a ZooError)
    naming the task and split, with or without the cache, and after a damaged cache file."""
    from catlib.core.errors import ZooError

    cfg = dict(seed=0, n_train=30, n_val=20, n_test=20)
    for use_cache in (False, True):
        with pytest.raises(Z.TaskDataError) as e:
            Z.task_data("streetnum", "val", cfg, use_cache=use_cache, expected_sha256="0" * 64)
        assert isinstance(e.value, ZooError) and (e.value.task, e.value.split) == ("streetnum", "val")
        assert "streetnum/val" in str(e.value) and "zoo manifest records 000000000000" in str(e.value)
    f = _cache_file(cache, "streetnum", "val")
    f.write_bytes(b"garbage")
    with pytest.warns(RuntimeWarning, match="damaged or altered"), pytest.raises(Z.TaskDataError):
        Z.task_data("streetnum", "val", cfg, expected_sha256="0" * 64)


def _zoo_copy(tmp_path, name, edit=None):
    """The shipped zoo's files, linked, under a manifest of our own (``edit`` changes it)."""
    root = tmp_path / name
    root.mkdir()
    for f in SHIPPED.iterdir():
        if f.suffix == ".safetensors":
            (root / f.name).symlink_to(f)
    m = json.loads((SHIPPED / "manifest.json").read_text())
    if edit:
        edit(m)
    (root / "manifest.json").write_text(json.dumps(m))
    return root


@shipped
def test_shipped_zoo_task_data_is_checked_against_the_manifest(cache, tmp_path):
    """Through the Benchmark: a cached split poisoned consistently (label changed, stored hash recomputed) is
    caught by the manifest's data_sha256 and regenerated with a warning; a manifest hash that regenerated data
    cannot meet raises TaskDataError naming the task, the split and what to do; verify=False only warns."""
    from catlib.benchmarks.tiny import TinyBenchmark

    m = json.loads((SHIPPED / "manifest.json").read_text())
    want = m["data_sha256"]["aerial"]["val"]
    root = _zoo_copy(tmp_path, "zoo")
    x, y = TinyBenchmark("default", root=root, device="cpu")._arrays("aerial", "val")
    assert Z.sha256_array(x, y) == want
    f = Z.task_data_path("aerial", "val", m["config"]["data"])
    assert f.parent.parent.parent == cache and f.exists()
    bad = y.copy()
    bad[0] = (bad[0] + 1) % len(D.TASKS["aerial"]["classes"])
    _rewrite_npz(f, y=bad, restamp=True)
    with pytest.warns(RuntimeWarning) as rec:
        x1, y1 = TinyBenchmark("default", root=root, device="cpu")._arrays("aerial", "val")
    assert len(_damage_warnings(rec)) == 1 and Z.sha256_array(x1, y1) == want

    def poison(man):
        man["data_sha256"]["aerial"]["val"] = "f" * 64

    root2 = _zoo_copy(tmp_path, "zoo2", poison)
    with pytest.raises(Z.TaskDataError) as e:
        TinyBenchmark("default", root=root2, device="cpu")._arrays("aerial", "val")
    msg = str(e.value)
    assert (e.value.task, e.value.split) == ("aerial", "val") and "aerial/val" in msg, msg
    assert "zoo build --size default" in msg and "verify=False" in msg and str(root2) in msg, msg
    with pytest.warns(RuntimeWarning, match="differs from the data the zoo was built on"):
        x2, _ = TinyBenchmark("default", root=root2, device="cpu", verify=False)._arrays("aerial", "val")
    assert np.array_equal(x2, x)


# ---------------------------------------------------------------------------------------------------------------
# reduced build: reproducible, verified, loadable
# ---------------------------------------------------------------------------------------------------------------


def test_reduced_build_reproduces(reduced_zoos):
    (r1, m1), (r2, m2) = reduced_zoos
    for key, info in m1["files"].items():
        assert info["sha256"] == m2["files"][key]["sha256"], f"{key} differs between two identical builds"
    assert m1["results"]["average"] == m2["results"]["average"]
    assert set(m1["results"]["acceptance"]) >= {"ta_alpha_in_0.2_0.6", "wa_below_ta"}


def test_parallel_finetuning_equals_serial(reduced_zoos, tmp_path):
    """jobs=2 runs the fine-tuning stages in worker processes: same weights, bit for bit, as the serial build."""
    (r1, m1), _ = reduced_zoos
    m = build("default", out=tmp_path / "zoo", cfg=reduced_zoo_config(), use_cache=False, jobs=2, log=lambda s: None)
    for key, info in m1["files"].items():
        assert m["files"][key]["sha256"] == info["sha256"], f"{key} differs between jobs=2 and the serial build"
    assert m["results"]["average"] == m1["results"]["average"]
    assert "finetune_parallel_wall" in m["build"]["seconds"]
    with pytest.raises(ValueError, match="jobs"):
        build("default", out=tmp_path / "bad", cfg=reduced_zoo_config(), jobs=0)


def test_reduced_zoo_layout_and_fp16(reduced_zoos):
    from safetensors.torch import load_file

    root, m = reduced_zoos[0]
    Z.verify_zoo(root, m)
    assert set(m["files"]) == {"pretrained", "mtl", "heads"} | {f"finetuned/{t}" for t in D.TASK_NAMES}
    sd = load_file(str(root / m["files"]["pretrained"]["path"]))
    assert all(v.dtype == torch.float16 for v in sd.values())
    assert {
        "conv1.weight",
        "class_embedding",
        "positional_embedding",
        "ln_pre.weight",
        "proj",
        "transformer.resblocks.0.attn.in_proj_weight",
        "transformer.resblocks.1.mlp.c_fc.weight",
    } <= set(sd)
    json.dumps(m)  # the manifest is plain JSON
    assert m["build"]["cpu"] == cpu_model() and m["build"]["cpu"]  # rebuilds are bit-identical per CPU type


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_corrupted_zoo_file_is_detected(reduced_zoos, tmp_path, damage):
    from catlib.benchmarks.tiny import load_tiny

    src, m = reduced_zoos[0]
    root = tmp_path / "zoo"
    shutil.copytree(src, root)
    target = root / m["files"]["finetuned/signs"]["path"]
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:-100])
    elif damage == "flip":
        b = bytearray(target.read_bytes())
        b[len(b) // 2] ^= 0xFF
        target.write_bytes(bytes(b))
    else:
        target.unlink()
    with pytest.raises(Z.ZooError, match="finetuned_signs.safetensors"):
        load_tiny(root=root, device="cpu")


def test_missing_zoo_says_how_to_build(tmp_path):
    from catlib.benchmarks.tiny import load_tiny_large

    with pytest.raises(Z.ZooError, match=r"zoo build --size large"):
        load_tiny_large(root=tmp_path / "nothing", device="cpu")


def test_reduced_zoo_benchmark_reproduces_manifest(reduced_zoos):
    from catlib.benchmarks.tiny import load_tiny
    from catlib.benchmarks.evaluate import evaluate

    root, m = reduced_zoos[0]
    bench = load_tiny(root=root, device="cpu", tasks=["signs", "textures"])
    acc = evaluate(bench, bench.finetuned["signs"], tasks=["signs"])
    assert acc["signs"] == pytest.approx(m["results"]["individual"]["signs"], abs=1e-6)
    acc = evaluate(bench)
    for t in bench.tasks:
        assert acc[t] == pytest.approx(m["results"]["pretrained"][t], abs=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# the shipped zoo through the Benchmark interface
# ---------------------------------------------------------------------------------------------------------------


@shipped
def test_shipped_zoo_interface_and_accuracy():
    from catlib.benchmarks import Benchmark, load_benchmark
    from catlib.benchmarks.evaluate import evaluate

    bench = load_benchmark("tiny", device="cpu")
    assert isinstance(bench, Benchmark) and bench.name == "tiny"
    assert bench.tasks == bench.all_tasks == D.TASK_NAMES
    keys = set(bench.pretrained)
    assert all(set(bench.finetuned[t]) == keys for t in bench.tasks) and set(bench.mtl) == keys
    assert all(v.dtype == torch.float32 for v in bench.pretrained.values())
    enc = bench.build_module()
    x = bench.exemplars("scenes", 3, seed=1)
    assert x.shape == (3, 3, 32, 32) and torch.equal(x, bench.exemplars("scenes", 3, seed=1))
    assert not torch.equal(x, bench.exemplars("scenes", 3, seed=2))
    xl, yl = bench.exemplars("scenes", 3, seed=1, labelled=True)
    assert torch.equal(xl, x) and yl.dtype == torch.int64
    with torch.no_grad():
        f = enc(x)
    for t in bench.tasks:
        C = len(bench.class_names(t))
        assert bench.heads[t](f).shape == (3, C)
    xb, yb = next(iter(bench.loader("textures", "test", batch_size=7)))
    assert xb.shape == (7, 3, 32, 32) and yb.shape == (7,)
    # evaluate() on the shipped weights reproduces the manifest (one task, to stay fast)
    m = bench.manifest["results"]
    t = "signs"
    assert evaluate(bench, bench.finetuned[t], tasks=[t])[t] == pytest.approx(m["individual"][t], abs=0.2)
    assert evaluate(bench, tasks=[t])[t] == pytest.approx(m["pretrained"][t], abs=0.2)
    sub = load_benchmark("tiny", device="cpu", tasks=["mnist"] if "mnist" in D.TASK_NAMES else ["handwritten"])
    assert len(sub.tasks) == 1 and len(sub.all_tasks) == 8


# ---------------------------------------------------------------------------------------------------------------
# rebuilding from an existing zoo: only the stages whose inputs changed are recomputed
# ---------------------------------------------------------------------------------------------------------------


def test_reuse_recomputes_only_changed_stages(reduced_zoos, tmp_path, monkeypatch):
    """A renderer change in one task: --reuse takes θ0 and the other tasks' experts from the built zoo and gives
    exactly the files a from-scratch build with the changed renderer gives."""
    (src, m0), _ = reduced_zoos
    monkeypatch.setattr(D, "TEXTURE_PERIOD", (8.0, 12.0))
    monkeypatch.setitem(D.TASKS["textures"], "version", D.task_version("textures") + 1)
    logs = []
    m = build("default", out=tmp_path / "reused", cfg=reduced_zoo_config(), use_cache=False, reuse=src, log=logs.append)
    fresh = build("default", out=tmp_path / "fresh", cfg=reduced_zoo_config(), use_cache=False, log=lambda s: None)
    assert set(m["build"]["reused"]) == {"pretrained"} | {t for t in D.TASK_NAMES if t != "textures"}
    assert any("recomputing textures, mtl" in s for s in logs), logs
    for key, info in fresh["files"].items():
        assert m["files"][key]["sha256"] == info["sha256"], f"{key}: reused build differs from a fresh one"
    for key in ("pretrained", "finetuned/signs"):  # unchanged stages: the very files of the source zoo
        assert m["files"][key]["sha256"] == m0["files"][key]["sha256"]
    for key in ("finetuned/textures", "mtl", "heads"):
        assert m["files"][key]["sha256"] != m0["files"][key]["sha256"], key
    assert m["task_versions"]["textures"] == m0["task_versions"]["textures"] + 1
    assert m["results"]["average"] == fresh["results"]["average"]


def test_reuse_checks_recipe_and_threads(reduced_zoos, tmp_path):
    (src, m0), _ = reduced_zoos
    cfg = reduced_zoo_config()
    cfg["pretrain"]["lr"] *= 2  # another θ0: nothing can be reused
    assert train.reusable_stages(src, cfg, D.TASK_NAMES, {}, threads=1, log=lambda s: None) == {}
    cfg = reduced_zoo_config()
    assert train.reusable_stages(src, cfg, D.TASK_NAMES, {}, threads=2, log=lambda s: None) == {}  # built with 1
    cfg["finetune"]["lr"] *= 2  # same θ0, other fine-tunes: θ0 only
    sha = {t: m0["data_sha256"][t]["train"] for t in D.TASK_NAMES}
    kept = train.reusable_stages(src, cfg, D.TASK_NAMES, sha, threads=1, log=lambda s: None)
    assert set(kept) == {"pretrained", "mtl"}
    two = tmp_path / "two-threads"  # a zoo whose fine-tunes ran with 2 threads (threads=2, jobs=1)
    shutil.copytree(src, two)
    m2 = json.loads((two / "manifest.json").read_text())
    m2["build"].update(threads=2, jobs=1)
    (two / "manifest.json").write_text(json.dumps(m2))
    quiet = dict(cfg=reduced_zoo_config(), tasks=D.TASK_NAMES, train_sha=sha, threads=2, log=lambda s: None)
    assert len(train.reusable_stages(two, jobs=1, **quiet)) == 10
    assert set(train.reusable_stages(two, jobs=2, **quiet)) == {"pretrained"}  # 1-thread workers would differ
    bad = tmp_path / "bad"
    shutil.copytree(src, bad)
    (bad / m0["files"]["mtl"]["path"]).write_bytes(b"x")
    with pytest.raises(Z.ZooError, match="mtl.safetensors"):  # a damaged source zoo is refused, not trusted
        train.reusable_stages(bad, reduced_zoo_config(), D.TASK_NAMES, sha, threads=1)


def test_head_exemplars_few_shot():
    """heads.shots: each class prototype from that many training images, drawn per task from a seed; absent: all."""
    Y = np.arange(40) % 4
    every = train.head_exemplars(Y, 4, None, 0, "signs")
    assert [list(i) for i in every] == [list(range(c, 40, 4)) for c in range(4)]
    few = train.head_exemplars(Y, 4, 3, 0, "signs")
    assert all(len(i) == 3 and (Y[i] == c).all() and len(set(i)) == 3 for c, i in enumerate(few))
    assert [list(i) for i in few] == [list(i) for i in train.head_exemplars(Y, 4, 3, 0, "signs")]  # deterministic
    assert [list(i) for i in few] != [list(i) for i in train.head_exemplars(Y, 4, 3, 1, "signs")]  # seeded
    assert [list(i) for i in few] != [list(i) for i in train.head_exemplars(Y, 4, 3, 0, "scenes")]  # per task
    for bad in (11, 0):
        with pytest.raises(ValueError, match=f"heads.shots={bad}"):
            train.head_exemplars(Y, 4, bad, 0, "signs")


def test_stage_cache_keys_hold_the_thread_count(cache, tmp_path):
    """Stages cached by a 1-thread build are not taken by a 2-thread build (its float sums differ); a later
    1-thread build takes all of them, and an unreadable cache file is recomputed."""
    cfg = reduced_zoo_config()
    cfg["finetune"]["seed"] += 7  # stage keys no other test writes to the shared cache
    logs = {}
    try:
        for name, threads in (("one", 1), ("two", 2), ("again", 1)):
            logs[name] = []
            build("default", out=tmp_path / name, cfg=cfg, threads=threads, log=logs[name].append)
    finally:
        torch.set_num_threads(1)  # the tests' setting (conftest)
    reusing = lambda name: [s for s in logs[name] if s.startswith("reusing ")]  # noqa: E731
    assert not [s for s in reusing("two") if "-t1" in s or "ft-" in s or "mtl-" in s], reusing("two")
    assert sum("ft-" in s or "mtl-" in s for s in reusing("again")) == len(D.TASK_NAMES) + 1
    one, again = (json.loads((tmp_path / n / "manifest.json").read_text()) for n in ("one", "again"))
    assert {k: v["sha256"] for k, v in one["files"].items()} == {k: v["sha256"] for k, v in again["files"].items()}
    stage = next(s.split()[-1] for s in reusing("again") if "ft-" in s)
    with open(stage, "r+b") as f:
        f.truncate(100)
    log = []
    m = build("default", out=tmp_path / "repaired", cfg=cfg, threads=1, log=log.append)
    assert any("unreadable: recomputing" in s for s in log), log
    assert {k: v["sha256"] for k, v in m["files"].items()} == {k: v["sha256"] for k, v in one["files"].items()}


# ---------------------------------------------------------------------------------------------------------------
# caption-like source attributes (the opt-in pretraining recipe pretrain.attribute_weight)
# ---------------------------------------------------------------------------------------------------------------


def test_source_attributes_describe_the_images():
    X, _, _, A = D.make_source(600, seed=5, easy_frac=0.3)
    col = {name: A[:, k] for k, name in enumerate(D.SOURCE_ATTRIBUTES)}
    assert A.shape == (600, len(D.SOURCE_ATTRIBUTES)) and A.dtype == np.int64
    for name, values in D.SOURCE_ATTRIBUTE_VALUES.items():
        assert col[name].max() < len(values) and col[name].min() >= -1, name
    style = col["style"]
    only = {"field resolution": 1, "pattern": 2, "period": 2, "orientation": 2, "horizon": 3}
    for name, s in only.items():  # an attribute applies exactly to its background style
        assert np.array_equal(col[name] >= 0, style == s), name
    for name in ("style", "plate", "neighbours", "glyph size", "blur"):
        assert (col[name] >= 0).all(), name
    for name, values in D.SOURCE_ATTRIBUTE_VALUES.items():  # every class occurs
        assert set(np.unique(col[name][col[name] >= 0])) == set(range(len(values))), name
    corners = X[:, [0, 0, -1, -1], [0, -1, 0, -1]].astype(float)  # (n, 4, 3)
    black = corners[style == 4].mean(axis=(1, 2))
    assert (black < 70).mean() > 0.9  # "black" backgrounds are dark ...
    solid = np.ptp(corners[style == 5], axis=1).max(axis=1)
    assert (solid < 40).mean() > 0.9  # ... and "solid" ones are one colour
    cap = D.source_caption(A[np.flatnonzero(style == 2)[0]])
    assert cap.startswith("style: periodic, pattern: ") and "period: " in cap and "field resolution" not in cap


def test_attribute_pretraining_is_opt_in(cache):
    cfg = reduced_zoo_config()
    base = train.pretrain(cfg, log=lambda s: None)
    cfg0 = reduced_zoo_config()
    cfg0["pretrain"]["attribute_weight"] = 0.0
    assert all(torch.equal(base[k], v) for k, v in train.pretrain(cfg0, log=lambda s: None).items())
    cfg1 = reduced_zoo_config()
    cfg1["pretrain"]["attribute_weight"] = 1.0
    with_attr = train.pretrain(cfg1, log=lambda s: None)
    assert all(torch.isfinite(v).all() for v in with_attr.values())
    assert any(not torch.equal(base[k], v) for k, v in with_attr.items())
    heads = torch.nn.ModuleList(torch.nn.Linear(4, len(v)) for v in D.SOURCE_ATTRIBUTE_VALUES.values())
    A = torch.full((3, len(D.SOURCE_ATTRIBUTES)), -1, dtype=torch.int64)
    A[:, 0] = torch.tensor([0, 5, 2])
    loss = train.attribute_loss(heads, torch.randn(3, 4), A)  # attributes absent from the batch are skipped
    assert torch.isfinite(loss) and loss > 0


def test_glyph_family_labels(cache):
    """pretrain.labels="glyph_family": the same images, each labelled with its glyph and the typeface it is drawn in."""
    names = D.source_classes("glyph_family")
    assert D.source_classes("glyph") == D.SOURCE_TEXT and len(set(names)) == len(names) == 418
    assert D.font_family("DejaVuSans-BoldOblique.ttf") == "DejaVuSans" == D.font_family("DejaVuSans.ttf")
    assert {D.font_family(f) for f in D.FONT_FILES} == {"DejaVuSans", "DejaVuSerif", "DejaVuSansMono", "STIXGeneral"}
    X, y, T, A = D.make_source(300, seed=5, easy_frac=0.3)
    X2, y2, T2, A2 = D.make_source(300, seed=5, easy_frac=0.3, labels="glyph_family")
    assert np.array_equal(X, X2) and np.array_equal(T, T2) and np.array_equal(A, A2)
    assert [names[k].split(" (")[0] for k in y2] == [D.SOURCE_TEXT[k] for k in y]  # the glyph is kept
    assert len({names[k].split(" (")[1] for k in y2}) == 4  # every typeface occurs
    with pytest.raises(ValueError, match="pretrain.labels='font'"):
        D.make_source(3, seed=5, labels="font")
    cfg = reduced_zoo_config()
    cfg["pretrain"]["labels"] = "glyph_family"
    sd = train.pretrain(cfg, log=lambda s: None)
    assert all(torch.isfinite(v).all() for v in sd.values())
    base = reduced_zoo_config()
    base["pretrain"]["labels"] = "glyph"  # the explicit default changes nothing
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            train.pretrain(base, log=lambda s: None).values(),
            train.pretrain(reduced_zoo_config(), log=lambda s: None).values(),
        )
    )


def test_probe_theta0_script(reduced_zoos, tmp_path, monkeypatch):
    """scripts/probe_theta0.py: θ0 of a changed recipe beside the shipped θ0, per task and split, as JSON."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("probe_theta0", Z.repo_root() / "scripts" / "probe_theta0.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    root, m = reduced_zoos[0]  # stands in for the shipped zoo, with the reduced recipe
    monkeypatch.setitem(recipes.CONFIGS, "default", reduced_zoo_config())
    monkeypatch.setattr(probe, "default_root", lambda size: root)
    change = 'pretrain.labels="glyph_family"'
    out = tmp_path / "probe.json"
    assert probe.main(["--sizes", "default", "--set", change, "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["changes"] == [change] and list(r["sizes"]) == ["default"]
    for which in ("probe", "shipped"):
        for split in ("val", "test"):
            acc = r["sizes"]["default"][which][split]
            assert set(acc["per_task"]) == set(D.TASK_NAMES) and 0 <= acc["average"] <= 100
    assert r["sizes"]["default"]["shipped"] == probe.theta0_accuracy(  # the shipped θ0 with its own heads
        reduced_zoo_config(), Z.load_state(root, m, "pretrained")
    )
    cfg = recipes.recipe_with("default", [change])
    cached = train.stage_dir("default", cfg, 1) / "pretrained.pt"
    assert cached.exists()  # a later `zoo build --set ...` with the same recipe and threads takes this θ0
    theta0 = train.pretrained_stage("default", cfg, 1)
    assert any(not torch.equal(theta0[k], v) for k, v in Z.load_state(root, m, "pretrained").items())


def test_recipe_changes_for_probe_builds(capsys):
    cfg = recipes.recipe_with("large", ["pretrain.attribute_weight=1.5", "finetune.steps=600"])
    assert cfg["pretrain"]["attribute_weight"] == 1.5 and cfg["finetune"]["steps"] == 600
    assert "attribute_weight" not in recipes.CONFIGS["large"]["pretrain"]  # the recipes themselves are untouched
    assert recipes.recipe_with("default", ['pretrain.labels="glyph_family"'])["pretrain"]["labels"] == "glyph_family"
    for size, cfg in recipes.CONFIGS.items():  # an optional key's default applies only where a recipe leaves it out
        assert not any(k in cfg[sec] for sec, keys in recipes.OPTIONAL_KEYS.items() for k in keys), size
    for bad in ("pretrain.lr", "nosuch.lr=1", "pretrain.lr=1e-3x", "pretrain=1"):
        with pytest.raises(ValueError, match="recipe change"):
            recipes.recipe_with("default", [bad])
    with pytest.raises(ValueError, match=r"no key 'lables' in section 'pretrain'; its keys: .*labels"):
        # a typo would otherwise build the shipped recipe
        recipes.recipe_with("default", ['pretrain.lables="glyph_family"'])
    with pytest.raises(ValueError, match=r"a string needs quotes: --set 'pretrain.labels=\"glyph_family\"'"):
        recipes.recipe_with("default", ["pretrain.labels=glyph_family"])  # what the shell leaves of an unquoted string
    with pytest.raises(SystemExit):  # a probe never overwrites the shipped zoo
        Z.main(["build", "--set", "pretrain.attribute_weight=1.0"])
    assert "give --out" in capsys.readouterr().err


def test_zoo_module_keeps_the_build_names():
    """The names callers imported from the zoo module before the build moved to catlib.benchmarks.tiny.build."""
    from catlib.benchmarks import evaluate as E
    from catlib.benchmarks.tiny.build import results
    from catlib.benchmarks.tiny.zoo import CONFIGS, recipe_with  # noqa: F401  (scripts/build_book.py, conftest)

    assert CONFIGS is recipes.CONFIGS and Z.build is build and Z.cpu_model is cpu_model and Z.mean is E.average
    for name in ("OPTIONAL_KEYS", "option", "recipe_with"):
        assert getattr(Z, name) is getattr(recipes, name), name
    for name in (
        "pretrain",
        "attribute_loss",
        "head_exemplars",
        "make_heads",
        "finetune",
        "fp16_round",
        "pretrained_stage",
        "stage_dir",
        "reusable_stages",
        "BUILD_VERSION",
    ):
        assert getattr(Z, name) is getattr(train, name), name
    for name in ("accuracies", "evaluate_zoo", "acceptance"):
        assert getattr(Z, name) is getattr(results, name), name
    with pytest.raises(AttributeError):
        Z.no_such_name  # noqa: B018
