"""The control benchmark (catlib.benchmarks.control): deterministic builds, the Benchmark contract, the premise holding
by construction at the first layer in "control" and not in "control-shared", and every compared method tuning on it.
Two full builds (about 5 CPU-seconds each) are shared by the module; the determinism checks use shortened builds
(same code path, a few training steps)."""

import math

import pytest
import torch

import catlib
from catlib.analysis.premise import diagnose
from catlib.benchmarks import control
from catlib.merge.cat import trim
from catlib.protocol import Session, bench_fingerprint

QUICK = dict(steps=5, train_mtl=False, n_train=64, n_val=32, n_test=32)  # a shortened build


@pytest.fixture(scope="module")
def distinct():
    return catlib.load_benchmark("control", seed=0, device="cpu")


@pytest.fixture(scope="module")
def shared():
    return catlib.load_benchmark("control-shared", seed=0, device="cpu")


def _same_state(a, b):
    return sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_builds_deterministically_and_fingerprints_differ():
    a = control.ControlBenchmark("distinct", seed=0, **QUICK)
    b = control.ControlBenchmark("distinct", seed=0, **QUICK)
    assert _same_state(a.pretrained, b.pretrained)
    assert all(_same_state(a.finetuned[t], b.finetuned[t]) for t in a.all_tasks)
    assert all(_same_state(a.heads[t].state_dict(), b.heads[t].state_dict()) for t in a.all_tasks)
    for t in a.all_tasks:
        for split in ("train", "val", "test"):
            assert all(torch.equal(u, v) for u, v in zip(a.tensors(t, split), b.tensors(t, split)))
    assert bench_fingerprint(a) == bench_fingerprint(b)
    other_seed = control.ControlBenchmark("distinct", seed=1, **QUICK)
    other_variant = control.ControlBenchmark("shared", seed=0, **QUICK)
    other_config = control.ControlBenchmark("distinct", seed=0, **{**QUICK, "steps": 6})
    prints = {bench_fingerprint(x) for x in (a, other_seed, other_variant, other_config)}
    assert len(prints) == 4
    assert not torch.equal(a.pretrained["0.weight"], other_seed.pretrained["0.weight"])


def test_variants_differ_only_in_the_task_subspaces():
    a = control.ControlBenchmark("distinct", seed=0, **QUICK)
    b = control.ControlBenchmark("shared", seed=0, **QUICK)
    assert _same_state(a.pretrained, b.pretrained)
    assert all(_same_state(a.heads[t].state_dict(), b.heads[t].state_dict()) for t in a.all_tasks)
    assert torch.equal(a.shared_subspace, b.shared_subspace)
    assert torch.equal(a.subspaces["task0"], b.subspaces["task0"])
    U = torch.cat([a.subspaces[t] for t in a.all_tasks] + [a.shared_subspace], 1)
    assert torch.allclose(U.T @ U, torch.eye(U.shape[1]), atol=1e-5)  # distinct: mutually orthogonal blocks
    assert all(torch.equal(b.subspaces[t], b.subspaces["task0"]) for t in b.all_tasks)  # shared: one block
    assert not torch.equal(a.tensors("task1", "train")[0], b.tensors("task1", "train")[0])
    assert torch.equal(a.tensors("task1", "train")[1], b.tensors("task1", "train")[1])  # same labels


def test_benchmark_contract(distinct):
    b = distinct
    assert b.name == "control" and b.tasks == b.all_tasks and len(b.tasks) == b.config.n_tasks
    x, y = next(iter(b.loader("task0", "val", batch_size=16)))
    assert x.shape == (16, b.config.d_in) and y.dtype == torch.long
    assert int(y.max()) < len(b.class_names("task0")) == b.config.n_classes
    ex, ey = b.exemplars("task2", 4, seed=3, labelled=True)
    assert ex.shape == (4, b.config.d_in) and torch.equal(ex, b.exemplars("task2", 4, seed=3))
    assert b.build_module()(ex).shape == (4, b.config.d_feat)
    assert b.heads["task2"](b.build_module()(ex)).shape == (4, b.config.n_classes)
    assert sorted(b.finetuned) == b.all_tasks and b.mtl is not None
    with pytest.raises(KeyError):
        b.loader("nope", "val")
    with pytest.raises(ValueError):
        b.exemplars("task0", 0)
    with pytest.raises(ValueError):
        control.ControlBenchmark("other")
    sub = control.load_control(tasks=["task1", "task3"], **QUICK)
    assert sub.tasks == ["task1", "task3"] and sorted(catlib.evaluate(sub, sub.pretrained, "val")) == sub.tasks


