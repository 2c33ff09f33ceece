"""CAT: the removal basis is optimal for its objective, Algorithm 1's order, components, and the eigensolver."""

import pytest
import torch

import catlib
from catlib.core.linalg import top_eigh, top_eigh_dense
from catlib.merge.cat import removal_bases
from catlib.core.stats import collect_statistics


def objective_matrix(taus, grams, k, lam):
    """M_k = Σ_{i≠k} τ_i (G_k − λ G_i) τ_iᵀ, dense, fp64 (PyTorch (out, in) layout)."""
    return sum(taus[i].double() @ (grams[k] - lam * grams[i]) @ taus[i].double().T for i in range(len(taus)) if i != k)


@pytest.fixture(scope="module")
def layer_problem():
    g = torch.Generator().manual_seed(0)
    K, out, d = 4, 40, 24
    taus = [torch.randn(out, d, generator=g) * 0.1 for _ in range(K)]
    # task features live in different subspaces plus shared noise, as real tasks do
    factors = [torch.randn(30, d, generator=g) @ torch.diag(torch.rand(d, generator=g) * 3) for _ in range(K)]
    grams = [(F.double().T @ F.double()) for F in factors]
    return taus, factors, grams


@pytest.mark.parametrize("solver", ["dense", "krylov"])
@pytest.mark.parametrize("lam", [0.0, 1.0, 5.0])
def test_basis_attains_top_c_eigenvalue_sum_and_beats_random_bases(layer_problem, solver, lam):
    taus, factors, grams = layer_problem
    c = 3
    bases = removal_bases(taus, factors, c, lam, solver=solver, tol=1e-7)
    g = torch.Generator().manual_seed(1)
    for k, B in enumerate(bases):
        M = objective_matrix(taus, grams, k, lam)
        B = B.double()
        assert torch.allclose(B.T @ B, torch.eye(c, dtype=torch.float64), atol=1e-5)
        attained = float(torch.trace(B.T @ M @ B))
        best = float(torch.linalg.eigvalsh(M)[-c:].sum())
        assert attained == pytest.approx(best, rel=1e-4, abs=1e-6 * float(M.abs().max()))
        for _ in range(200):
            Q, _ = torch.linalg.qr(torch.randn(M.shape[0], c, generator=g, dtype=torch.float64))
            assert float(torch.trace(Q.T @ M @ Q)) <= attained + 1e-9


def test_cat_merge_follows_algorithm_1(vit_setup):
    """Recompute CAT for one linear key from dense Gram matrices: bases from the ORIGINAL vectors, each τ_i
    projected by every B_k (k ≠ i, in order), then α Σ."""
    s = vit_setup
    p, fts = s["pretrained"], s["finetuned"]
    stats = collect_statistics(s["module"], p, fts, s["exemplars"])
    key, c, lam, alpha = "transformer.resblocks.1.mlp.c_fc.weight", 2, 0.7, 0.4
    taus = [ft[key] - p[key] for ft in fts]
    grams = [g[key].matrix() for g in stats.grams]
    bases = []
    for k in range(3):
        w, U = torch.linalg.eigh(objective_matrix(taus, grams, k, lam))
        bases.append(U[:, -c:])
    expected = 0
    for i in range(3):
        t = taus[i].double()
        for k in range(3):
            if k != i:
                t = t - bases[k] @ (bases[k].T @ t)
        expected = expected + t
    out = catlib.merge("cat", p, fts, stats=stats, c=c, lam=lam, alpha=alpha)
    assert torch.allclose(out[key] - p[key], alpha * expected.float(), atol=1e-5)


def test_cat_components_switch_parameter_kinds(vit_setup):
    s = vit_setup
    p, fts = s["pretrained"], s["finetuned"]
    stats = collect_statistics(s["module"], p, fts, s["exemplars"])
    ta = catlib.merge("task_arithmetic", p, fts, alpha=0.3)
    lin_only = catlib.merge("cat", p, fts, stats=stats, norm_scale=False, shift=False)
    changed = {k for k in p if not torch.allclose(lin_only[k], ta[k], atol=1e-7)}
    kinds = {stats.layers[k].kind for k in changed}
    assert kinds == {"linear"}
    none = catlib.merge("cat", p, fts, stats=stats, linear=False, norm_scale=False, shift=False)
    assert all(torch.allclose(none[k], ta[k], atol=1e-7) for k in p)
    norm_only = catlib.merge("cat", p, fts, stats=stats, linear=False, shift=False)
    assert {stats.layers[k].kind for k in p if not torch.allclose(norm_only[k], ta[k])} == {"norm_scale"}
    shift_only = catlib.merge("cat", p, fts, stats=stats, linear=False, norm_scale=False)
    assert {stats.layers[k].kind for k in p if not torch.allclose(shift_only[k], ta[k])} == {"shift"}


