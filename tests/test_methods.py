"""Each method against results computed by hand on small state dicts, and the identities of baselines.md §5.2."""

import pytest
import torch

import catlib
from catlib.core.stats import Gram, LayerInfo, Statistics


def T(*v):
    return torch.tensor(v, dtype=torch.float32)


def models(*taus, base=None):
    """θ0 = base (zeros) and θ_i = θ0 + τ_i for single-key state dicts {'w': ...}."""
    p = {"w": torch.zeros_like(taus[0]) if base is None else base}
    return p, [{"w": p["w"] + t} for t in taus]


def test_weight_average_by_hand():
    p, f = models(T(1, 2), T(3, -2))
    assert torch.allclose(catlib.merge("weight_average", p, f)["w"], T(2, 0))


def test_task_arithmetic_by_hand():
    p, f = models(T(1, 2), T(3, -2), base=T(1, 1))
    assert torch.allclose(catlib.merge("task_arithmetic", p, f, alpha=0.5)["w"], T(3, 1))


TIES_TAUS = (T(3, -1, 0.5, 2), T(-1, -2, 1, 2.5), T(-1, 0.1, 0.2, -3))


@pytest.mark.parametrize(
    "merge_func,expected", [("sum", (3, -2, 0, 4.5)), ("mean", (3, -2, 0, 2.25)), ("max", (3, -2, 0, 2.5))]
)
def test_ties_by_hand(merge_func, expected):
    # k = 0.5 keeps the two largest |τ| per task: [3,0,0,2], [0,-2,0,2.5], [-1,0,0,-3];
    # elected signs [+,-,(0→majority +),+]; disjoint merge of agreeing entries.
    p, f = models(*TIES_TAUS)
    out = catlib.merge("ties", p, f, k=0.5, alpha=1.0, merge_func=merge_func)["w"]
    assert torch.allclose(out, T(*expected))


def test_ties_global_threshold_spans_keys():
    # global trim over both keys: the 2 largest of |[5, 1] ∪ [0.5, 4]| per task are 5 and 4
    p = {"a": torch.zeros(2), "b": torch.zeros(2)}
    f = [{"a": T(5, 1), "b": T(0.5, 4)}]
    out = catlib.merge("ties", p, f, k=0.5, alpha=1.0)
    assert torch.equal(out["a"], T(5, 0)) and torch.equal(out["b"], T(0, 4))
    per = catlib.merge("ties", p, f, k=0.5, alpha=1.0, scope="per_tensor")
    assert torch.equal(per["a"], T(5, 0)) and torch.equal(per["b"], T(0, 4))


def test_fisher_by_hand():
    p, f = models(T(1, 1), T(3, 5))
    st = Statistics(layers={}, fisher=[{"w": T(1, 1)}, {"w": T(3, 1)}])
    out = catlib.merge("fisher", p, f, stats=st, eps=0.0, normalize=False)["w"]
    assert torch.allclose(out, T(2.5, 3.0))


def gram(F):
    g = Gram(F.shape[1])
    g.add(F)
    return g


def test_regmean_by_hand():
    p = {"w": torch.zeros(1, 2)}
    f = [{"w": torch.tensor([[1.0, 0.0]])}, {"w": torch.tensor([[0.0, 1.0]])}]
    G1 = gram(torch.tensor([[1.0, 1.0], [1.0, 0.0]]))  # [[2,1],[1,1]]
    G2 = gram(torch.eye(2))
    st = Statistics(layers={"w": LayerInfo("linear")}, grams=[{"w": G1}, {"w": G2}])
    out = catlib.merge("regmean", p, f, stats=st, reduce_nondiag=1.0, ridge=0.0)["w"]
    # W = [2, 2] @ inv([[3,1],[1,2]]) = [0.4, 0.8]
    assert torch.allclose(out, torch.tensor([[0.4, 0.8]]), atol=1e-6)


