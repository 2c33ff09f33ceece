"""Premise diagnostics for CAT Merging: do the tasks' layer inputs and task vectors actually conflict?

CAT Merging (Sun, Li, Geng, Li; ICML 2025) bounds the loss change that task vector τ_i causes on task k by a sum
over layers of feature shifts ‖Δf̂_{k|i}^l‖ (Theorem 4.4). For a linear layer that shift is ``τ_i X_kᵀ``: task i's
weight change applied to task k's layer inputs. CAT then removes, for every task k, the c output directions that
carry most of this shift (Algorithm 1). Its premise is that (a) the tasks' layer inputs overlap, so that
``τ_i X_kᵀ`` is not negligible next to task k's own ``τ_k X_kᵀ``, and (b) this interference is concentrated in a
few output directions, so that removing c of them takes out much of it. The functions here measure both, per layer
and per pair of tasks, from the same statistics the merges use (:class:`Statistics` with "gram") and the task
vectors.

Conventions (all functions):

* K tasks, indexed like ``vectors`` and ``stats.grams``. Matrices are (K, K) with **row i, column k**: row i is
  the task that owns the subspace / the task vector, column k the task whose inputs are measured.
* Weights in PyTorch layout τ: (out, in) (the paper's T is τᵀ); parameters stored (in, out) are marked by
  ``LayerInfo.transposed`` and transposed first, conv kernels are flattened to (out, in·kh·kw), as the merges do.
* ``G_k = X_kᵀ X_k`` (in × in) is the Gram matrix of layer ``key``'s inputs under expert k on task k's exemplars
  (rows of X_k are tokens), so ``‖τ X_kᵀ‖_F² = tr(τ G_k τᵀ)``.
* Everything is computed in float64; nothing modifies its inputs. Ratios whose denominator is zero (a task with no
  input energy at a layer, a zero task vector) are defined as 0.
* "Chance" is what uniformly random directions give in expectation: a random r-dimensional subspace of R^n holds
  the share r / n of any fixed energy, because ``E[P] = (r/n) I`` for its projector P; a randomly rotated Gram
  matrix has expectation ``tr(G)/n · I`` (:func:`gram_cosine_chance`); random task vectors have cosine 0.
"""

from __future__ import annotations

import math
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence

import torch

from ..core.stats import LayerInfo, Statistics
from ..core.statedict import cosine_matrix
from ..merge.cat import removal_bases
from ..merge.regmean import as_out_in

Vectors = Sequence[Mapping[str, torch.Tensor]]

__all__ = [
    "SubspaceEnergy",
    "Interference",
    "CapturedInterference",
    "subspace_energy",
    "gram_cosine",
    "gram_cosine_chance",
    "task_vector_cosines",
    "layer_task_vector_cosines",
    "interference_ratio",
    "captured_interference",
    "diagnose",
    "linear_keys",
]

_RANK_TOL = 1e-12  # eigenvalues below this fraction of the largest count as zero (as in Gram.factor)


class SubspaceEnergy(NamedTuple):
    """Result of :func:`subspace_energy`."""

    energy: torch.Tensor  # (K, K) float64: [i, k] = tr(P_i G_k) / tr(G_k)
    chance: torch.Tensor  # (K,) float64: r_i / in, the expected share of a random r_i-dimensional subspace
    ranks: List[int]  # r_i, the dimension of task i's top input subspace


class Interference(NamedTuple):
    """Result of :func:`interference_ratio`."""

    ratio: torch.Tensor  # (K,) float64: Σ_{i≠k} ‖τ_i X_kᵀ‖² / ‖τ_k X_kᵀ‖²
    pairs: torch.Tensor  # (K, K) float64: [i, k] = ‖τ_i X_kᵀ‖² / ‖τ_k X_kᵀ‖² (diagonal 1)
    shifts: torch.Tensor  # (K, K) float64: [i, k] = ‖τ_i X_kᵀ‖² (raw squared feature shifts)


