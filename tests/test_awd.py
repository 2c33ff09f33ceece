import torch

import catlib
from catlib.merge.awd import disentangle


def correlated_vectors(K=4, D=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    shared = torch.randn(D, generator=g)
    return [
        {"w": (shared + 0.8 * torch.randn(D, generator=g)).reshape(20, 20), "b": torch.randn(3, generator=g)}
        for _ in range(K)
    ]


def mean_abs_offdiag(M):
    K = M.shape[0]
    return float((M.abs().sum() - M.diagonal().abs().sum()) / (K * (K - 1)))


def test_awd_lowers_mean_abs_cosine_and_loss():
    vs = correlated_vectors()
    before = [{k: v.clone() for k, v in d.items()} for d in vs]
    r = disentangle(vs, penalty=0.1, steps=200, lr=0.05)
    assert mean_abs_offdiag(r.cos_after) < 0.5 * mean_abs_offdiag(r.cos_before)
    assert r.losses[-1] < r.losses[0]
    assert 0 < r.delta_rel_norm < 1.5
    for i in range(len(vs)):  # inputs untouched, τ̂ = τ − δ
        assert all(torch.equal(vs[i][k], before[i][k]) for k in vs[i])
        assert torch.allclose(r.vectors[i]["w"], vs[i]["w"] - r.delta["w"])


def test_awd_per_tensor_scope_and_penalty_shrinks_delta():
    vs = correlated_vectors(seed=1)
    r = disentangle(vs, penalty=0.1, steps=100, lr=0.05, scope="per_tensor")
    assert mean_abs_offdiag(r.cos_after) < mean_abs_offdiag(r.cos_before)
    strong = disentangle(vs, penalty=10.0, steps=100, lr=0.05)
    weak = disentangle(vs, penalty=0.0, steps=100, lr=0.05)
    assert strong.delta_rel_norm < weak.delta_rel_norm


def test_awd_methods_run():
    vs = correlated_vectors()
    p = {k: torch.zeros_like(v) for k, v in vs[0].items()}
    f = [{k: p[k] + v[k] for k in p} for v in vs]
    r = disentangle([{k: f_[k] - p[k] for k in p} for f_ in f], steps=20)
    out = catlib.merge("awd_ta", p, f, steps=20, alpha=0.5)
    expected = {k: 0.5 * sum(h[k] for h in r.vectors) for k in p}
    assert all(torch.allclose(out[k], expected[k], atol=1e-5) for k in p)
    assert set(catlib.merge("awd_ties", p, f, steps=5)) == set(p)
