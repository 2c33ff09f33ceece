"""Premise diagnostics (catlib.analysis.premise): constructed cases with known answers, invariants, a small
end-to-end run, and (slow) the tiny benchmark."""

import copy
import json
import time

import pytest
import torch
from torch import nn

from catlib.analysis import premise as P
from catlib.core.stats import Gram, LayerInfo, Statistics, collect_statistics
from catlib.merge.cat import removal_bases

KEY = "layer.weight"


def make_stats(Xs, key=KEY, transposed=False, dense=False):
    """Statistics with one linear layer whose inputs for task k are the rows of Xs[k]. ``dense``: pad with zero
    rows so that the Gram object switches to its dense (in × in) form (same matrix)."""
    grams = []
    for X in Xs:
        X = X.float()
        if dense and X.shape[0] < X.shape[1]:
            X = torch.cat([X, torch.zeros(X.shape[1] - X.shape[0], X.shape[1])])
        g = Gram(X.shape[1])
        g.add(X)
        assert g.low_rank == (X.shape[0] < X.shape[1])
        grams.append({key: g})
    return Statistics(layers={key: LayerInfo("linear", transposed=transposed)}, grams=grams)


def randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def brute_subspace_energy(Xs, r):
    G = [X.double().T @ X.double() for X in Xs]
    out = torch.zeros(len(G), len(G), dtype=torch.float64)
    for i, Gi in enumerate(G):
        _, V = torch.linalg.eigh(Gi)
        U = V[:, -r:]
        Pi = U @ U.T
        for k, Gk in enumerate(G):
            out[i, k] = torch.trace(Pi @ Gk) / torch.trace(Gk)
    return out