def test_references_individual_high_pretrained_low(distinct, shared):
    for b in (distinct, shared):
        pre = catlib.evaluate(b, b.pretrained, "test")
        assert sorted(pre) == b.tasks
        refs = Session(b, cache=None).references("test")
        assert min(refs["individual"].values()) >= 90.0, refs["individual"]
        assert catlib.average(pre) <= 30.0  # random θ0 and random heads: chance level (1/8)
        assert catlib.average(refs["mtl"]) > catlib.average(pre) + 40


def test_premise_holds_at_the_first_layer_only_in_the_distinct_variant(distinct, shared):
    energy = {}
    for b in (distinct, shared):
        stats = catlib.collect_statistics(
            b.build_module(), b.pretrained, b.finetuned_list(), b.exemplar_batches(64, seed=0), needs=("gram",)
        )
        d = diagnose(catlib.task_vectors(b.pretrained, b.finetuned_list()), stats, c=2, lam=1.0, tasks=b.tasks)
        E = torch.tensor(d["per_layer"]["0.weight"]["subspace_energy"])
        energy[b.name] = float(E[~torch.eye(len(E), dtype=torch.bool)].mean())
    # by construction: in "control" another task's inputs share only S, d_shared of the d_task + d_shared dimensions
    # a task uses (0.2 here, times the part of S inside the 90%-energy subspace); in "control-shared" everything
    share = distinct.config.d_shared / (distinct.config.d_task + distinct.config.d_shared)
    assert energy["control"] < share + 0.05
    assert energy["control-shared"] > 0.75
    assert energy["control-shared"] - energy["control"] > 0.5
    # the first-layer interference comes through S in "control", through the common task subspace in the twin
    src_d, src_s = control.interference_sources(distinct), control.interference_sources(shared)
    assert math.isclose(src_d["total"], src_d["own_subspace"] + src_d["shared_subspace"] + src_d["rest"])
    assert src_d["shared_subspace"] > 0.7 * src_d["total"]
    assert src_s["own_subspace"] > 2 * src_s["shared_subspace"]


def test_every_compared_method_tunes_on_validation(distinct):
    S = Session(distinct, cache=None)
    grids = {
        "task_arithmetic": {"alpha": [0.3, 0.5]},
        "regmean": {"reduce_nondiag": [0.5, 0.9]},
        "ties": {"alpha": [0.3, 0.5], "k": [0.2]},
        "cat": {"alpha": [0.3, 0.5], "c": [2], "lam": [1.0]},
    }
    for m, g in grids.items():
        r = S.tune(m, grid=g, n_exemplars=4, seed=0, widen=0)
        assert sorted(r.test) == distinct.tasks and all(0.0 <= a <= 100.0 for a in r.test.values()), m
        assert math.isfinite(r.val_average) and math.isfinite(r.test_average), m
        assert set(r.best) >= set(g), m
    # CAT with c = 0 trims nothing: it is task arithmetic
    cat0, ta = S.run("cat", {"alpha": 0.5, "c": 0}, split="val"), S.run("task_arithmetic", {"alpha": 0.5}, split="val")
    assert all(abs(cat0[t] - ta[t]) < 0.5 for t in ta)  # equal up to float summation order (one example = 0.39)


def test_measurements(distinct):
    b = distinct
    oracle = control.layer_oracle(b, 0.5, "val")
    assert list(oracle) == ["none", "0", "2", "4", "all"]
    assert oracle["all"] > oracle["none"] + 10  # each task without the others' vectors is far better
    vectors = catlib.task_vectors(b.pretrained, b.finetuned_list())
    S = Session(b, cache=None)
    stats = S.statistics(S.spec("cat", {"c": 2}, n_exemplars=4, seed=0))
    none = control.trimming_effect(b, trim(vectors, stats, c=0))
    assert all(abs(v) < 1e-9 for layer in none.values() for v in layer.values())
    some = control.trimming_effect(b, trim(vectors, stats, c=2, lam=1.0))
    assert all(0.0 < v < 1.0 for layer in some.values() for v in layer.values())
    o = control.shared_input_oracle(b, [0.5])
    assert o["alpha"] == 0.5 and 0.0 <= o["test"] <= 100.0