def test_tatr_zero_shot_by_hand():
    # Ω = 2 |τ1||τ2| = [0, 4, 0, 0]: removing the top 25% drops entry 1
    p, f = models(T(1, 2, 0, 0), T(0, 1, 3, 0))
    out = catlib.merge("tatr", p, f, zero_shot=True, remove_ratio=0.25, alpha=1.0)["w"]
    assert torch.allclose(out, T(1, 0, 3, 0))


def test_tatr_with_gradients_by_hand():
    p, f = models(T(1, 2), T(2, 1))
    st = Statistics(layers={}, grad_abs=[{"w": T(0, 1)}, {"w": T(0, 0)}])
    # Ω = ḡ1|τ2| + ḡ2|τ1| = [0, 1]: entry 1 is removed
    out = catlib.merge("tatr", p, f, stats=st, remove_ratio=0.5, alpha=1.0)["w"]
    assert torch.allclose(out, T(3, 0))


def test_consensus_by_hand():
    p, f = models(T(1, 0.1, 2), T(1, 0.1, -2), T(0, 1, 0.1))
    # TALL masks with λ=0.5: [1,0,1], [1,0,1], [0,1,1] → counts [2,1,3] → keep [1,0,1]
    out = catlib.merge("consensus", p, f, tall_lambda=0.5, k=2, alpha=1.0)["w"]
    assert torch.allclose(out, T(2, 0, 0.1))


def pcb_reference(taus, ratio, clamp, alpha, inter="pairwise"):
    """PCB straight from the formulas with dense sorting (one key, small D)."""
    t = torch.stack(taus)
    K, D = t.shape
    srt = t.abs().sort(dim=1).values
    import math

    hi = srt[:, D - math.ceil(clamp * D)]  # k-th largest with k = ceil(ρD)
    lo = srt[:, math.floor(clamp * D)]
    a = torch.minimum(torch.maximum(t.abs(), lo[:, None]), hi[:, None])
    na = (a - lo[:, None]) / (hi - lo)[:, None]
    n = torch.sign(t) * na
    if inter == "pairwise":
        beta = torch.exp(K * na**2) * torch.stack([torch.tanh(n[i] * n).sum(0) for i in range(K)])
    else:
        beta = torch.exp(K * na**2) * torch.tanh(t * n.sum(0))
    thr = beta.sort(dim=1, descending=True).values[:, math.ceil(ratio * D) - 1]
    b = torch.maximum(beta, thr[:, None])
    s = (b - thr[:, None]) / (beta.max(1).values - thr)[:, None]
    return alpha * (torch.sign(t) * a * s).sum(0) / s.sum(0).clamp_min(1e-12)


@pytest.mark.parametrize("K", [3, 8])
def test_pcb_matches_reference_and_drops(K):
    g = torch.Generator().manual_seed(0)
    taus = [torch.randn(200, generator=g) for _ in range(K)]
    p, f = models(*taus)
    out = catlib.merge("pcb", p, f, ratio=0.2, clamp=0.01, alpha=1.2)["w"]
    assert torch.allclose(out, pcb_reference(taus, 0.2, 0.01, 1.2), atol=1e-5)
    other = catlib.merge("pcb", p, f, ratio=0.2, clamp=0.01, alpha=1.2, inter="sum_first")["w"]
    assert torch.allclose(other, pcb_reference(taus, 0.2, 0.01, 1.2, "sum_first"), atol=1e-5)
    # entries where every task's score is below its threshold are dropped entirely (with 3 tasks, about a third)
    assert (out == 0).float().mean() > (0.3 if K == 3 else 0.1)


