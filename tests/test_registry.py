"""catlib.merge.registry: hyperparameters declared once (signature + Knob), and what derives from the declaration:
validation, methods(), grids, dataclass groups (CAT's Trim), the prepare stage and its Memo."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated

import pytest
import torch

import catlib
from catlib.core.errors import HyperparameterError
from catlib.merge.cat import Trim
from catlib.merge.registry import Knob, Memo, Registry, get_method


def _sd(seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return {"w": scale * torch.randn(4, 3, generator=g), "b": scale * torch.randn(4, generator=g)}


def test_readme_example_registers_a_method_whose_declaration_drives_everything():
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"```python\nfrom typing import Annotated\n(.*?)```", text, re.S).group(1)
    reg = Registry()
    code = block.replace("from catlib.merge.registry import Knob, register", "")
    exec(code, {"Annotated": Annotated, "Knob": Knob, "register": reg.register})
    spec = reg.get("my_method")
    assert spec.display == "My Method" and spec.defaults() == {"alpha": 0.3} and spec.grid() == {"alpha": [0.2, 0.4]}
    assert spec.hyperparameters["alpha"].doc == "merge coefficient"
    theta0, fts = _sd(0), [_sd(1), _sd(2)]
    delta = spec.call(theta0, catlib.task_vectors(theta0, fts), None, spec.validate({"alpha": 0.5}))
    torch.testing.assert_close(delta["w"], 0.5 * ((fts[0]["w"] - theta0["w"]) + (fts[1]["w"] - theta0["w"])))
    with pytest.raises(HyperparameterError, match=r"alpha=-1 is outside \[0.0, None\]"):
        spec.validate({"alpha": -1})


@pytest.mark.parametrize(
    "method,hp,match",
    [
        ("task_arithmetic", {"alpha": math.inf}, "alpha must be a finite number in"),
        ("task_arithmetic", {"alpha": -math.inf}, "alpha must be a finite number in"),
        ("task_arithmetic", {"alpha": float("nan")}, "alpha must be a finite number in"),
        ("task_arithmetic", {"alpha": "0.3"}, "alpha must be a finite number in"),
        ("task_arithmetic", {"alpha": True}, "alpha must be a finite number in"),
        ("cat", {"c": 2.0}, "c must be an integer in .* got the float 2.0"),
        ("cat", {"c": 2.5}, "c must be an integer in"),
        ("cat", {"c": -1}, "outside"),
        ("cat", {"features": "other"}, "is not one of"),
        ("fisher", {"normalize": 1}, "must be True or False"),
        ("ties", {"kk": 0.2}, "unknown hyperparameter 'kk'"),
    ],
)
def test_bad_values_are_refused_with_the_name_and_the_allowed_range(method, hp, match):
    with pytest.raises(HyperparameterError, match=match):
        get_method(method).validate(hp)


def test_a_dataclass_argument_contributes_its_fields_and_receives_an_instance():
    spec = get_method("cat")
    assert {"c", "lam", "c_norm", "solver", "tol"} <= set(spec.hyperparameters)
    assert spec.hyperparameters["c"].type is int and spec.hyperparameters["c_norm"].default is None
    assert spec.grid(full=True) == {
        "alpha": [0.2, 0.3, 0.4, 0.5, 0.6, 0.8],
        "c": [1, 2, 3, 4],
        "lam": [0.1, 1.0, 5.0, 10.0],
    }
    seen = {}
    reg = Registry()

    @reg.register("probe")
    def probe(pretrained, vectors, *, stats=None, alpha: float = 1.0, trim: Trim = Trim()):
        seen["trim"] = trim
        return {}

    s = reg.get("probe")
    s.call({}, [], None, s.validate({"c": 5, "lam": 0.5}))
    assert seen["trim"] == Trim(c=5, lam=0.5)


def test_statistics_needs_are_data_derived_from_hyperparameters():
    tatr = get_method("tatr")
    assert tatr.needs_for() == ("grad_abs",) and tatr.needs_for({"zero_shot": True}) == ()
    assert tatr.labelled and get_method("fisher").labelled and not get_method("cat").labelled
    cat = get_method("cat")
    assert cat.expert_scale({"alpha": 0.4}) == 1.0 and cat.expert_scale({"alpha": 0.4, "features": "scaled"}) == 0.4

    def method(pretrained, vectors, *, stats=None, a: float = 1.0):
        return {}

    with pytest.raises(TypeError, match="not one of its hyperparameters"):
        Registry().register("x", data_free_when="nope")(method)


def test_prepare_stage_runs_once_per_memo_and_its_knobs_are_hyperparameters():
    calls = []

    class Out:
        def __init__(self, vectors):
            self.vectors = vectors

    def stage(vectors, *, shrink: Annotated[float, Knob("shrink", (0.0, 1.0), full_grid=(0.5, 1.0))] = 1.0):
        calls.append(shrink)
        return Out([{k: shrink * v[k] for k in v} for v in vectors])

    reg = Registry()

    @reg.register("staged", prepare=stage)
    def staged(pretrained, vectors, *, stats=None, alpha: Annotated[float, Knob("a", grid=(1.0,))] = 1.0):
        return {k: alpha * sum(v[k] for v in vectors) for k in vectors[0]}

    spec = reg.get("staged")
    assert list(spec.hyperparameters) == ["alpha", "shrink"] and spec.grid(True) == {
        "alpha": [1.0],
        "shrink": [0.5, 1.0],
    }
    theta0, fts = _sd(0), [_sd(1), _sd(2)]
    vecs = catlib.task_vectors(theta0, fts)
    memo = Memo()
    a = spec.call(theta0, vecs, None, spec.validate({"alpha": 1.0, "shrink": 0.5}), memo)
    b = spec.call(theta0, vecs, None, spec.validate({"alpha": 2.0, "shrink": 0.5}), memo)
    torch.testing.assert_close(b["w"], 2 * a["w"])
    assert calls == [0.5]  # α changed, the stage did not run again
    spec.call(theta0, vecs, None, spec.validate({"shrink": 1.0}), memo)
    spec.call(theta0, vecs, None, spec.validate({"shrink": 0.5}), memo)  # the memo holds one result
    assert calls == [0.5, 1.0, 0.5]


def test_methods_lists_every_registered_method_with_defaults_and_needs():
    m = catlib.methods()
    assert m["cat"]["hyperparameters"]["c"] == 2 and m["cat"]["needs"] == ["gram", "norm_sq"]
    assert m["tatr"]["needs"] == ["grad_abs"] and m["weight_average"]["hyperparameters"] == {}
    assert len(m) == 16


def test_a_data_method_declares_its_papers_exemplar_count_and_runs_use_it_unless_told():
    from catlib.protocol import RunSpec

    assert {m: get_method(m).exemplars for m in ("regmean", "fisher", "tatr", "ties_tatr", "cat")} == {
        "regmean": 256,
        "fisher": 256,
        "tatr": 128,
        "ties_tatr": 128,
        "cat": 3,
    }
    assert get_method("task_arithmetic").exemplars is None
    tasks = ["a", "b"]
    assert RunSpec.of("regmean", {}, tasks).n_exemplars == 256
    assert RunSpec.of("cat", {}, tasks).n_exemplars == 3
    assert RunSpec.of("cat", {}, tasks, n_exemplars=8).n_exemplars == 8
    assert RunSpec.of("tatr", {"zero_shot": True}, tasks).n_exemplars is None  # data-free with these knobs
    assert RunSpec.of("ties", {}, tasks, n_exemplars=8).n_exemplars is None

    def method(pretrained, vectors, *, stats=None, a: float = 1.0):
        return {}

    with pytest.raises(TypeError, match="declares exemplars=N"):
        Registry().register("needs_data", needs=("gram",))(method)
    with pytest.raises(TypeError, match="declares exemplars=N"):
        Registry().register("data_free", exemplars=4)(method)
