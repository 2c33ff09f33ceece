"""The benchmark scripts' own logic on small inputs (their full runs are benchmarks, not tests): the scaling
sweep's per-point measurement, and the FusionBench comparison's settings and differences."""

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import fusionbench_compare as FB  # noqa: E402
import merge_scaling  # noqa: E402

import catlib  # noqa: E402


def test_a_scaling_point_measures_every_method_on_shared_inputs():
    rows = merge_scaling.point_child(["task_arithmetic", "ties", "regmean"], K=2, width=64, n_ex=1, seed=0)
    assert [r["method"] for r in rows] == ["task_arithmetic", "ties", "regmean"]
    assert all(r["seconds"] > 0 and r["inputs_mb"] > 0 for r in rows)
    assert len({r["inputs_mb"] for r in rows}) == 1  # the same inputs for every method of a point


def test_fusionbench_settings_name_catlib_methods_with_valid_hyperparameters():
    for name, (ours, _) in FB.SETTINGS.items():
        catlib.get_method(name).validate(ours)  # raises on a knob catlib does not declare


def test_differences_of_two_merges(tmp_path):
    from safetensors.torch import save_file

    p = {"w": torch.ones(4, 4), "b": torch.zeros(4)}
    a = {"w": torch.ones(4, 4) + 0.1, "b": torch.full((4,), 0.2)}
    b = {"w": torch.ones(4, 4) + 0.1, "b": torch.full((4,), 0.25)}
    save_file(p, str(tmp_path / "theta0.safetensors"))
    save_file(a, str(tmp_path / "out_catlib_m.safetensors"))
    save_file(b, str(tmp_path / "out_fusionbench_m.safetensors"))
    d = FB.differences(tmp_path, "m")
    assert d["worst_key"] == "b"
    assert d["rel_task_vector"] == pytest.approx(0.05 / 0.25, rel=1e-5)
    assert d["rel_weights"] == pytest.approx(0.05 / 0.25, rel=1e-5)
