"""The real-benchmark path end to end on generated stand-ins: checkpoints in every layout + a task_vectors-style
data root → ``load_openclip_benchmark`` → ``catlib.evaluate``; compared with an independent open_clip pipeline."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("CATLIB_PROGRESS", "0")

from standins import DTD_STANDIN_CLASSES, TINY_MODEL_NAME, make_standin_roots  # noqa: E402

from catlib.benchmarks import load_benchmark  # noqa: E402
from catlib.benchmarks.clip import load_openclip_benchmark  # noqa: E402
from catlib.benchmarks.clip.checkpoints import CheckpointNotFoundError  # noqa: E402
from catlib.benchmarks.clip.datasets import DatasetMissingError, base_splits, carve_val  # noqa: E402
from catlib.benchmarks.evaluate import evaluate  # noqa: E402
from catlib.benchmarks.clip.tasks import TASKS  # noqa: E402

torch.set_num_threads(1)


def _bench(roots, which="checkpoint_root", **kw):
    kw.setdefault("cache_dir", Path(roots["data_root"]).parent / "head_cache")
    return load_openclip_benchmark(
        roots["model_name"], roots[which], roots["data_root"], tasks=roots["tasks"], device="cpu", batch_size=16, **kw
    )


def _independent_accuracy(roots, task, clip_model, head_weight):
    """Accuracy on the test split computed without catlib: files read directly, open_clip's transform and model."""
    import open_clip
    from PIL import Image

    tf = open_clip.image_transform(32, is_train=False)
    data = Path(roots["data_root"])
    if task == "DTD":
        items = [
            (p, i) for i, c in enumerate(DTD_STANDIN_CLASSES) for p in sorted((data / "dtd" / "val" / c).iterdir())
        ]
        imgs = [tf(Image.open(p).convert("RGB")) for p, _ in items]
        labels = [y for _, y in items]
    elif task == "MNIST":
        raw = data / "MNIST" / "raw"
        n = int.from_bytes((raw / "t10k-labels-idx1-ubyte").read_bytes()[4:8], "big")
        px = torch.frombuffer(bytearray((raw / "t10k-images-idx3-ubyte").read_bytes()[16:]), dtype=torch.uint8)
        px = px.view(n, 28, 28)
        labels = list((raw / "t10k-labels-idx1-ubyte").read_bytes()[8:])
        imgs = [tf(Image.fromarray(px[i].numpy(), mode="L").convert("RGB")) for i in range(n)]
    else:
        raise ValueError(task)
    with torch.no_grad():
        feats = clip_model.encode_image(torch.stack(imgs))
        logits = F.normalize(feats, dim=-1) @ head_weight.T
    return 100.0 * int((logits.argmax(1) == torch.tensor(labels)).sum()) / len(labels)


@pytest.mark.parametrize(
    "which,kw", [("checkpoint_root", {}), ("pickle_root", {"trust_pickle": True}), ("hf_root", {})]
)
def test_end_to_end_evaluate_matches_independent_pipeline(roots, which, kw):
    bench = _bench(roots, which, **kw)
    assert bench.tasks == roots["tasks"] and bench.mtl is None
    for task in ("MNIST", "DTD"):
        acc = evaluate(bench, bench.finetuned[task], tasks=[task])[task]
        ref = _independent_accuracy(roots, task, roots["finetuned"][task], bench.heads[task].weight)
        assert acc == pytest.approx(ref, abs=1e-6)
    # heads from head files (task_vectors) and from the HF text tower agree with the generator's
    from standins import task_vectors_head_weights
    from catlib.benchmarks.clip.tasks import TEMPLATES

    for t in roots["tasks"]:
        ref = task_vectors_head_weights(roots["base"], roots["class_names"][t], TEMPLATES[t])
        assert torch.allclose(bench.heads[t].weight, ref, atol=1e-4), t
    # θ0 accuracy on every task runs through the default path too
    res = evaluate(bench)
    assert set(res) == set(roots["tasks"]) and all(0.0 <= v <= 100.0 for v in res.values())
    # the stand-in experts were fine-tuned on their task: they beat θ0 there
    assert evaluate(bench, bench.finetuned["DTD"], tasks=["DTD"])["DTD"] > res["DTD"]


