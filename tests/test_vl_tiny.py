"""vl-tiny, the embedded Table 4 benchmark: its procedural data, a smoke build end to end (pretraining, fine-tuning,
measuring, the zoo written atomically and verified on loading, a replicate from the same θ0), and the shipped zoo
measuring what its manifest says."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import catlib
from catlib.benchmarks.vl_tiny import data as D
from catlib.core.errors import ZooError

pytest.importorskip("transformers")
ROOT = Path(__file__).resolve().parents[1]


def test_items_are_pure_functions_of_their_indices():
    for task in D.TASKS:
        a, b = D.task_item(task, "train", 7, 0), D.task_item(task, "train", 7, 0)
        assert np.array_equal(a[0], b[0]) and a[1:] == b[1:]
        c = D.task_item(task, "test", 7, 0)
        assert not np.array_equal(a[0], c[0])  # another split, another item
        assert a[0].shape == (D.SIZE, D.SIZE, 3) and a[0].dtype == np.uint8


def test_vocabulary_covers_every_text_and_round_trips():
    for task in D.TASKS:
        for i in range(60):
            img, q, a, refs = D.task_item(task, "train", i, 3)
            for text in [q, a, *refs]:
                assert D.UNK not in D.encode(text), (task, text)
            assert D.decode(D.answer_ids(a)) == " ".join(D.words(a))
            if task in ("coco_caption", "flickr30k", "textcaps"):
                assert a in refs  # the training caption is one of the references
            elif task == "scienceqa":
                assert refs == [a] and a in ("1", "2") and f"( {a} )" in q  # the right option's number
            else:
                assert len(refs) == 10 and refs.count(a) >= 1  # ten annotators, the target among them
    for i in range(30):
        img, q, a = D.pretrain_item(i, 0)
        assert D.UNK not in D.encode(q) + D.encode(a)


def test_sign_words_are_drawn():
    """The sign's word is in the pixels: two items that differ only by their word differ in the image."""
    rng = np.random.default_rng(0)
    img = np.zeros((D.SIZE, D.SIZE, 3), dtype=np.float32)
    D._sign(img, rng, "zoo", "red", 5, 5)
    other = np.zeros_like(img)
    D._sign(other, np.random.default_rng(0), "bus", "red", 5, 5)
    assert np.abs(img - other).max() > 100


@pytest.fixture(scope="module")
def smoke_zoo(tmp_path_factory):
    out = tmp_path_factory.mktemp("vl") / "vl-tiny"
    from catlib.benchmarks.vl_tiny.build import build

    manifest = build(out, smoke=True, log=lambda m: None)
    return out, manifest


def test_smoke_build_loads_and_merges(smoke_zoo):
    out, manifest = smoke_zoo
    assert not list(out.parent.glob(".vl-tiny.tmp-*"))  # written under a temporary name, then renamed
    b = catlib.load_benchmark("vl-tiny", root=out)
    assert b.tasks == list(D.TASKS) and b.generative
    sd = b.pretrained
    from catlib.benchmarks.vl_tiny.benchmark import TIED
    from catlib.core.statedict import tied_keys

    assert tied_keys(b.build_module().state_dict()) == TIED == tied_keys(sd)  # every alias the module ties, tied
    from safetensors import safe_open

    with safe_open(str(out / "pretrained.safetensors"), "pt") as f:
        assert not set(TIED) & set(f.keys())  # stored once, under the source's key
    # the build measured what the loaded zoo measures
    scores = catlib.evaluate(b, b.finetuned["okvqa"], "test", ["okvqa"])
    assert scores["okvqa"] == pytest.approx(manifest["results"]["individual"]["test"]["okvqa"], abs=1e-9)
    merged = catlib.merge(
        "cat", b.pretrained, b.finetuned_list(), module=b.build_module(), exemplars=b.exemplar_batches(2),
        alpha=0.3, c=2, lam=1.0,
    )  # fmt: skip
    assert set(merged) == set(sd)
    # a method reading per-parameter gradient statistics (the module names a tied parameter once)
    merged = catlib.merge(
        "tatr", b.pretrained, b.finetuned_list(), module=b.build_module(),
        exemplars=b.exemplar_batches(2, labelled=True), heads=b.head_list(),
        stats_options={"losses": [b.loss(t) for t in b.tasks]}, alpha=0.3, remove_ratio=0.1,
    )  # fmt: skip
    for alias, source in TIED.items():
        assert torch.equal(merged[alias], merged[source])
    x, y = b.exemplars("scienceqa", 4, labelled=True)
    assert y.shape[0] == 4 and (y[:, 0] != -100).all()


def test_replicate_and_damaged_zoo(smoke_zoo, tmp_path):
    out, manifest = smoke_zoo
    from catlib.benchmarks.vl_tiny.build import build

    rep = out.parent / "vl-tiny-r1"
    m1 = build(rep, smoke=True, log=lambda m: None, reuse=out, replicate=1)
    assert m1["finetune_seeds"]["okvqa"] == manifest["finetune_seeds"]["okvqa"] + 100
    assert m1["files"]["pretrained.safetensors"] == manifest["files"]["pretrained.safetensors"]  # the same θ0
    b0, b1 = catlib.load_benchmark("vl-tiny", root=out), catlib.load_benchmark("vl-tiny", root=out, replicate=1)
    differ = [k for k in b0.pretrained if not torch.equal(b1.finetuned["okvqa"][k], b0.finetuned["okvqa"][k])]
    assert differ  # other fine-tuning seeds, the same θ0
    assert all(torch.equal(b1.pretrained[k], b0.pretrained[k]) for k in b0.pretrained)
    with pytest.raises(ZooError, match="replicate"):
        catlib.load_benchmark("vl-tiny", root=out, replicate=2)
    bad = tmp_path / "bad"
    import shutil

    shutil.copytree(out, bad)
    (bad / "finetuned_textvqa.safetensors").write_bytes(b"0" * 10)
    with pytest.raises(ZooError, match="sha256"):
        catlib.load_benchmark("vl-tiny", root=bad)
    with pytest.raises(ZooError, match="no vl-tiny zoo"):
        catlib.load_benchmark("vl-tiny", root=tmp_path / "nothing")


def test_build_cli_errors_exit_2(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "catlib.benchmarks.vl_tiny.build", "--out", str(tmp_path / "x"), "--replicate", "1"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert r.returncode == 2 and "needs --reuse" in r.stderr and "Traceback" not in r.stderr


def test_shipped_zoo_measures_what_its_manifest_says():
    """data/vl-tiny: every file matches the manifest, and one expert scores on test what the build recorded."""
    b = catlib.load_benchmark("vl-tiny")
    m = b.manifest
    assert m["build_version"] >= 1 and not m["smoke"]
    task = "textvqa"
    got = catlib.evaluate(b, b.finetuned[task], "test", [task])[task]
    assert got == pytest.approx(m["results"]["individual"]["test"][task], abs=1e-6)
    assert json.loads((b.root / "manifest.json").read_text())["tasks"] == list(D.TASKS)
