"""Linear algebra helpers: a top-c symmetric eigensolver on implicit operators, polar factors, thresholds.

The eigensolver is what makes CAT cheap at ViT scale: CAT needs the c ≤ 4 eigenvectors with the largest eigenvalues
of ``M = Σ_i τ_i (G_k − λ G_i) τ_iᵀ``, an (out × out) matrix that is a difference of low-rank products. Forming and
diagonalising it densely costs O(out³) per task and layer; a block Krylov method with thick restarts needs only
products ``M @ V`` with thin blocks ``V`` (out × b).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Optional, Tuple

import torch

MatVec = Callable[[torch.Tensor], torch.Tensor]


@contextmanager
def torch_threads(n: int):
    """Temporarily set torch's intra-op thread count. Skinny products (n × b with b ≈ 4) are dominated by thread
    synchronisation: on 2 busy cores one thread was 5× faster than two (measured here)."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _orthonormalize(
    Z: torch.Tensor, Q: Optional[torch.Tensor], scale: float = 0.0, rtol: Optional[float] = None
) -> torch.Tensor:
    """Orthonormal columns spanning the part of ``span(Z)`` that is numerically outside ``span(Q)``.

    ``Q`` (n × m, orthonormal columns, or None) is projected out twice (classical Gram–Schmidt twice, "twice is
    enough"), then the rest is factored ``Z = Qz R``. Each column is measured against its size BEFORE the
    projection, ``ref_j = max(‖z_j‖, scale)``; pass ``scale`` ≈ ‖M‖ when ``Z = M Q_last``, so that a product that
    is itself round-off (``M`` times a null vector) counts as nothing new. If the column-scaled ``R / ref`` has all
    singular values above ``rtol`` (default ``16 · eps`` of the dtype; a lower bound, σ_min of ``R`` with unit
    columns times the smallest ``‖r_j‖ / ref_j``, is checked) every column is new and ``Qz`` is kept as is;
    otherwise only the directions ``Qz @ u_i`` of its singular values above ``rtol`` are (a rank-revealing choice:
    a bare QR blows round-off up to unit columns that point mostly into ``span(Q)``, and also spreads them into the
    later columns). The result may have fewer columns than ``Z``, or none (``span(Z) ⊂ span(Q)``). The QR mixes
    the columns, so a kept column can still hold about ``eps · ‖Z‖ / σ_kept`` of ``span(Q)`` (up to ``1 / 16``):
    when columns were dropped, or the projected block is ill-conditioned (smallest singular value of ``R`` with
    unit columns below 1/4), the kept columns are projected once more and re-factored (signs kept), which leaves
    them orthogonal to ``Q`` and to each other to working precision. Otherwise the result is the plain QR factor,
    as before (that third pass would cost half the orthogonalization time on every Krylov block)."""
    if Z.shape[1] == 0:
        return Z
    if rtol is None:
        rtol = 16 * torch.finfo(Z.dtype).eps
    tiny = torch.finfo(torch.float64).tiny
    has_q = Q is not None and Q.shape[1] > 0
    # each column's size before the projection (or ‖M‖); in float64, so that float32 squares cannot overflow
    ref = Z.norm(dim=0, dtype=torch.float64).clamp(min=max(scale, tiny))
    if has_q:
        for _ in range(2):
            Z = Z - Q @ (Q.T @ Z)
    Qz, R = torch.linalg.qr(Z)
    R = R.double()
    left = R.norm(dim=0)  # each column's size after the projection (and after the earlier columns)
    unit_min = torch.linalg.svdvals(R / left.clamp(min=tiny)).min()  # conditioning of the projected block
    unit_min, left_min = torch.stack([unit_min, (left / ref).min()]).tolist()
    if unit_min * left_min > rtol:  # σ_min(R / ref) ≥ that product: every column new (the usual case)
        # Qᵀ Qz = (Qᵀ Z) R⁻¹ ≈ eps / unit_min: one more pass only when that can be large
        again = has_q and unit_min < 0.25
    else:
        Ur, sv, _ = torch.linalg.svd(R / ref)
        Qz = Qz @ Ur[:, sv > rtol].to(Qz.dtype)
        again = has_q
    if again and Qz.shape[1] > 0:
        Qz = Qz - Q @ (Q.T @ Qz)
        Qz, R = torch.linalg.qr(Qz)
        Qz = Qz * torch.where(R.diagonal() < 0, -1.0, 1.0).to(Qz.dtype)  # R ≈ ±I: keep the columns' signs
    return Qz.contiguous()  # QR returns column-major storage; M @ V with row-major V is what callers expect


