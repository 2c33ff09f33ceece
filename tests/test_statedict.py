import math

import pytest
import torch

from catlib.core.statedict import TaskVector, apply, check_compatible, cosine, cosine_matrix, norm, task_vectors


def sd(**kw):
    return {k: torch.tensor(v, dtype=torch.float32) for k, v in kw.items()}


def test_taskvector_arithmetic_by_hand():
    p = sd(a=[1.0, 2.0], b=[[0.0, 1.0]])
    f1 = sd(a=[2.0, 2.0], b=[[1.0, 1.0]])
    f2 = sd(a=[1.0, 4.0], b=[[0.0, 0.0]])
    t1, t2 = TaskVector.from_models(p, f1), TaskVector.from_models(p, f2)
    assert torch.equal((t1 + t2)["a"], torch.tensor([1.0, 2.0]))
    assert torch.equal((t1 - t2)["b"], torch.tensor([[1.0, 1.0]]))
    assert torch.equal((0.5 * t2)["a"], torch.tensor([0.0, 1.0]))
    assert math.isclose(t1.norm(), math.sqrt(2.0))
    assert math.isclose(t1.dot(t2), 0.0 * 1 + 0 * 2 + 1 * 0 + 0 * -1)
    merged = sum([t1, t2]).apply_to(p, scaling=0.5)
    assert torch.allclose(merged["a"], torch.tensor([1.5, 3.0]))
    assert torch.allclose(merged["b"], torch.tensor([[0.5, 0.5]]))


def test_cosine_and_matrix():
    a, b = sd(x=[1.0, 0.0]), sd(x=[1.0, 1.0])
    assert math.isclose(cosine(a, b), 1 / math.sqrt(2), rel_tol=1e-9)
    M = cosine_matrix([a, b, sd(x=[0.0, -2.0])])
    assert torch.allclose(M.diagonal(), torch.ones(3, dtype=torch.float64))
    assert math.isclose(float(M[0, 2]), 0.0, abs_tol=1e-12)
    assert math.isclose(float(M[1, 2]), -1 / math.sqrt(2), rel_tol=1e-9)


def test_apply_keeps_integer_buffers_and_dtype():
    p = {"w": torch.ones(2, dtype=torch.float16), "pos": torch.arange(3)}
    out = apply(p, {"w": torch.ones(2)}, 0.5)
    assert out["w"].dtype == torch.float16 and torch.equal(out["pos"], p["pos"])
    assert out["pos"] is not p["pos"]


def test_task_vectors_skip_integer_keys():
    p = {"w": torch.zeros(2), "ids": torch.arange(2)}
    f = {"w": torch.ones(2), "ids": torch.arange(2)}
    (tv,) = task_vectors(p, [f])
    assert set(tv) == {"w"} and norm(tv) == pytest.approx(math.sqrt(2))
    check_compatible(p, [f])