def test_build_module_exemplars_class_names(roots):
    bench = _bench(roots)
    enc = bench.build_module()
    x = bench.exemplars("DTD", 5, seed=3)
    assert x.shape == (5, 3, 32, 32)
    assert torch.equal(x, bench.exemplars("DTD", 5, seed=3)) and not torch.equal(x, bench.exemplars("DTD", 5, seed=4))
    xs, ys = bench.exemplars("EuroSAT", 4, seed=0, labelled=True)
    assert xs.shape == (4, 3, 32, 32) and ys.dtype == torch.int64 and ys.shape == (4,)
    with torch.no_grad():
        f = enc(x)
    assert f.shape == (5, 16) and bench.heads["DTD"](f).shape == (5, 3)
    with torch.no_grad():
        ref = roots["base"].encode_image(x)
    assert torch.allclose(f, ref, atol=1e-5)
    assert bench.class_names("DTD") == DTD_STANDIN_CLASSES
    assert bench.class_names("EuroSAT")[:3] == ["annual crop land", "forest", "brushland or shrubland"]
    assert bench.class_names("MNIST") == [str(i) for i in range(10)]
    with pytest.raises(ValueError, match="exemplars"):
        bench.exemplars("DTD", 10_000)
    with pytest.raises(KeyError):
        bench.loader("GTSRB", "test")


def test_splits_val_carved_deterministically(roots):
    bench = _bench(roots)
    for task in ("MNIST", "DTD"):
        tr, va = bench.dataset(task, "train"), bench.dataset(task, "val")
        assert set(tr.indices).isdisjoint(va.indices) and len(tr) + len(va) == 30
        split = torch.utils.data.random_split(range(30), [27, 3], generator=torch.Generator().manual_seed(0))
        assert list(tr.indices) == list(split[0].indices) and list(va.indices) == list(split[1].indices)
    assert len(bench.dataset("EuroSAT", "val")) == 10  # EuroSAT's own val folder (task_vectors' EuroSATVal)
    assert carve_val(100_000)[1][:3] == carve_val(100_000)[1][:3] and len(carve_val(100_000)[1]) == 5000
    x, y = next(iter(bench.loader("MNIST", "test", batch_size=8)))
    assert x.shape == (8, 3, 32, 32) and y.tolist() == list(range(8))
    # worker processes see the same data (datasets and transforms are picklable)
    bench_w = _bench(roots, num_workers=1)
    xw, yw = next(iter(bench_w.loader("MNIST", "test", batch_size=8)))
    assert torch.equal(xw, x) and torch.equal(yw, y)


def test_heads_from_openclip_weights_when_no_head_files(roots, tmp_path):
    root = tmp_path / "ckpt"
    shutil.copytree(roots["checkpoint_root"], root)
    for f in (root / TINY_MODEL_NAME).glob("head_*.pt"):
        f.unlink()
    with pytest.raises(ValueError, match="openclip_weights"):
        load_openclip_benchmark(
            TINY_MODEL_NAME, root, roots["data_root"], tasks=["DTD"], device="cpu", cache_dir=tmp_path / "cache"
        )
    bench = load_openclip_benchmark(
        TINY_MODEL_NAME,
        root,
        roots["data_root"],
        tasks=["DTD"],
        device="cpu",
        cache_dir=tmp_path / "cache",
        openclip_weights=roots["openclip_weights"],
    )
    ref = _bench(roots).heads["DTD"].weight
    assert torch.allclose(bench.heads["DTD"].weight, ref, atol=1e-4)
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 1


def test_all_eight_dataset_layouts(tmp_path):
    from standins import ALL_STANDIN_TASKS, make_data_root, standin_class_names
    from catlib.benchmarks.clip.datasets import TaskData

    make_data_root(tmp_path, ALL_STANDIN_TASKS)
    sizes = {
        "SUN397": (30, 6),
        "Cars": (30, 6),
        "RESISC45": (30, 6),
        "EuroSAT": (20, 20),
        "SVHN": (30, 10),
        "GTSRB": (30, 6),
        "MNIST": (30, 20),
        "DTD": (30, 12),
    }
    for task in ALL_STANDIN_TASKS:
        train, test, val, names = base_splits(task, tmp_path, None)
        assert (len(train), len(test)) == sizes[task], task
        assert names == standin_class_names(task), task
        img, label = test[0]
        assert img.mode == "RGB" and isinstance(label, int)
        labels = {test[i][1] for i in range(len(test))}
        assert labels <= set(range(len(names))) and len(labels) >= 3, task
        data = TaskData(task, tmp_path, None)
        assert len(data["train"]) + len(data["val"]) == len(train) + (len(val) if val is not None else 0)
    assert base_splits("SVHN", tmp_path, None)[1][0][1] == 0  # label 10 in the .mat file is digit 0