def test_shift_mask_removes_top_c_of_others(vit_setup):
    """Shift masks: for task k, the c entries with the largest Σ_{i≠k} τ_i² are removed from every τ_i, i ≠ k."""
    s = vit_setup
    p, fts = s["pretrained"], s["finetuned"]
    stats = collect_statistics(s["module"], p, fts, s["exemplars"])
    key = "transformer.resblocks.0.mlp.c_fc.bias"
    taus = torch.stack([ft[key] - p[key] for ft in fts])
    keep = torch.ones_like(taus, dtype=torch.bool)
    for k in range(3):
        score = sum(taus[i] ** 2 for i in range(3) if i != k)
        idx = torch.topk(score, 2).indices
        for i in range(3):
            if i != k:
                keep[i, idx] = False
    out = catlib.merge("cat", p, fts, stats=stats, c=2, alpha=1.0)
    assert torch.allclose(out[key] - p[key], (taus * keep).sum(0), atol=1e-6)


def test_rescale_norm_restores_norms(vit_setup):
    from catlib.merge.cat import trim
    from catlib.core.statedict import task_vectors

    s = vit_setup
    p, fts = s["pretrained"], s["finetuned"]
    stats = collect_statistics(s["module"], p, fts, s["exemplars"])
    taus = task_vectors(p, fts)
    plain = trim(taus, stats, c=2)
    rescaled = trim(taus, stats, c=2, rescale_norm=True)
    key = "transformer.resblocks.0.attn.in_proj_weight"
    for i in range(3):
        assert plain[i][key].norm() < taus[i][key].norm() * (1 - 1e-4)  # trimming removed something
        assert float(rescaled[i][key].norm()) == pytest.approx(float(taus[i][key].norm()), rel=1e-5)


def test_scaled_features_require_matching_statistics(vit_setup):
    s = vit_setup
    stats = collect_statistics(s["module"], s["pretrained"], s["finetuned"], s["exemplars"])
    with pytest.raises(catlib.MissingStatisticsError, match="expert_scale"):
        catlib.merge("cat", s["pretrained"], s["finetuned"], stats=stats, features="scaled", alpha=0.3)
    out = catlib.merge(
        "cat",
        s["pretrained"],
        s["finetuned"],
        module=s["module"],
        exemplars=s["exemplars"],
        features="scaled",
        alpha=0.3,
    )
    assert set(out) == set(s["pretrained"])


# ---- the eigensolver ----------------------------------------------------------------------------------------
def near_isotropic(n, spread, seed):
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    w = 1.0 + spread * torch.rand(n, generator=g, dtype=torch.float64)
    return (Q * w) @ Q.T


@pytest.mark.parametrize("spread", [1e-3, 1e-2, 1.0])
@pytest.mark.parametrize("k", [1, 2, 4])
def test_top_eigh_matches_eigh_on_near_isotropic_inputs(spread, k):
    M = near_isotropic(300, spread, seed=k)
    w, U = top_eigh(lambda V: M @ V, 300, k, tol=1e-8)
    ref, _ = top_eigh_dense(M, k)
    obj = float(torch.trace(U.T @ M @ U))
    assert abs(obj - float(ref.sum())) <= 1e-4 * abs(float(ref.sum()))
    assert torch.allclose(U.T @ U, torch.eye(k, dtype=torch.float64), atol=1e-8)


def test_top_eigh_low_rank_difference_operator():
    g = torch.Generator().manual_seed(5)
    n = 700
    A = torch.randn(n, 800, generator=g, dtype=torch.float64)  # A Aᵀ ≈ 800 I: nearly isotropic
    B = torch.randn(n, 300, generator=g, dtype=torch.float64)
    mv = lambda V: A @ (A.T @ V) - 0.5 * (B @ (B.T @ V))
    w, U = top_eigh(mv, n, 3, tol=1e-8)
    M = A @ A.T - 0.5 * B @ B.T
    ref, _ = top_eigh_dense(M, 3)
    assert abs(float(torch.trace(U.T @ M @ U)) - float(ref.sum())) <= 1e-4 * float(ref.sum())
    assert torch.allclose(w, ref, rtol=1e-6)


@pytest.mark.parametrize("solver", ["dense", "krylov"])
def test_parallel_solves_equal_serial(layer_problem, solver):
    """With several torch threads the K solves run side by side in a thread pool; the bases are the same."""
    from catlib.core.linalg import torch_threads

    taus, factors, _ = layer_problem
    with torch_threads(1):
        serial = removal_bases(taus, factors, 3, 1.0, solver=solver, tol=1e-7)
    with torch_threads(2):
        parallel = removal_bases(taus, factors, 3, 1.0, solver=solver, tol=1e-7)
    for a, b in zip(serial, parallel):
        assert torch.equal(a, b)


def test_solver_matvec_is_the_operator_a_at_minus_lambda_b_bt():
    from catlib.merge._solver import matvec

    g = torch.Generator().manual_seed(0)
    A, B, V = (torch.randn(300, n, generator=g, dtype=torch.float64) for n in (120, 120, 4))
    got = matvec(A, B, 0.7)(V)
    assert got.shape == (300, 4)
    assert torch.allclose(got, (A @ A.T - 0.7 * B @ B.T) @ V, rtol=1e-10, atol=1e-10)