# ------------------------------------------------------------------------------------------------------------
# constructed cases
# ------------------------------------------------------------------------------------------------------------
def test_disjoint_inputs_have_zero_overlap():
    # task 0 lives on coordinates 0-2, task 1 on 3-5, task 2 on 6-7 (of 8)
    Xs = [torch.zeros(5, 8) for _ in range(3)]
    Xs[0][:, 0:3] = randn(5, 3, seed=0)
    Xs[1][:, 3:6] = randn(5, 3, seed=1)
    Xs[2][:, 6:8] = randn(5, 2, seed=2)
    stats = make_stats(Xs)
    se = P.subspace_energy(stats, KEY, energy=0.9)
    off = ~torch.eye(3, dtype=torch.bool)
    assert torch.allclose(se.energy[off], torch.zeros(6, dtype=torch.float64), atol=1e-12)
    assert (se.energy.diagonal() >= 0.9 - 1e-12).all()
    gc = P.gram_cosine(stats, KEY)
    assert torch.allclose(gc[off], torch.zeros(6, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(gc.diagonal(), torch.ones(3, dtype=torch.float64))


def test_identical_inputs_have_full_overlap():
    X = randn(4, 10, seed=3)  # rank 4 in R^10
    stats = make_stats([X, X.clone(), X.clone()])
    se = P.subspace_energy(stats, KEY, energy=1.0)
    assert se.ranks == [4, 4, 4]
    assert torch.allclose(se.energy, torch.ones(3, 3, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(se.chance, torch.full((3,), 0.4, dtype=torch.float64))
    assert torch.allclose(P.gram_cosine(stats, KEY), torch.ones(3, 3, dtype=torch.float64), atol=1e-9)
    # a Gram matrix's cosine does not depend on its scale
    stats2 = make_stats([X, 3 * X])
    assert torch.allclose(P.gram_cosine(stats2, KEY), torch.ones(2, 2, dtype=torch.float64), atol=1e-9)


def test_subspace_energy_matches_brute_force_and_fixed_rank():
    Xs = [
        randn(12, 6, seed=s)
        @ torch.diag(torch.tensor([5.0, 4, 3, 1, 0.5, 0.1]))
        @ torch.linalg.qr(randn(6, 6, seed=10 + s))[0]
        for s in range(3)
    ]
    for dense in (False, True):
        stats = make_stats(Xs, dense=dense)
        se = P.subspace_energy(stats, KEY, rank=2)
        assert se.ranks == [2, 2, 2]
        assert torch.allclose(se.energy, brute_subspace_energy(Xs, 2), atol=1e-5)
        assert torch.allclose(se.chance, torch.full((3,), 2 / 6, dtype=torch.float64))
    # energy-chosen rank: the smallest r holding the fraction
    w = torch.linalg.eigvalsh(Xs[0].double().T @ Xs[0].double()).flip(0)
    frac = torch.cumsum(w, 0) / w.sum()
    want = int((frac < 0.9).sum()) + 1
    assert P.subspace_energy(make_stats(Xs), KEY, energy=0.9).ranks[0] == want


def test_chance_level_is_what_random_subspaces_hold():
    # task 0: a fixed anisotropic input; tasks 1..: random rank-r Gram matrices, so their top-r subspaces are
    # uniformly random; the mean share of task 0's energy they hold must approach r / n
    n, r, K = 8, 3, 200
    X0 = randn(20, n, seed=0) * torch.linspace(0.2, 3, n)
    Xs = [X0] + [randn(r, n, seed=100 + t) for t in range(K)]
    se = P.subspace_energy(make_stats(Xs), KEY, rank=r)
    shares = se.energy[1:, 0]
    assert abs(float(shares.mean()) - r / n) < 0.03  # std of the mean ≈ 0.01
    assert torch.allclose(se.chance[1:], torch.full((K,), r / n, dtype=torch.float64))
    # and the output-side chance c / out for CAT's captured share
    taus = [{KEY: randn(5, n, seed=t)} for t in range(2)]
    cap = P.captured_interference(taus, make_stats(Xs[:2]), KEY, c=2, lam=1.0)
    assert cap.chance == pytest.approx(2 / 5) and cap.c == 2


def haar(n, seed):
    Q, R = torch.linalg.qr(randn(n, n, seed=seed).double())
    return Q * torch.sign(torch.diagonal(R))


def test_gram_cosine_chance_is_the_random_rotation_mean():
    n = 6
    A = randn(10, n, seed=0).double() * torch.linspace(0.3, 2, n).double()
    B = randn(4, n, seed=1).double()  # rank 4
    chance = P.gram_cosine_chance(make_stats([A, B]), KEY)
    GA, GB = A.T @ A, B.T @ B
    want = torch.trace(GA) * torch.trace(GB) / (n * GA.norm() * GB.norm())
    assert float(chance[0, 1]) == pytest.approx(float(want), rel=1e-6)
    cos = [float(P.gram_cosine(make_stats([A, B @ haar(n, 100 + t).T]), KEY)[0, 1]) for t in range(300)]
    assert abs(sum(cos) / len(cos) - float(want)) < 0.02
    # isotropic inputs: any rotation leaves them alike, chance 1
    I = torch.eye(n)
    assert torch.allclose(P.gram_cosine_chance(make_stats([I, 2 * I]), KEY), torch.ones(2, 2, dtype=torch.float64))


def test_interference_ratio_hand_computed():
    # 2 tasks, τ: 3 × 4 (out × in). Task 0's tokens: e1, e2; task 1's tokens: e3, 2·e4
    X0 = torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0]])
    X1 = torch.tensor([[0.0, 0, 1, 0], [0, 0, 0, 2]])
    t0 = torch.tensor([[1.0, 0, 1, 0], [0, 2, 0, 0], [0, 0, 0, 1]])
    t1 = torch.tensor([[0.0, 1, 0, 1], [1, 0, 0, 1], [0, 0, 1, 0]])
    # ‖τ X_kᵀ‖² = Σ_tokens ‖τ x‖²:  τ0 on task 0: 1 + 4 = 5;  τ1 on task 0: 1 + 1 = 2;
    #                               τ0 on task 1: 1 + 4·1 = 5;  τ1 on task 1: 1 + 4·2 = 9
    res = P.interference_ratio([{KEY: t0}, {KEY: t1}], make_stats([X0, X1]), KEY)
    assert torch.allclose(res.shifts, torch.tensor([[5.0, 5.0], [2.0, 9.0]], dtype=torch.float64))
    assert torch.allclose(res.pairs, torch.tensor([[1.0, 5 / 9], [2 / 5, 1.0]], dtype=torch.float64))
    assert torch.allclose(res.ratio, torch.tensor([2 / 5, 5 / 9], dtype=torch.float64))


def test_interference_ratio_matches_tokens_with_three_tasks():
    Xs = [randn(7, 5, seed=s) for s in range(3)]
    taus = [randn(4, 5, seed=20 + s) for s in range(3)]
    res = P.interference_ratio([{KEY: t} for t in taus], make_stats(Xs, dense=True), KEY)
    S = torch.tensor(
        [[float(((taus[i].double() @ Xs[k].double().T) ** 2).sum()) for k in range(3)] for i in range(3)],
        dtype=torch.float64,
    )
    assert torch.allclose(res.shifts, S, rtol=1e-5)
    want = torch.stack([(S[:, k].sum() - S[k, k]) / S[k, k] for k in range(3)])
    assert torch.allclose(res.ratio, want, rtol=1e-5)


def test_captured_share_is_one_when_conflict_lives_in_c_directions():
    out, n, c, K = 6, 5, 2, 3
    Q = torch.linalg.qr(randn(out, c, seed=0))[0]  # every τ_i maps into span(Q): rank(τ_i X_kᵀ) ≤ c
    taus = [{KEY: Q @ randn(c, n, seed=1 + i)} for i in range(K)]
    stats = make_stats([randn(9, n, seed=10 + k) for k in range(K)])
    cap = P.captured_interference(taus, stats, KEY, c=c, lam=0.0)
    assert torch.allclose(cap.share, torch.ones(K, dtype=torch.float64), atol=1e-6)
    # control: generic task vectors spread their interference, so c of 6 directions catch less than all of it
    generic = [{KEY: randn(out, n, seed=30 + i)} for i in range(K)]
    cap2 = P.captured_interference(generic, stats, KEY, c=c, lam=0.0)
    assert (cap2.share < 0.99).all() and (cap2.share > cap2.chance).all()  # top-c beats a random subspace


def test_captured_share_matches_removal_bases():
    Xs = [randn(8, 5, seed=s) for s in range(3)]
    taus = [randn(7, 5, seed=40 + s) for s in range(3)]
    stats = make_stats(Xs)
    cap = P.captured_interference([{KEY: t} for t in taus], stats, KEY, c=2, lam=0.5)
    B = removal_bases(taus, [g[KEY].factor() for g in stats.grams], 2, 0.5)
    for k in range(3):
        num = sum(
            float(((B[k].double().T @ taus[i].double() @ Xs[k].double().T) ** 2).sum()) for i in range(3) if i != k
        )
        den = sum(float(((taus[i].double() @ Xs[k].double().T) ** 2).sum()) for i in range(3) if i != k)
        assert float(cap.share[k]) == pytest.approx(num / den, rel=1e-5)


def test_task_vector_cosines():
    a, b = randn(3, 4, seed=0), randn(5, seed=1)
    vecs = [{"w": a, "b": b}, {"w": -a, "b": -b}, {"w": 2 * a, "b": torch.zeros(5)}]
    C = P.task_vector_cosines(vecs)
    assert C.dtype == torch.float64 and C.shape == (3, 3)
    assert torch.allclose(C.diagonal(), torch.ones(3, dtype=torch.float64))
    assert float(C[0, 1]) == pytest.approx(-1.0)
    na, nb = float(a.double().norm()) ** 2, float(b.double().norm()) ** 2
    assert float(C[0, 2]) == pytest.approx(2 * na / ((na + nb) ** 0.5 * 2 * na**0.5))
    L = P.layer_task_vector_cosines(vecs, ["b", "w"])
    assert list(L) == ["b", "w"]
    assert torch.allclose(L["w"], torch.tensor([[1.0, -1, 1], [-1, 1, -1], [1, -1, 1]], dtype=torch.float64))
    assert float(L["b"][0, 1]) == pytest.approx(-1.0) and float(L["b"][2, 2]) == 0.0  # zero vector: 0


# ------------------------------------------------------------------------------------------------------------
# invariants
# ------------------------------------------------------------------------------------------------------------
def _setup(K=3, out=6, n=5, rows=(4, 9, 7), seed=0):
    Xs = [randn(rows[k], n, seed=seed + k) for k in range(K)]
    vecs = [{KEY: randn(out, n, seed=seed + 50 + k), "bias": randn(out, seed=seed + 80 + k)} for k in range(K)]
    return Xs, vecs


def test_inputs_are_not_modified():
    Xs, vecs = _setup()
    stats = make_stats(Xs)
    before_v = copy.deepcopy(vecs)
    before_g = [g[KEY].matrix().clone() for g in stats.grams]
    P.diagnose(vecs, stats, c=2, lam=1.0)
    for v, w in zip(vecs, before_v):
        assert all(torch.equal(v[k], w[k]) for k in w)
    for g, m in zip(stats.grams, before_g):
        assert torch.equal(g[KEY].matrix(), m)


def test_transposed_storage_gives_the_same_numbers():
    Xs, vecs = _setup()
    d1 = P.diagnose(vecs, make_stats(Xs), c=2, lam=0.5)
    tvecs = [{KEY: v[KEY].T.contiguous(), "bias": v["bias"]} for v in vecs]
    d2 = P.diagnose(tvecs, make_stats(Xs, transposed=True), c=2, lam=0.5)
    a, b = d1["per_layer"][KEY], d2["per_layer"][KEY]
    assert a["shape"] == b["shape"] == [6, 5]
    for name in (
        "subspace_energy",
        "gram_cosine",
        "task_vector_cosine",
        "interference_pairs",
        "interference_ratio",
        "captured_interference",
        "captured_chance",
    ):
        assert torch.allclose(torch.tensor(a[name]), torch.tensor(b[name]), rtol=1e-6, atol=1e-9), name


def test_low_rank_and_dense_statistics_agree():
    Xs, vecs = _setup(rows=(3, 4, 2))
    d1 = P.diagnose(vecs, make_stats(Xs), c=2, lam=1.0)
    d2 = P.diagnose(vecs, make_stats(Xs, dense=True), c=2, lam=1.0)
    for name in ("subspace_energy", "gram_cosine", "interference_pairs", "captured_interference"):
        assert torch.allclose(
            torch.tensor(d1["per_layer"][KEY][name]), torch.tensor(d2["per_layer"][KEY][name]), atol=1e-5
        ), name


def test_cosine_diagonals_are_one():
    Xs, vecs = _setup()
    d = P.diagnose(vecs, make_stats(Xs))
    for M in (
        d["task_vector_cosine"],
        d["per_layer"][KEY]["gram_cosine"],
        d["per_layer"][KEY]["task_vector_cosine"],
        d["per_layer"][KEY]["interference_pairs"],
    ):
        assert torch.allclose(torch.tensor(M, dtype=torch.float64).diagonal(), torch.ones(3, dtype=torch.float64))


def test_rejects_mismatched_inputs():
    Xs, vecs = _setup()
    with pytest.raises(ValueError):
        P.diagnose(vecs[:2], make_stats(Xs))
    with pytest.raises(ValueError):
        P.diagnose(vecs, make_stats(Xs), tasks=["a", "b"])
    with pytest.raises(ValueError):
        P.diagnose(vecs[:1], make_stats(Xs[:1]))
    with pytest.raises(KeyError):
        P.subspace_energy(make_stats(Xs), "nope.weight")


# ------------------------------------------------------------------------------------------------------------
# end to end on a real (small) module
# ------------------------------------------------------------------------------------------------------------
DOC_KEYS = {"tasks", "layers", "settings", "conventions", "task_vector_cosine", "per_layer", "chance", "summary"}
LAYER_KEYS = {
    "shape",
    "subspace_energy",
    "subspace_rank",
    "subspace_chance",
    "gram_cosine",
    "gram_cosine_chance",
    "task_vector_cosine",
    "interference_pairs",
    "interference_ratio",
    "captured_interference",
    "captured_chance",
}
SUMMARY_KEYS = {
    "num_layers",
    "subspace_energy",
    "subspace_energy_chance",
    "subspace_energy_own",
    "gram_cosine",
    "gram_cosine_chance",
    "layer_task_vector_cosine",
    "task_vector_cosine",
    "interference_ratio",
    "interference_ratio_median",
    "captured_interference",
    "captured_chance",
}


def _finite_numbers(obj):
    if isinstance(obj, dict):
        return all(isinstance(k, str) and _finite_numbers(v) for k, v in obj.items())
    if isinstance(obj, list):
        return all(_finite_numbers(v) for v in obj)
    if isinstance(obj, bool):
        return False
    if isinstance(obj, (int, float)):
        return obj == obj and abs(obj) != float("inf")
    return isinstance(obj, str)


def test_end_to_end_small_mlp():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    theta0 = {k: v.clone() for k, v in module.state_dict().items()}
    thetas = []
    for t in range(3):
        g = torch.Generator().manual_seed(100 + t)
        thetas.append({k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in theta0.items()})
    g = torch.Generator().manual_seed(7)
    exemplars = [torch.randn(12, 8, generator=g) + t for t in range(3)]  # 12 rows: dense for in=8, thin for 16
    stats = collect_statistics(module, theta0, thetas, exemplars, needs=("gram",))
    vectors = [{k: th[k] - theta0[k] for k in theta0} for th in thetas]
    d = P.diagnose(vectors, stats, c=2, lam=1.0, tasks=["a", "b", "c"])
    assert set(d) == DOC_KEYS
    assert d["tasks"] == ["a", "b", "c"] and d["layers"] == ["0.weight", "2.weight"]
    assert list(d["per_layer"]) == d["layers"]
    assert set(d["summary"]) == SUMMARY_KEYS and d["summary"]["num_layers"] == 2
    for key, shape in (("0.weight", [16, 8]), ("2.weight", [4, 16])):
        lay = d["per_layer"][key]
        assert set(lay) == LAYER_KEYS and lay["shape"] == shape
        assert lay["captured_chance"] == pytest.approx(2 / shape[0])
        E = torch.tensor(lay["subspace_energy"])
        assert E.shape == (3, 3) and ((E >= -1e-12) & (E <= 1 + 1e-9)).all()
        assert (E.diagonal() >= 0.9 - 1e-9).all()
        cap = torch.tensor(lay["captured_interference"])
        assert ((cap >= 0) & (cap <= 1 + 1e-9)).all()
    assert _finite_numbers(d)
    back = json.loads(json.dumps(d, allow_nan=False))
    assert back == d
    # the numbers are those of the single-quantity functions
    se = P.subspace_energy(stats, "2.weight", energy=0.9)
    assert d["per_layer"]["2.weight"]["subspace_energy"] == se.energy.tolist()


# ------------------------------------------------------------------------------------------------------------
# the tiny benchmark (slow)
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_tiny_benchmark_premise(capsys):
    import catlib
    from catlib.core.statedict import task_vectors

    bench = catlib.load_benchmark("tiny")
    fts = bench.finetuned_list()
    exemplars = bench.exemplar_batches(4, seed=0)
    stats = collect_statistics(bench.build_module(), bench.pretrained, fts, exemplars, needs=("gram",))
    vectors = task_vectors(bench.pretrained, fts)
    t = time.perf_counter()
    d = P.diagnose(vectors, stats, c=2, lam=1.0, tasks=bench.tasks)
    took = time.perf_counter() - t
    json.dumps(d, allow_nan=False)
    s = d["summary"]
    with capsys.disabled():
        print(
            f"\ntiny premise ({s['num_layers']} layers, diagnose {took:.1f}s): "
            + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in s.items())
        )
    assert s["subspace_energy"] > s["subspace_energy_chance"]
    assert s["captured_interference"] > s["captured_chance"]