class CapturedInterference(NamedTuple):
    """Result of :func:`captured_interference`."""

    share: torch.Tensor  # (K,) float64: Σ_{i≠k} ‖B_kᵀ τ_i X_kᵀ‖² / Σ_{i≠k} ‖τ_i X_kᵀ‖²
    chance: float  # c / out, the expected share of a random c-dimensional output subspace
    c: int  # the number of removal directions actually used, min(c, out)


# ----------------------------------------------------------------------------------------------------------------
# the layer inputs of one key, in float64
# ----------------------------------------------------------------------------------------------------------------
class _Inputs:
    """The tasks' input Gram matrices at one layer, each as a float64 factor F_k (r_k × in, F_kᵀF_k = G_k): the
    stored token rows while the statistics kept them, else from the dense matrix's eigenpairs (positive ones)."""

    def __init__(self, stats: Statistics, key: str):
        if not stats.grams:
            raise ValueError("these diagnostics need Gram statistics: collect_statistics(..., needs=('gram',))")
        missing = [k for k, g in enumerate(stats.grams) if key not in g]
        if missing:
            raise KeyError(f"no Gram statistics for {key!r} (task {missing[0]}); is it a linear-type layer?")
        self.F: List[torch.Tensor] = []
        self._eig: List[Optional[tuple]] = []
        for g in stats.grams:
            g = g[key]
            if getattr(g, "low_rank", False):  # the exact token rows
                self.F.append(g.factor().double())
                self._eig.append(None)
            else:
                w, V = torch.linalg.eigh(g.matrix().double())
                w, V = _positive(w.flip(0), V.flip(1))  # eigh is ascending
                self.F.append((V * w.sqrt()).T)
                self._eig.append((w, V))
        self.dim = self.F[0].shape[1]
        self.K = len(self.F)

    def trace(self, k: int) -> float:
        """tr(G_k)."""
        return float((self.F[k] ** 2).sum())

    def shift(self, M: torch.Tensor, k: int) -> float:
        """‖M X_kᵀ‖_F² = tr(M G_k Mᵀ) for M (m × in)."""
        return float(((M @ self.F[k].T) ** 2).sum())

    def inner(self, i: int, k: int) -> float:
        """⟨G_i, G_k⟩_F = ‖F_i F_kᵀ‖_F²."""
        return float(((self.F[i] @ self.F[k].T) ** 2).sum())

    def eig(self, k: int):
        """Positive eigenvalues of G_k, descending, and their eigenvectors (in × r)."""
        if self._eig[k] is None:
            if self.F[k].shape[0] == 0:
                self._eig[k] = (torch.zeros(0, dtype=torch.float64), torch.zeros(self.dim, 0, dtype=torch.float64))
            else:
                _, s, Vh = torch.linalg.svd(self.F[k], full_matrices=False)
                self._eig[k] = _positive(s**2, Vh.T)
        return self._eig[k]


def _positive(w: torch.Tensor, V: torch.Tensor):
    if w.numel() == 0:
        return w, V
    keep = w > w.max().clamp_min(0) * _RANK_TOL
    return w[keep], V[:, keep]


def _weights(vectors: Vectors, stats: Statistics, key: str) -> List[torch.Tensor]:
    info = stats.layers.get(key, LayerInfo("linear"))
    return [as_out_in(v[key].double(), info.transposed) for v in vectors]


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else 0.0


def _check_tasks(vectors: Vectors, stats: Statistics) -> int:
    K = len(vectors)
    if K != len(stats.grams):
        raise ValueError(f"got {K} task vectors but Gram statistics for {len(stats.grams)} tasks")
    return K