def test_eight_task_standin_benchmark(tmp_path):
    """All eight tasks through both checkpoint layouts: same state dicts, heads and accuracies; experts beat θ0."""
    from standins import ALL_STANDIN_TASKS

    r = make_standin_roots(tmp_path, tasks=ALL_STANDIN_TASKS)
    tv = load_openclip_benchmark(r["model_name"], r["checkpoint_root"], r["data_root"], device="cpu")
    hf = load_openclip_benchmark(
        r["model_name"], r["hf_root"], r["data_root"], device="cpu", cache_dir=tmp_path / "cache"
    )
    assert tv.tasks == hf.tasks == TASKS
    zero = evaluate(tv)
    assert evaluate(hf) == zero
    experts = {t: evaluate(tv, tv.finetuned[t], tasks=[t])[t] for t in TASKS}
    assert sum(experts.values()) > sum(zero.values())
    for t in TASKS:
        assert torch.allclose(tv.heads[t].weight, hf.heads[t].weight, atol=1e-4)


def test_missing_dataset_dirs_name_expected_path(roots, tmp_path):
    for task in TASKS:
        with pytest.raises(DatasetMissingError) as e:
            base_splits(task, tmp_path, None)
        assert str(tmp_path) in str(e.value) and "never downloads" in str(e.value)
        assert isinstance(e.value, FileNotFoundError)
    with pytest.raises(DatasetMissingError, match=r"dtd.train"):
        base_splits("DTD", tmp_path, None)
    with pytest.raises(DatasetMissingError, match="EuroSAT_splits"):
        base_splits("EuroSAT", tmp_path, None)
    # the benchmark loads without touching data (task_vectors heads), and fails on first use with the path
    bench = load_openclip_benchmark(
        TINY_MODEL_NAME, roots["checkpoint_root"], tmp_path / "data", tasks=["DTD"], device="cpu"
    )
    with pytest.raises(DatasetMissingError, match="data_root does not exist"):
        bench.loader("DTD", "test")
    # HF layout needs class names to build heads: the error comes at load time
    with pytest.raises(DatasetMissingError, match="dtd"):
        load_openclip_benchmark(
            TINY_MODEL_NAME, roots["hf_root"], tmp_path, tasks=["DTD"], device="cpu", cache_dir=tmp_path / "cache"
        )


def test_head_and_dataset_class_counts_must_agree(roots, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(roots["data_root"], data)
    shutil.rmtree(data / "dtd" / "train" / "braided")
    shutil.rmtree(data / "dtd" / "val" / "braided")
    bench = load_openclip_benchmark(TINY_MODEL_NAME, roots["checkpoint_root"], data, tasks=["DTD"], device="cpu")
    with pytest.raises(ValueError, match="head has 3 classes"):
        bench.loader("DTD", "test")


def test_registry_names_real_benchmarks(tmp_path):
    with pytest.raises(CheckpointNotFoundError) as e:
        load_benchmark("vit-b-32", checkpoint_root=tmp_path, data_root=tmp_path, device="cpu")
    assert "ViT-B-32" in str(e.value) and "clip-vit-base-patch32" in str(e.value)
    with pytest.raises(KeyError, match="unknown task"):
        load_benchmark("vit-l-14", checkpoint_root=tmp_path, data_root=tmp_path, tasks=["ImageNet"])


def test_evaluate_takes_batch_size_and_amp_from_the_benchmark(roots, monkeypatch):
    """catlib.evaluate's defaults come from the benchmark: its batch_size, and amp (on only for CUDA benchmarks)."""
    import importlib

    EV = importlib.import_module("catlib.evaluate")  # the module (catlib.evaluate the attribute is the function)
    bench = load_openclip_benchmark(
        roots["model_name"],
        roots["checkpoint_root"],
        roots["data_root"],
        tasks=roots["tasks"],
        device="cpu",
        batch_size=7,
        cache_dir=Path(roots["data_root"]).parent / "head_cache",
    )
    assert bench.amp is False  # CPU: no autocast by default
    seen = []
    real_accuracy = EV.accuracy
    monkeypatch.setattr(
        EV,
        "accuracy",
        lambda enc, head, loader, device, amp=False, desc=None: (
            seen.append((loader.batch_size, amp)) or real_accuracy(enc, head, loader, device, amp, desc)
        ),
    )
    evaluate(bench, tasks=["MNIST"])
    bench.amp = True
    evaluate(bench, tasks=["MNIST"], batch_size=5)
    evaluate(bench, tasks=["MNIST"], amp=False)
    assert seen == [(7, False), (5, True), (7, False)]
