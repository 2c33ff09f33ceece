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