def top_eigh(
    matvec: MatVec,
    n: int,
    k: int,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    block: Optional[int] = None,
    depth: int = 12,
    tol: float = 1e-6,
    max_restarts: int = 40,
    seed: int = 0,
    dense_below: int = 96,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` algebraically largest eigenpairs of a symmetric operator given only by ``matvec``.

    Parameters
    ----------
    matvec: ``V (n, b) -> M @ V (n, b)``; ``M`` must be symmetric.
    n: dimension of ``M``.  k: number of eigenpairs.
    block, depth: block size (default ``k + 2``, at least 4) and number of Krylov blocks per restart.
    tol: stop when the sum of the k Ritz values (CAT's objective) grew by at most ``tol`` (relative) for two
        consecutive Krylov blocks, or when every wanted Ritz pair has residual ``‖M u − θ u‖ ≤ tol · max|θ|``. The
        objective converges quadratically faster than the vectors, so this is what CAT needs.
    dense_below: for ``n`` at most this, ``M`` is formed from ``matvec(I)`` and passed to ``torch.linalg.eigh``.

    Returns ``(eigenvalues (k,), eigenvectors (n, k))``, eigenvalues in descending order, orthonormal columns.
    Block Krylov with thick restart (the best ``block`` Ritz vectors seed the next cycle). Checked against
    ``torch.linalg.eigh`` on near-isotropic spectra, where a fixed small number of iterations is off by percents,
    and on rank-deficient operators (rank(M) below k or below the Krylov space; the zero operator), in float32 and
    float64: a new Krylov direction that is round-off relative to ‖M‖ is dropped (:func:`_orthonormalize`), and
    a block with none left means ``span(Q)`` is an invariant subspace, whose Ritz pairs are returned (eigenvalue-0
    directions of it complete the top k when rank(M) < k). The basis is orthonormal to working precision at
    every Rayleigh–Ritz step, so ``tr(Uᵀ M U)`` never exceeds the sum of the top k eigenvalues (beyond round-off).
    """
    if k <= 0:
        return torch.zeros(0, dtype=dtype, device=device), torch.zeros(n, 0, dtype=dtype, device=device)
    if k > n:
        raise ValueError(f"asked for {k} eigenpairs of a {n}x{n} operator")
    if n <= dense_below:
        M = matvec(torch.eye(n, dtype=dtype, device=device))
        w, U = torch.linalg.eigh(0.5 * (M + M.T))
        idx = torch.argsort(w, descending=True)[:k]
        return w[idx], U[:, idx]
    b = min(n, block or max(4, k + 2))
    gen = torch.Generator(device="cpu").manual_seed(seed)
    V = _orthonormalize(torch.randn(n, b, generator=gen, dtype=dtype).to(device), None)
    mnorm = 0.0  # running lower estimate of ‖M‖ (largest |Ritz value| seen): the scale of round-off in M Q
    history: list = []  # Ritz-sum after every block added (monotone non-decreasing within a restart)

    def converged() -> bool:
        # two consecutive relative increments below tol
        if len(history) < 3:
            return False
        scale_ = max(abs(history[-1]), 1e-300)
        return (history[-1] - history[-2] <= tol * scale_) and (history[-2] - history[-3] <= tol * scale_)

    for _ in range(max_restarts):
        Qs, MQs = [V], [matvec(V)]
        history.clear()
        for d in range(depth + 1):
            Q, MQ = torch.cat(Qs, dim=1), torch.cat(MQs, dim=1)
            H = Q.T @ MQ
            theta, S = torch.linalg.eigh(0.5 * (H + H.T))
            order = torch.argsort(theta, descending=True)
            theta, S = theta[order], S[:, order]
            history.append(float(theta[:k].sum()))
            done = converged() or Q.shape[1] >= n
            if not done and d % 4 == 3:  # residual test now and then (costs a product with U)
                U, MU = Q @ S[:, :k], MQ @ S[:, :k]
                resid = (MU - U * theta[:k]).norm(dim=0)
                done = bool((resid <= tol * max(float(theta.abs().max()), 1e-300)).all())
            if done or d == depth:
                break
            mnorm = max(mnorm, float(theta.abs().max()))  # ≤ ‖M‖ (the columns' own norms count too)
            Z = _orthonormalize(MQs[-1], Q, scale=mnorm)
            if Z.shape[1] == 0:  # span(Q) is invariant (to round-off): its Ritz pairs are eigenpairs of M
                if Q.shape[1] >= k:
                    done = True
                    break
                # fewer than k columns (block < k): complete with random directions (eigenvalue ~0 there)
                Z = _orthonormalize(torch.randn(n, k - Q.shape[1], generator=gen, dtype=dtype).to(device), Q)
            Qs.append(Z)
            MQs.append(matvec(Z))
        if done:
            break
        V = _orthonormalize(Q @ S[:, : min(b, S.shape[1])], None)
    return theta[:k], Q @ S[:, :k]


def top_eigh_dense(M: torch.Tensor, k: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Reference: the ``k`` largest eigenpairs of a dense symmetric matrix via ``torch.linalg.eigh``
    (which returns ascending eigenvalues, so the top-k are the last columns)."""
    w, U = torch.linalg.eigh(0.5 * (M + M.T))
    return w.flip(0)[:k], U.flip(1)[:, :k]


def _eigh_desc(G: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Eigenpairs of a symmetric ``G``, largest first."""
    w, Q = torch.linalg.eigh(G)
    return w.flip(0), Q.flip(1)


def top_svd(
    A: torch.Tensor, k: int, rtol: float = 1e-4, without: Optional[torch.Tensor] = None
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``k`` largest singular triplets of a 2-D ``A`` (m × n): ``U`` (m × k), ``S`` (k,), ``Vh`` (k × n), float64.
    With ``without`` (orthonormal columns ``W``, m × j): those of ``(I − W Wᵀ) A``.

    From the eigendecomposition of the smaller Gram matrix (``AᵀA`` or ``AAᵀ``) and one product ``A V / S``: 3-5×
    faster than a full SVD at ViT sizes (a 768 × 3072 matrix: 0.15 s against 0.68 s on 2 cores). In float64 the
    squared spectrum costs accuracy only where ``σ_k`` is small against ``σ_1`` (relative error about
    ``eps · σ_1² / σ_k²``), so the full SVD is used when ``σ_k < rtol · σ_1``. For a tall ``A`` the projection is
    never formed (Gram ``AᵀA − CᵀC`` with ``C = WᵀA``). Signs may differ from ``torch.linalg.svd``'s, pair by pair."""
    A = A.double()
    k = min(int(k), min(A.shape))
    columns = A.shape[0] >= A.shape[1]
    W = None if without is None else without.double()
    if W is not None and not columns:  # a wide A: its Gram is m × m either way, so project it
        A, W = A - W @ (W.T @ A), None
    C = None if W is None else W.T @ A
    if columns:
        w, Q = _eigh_desc(A.T @ A if C is None else A.T @ A - C.T @ C)
    else:
        w, Q = _eigh_desc(A @ A.T)
    S = w[:k].clamp_min(0.0).sqrt()
    if k > 0 and S[-1] >= rtol * S[0] > 0:
        Q = Q[:, :k]
        if not columns:
            return Q.contiguous(), S, (Q.T @ A) / S[:, None]
        AQ = A @ Q if C is None else A @ Q - W @ (C @ Q)
        return AQ / S, S, Q.T.contiguous()
    U, S, Vh = torch.linalg.svd(A if C is None else A - W @ C, full_matrices=False)
    return U[:, :k], S[:k], Vh[:k]


def complement(U: torch.Tensor) -> torch.Tensor:
    """An orthonormal basis (m × (m − k), float64) of the orthogonal complement of the orthonormal columns of ``U``
    (m × k): the eigenvectors of the projector ``U Uᵀ`` with eigenvalue 0 (a gap of 1 to the others)."""
    U = U.double()
    return torch.linalg.eigh(U @ U.T)[1][:, : U.shape[0] - U.shape[1]].contiguous()


def polar(A: torch.Tensor, rtol: float = 1e-4) -> torch.Tensor:
    """Nearest matrix with orthonormal columns (or rows) to ``A``: ``P Qᵀ`` from ``A = P Σ Qᵀ``, float64.

    As ``A (AᵀA)^(-1/2)`` (or ``(AAᵀ)^(-1/2) A``) from one symmetric eigendecomposition (3-5× cheaper than the SVD
    at ViT sizes) when ``A``'s singular values are within a factor ``1 / rtol`` of each other (error about
    ``eps / rtol²``); otherwise (nearly rank-deficient ``A``, where the factor is not unique) from the SVD."""
    A = A.double()
    columns = A.shape[0] >= A.shape[1]
    w, Q = _eigh_desc(A.T @ A if columns else A @ A.T)
    if w.numel() and w[-1] >= rtol**2 * w[0] > 0:
        inv_sqrt = (Q * w.rsqrt()) @ Q.T
        return A @ inv_sqrt if columns else inv_sqrt @ A
    P, _, Qh = torch.linalg.svd(A, full_matrices=False)
    return P @ Qh


def _chunks(source, chunk: int):
    if torch.is_tensor(source):
        flat = source.reshape(-1)
        return [flat[s : s + chunk] for s in range(0, flat.numel(), chunk)]
    if callable(source):
        return source()
    return source


def _ordered_bins(x: torch.Tensor) -> torch.Tensor:
    """Bin index in [0, 65536) (int32) monotone in the fp32 value: the top 16 bits of the order-preserving integer
    key (negative floats' bits flipped below the sign). One new tensor, the rest in place (the allocations, not the
    arithmetic, dominated this at ViT scale)."""
    b = x.float().contiguous().view(torch.int32)
    key = b >> 31  # −1 where the sign bit is set, else 0
    key &= 0x7FFFFFFF
    key ^= b  # signed-int order == float order
    key >>= 16
    key += 32768
    return key


def kth_largest(source, k, chunk: int = 1 << 22) -> torch.Tensor:
    """The k-th largest value (1-based) of each row over all chunks of ``source``, exact.

    ``source``: a tensor, a list of tensors, or a zero-argument callable returning an iterable of tensors (called
    twice, so chunks may be computed on the fly and never stored together). Chunks are 1-D (one row; ``k`` an
    int, returns a 0-d tensor) or (R, n) with R rows sharing the chunking: ``k`` a sequence of R ints returns (R,);
    R sequences of m ints (several ranks per row, e.g. both clamp bounds) return (R, m) from the same two passes.
    Two streaming passes, O(chunk) extra memory (a global ``kthvalue`` or sort needs several copies of the whole
    input): pass 1 histograms the top 16 bits of an order-preserving integer view of the fp32 values, pass 2
    collects the entries of the bins holding the k-th values and selects inside them.
    """
    nb = 1 << 16
    hist, rows = None, None
    for c in _chunks(source, chunk):
        c = c.detach().float().cpu()
        c2 = c.reshape(1, -1) if rows in (None, 1) and c.dim() <= 1 else c.reshape(c.shape[0], -1)
        if hist is None:
            rows = c2.shape[0]
            hist = torch.zeros(rows * nb, dtype=torch.int64)
        bins = _ordered_bins(c2)
        bins += (torch.arange(rows, dtype=torch.int32) * nb).view(-1, 1)
        hist += torch.bincount(bins.reshape(-1), minlength=rows * nb)
    if hist is None:
        raise ValueError("kth_largest of an empty source")
    kt = torch.as_tensor(k, dtype=torch.int64)
    if kt.dim() > 2 or (kt.dim() > 0 and kt.shape[0] != rows):
        raise ValueError(f"k of shape {tuple(kt.shape)} for {rows} rows: give an int, {rows} ints or {rows} lists")
    ks = (kt.expand(rows) if kt.dim() == 0 else kt).reshape(rows, -1).tolist()
    hist = hist.view(rows, nb)
    above = torch.cumsum(hist.flip(1), 1).flip(1) - hist  # entries in strictly higher bins
    where = []  # per row: [(bin, rank inside the bin)] for each asked rank
    for r in range(rows):
        n = int(hist[r].sum())
        where.append([])
        for kr in ks[r]:
            if not 1 <= kr <= n:
                raise ValueError(f"k={kr} outside [1, {n}]")
            b = int(torch.nonzero((above[r] < kr) & (above[r] + hist[r] >= kr)).max())
            where[r].append((b, kr - int(above[r, b])))
    vals = [{b: [] for b, _ in w} for w in where]
    for c in _chunks(source, chunk):
        c = c.detach().float().cpu()
        c2 = c.reshape(rows, -1)
        bins = _ordered_bins(c2)
        for r in range(rows):
            for b, got in vals[r].items():
                got.append(c2[r][bins[r] == b])
    picked = {(r, b): torch.cat(v) for r in range(rows) for b, v in vals[r].items()}
    out = torch.tensor([[float(torch.topk(picked[r, b], kb).values[-1]) for b, kb in w] for r, w in enumerate(where)])
    return out.reshape(kt.shape) if kt.dim() else out.reshape(rows)[0] if rows == 1 else out.reshape(rows)


def kth_largest_abs(source, k, chunk: int = 1 << 22) -> torch.Tensor:
    """:func:`kth_largest` of ``|x|``."""
    return kth_largest(lambda: (c.abs() for c in _chunks(source, chunk)), k, chunk)