# ----------------------------------------------------------------------------------------------------------------
# 1-2: do the tasks' inputs overlap?
# ----------------------------------------------------------------------------------------------------------------
def subspace_energy(stats: Statistics, key: str, rank: Optional[int] = None, energy: float = 0.9) -> SubspaceEnergy:
    """Share of each task's layer-input energy that lies in every task's top input subspace.

    Entry ``[i, k] = tr(P_i G_k) / tr(G_k)``, where P_i projects onto the span of the top r_i eigenvectors of G_i
    (in × in, the Gram matrix of layer ``key``'s inputs for task i). r_i is ``min(rank, rank(G_i))`` when ``rank``
    is given, else the smallest r whose top eigenvalues hold at least the fraction ``energy`` of tr(G_i) (so the
    diagonal is ≥ ``energy``). Beside it the chance level ``r_i / in`` (per row i): the share a uniformly random
    r_i-dimensional subspace holds in expectation. Returns :class:`SubspaceEnergy` (energy (K, K), chance (K,),
    ranks). Off-diagonal entries well above chance mean the tasks feed this layer overlapping inputs.
    """
    return _subspace_energy(_Inputs(stats, key), rank, energy)


def _subspace_energy(inp: _Inputs, rank: Optional[int], energy: float) -> SubspaceEnergy:
    if rank is None and not 0 < energy <= 1:
        raise ValueError(f"energy must be in (0, 1], got {energy}")
    if rank is not None and rank < 0:
        raise ValueError(f"rank must be >= 0, got {rank}")
    K, n = inp.K, inp.dim
    ranks: List[int] = []
    bases = []
    for i in range(K):
        w, V = inp.eig(i)
        if rank is not None:
            r = min(int(rank), w.numel())
        elif w.numel() == 0:
            r = 0
        else:
            cum = torch.cumsum(w, 0)
            r = int((cum < energy * cum[-1] * (1 - 1e-12)).sum()) + 1
            r = min(r, w.numel())
        ranks.append(r)
        bases.append(V[:, :r])
    traces = [inp.trace(k) for k in range(K)]
    E = torch.zeros(K, K, dtype=torch.float64)
    for i in range(K):
        for k in range(K):
            E[i, k] = _ratio(inp.shift(bases[i].T, k), traces[k])  # tr(U_iᵀ G_k U_i) = tr(P_i G_k)
    chance = torch.tensor([r / n for r in ranks], dtype=torch.float64)
    return SubspaceEnergy(E, chance, ranks)


def gram_cosine(stats: Statistics, key: str) -> torch.Tensor:
    """(K, K) float64 cosine of the tasks' input Gram matrices at layer ``key``:
    ``⟨G_i, G_k⟩_F / (‖G_i‖_F ‖G_k‖_F)``, in [0, 1] (Gram matrices are PSD); 1 on the diagonal (0 for a task with
    no input energy). Its chance level is :func:`gram_cosine_chance`."""
    return _gram_cosine(_Inputs(stats, key))


def _gram_cosine(inp: _Inputs) -> torch.Tensor:
    K = inp.K
    C = torch.zeros(K, K, dtype=torch.float64)
    for i in range(K):
        for k in range(i, K):
            C[i, k] = C[k, i] = inp.inner(i, k)
    d = C.diagonal().clone().sqrt()
    den = d[:, None] * d[None, :]
    return torch.where(den > 0, C / den.clamp_min(1e-300), torch.zeros_like(C))


def gram_cosine_chance(stats: Statistics, key: str) -> torch.Tensor:
    """(K, K) float64 expected Gram cosine if task k's inputs were rotated uniformly at random (same spectrum):
    ``tr(G_i) tr(G_k) / (in ‖G_i‖_F ‖G_k‖_F)``, since ``E_Q[Q G Qᵀ] = tr(G)/in · I``. It lies in [1/in, 1]: low
    for low-rank inputs, near 1 for isotropic ones."""
    return _gram_cosine_chance(_Inputs(stats, key))


def _gram_cosine_chance(inp: _Inputs) -> torch.Tensor:
    t = torch.tensor([inp.trace(k) for k in range(inp.K)], dtype=torch.float64)
    f = torch.tensor([inp.inner(k, k) for k in range(inp.K)], dtype=torch.float64).sqrt()
    num, den = t[:, None] * t[None, :], inp.dim * f[:, None] * f[None, :]
    return torch.where(den > 0, num / den.clamp_min(1e-300), torch.zeros_like(num))


