"""Properties of every method on random state dicts: keys, shapes and dtypes kept, finite outputs, inputs never
modified, the same output twice."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import catlib

DATA_FREE = [n for n, m in catlib.methods().items() if not m["needs"]]
DATA_DEPENDENT = [n for n, m in catlib.methods().items() if m["needs"]]
FAST = {"awd_ta": dict(steps=5), "awd_ties": dict(steps=5)}


@st.composite
def state_dicts(draw):
    n_keys = draw(st.integers(1, 4))
    K = draw(st.integers(2, 4))
    seed = draw(st.integers(0, 10_000))
    g = torch.Generator().manual_seed(seed)
    shapes = [tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=3))) for _ in range(n_keys)]
    dtypes = [draw(st.sampled_from([torch.float32, torch.float16, torch.float64])) for _ in range(n_keys)]
    p = {f"k{j}": torch.randn(s, generator=g).to(dt) for j, (s, dt) in enumerate(zip(shapes, dtypes))}
    p["buffer"] = torch.arange(3)
    f = [
        {
            k: (v.float() + torch.randn(v.shape, generator=g)).to(v.dtype) if v.is_floating_point() else v.clone()
            for k, v in p.items()
        }
        for _ in range(K)
    ]
    return p, f


def snapshot(sds):
    return [{k: v.clone() for k, v in sd.items()} for sd in sds]


@pytest.mark.parametrize("method", DATA_FREE)
@settings(max_examples=15, deadline=None)
@given(data=state_dicts())
def test_data_free_properties(method, data):
    p, f = data
    before_p, before_f = snapshot([p])[0], snapshot(f)
    out = catlib.merge(method, p, f, **FAST.get(method, {}))
    again = catlib.merge(method, p, f, **FAST.get(method, {}))
    assert set(out) == set(p)
    for k in p:
        assert out[k].shape == p[k].shape and out[k].dtype == p[k].dtype
        assert bool(torch.isfinite(out[k].float()).all())
        assert torch.equal(out[k], again[k])
        assert out[k] is not p[k]
    assert torch.equal(out["buffer"], p["buffer"])
    assert all(torch.equal(p[k], before_p[k]) for k in p)
    assert all(torch.equal(a[k], b[k]) for a, b in zip(f, before_f) for k in a)


class Small(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(6, 8)
        self.ln = torch.nn.LayerNorm(8)
        self.fc2 = torch.nn.Linear(8, 4)

    def forward(self, x):
        return self.fc2(torch.relu(self.ln(self.fc1(x))))


@pytest.mark.parametrize("method", DATA_DEPENDENT)
@pytest.mark.parametrize("seed", [0, 1])
def test_data_dependent_properties(method, seed):
    torch.manual_seed(seed)
    m = Small()
    p = {k: v.clone() for k, v in m.state_dict().items()}
    g = torch.Generator().manual_seed(seed)
    f = [{k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in p.items()} for _ in range(3)]
    ex = [(torch.randn(5, 6, generator=g), torch.randint(0, 3, (5,), generator=g)) for _ in range(3)]
    heads = [torch.nn.Linear(4, 3) for _ in range(3)]
    before = snapshot([p] + f)
    kw = dict(module=m, exemplars=ex, heads=heads)
    out, again = catlib.merge(method, p, f, **kw), catlib.merge(method, p, f, **kw)
    assert set(out) == set(p)
    for k in p:
        assert out[k].shape == p[k].shape and out[k].dtype == p[k].dtype
        assert bool(torch.isfinite(out[k]).all()) and torch.equal(out[k], again[k])
    assert all(torch.equal(a[k], b[k]) for a, b in zip([p] + f, before) for k in a)