def test_clip_likeness_reads_the_table_pages_and_marks_each_criterion(tmp_path, monkeypatch):
    import json

    from catlib import report as R

    monkeypatch.setenv("CATLIB_RESULTS_DIR", str(tmp_path))
    avgs = {
        "weight_average": 56.0,
        "regmean": 60.0,
        "fisher": 56.5,
        "task_arithmetic": 60.5,
        "pretrained": 47.5,
        "individual": 89.6,
    }
    ind = {"t1": 97.0, "t2": 74.0}
    doc = {"name": "table1", "parameters": {}, "results": {"averages": avgs, "per_task": {"individual": ind}}}
    (tmp_path / "table1.json").write_text(json.dumps(doc))
    df = R.clip_likeness({"zoo": "table1", "missing": "nothing"}, {"zoo": 0.02}, {"ViT-B/32": "table1_vit_b32"})
    assert list(df.index) == [c[0] for c in R.CLIP_LIKE]
    assert df.loc["RegMean − Weight Averaging", "paper, ViT-B/32"] == 6.0  # 71.8 − 65.8 in the paper's Table 1
    met = df["met, zoo"]
    assert met["RegMean − Weight Averaging"] == "yes" and met["Fisher Merging − Weight Averaging"] == "no"
    assert met["Individual, weakest task"] == "no" and met["mean task-vector cosine (off-diagonal)"] == "yes"
    assert df.loc["Individual − Task Arithmetic", "ours, zoo"] == 29.1
    assert set(df["met, missing"]) == {"—"}  # no results file: nothing is claimed