# ----------------------------------------------------------------------------------------------------------------
# 3: do the task vectors point the same way?
# ----------------------------------------------------------------------------------------------------------------
def task_vector_cosines(vectors: Vectors) -> torch.Tensor:
    """(K, K) float64 cosine of the whole flattened task vectors (every floating key)."""
    return cosine_matrix(vectors)


def layer_task_vector_cosines(vectors: Vectors, keys: Sequence[str]) -> Dict[str, torch.Tensor]:
    """``{key: (K, K) float64 cosine of τ_i[key] and τ_k[key]}`` for each key (layout-independent). Zero tensors
    get cosine 0 (diagonal included)."""
    out = {}
    for key in keys:
        T = torch.stack([v[key].reshape(-1).double() for v in vectors])
        g = T @ T.T
        d = g.diagonal().sqrt()
        den = d[:, None] * d[None, :]
        out[key] = torch.where(den > 0, g / den.clamp_min(1e-300), torch.zeros_like(g))
    return out


# ----------------------------------------------------------------------------------------------------------------
# 4-5: CAT's interference and how much of it the top-c directions catch
# ----------------------------------------------------------------------------------------------------------------
def _shifts(inp: _Inputs, taus: List[torch.Tensor], bases: Optional[List[torch.Tensor]] = None):
    """S[i, k] = ‖τ_i X_kᵀ‖² and, with CAT's bases, C[i, k] = ‖B_kᵀ τ_i X_kᵀ‖² (one product τ_i F_kᵀ per pair,
    never all of them at once)."""
    K = inp.K
    S = torch.zeros(K, K, dtype=torch.float64)
    C = torch.zeros(K, K, dtype=torch.float64)
    for k in range(K):
        Bk = bases[k].double() if bases is not None else None
        for i in range(K):
            Pik = taus[i] @ inp.F[k].T  # (out, r_k) = τ_i X_kᵀ up to rotation
            S[i, k] = float((Pik**2).sum())
            if Bk is not None and i != k:
                C[i, k] = float(((Bk.T @ Pik) ** 2).sum())
    return S, C


def _interference(S: torch.Tensor) -> Interference:
    K = S.shape[0]
    own = S.diagonal().clone()
    pairs = torch.where(own[None, :] > 0, S / own[None, :].clamp_min(1e-300), torch.zeros_like(S))
    ratio = torch.tensor([_ratio(float(S[:, k].sum() - S[k, k]), float(own[k])) for k in range(K)], dtype=torch.float64)
    return Interference(ratio, pairs, S)


def _bases(vectors: Vectors, stats: Statistics, key: str, c: int, lam: float, solver: str):
    info = stats.layers.get(key, LayerInfo("linear"))
    taus32 = [as_out_in(v[key].float(), info.transposed) for v in vectors]  # exactly what the merge passes
    return removal_bases(taus32, [g[key].factor() for g in stats.grams], c, lam, solver=solver)


def _captured(S: torch.Tensor, C: torch.Tensor, used: int, out: int) -> CapturedInterference:
    K = S.shape[0]
    share = torch.tensor(
        [_ratio(float(C[:, k].sum() - C[k, k]), float(S[:, k].sum() - S[k, k])) for k in range(K)], dtype=torch.float64
    )
    return CapturedInterference(share, used / out if out else 0.0, used)


def interference_ratio(vectors: Vectors, stats: Statistics, key: str) -> Interference:
    """CAT's inter-task interference at layer ``key``, relative to each task's own feature change.

    ``shifts[i, k] = ‖τ_i X_kᵀ‖_F² = tr(τ_i G_k τ_iᵀ)``: how much task i's weight change moves task k's layer
    outputs (the layer term of Theorem 4.4, squared). ``pairs[i, k] = shifts[i, k] / shifts[k, k]`` and
    ``ratio[k] = Σ_{i≠k} shifts[i, k] / shifts[k, k]`` (0 where task k's own shift is 0). τ: (out, in) (stored
    (in, out) when ``stats.layers[key].transposed``). Returns :class:`Interference`.
    """
    _check_tasks(vectors, stats)
    S, _ = _shifts(_Inputs(stats, key), _weights(vectors, stats, key))
    return _interference(S)


