"""catlib.testtime: AdaMerging (task-wise, layer-wise, ++) and Representation Surgery on a tiny ViT, and the
protocol's cached test-time runs."""

import pytest
import torch

import catlib
from catlib.core.errors import HyperparameterError
from catlib.protocol import Session
from catlib.protocol.cache import ResultCache
from catlib.testtime import TEST_TIME, TestTimeInputs, adamerging, surgery


@pytest.fixture()
def inputs(vit_setup):
    s = vit_setup
    g = torch.Generator().manual_seed(5)
    unlabelled = [torch.randn(24, 3, 16, 16, generator=g) for _ in range(3)]
    return TestTimeInputs(s["module"], s["pretrained"], s["finetuned"], s["heads"], unlabelled, seed=0)


def _close(a, b, tol=1e-6):
    return all(torch.allclose(a[k].float(), b[k].float(), atol=tol, rtol=0) for k in b)


def test_task_wise_adamerging_learns_coefficients_in_range_lowers_entropy_and_is_deterministic(inputs):
    before = {k: v.clone() for k, v in inputs.pretrained.items()}
    r = adamerging(inputs, granularity="task", steps=40, lr=0.05, batch_size=8)
    assert r.coefficients.shape == (3,) and bool(((r.coefficients >= 0) & (r.coefficients <= 1)).all())
    assert not torch.allclose(r.coefficients, torch.full((3,), 0.3))  # it moved from the prior
    assert sum(r.losses[-5:]) / 5 < sum(r.losses[:5]) / 5  # the entropy it minimises went down
    again = adamerging(inputs, granularity="task", steps=40, lr=0.05, batch_size=8)
    assert all(torch.equal(r.state_dict[k], again.state_dict[k]) for k in r.state_dict)
    assert all(torch.equal(before[k], inputs.pretrained[k]) for k in before)  # inputs unmodified
    assert not any(v.requires_grad for v in r.state_dict.values())


def test_layer_wise_adamerging_at_the_prior_is_task_arithmetic(inputs):
    r = adamerging(inputs, granularity="layer", steps=1, lr=1e-12)
    ta = catlib.merge("task_arithmetic", inputs.pretrained, inputs.finetuned, alpha=0.3)
    assert r.coefficients.shape == (3, len(r.keys)) and len(r.keys) > 3
    assert _close(r.state_dict, ta, 1e-6)


def test_adamerging_plus_at_the_prior_is_ties_dis_sum(inputs):
    r = adamerging(inputs, granularity="task", plus=True, ties_k=0.2, steps=1, lr=1e-12)
    ties = catlib.merge("ties", inputs.pretrained, inputs.finetuned, alpha=0.3, k=0.2, merge_func="sum")
    assert _close(r.state_dict, ties, 1e-6)


def test_surgery_starts_at_the_identity_and_moves_features_toward_the_experts(inputs):
    idle = surgery(inputs, steps=1, lr=1e-12)
    x = inputs.unlabelled[0][:4]
    z = torch.func.functional_call(inputs.module, idle.state_dict, (x,))
    assert torch.allclose(idle.heads[0](z), inputs.heads[0](z), atol=1e-6)  # W_up = 0: the map is the identity
    r = surgery(inputs, steps=60, lr=1e-2, rank=4, batch_size=8)
    assert sum(r.losses[-5:]) / 5 < sum(r.losses[:5]) / 5
    ta = catlib.merge("task_arithmetic", inputs.pretrained, inputs.finetuned, alpha=0.3)
    assert _close(r.state_dict, ta, 1e-6)  # the encoder is task arithmetic's; only the maps are learned


