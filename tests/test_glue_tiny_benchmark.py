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


def test_refit_fine_tunes_only_the_named_tasks_and_keeps_the_others(zoo, tmp_path, capsys):
    """``--refit stsb``: the other experts and heads are the reused zoo's; with unchanged settings the refit expert
    is the full build's (same bytes); a new step count for the refit task changes only it; settings a kept expert
    depends on, another replicate or a missing --reuse are refused."""
    from safetensors.torch import load_file

    from catlib.benchmarks.glue_tiny import build

    quiet = lambda s: None  # noqa: E731
    read = lambda root, t: (root / f"finetuned_{t}.safetensors").read_bytes()  # noqa: E731
    same = build.build(tmp_path / "a", smoke=True, reuse=zoo, refit=["stsb"], log=quiet)
    for t in build.D.TASKS:
        name = f"finetuned_{t}.safetensors"
        assert (tmp_path / "a" / name).read_bytes() == (zoo / name).read_bytes(), t
    h0, h1 = load_file(str(zoo / "heads.safetensors")), load_file(str(tmp_path / "a" / "heads.safetensors"))
    assert h0.keys() == h1.keys() and all(torch.equal(h0[k], h1[k]) for k in h0)
    assert same["refit"]["tasks"] == ["stsb"] and same["refit"]["others_from"]["zoo"] == zoo.name
    assert same["theta0_from"] is None and list(same["finetune_seeds"]) == list(build.D.TASKS)

    import shutil

    older = tmp_path / "v2"  # a zoo of build version 2, whose manifest had no "replicate" nor "theta0_from"
    shutil.copytree(zoo, older)
    m2 = json.loads((older / "manifest.json").read_text())
    m2 = {k: v for k, v in m2.items() if k not in ("replicate", "theta0_from")}
    (older / "manifest.json").write_text(json.dumps({**m2, "build_version": 2}))
    again = build.build(tmp_path / "a2", smoke=True, reuse=older, refit=["stsb"], log=quiet)
    assert again["theta0_from"] is None and again["refit"]["others_from"]["build_version"] == 2
    assert read(tmp_path / "a2", "stsb") == read(zoo, "stsb")

    longer = build.build(tmp_path / "b", smoke=True, reuse=zoo, refit=["stsb"], ft_steps_by_task={"stsb": 9}, log=quiet)
    assert longer["settings"]["ft_steps_by_task"] == {"stsb": 9}
    assert read(tmp_path / "b", "stsb") != read(zoo, "stsb") and read(tmp_path / "b", "cola") == read(zoo, "cola")
    assert longer["results"]["individual"]["test"]["cola"] == same["results"]["individual"]["test"]["cola"]

    with pytest.raises(ValueError, match=r"differ from this build's in \['ft_steps_by_task'\]"):
        build.build(tmp_path / "c", smoke=True, reuse=zoo, refit=["stsb"], ft_steps_by_task={"cola": 9}, log=quiet)
    with pytest.raises(ValueError, match=r"in \['ft_lr'\]"):
        build.build(tmp_path / "c", smoke=True, reuse=zoo, refit=["stsb"], ft_lr=1e-3, log=quiet)
    other = tmp_path / "other-data"  # kept experts fine-tuned on other data (an older generator) are refused
    shutil.copytree(zoo, other)
    m3 = json.loads((other / "manifest.json").read_text())
    m3["data_sha256"]["cola"]["train"] = "0" * 64
    (other / "manifest.json").write_text(json.dumps(m3))
    with pytest.raises(ValueError, match=r"the data of \['cola'\] differ"):
        build.build(tmp_path / "c", smoke=True, reuse=other, refit=["stsb"], log=quiet)
    with pytest.raises(ValueError, match="must be replicate 1"):
        build.build(tmp_path / "c", smoke=True, reuse=zoo, replicate=1, refit=["stsb"], log=quiet)
    with pytest.raises(ValueError, match="unknown task"):
        build.build(tmp_path / "c", smoke=True, reuse=zoo, refit=["nope"], log=quiet)
    assert not (tmp_path / "c").exists()
    assert build.main(["--out", str(tmp_path / "c"), "--refit", "stsb", "--smoke"]) == 2
    assert "--refit needs --reuse" in capsys.readouterr().err and not (tmp_path / "c").exists()