def captured_interference(
    vectors: Vectors, stats: Statistics, key: str, c: int = 2, lam: float = 1.0, solver: str = "auto"
) -> CapturedInterference:
    """Share of task k's interference that CAT's removal directions B_k capture at layer ``key``.

    B_k (out × c, orthonormal) is CAT's basis from :func:`catlib.merge.cat.removal_bases` at the given c and λ
    (the very directions the merge removes from every τ_i, i ≠ k); ``share[k] = Σ_{i≠k} ‖B_kᵀ τ_i X_kᵀ‖² /
    Σ_{i≠k} ‖τ_i X_kᵀ‖²`` (0 where there is no interference). ``chance = c / out``: the share a uniformly random
    c-dimensional output subspace captures in expectation. Returns :class:`CapturedInterference`.
    """
    _check_tasks(vectors, stats)
    taus = _weights(vectors, stats, key)
    bases = _bases(vectors, stats, key, c, lam, solver)
    S, C = _shifts(_Inputs(stats, key), taus, bases)
    return _captured(S, C, bases[0].shape[1], taus[0].shape[0])


# ----------------------------------------------------------------------------------------------------------------
# 6: everything, JSON-ready
# ----------------------------------------------------------------------------------------------------------------
def linear_keys(vectors: Vectors, stats: Statistics) -> List[str]:
    """Sorted keys of the linear-type parameters that have Gram statistics for every task and a task vector."""
    return sorted(
        k
        for k, info in stats.layers.items()
        if info.kind == "linear" and stats.grams and all(k in g for g in stats.grams) and all(k in v for v in vectors)
    )


def _offdiag(M: torch.Tensor) -> torch.Tensor:
    K = M.shape[0]
    return M[~torch.eye(K, dtype=torch.bool)]


def _mean(xs) -> float:
    xs = [float(x) for x in xs]
    return sum(xs) / len(xs) if xs else 0.0


def _median(xs) -> float:
    xs = sorted(float(x) for x in xs)
    if not xs:
        return 0.0
    m = len(xs) // 2
    return xs[m] if len(xs) % 2 else 0.5 * (xs[m - 1] + xs[m])


def _lst(t: torch.Tensor):
    return t.tolist()


def _check_finite(obj, where: str = "diagnose"):
    if isinstance(obj, float) and not math.isfinite(obj):
        raise FloatingPointError(f"{where}: non-finite value {obj}")
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check_finite(v, f"{where}.{k}")
    elif isinstance(obj, list):
        for v in obj:
            _check_finite(v, where)


