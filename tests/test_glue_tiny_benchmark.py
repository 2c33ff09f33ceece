"""``load_benchmark("glue-tiny")`` on a smoke build made here: the loader reads the zoo the build wrote, regenerates
the same data, and catlib's evaluation reproduces the numbers the build measured with its own code (Individual,
weight averaging); every merge method runs on it through the protocol; a damaged file is refused."""

import json

import pytest
import torch

import catlib
from catlib.core.errors import ZooError

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    from catlib.benchmarks.glue_tiny import build

    out = tmp_path_factory.mktemp("glue_tiny") / "zoo"
    build.build(out, threads=1, smoke=True, log=lambda m: None)
    return out


def test_the_loader_reproduces_the_builds_own_measurements(zoo):
    bench = catlib.load_benchmark("glue-tiny", root=zoo)
    manifest = json.loads((zoo / "manifest.json").read_text())
    assert bench.tasks == ["cola", "mnli", "mrpc", "qnli", "qqp", "rte", "sst2", "stsb"]  # the paper's Table 3 order
    assert catlib.benchmarks.evaluate.metric_names(bench)["cola"] == "Matthews correlation"
    res = manifest["results"]
    for t in ("cola", "stsb", "mnli"):
        got = catlib.evaluate(bench, bench.finetuned[t], "test", [t])[t]
        assert got == pytest.approx(res["individual"]["test"][t], abs=1e-4), t
    mean = {k: torch.stack([sd[k] for sd in bench.finetuned.values()]).mean(0) for k in bench.pretrained}
    wa = catlib.evaluate(bench, mean, "val")
    assert all(wa[t] == pytest.approx(res["weight_averaging"]["val"][t], abs=1e-4) for t in bench.tasks)
    x, y = bench.exemplars("stsb", 3, seed=0, labelled=True)
    assert y.dtype == torch.float32 and (x["input_ids"][:, 0] == 0).all()


@pytest.mark.parametrize("method", ["cat", "regmean", "fisher", "tatr", "ties"])
def test_merges_run_through_the_protocol(zoo, method):
    from catlib.protocol import Session

    S = Session(catlib.load_benchmark("glue-tiny", root=zoo, tasks=["cola", "stsb"]), cache=None)
    out = S.run(method, None, split="val", n_exemplars=4)
    assert set(out) == {"cola", "stsb"} and all(-100 <= v <= 100 for v in out.values())


def test_a_damaged_zoo_is_refused(zoo, tmp_path):
    import shutil

    bad = tmp_path / "zoo"
    shutil.copytree(zoo, bad)
    (bad / "finetuned_rte.safetensors").write_bytes(b"damaged")
    with pytest.raises(ZooError, match="finetuned_rte.safetensors"):
        catlib.load_benchmark("glue-tiny", root=bad)
    with pytest.raises(ZooError, match="no glue-tiny zoo"):
        catlib.load_benchmark("glue-tiny", root=tmp_path / "nothing")


def test_a_replicate_shares_theta0_and_is_loaded_by_seed(zoo, tmp_path):
    """--reuse/--replicate: same θ0, data and settings, other fine-tuning seeds; ``replicate=1`` and the notebooks'
    seeds find it beside replicate 0; a missing replicate names the command that builds it."""
    import shutil

    from catlib import report as R
    from catlib.benchmarks import zoo_replicates
    from catlib.benchmarks.glue_tiny import build

    base = tmp_path / "glue-tiny"
    shutil.copytree(zoo, base)
    m = build.build(base.parent / "glue-tiny-r1", smoke=True, reuse=base, replicate=1, log=lambda s: None)
    m0 = json.loads((base / "manifest.json").read_text())
    assert m["data_sha256"] == m0["data_sha256"] and json.loads(json.dumps(m["settings"])) == m0["settings"]
    assert m["finetune_seeds"] == {t: s + 100 for t, s in m0["finetune_seeds"].items()}
    assert (base.parent / "glue-tiny-r1" / "pretrained.safetensors").read_bytes() == (
        base / "pretrained.safetensors"
    ).read_bytes()
    assert zoo_replicates("glue-tiny", base) == [base, base.parent / "glue-tiny-r1"]
    b0 = catlib.load_benchmark("glue-tiny", root=base)
    b1 = catlib.load_benchmark("glue-tiny", root=base, replicate=1)
    assert not torch.equal(b0.finetuned["cola"]["roberta.encoder.layer.0.attention.self.query.weight"],
                           b1.finetuned["cola"]["roberta.encoder.layer.0.attention.self.query.weight"])  # fmt: skip
    runs = R.seeds([0, 1], "glue-tiny", ["cola", "stsb"], "cpu", str(base))
    assert runs.zoos == 2
    with pytest.raises(ValueError, match="glue_tiny.build --reuse .* --replicate 2"):
        R.seeds([0, 1, 2], "glue-tiny", ["cola"], "cpu", str(base))
    with pytest.raises(ZooError, match="--replicate 2"):
        catlib.load_benchmark("glue-tiny", root=base, replicate=2)
    with pytest.raises(ValueError, match="needs --reuse"):
        build.build(tmp_path / "x", smoke=True, replicate=1, log=lambda s: None)


def test_parallel_fine_tuning_gives_the_same_experts(zoo, tmp_path):
    """``jobs=2`` (one process per expert) writes the same bytes as the inline build."""
    from catlib.benchmarks.glue_tiny import build

    build.build(tmp_path / "z", smoke=True, jobs=2, log=lambda m: None)
    for t in ("cola", "stsb"):
        name = f"finetuned_{t}.safetensors"
        assert (tmp_path / "z" / name).read_bytes() == (zoo / name).read_bytes()


def test_the_build_command_refuses_a_replicate_without_its_zoo(tmp_path, capsys):
    from catlib.benchmarks.glue_tiny import build

    assert build.main(["--out", str(tmp_path / "r1"), "--replicate", "1", "--smoke"]) == 2
    assert "needs --reuse" in capsys.readouterr().err and not (tmp_path / "r1").exists()
    assert build.main(["--out", str(tmp_path / "r1"), "--reuse", str(tmp_path / "none"), "--replicate", "1"]) == 2
    assert "no built glue-tiny zoo there" in capsys.readouterr().err