# ---- identities (baselines.md §5.2) ------------------------------------------------------------------------
def rand_models(K=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    p = {"a": torch.randn(4, 3, generator=g), "b": torch.randn(5, generator=g)}
    f = [{k: v + torch.randn(v.shape, generator=g) for k, v in p.items()} for _ in range(K)]
    return p, f


def close(x, y, atol=1e-5):
    return all(torch.allclose(x[k], y[k], atol=atol) for k in x)


def test_wa_equals_ta_with_one_over_K():
    p, f = rand_models()
    assert close(catlib.merge("weight_average", p, f), catlib.merge("task_arithmetic", p, f, alpha=1 / 3))


def test_ties_full_keep_agreeing_signs_equals_ta_sum():
    p, _ = rand_models()
    g = torch.Generator().manual_seed(3)
    f = [{k: v + torch.rand(v.shape, generator=g) for k, v in p.items()} for _ in range(3)]  # all τ > 0
    assert close(
        catlib.merge("ties", p, f, k=1.0, alpha=1.0, merge_func="sum"), catlib.merge("task_arithmetic", p, f, alpha=1.0)
    )


def test_consensus_k0_equals_ta():
    p, f = rand_models()
    assert close(catlib.merge("consensus", p, f, k=0, alpha=0.4), catlib.merge("task_arithmetic", p, f, alpha=0.4))


def test_fisher_identical_equals_wa():
    p, f = rand_models()
    F = {k: torch.rand(v.shape) for k, v in p.items()}
    st = Statistics(layers={}, fisher=[F, F, F])
    assert close(catlib.merge("fisher", p, f, stats=st), catlib.merge("weight_average", p, f))


def test_regmean_identical_grams_equals_wa_and_single_model_returns_it():
    p, f = rand_models()
    G = gram(torch.randn(10, 3))
    st = Statistics(layers={"a": LayerInfo("linear"), "b": LayerInfo("shift")}, grams=[{"a": G}] * 3)
    assert close(catlib.merge("regmean", p, f, stats=st), catlib.merge("weight_average", p, f), atol=1e-4)
    st1 = Statistics(layers=st.layers, grams=[{"a": G}])
    assert close(catlib.merge("regmean", p, f[:1], stats=st1), f[0], atol=1e-4)


def test_cat_c0_equals_task_arithmetic(vit_setup):
    s = vit_setup
    kw = dict(module=s["module"], exemplars=s["exemplars"])
    cat0 = catlib.merge("cat", s["pretrained"], s["finetuned"], c=0, alpha=0.4, **kw)
    ta = catlib.merge("task_arithmetic", s["pretrained"], s["finetuned"], alpha=0.4)
    assert close(cat0, ta, atol=1e-6)


def test_awd_zero_steps_equals_ta():
    p, f = rand_models()
    assert close(catlib.merge("awd_ta", p, f, steps=0, alpha=0.3), catlib.merge("task_arithmetic", p, f, alpha=0.3))


# ---- newer methods ---------------------------------------------------------------------------------------------
def test_tsv_single_task_reproduces_it_and_iso_c_flattens_spectrum():
    p, f = rand_models(K=1)
    assert close(catlib.merge("tsv_m", p, f, alpha=1.0), f[0], atol=1e-5)
    tau = f[0]["a"] - p["a"]
    U, S, Vh = torch.linalg.svd(tau, full_matrices=False)
    out = catlib.merge("iso_c", p, f, alpha=1.0)
    assert torch.allclose(out["a"] - p["a"], S.mean() * U @ Vh, atol=1e-5)
    assert torch.allclose(out["b"], f[0]["b"])  # non-matrix keys: mean of one task vector


def test_tsv_orthogonal_tasks_add_up():
    # two tasks living in orthogonal row/column subspaces are merged without interference
    p = {"w": torch.zeros(4, 4)}
    f = [{"w": torch.diag(T(3, 2, 0, 0))}, {"w": torch.diag(T(0, 0, 5, 1))}]
    assert torch.allclose(catlib.merge("tsv_m", p, f)["w"], torch.diag(T(3, 2, 5, 1)), atol=1e-5)


def _svd64(a, k=None):
    U, S, Vh = torch.linalg.svd(a.double(), full_matrices=False)
    return (U, S, Vh) if k is None else (U[:, :k], S[:k], Vh[:k])


def _polar64(a):
    P, _, Qh = torch.linalg.svd(a, full_matrices=False)
    return P @ Qh


def tsv_reference(taus):
    """TSV-M of one matrix from full float64 SVDs (the formulas, no shortcut)."""
    k = max(1, min(taus[0].shape) // len(taus))
    parts = [_svd64(t, k) for t in taus]
    U, S, Vh = (torch.cat([p[j] for p in parts], 1 if j == 0 else 0) for j in range(3))
    return (_polar64(U) * S) @ _polar64(Vh)


def iso_cts_reference(taus, f):
    """Iso-CTS of one matrix from full float64 SVDs, the projection formed explicitly."""
    K, (m, n) = len(taus), taus[0].shape
    r = min(m, n)
    n_ts = int(round((r - int(r * f)) / K)) * K
    k_c, k_t = r - n_ts, n_ts // K
    U, S, Vh = _svd64(sum(t.double() for t in taus))
    Uc = U[:, :k_c]
    parts = [_svd64(t.double() - Uc @ (Uc.T @ t.double()), k_t) for t in taus]
    Ucomb = torch.cat([p[0] for p in parts] + [Uc], 1)
    Scomb = torch.cat([p[1] for p in parts] + [S[:k_c]])
    Vcomb = torch.cat([p[2] for p in parts] + [Vh[:k_c]], 0)
    return Scomb.mean() * (_polar64(Ucomb) @ _polar64(Vcomb))


@pytest.mark.parametrize("shape", [(40, 12), (12, 40), (20, 20)])  # tall (projection by Gram), wide, square
def test_tsv_and_iso_cts_match_their_full_svd_formulas(shape):
    g = torch.Generator().manual_seed(5)
    taus = [torch.randn(*shape, generator=g) * torch.logspace(0, -2, shape[1]) for _ in range(3)]
    p, f = models(*taus)
    for f_c in (0.6, 0.8):
        got = catlib.merge("iso_cts", p, f, common_fraction=f_c)["w"]
        assert torch.allclose(got.double(), iso_cts_reference(taus, f_c), atol=1e-6, rtol=1e-5)
    assert torch.allclose(catlib.merge("tsv_m", p, f)["w"].double(), tsv_reference(taus), atol=1e-6, rtol=1e-5)


def test_iso_cts_runs_and_wudi_single_task_unchanged():
    p, f = rand_models(K=3)
    out = catlib.merge("iso_cts", p, f)
    assert set(out) == set(p) and all(torch.isfinite(v).all() for v in out.values())
    p1, f1 = rand_models(K=1)
    w = catlib.merge("wudi", p1, f1, steps=20)
    assert torch.allclose(w["a"], f1[0]["a"], atol=1e-6)  # loss is 0 at the start: nothing moves
    assert torch.equal(w["b"], p1["b"])  # others="zero": non-matrix keys stay at θ0


def test_wudi_closed_form_gradient_matches_autograd_adam():
    """wudi_matrix's precomputed-Gram gradient + hand-written Adam equals torch.optim.Adam on the loss itself."""
    from catlib.merge.wudi import wudi_matrix

    g = torch.Generator().manual_seed(0)
    t = torch.randn(3, 7, 5, generator=g) * torch.tensor([1.0, 0.5, 2.0]).view(3, 1, 1)
    w = 1.0 / (t.reshape(3, -1) ** 2).sum(1)
    m = torch.nn.Parameter(t.sum(0).clone())
    opt = torch.optim.Adam([m], lr=1e-2)
    for _ in range(25):
        opt.zero_grad()
        (w.view(-1, 1, 1) * ((m.unsqueeze(0) - t) @ t.transpose(1, 2)) ** 2).sum().backward()
        opt.step()
    got = wudi_matrix(t, 25, 1e-2)
    assert torch.allclose(got, m.detach(), atol=1e-5)
    assert not torch.allclose(got, t.sum(0), atol=1e-3)  # it moved