def diagnose(
    vectors: Vectors,
    stats: Statistics,
    c: int = 2,
    lam: float = 1.0,
    tasks: Optional[Sequence[str]] = None,
    energy: float = 0.9,
    rank: Optional[int] = None,
    solver: str = "auto",
) -> dict:
    """All premise diagnostics for every linear layer with Gram statistics, as a JSON-serialisable dict.

    ``vectors``: K task vectors (state dicts, τ_k = θ_k − θ0); ``stats``: :class:`Statistics` with "gram" for the
    same K tasks (as collected for the merges); ``c``, ``lam``: CAT's basis size and λ for the captured share;
    ``energy`` / ``rank``: how task i's top input subspace is chosen (see :func:`subspace_energy`); ``tasks``:
    task names (default ``task0``, ``task1``, ...). (K, K) matrices are nested lists, row i / column k as in the
    module docstring. Keys:

    * ``"tasks"``: the K names; ``"layers"``: the layer keys, sorted; ``"settings"``: c, lam, energy, rank
      ("energy" when chosen by energy), solver.
    * ``"conventions"``: one sentence per quantity, what rows/columns and each number mean.
    * ``"task_vector_cosine"``: (K, K) cosine of the whole task vectors (all floating keys).
    * ``"per_layer"``: ``{key: {...}}`` in the order of ``"layers"``, each with
      ``"shape"`` [out, in]; ``"subspace_energy"`` (K, K), ``"subspace_rank"`` [K], ``"subspace_chance"`` [K]
      (r_i / in); ``"gram_cosine"`` (K, K), ``"gram_cosine_chance"`` (K, K, see :func:`gram_cosine_chance`);
      ``"task_vector_cosine"`` (K, K) for this layer;
      ``"interference_pairs"`` (K, K) (‖τ_i X_kᵀ‖² / ‖τ_k X_kᵀ‖²), ``"interference_ratio"`` [K];
      ``"captured_interference"`` [K], ``"captured_chance"`` (c / out).
    * ``"chance"``: what random directions give, averaged like the summary: ``"subspace_energy"`` (mean r_i / in),
      ``"gram_cosine"`` (randomly rotated inputs), ``"captured_interference"`` (mean c / out),
      ``"task_vector_cosine"`` (0).
    * ``"summary"``: means over layers of per-layer means over the off-diagonal pairs (i ≠ k) or over tasks:
      ``"subspace_energy"``, ``"subspace_energy_chance"``, ``"subspace_energy_own"`` (the diagonal),
      ``"gram_cosine"``, ``"gram_cosine_chance"``, ``"layer_task_vector_cosine"``, ``"task_vector_cosine"``
      (whole model, off-diagonal mean), ``"interference_ratio"`` (mean over layers and tasks) and
      ``"interference_ratio_median"``, ``"captured_interference"``, ``"captured_chance"``, and ``"num_layers"``.

    Every number is finite (a ``FloatingPointError`` is raised otherwise).
    """
    K = _check_tasks(vectors, stats)
    if K < 2:
        raise ValueError(f"the premise diagnostics compare tasks: need at least 2, got {K}")
    names = [str(t) for t in tasks] if tasks is not None else [f"task{i}" for i in range(K)]
    if len(names) != K:
        raise ValueError(f"got {len(names)} task names for {K} task vectors")
    layers = linear_keys(vectors, stats)
    if not layers:
        raise ValueError("no linear layer has Gram statistics for every task (collect with needs=('gram',))")
    lcos = layer_task_vector_cosines(vectors, layers)
    per: Dict[str, dict] = {}
    for key in layers:
        info = stats.layers[key]
        out_dim, in_dim = as_out_in(vectors[0][key], info.transposed).shape
        inp = _Inputs(stats, key)
        se = _subspace_energy(inp, rank, energy)
        bases = _bases(vectors, stats, key, c, lam, solver)
        S, C = _shifts(inp, _weights(vectors, stats, key), bases)
        inter, cap = _interference(S), _captured(S, C, bases[0].shape[1], int(out_dim))
        per[key] = {
            "shape": [int(out_dim), int(in_dim)],
            "subspace_energy": _lst(se.energy),
            "subspace_rank": [int(r) for r in se.ranks],
            "subspace_chance": _lst(se.chance),
            "gram_cosine": _lst(_gram_cosine(inp)),
            "gram_cosine_chance": _lst(_gram_cosine_chance(inp)),
            "task_vector_cosine": _lst(lcos[key]),
            "interference_pairs": _lst(inter.pairs),
            "interference_ratio": _lst(inter.ratio),
            "captured_interference": _lst(cap.share),
            "captured_chance": float(cap.chance),
        }
    off = lambda name, key: _mean(_offdiag(torch.tensor(per[key][name], dtype=torch.float64)))  # noqa: E731
    tv = task_vector_cosines(vectors)
    ratios = [r for key in layers for r in per[key]["interference_ratio"]]
    summary = {
        "num_layers": len(layers),
        "subspace_energy": _mean(off("subspace_energy", k) for k in layers),
        "subspace_energy_chance": _mean(_mean(per[k]["subspace_chance"]) for k in layers),
        "subspace_energy_own": _mean(_mean(torch.tensor(per[k]["subspace_energy"]).diagonal()) for k in layers),
        "gram_cosine": _mean(off("gram_cosine", k) for k in layers),
        "gram_cosine_chance": _mean(off("gram_cosine_chance", k) for k in layers),
        "layer_task_vector_cosine": _mean(off("task_vector_cosine", k) for k in layers),
        "task_vector_cosine": _mean(_offdiag(tv)),
        "interference_ratio": _mean(ratios),
        "interference_ratio_median": _median(ratios),
        "captured_interference": _mean(_mean(per[k]["captured_interference"]) for k in layers),
        "captured_chance": _mean(per[k]["captured_chance"] for k in layers),
    }
    result = {
        "tasks": names,
        "layers": layers,
        "settings": {
            "c": int(c),
            "lam": float(lam),
            "energy": float(energy),
            "rank": "energy" if rank is None else int(rank),
            "solver": str(solver),
        },
        "conventions": {
            "matrices": "(K, K) lists: row i = the task owning the subspace / task vector, column k = the task "
            "whose layer inputs X_k are measured; G_k = X_k^T X_k; weights as (out, in)",
            "subspace_energy": "tr(P_i G_k) / tr(G_k), P_i = projector on the top-r_i eigenvectors of G_i "
            + ("(r_i holds the fraction 'energy' of tr(G_i))" if rank is None else "(r_i = min(rank, rank(G_i)))"),
            "subspace_chance": "r_i / in: the expected share of a uniformly random r_i-dimensional subspace",
            "gram_cosine": "<G_i, G_k>_F / (|G_i|_F |G_k|_F)",
            "gram_cosine_chance": "tr(G_i) tr(G_k) / (in |G_i|_F |G_k|_F): the expected cosine when task k's "
            "inputs are rotated uniformly at random",
            "task_vector_cosine": "cosine of the flattened task vectors (whole model at top level, per layer "
            "inside per_layer)",
            "interference_pairs": "|tau_i X_k^T|_F^2 / |tau_k X_k^T|_F^2",
            "interference_ratio": "per task k: sum over i != k of interference_pairs[i][k]",
            "captured_interference": "per task k: sum_{i!=k} |B_k^T tau_i X_k^T|^2 / sum_{i!=k} |tau_i X_k^T|^2, "
            "B_k = CAT's top-c removal basis at (c, lam)",
            "captured_chance": "c / out: the expected share of a uniformly random c-dimensional output subspace",
            "summary": "means over layers of the per-layer mean over off-diagonal pairs (i != k) or over tasks",
        },
        "chance": {
            "subspace_energy": summary["subspace_energy_chance"],
            "captured_interference": summary["captured_chance"],
            "gram_cosine": summary["gram_cosine_chance"],
            "task_vector_cosine": 0.0,
        },
        "task_vector_cosine": _lst(tv),
        "per_layer": per,
        "summary": summary,
    }
    _check_finite(result)
    return result