def test_test_time_methods_refuse_bad_input_with_the_reason(inputs):
    with pytest.raises(ValueError, match="one head and one batch of unlabelled inputs per fine-tuned model"):
        adamerging(
            TestTimeInputs(inputs.module, inputs.pretrained, inputs.finetuned, inputs.heads[:2], inputs.unlabelled),
            steps=1,
        )
    bad = [inputs.unlabelled[0], torch.full((4, 3, 16, 16), float("nan")), inputs.unlabelled[2]]
    with pytest.raises(ValueError, match=r"unlabelled\[1\] contains NaN"):
        surgery(TestTimeInputs(inputs.module, inputs.pretrained, inputs.finetuned, inputs.heads, bad), steps=1)
    with pytest.raises(HyperparameterError, match="granularity"):
        TEST_TIME.get("adamerging").validate({"granularity": "block"})
    with pytest.raises(HyperparameterError, match="steps"):
        TEST_TIME.get("surgery").validate({"steps": 0})


def test_session_test_time_is_cached_and_reports_accuracy_seconds_and_coefficients(tmp_path):
    S = Session(catlib.load_benchmark("control"), cache=ResultCache(tmp_path))
    hp = {"granularity": "task", "steps": 3}
    r = S.test_time("adamerging", hp, split="val")
    assert sorted(r["accuracy"]) == sorted(S.bench.tasks) and r["seconds"] > 0 and len(r["coefficients"]) == 6
    assert S.test_time("adamerging", hp, split="val") == r
    assert len(list((tmp_path / "testtime").glob("*.json"))) == 1
    s = S.test_time("surgery", {"steps": 3}, split="val")
    assert sorted(s["accuracy"]) == sorted(S.bench.tasks)


def test_cost_page_times_test_time_methods_live_with_a_fixed_part_and_a_cost_per_step(tmp_path):
    """catlib.report.time_test_time: one live run per step count (never cached), seconds growing with the steps,
    the peak memory sampled; per_step_cost splits it; Table 7's rows name their Table 9 column."""
    from catlib import report as R

    S = Session(catlib.load_benchmark("control"), cache=ResultCache(tmp_path))
    df = R.time_test_time(S, "adamerging", {"granularity": "task"}, steps=[1, 4], split="val")
    assert list(df.index) == [1, 4] and (df["seconds"] > 0).all() and df["peak_rss_mb"].notna().all()
    assert df.loc[4, "seconds"] > df.loc[1, "seconds"]
    fit = R.per_step_cost(df, "seconds")
    assert fit["per_step_s"] > 0 and fit["setup_s"] + 4 * fit["per_step_s"] == pytest.approx(df.loc[4, "seconds"])
    assert not (tmp_path / "testtime").exists()  # a measurement, not a cached result
    rows = R.test_time_rows(adamerging_steps=7, surgery_steps=9)
    assert rows["LW AdaMerging++"] == ("adamerging", {"granularity": "layer", "plus": True, "steps": 7})
    assert rows["Surgery Merging"] == ("surgery", {"steps": 9})
    assert {n: R.paper_cost_column(n) for n in ("TW AdaMerging", "Surgery Merging")} == {
        "TW AdaMerging": "AdaMerging",
        "Surgery Merging": "TA w/ Surgery",
    }
    with pytest.raises(HyperparameterError):
        R.time_test_time(S, "adamerging", {"granularity": "block"}, steps=[1], split="val")


def test_adapting_leaves_the_callers_modules_as_they_were(inputs):
    """AdaMerging and Surgery work on copies: the given encoder and heads keep their mode, their requires_grad
    flags, their values and their .grad."""
    inputs.module.train()
    flags = [p.requires_grad for p in inputs.module.parameters()]
    before = {k: v.clone() for k, v in inputs.module.state_dict().items()}
    for h in inputs.heads:
        h.train()
    grads = [None if p.grad is None else p.grad.clone() for h in inputs.heads for p in h.parameters()]
    adamerging(inputs, granularity="task", steps=2)
    surgery(inputs, steps=2)
    assert inputs.module.training and all(h.training for h in inputs.heads)
    assert [p.requires_grad for p in inputs.module.parameters()] == flags
    assert all(torch.equal(v, before[k]) for k, v in inputs.module.state_dict().items())
    after = [p.grad for h in inputs.heads for p in h.parameters()]
    assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(grads, after))  # no gradient added