def removed_energy(vectors: Vectors, trimmed: Vectors, layers: Mapping[str, LayerInfo]) -> Dict[str, Dict[str, float]]:
    """Where CAT's trimming acts, per parameter kind (``layers[key].kind``: "linear", "norm_scale", "shift",
    "other"): ``{"share": Σ_i ‖τ_i‖² over the kind's keys / Σ_i ‖τ_i‖² over all keys, "removed": Σ_i ‖τ_i −
    τ̃_i‖² / Σ_i ‖τ_i‖² over the kind's keys, "keys": number of tensors}``. ``vectors`` and ``trimmed``: the task
    vectors and :func:`catlib.merge.cat.trim`'s output, same keys."""
    total, kinds = 0.0, {}
    for key in vectors[0]:
        kind = layers.get(key, LayerInfo("other")).kind
        e = sum(float(v[key].double().pow(2).sum()) for v in vectors)
        r = sum(float((v[key] - t[key]).double().pow(2).sum()) for v, t in zip(vectors, trimmed))
        k = kinds.setdefault(kind, {"energy": 0.0, "removed": 0.0, "keys": 0})
        k["energy"] += e
        k["removed"] += r
        k["keys"] += 1
        total += e
    return {
        kind: {"share": _ratio(k["energy"], total), "removed": _ratio(k["removed"], k["energy"]), "keys": k["keys"]}
        for kind, k in kinds.items()
    }
