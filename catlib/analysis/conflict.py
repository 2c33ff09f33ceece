"""Knowledge-conflict diagnostics (CAT paper §4): ΔL_{k|i}, per-layer perturbations, Lipschitz estimates and the
Theorem 4.4 bound.

* ``ΔL_{k|i} = L_k(W_k + T_i) − L_k(W_k)``: the change of task k's loss (cross-entropy with task k's head, mean over
  a batch of task k's data) when task i's vector is added to expert k (:func:`conflict_matrix`).
* The network is seen as a chain of stages f^1..f^L (:func:`stages`; for an open_clip ViT: the embedding stage, each
  residual block, then pooling + ln_post + proj). ``Δf̂^l`` perturbs only stage l (its inputs come from the clean
  W_k); ``Δf^l`` perturbs everything up to l. Norms are per example (all tokens × width), averaged over the batch.
* Theorem 4.4: |ΔL_{k|i}| ≤ β Σ_l (Π_{m>l} γ_m) ‖Δf̂^l‖. How the constants are estimated (``lipschitz``):
  - ``"ball"`` (default): independently of the perturbation being bounded: γ_l = the largest secant ratio
    ‖f^l(a + u; W+T) − f^l(a; W+T)‖ / ‖u‖ over the examples and over ``probes`` random directions u per radius,
    ‖u‖ = r ‖a‖ for r in ``radii`` (a: the clean stage-l input), and β likewise for the loss on the encoder output.
    Random probes give lower bounds of the true local constants, so the bound can fail: a real check of the
    theorem's inequality chain at constants a user could estimate without knowing T.
  - ``"path"``: secant ratios along the actual perturbation, max over the examples:
    γ_l = max_x ‖f^l(a'; W+T) − f^l(a; W+T)‖ / ‖a' − a‖ (a, a': stage-l inputs under W_k and W_k + T_i) and
    β = max_x |ℓ(o') − ℓ(o)| / ‖o' − o‖ on the encoder output. These are the smallest constants for which
    Assumptions 4.1/4.3 hold on this segment for these examples, so the bound holds by construction (it cannot
    fail: not a check); its slack shows how much the triangle inequalities lose.
  - ``"jacobian"``: spectral norm of each stage's input Jacobian at the clean input (power iteration with
    autograd), max over examples, and β likewise for the loss gradient: a local estimate that need not make the
    bound hold, reported for comparison.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..core.statedict import StateDict, apply


@dataclass
class Stage:
    name: str
    prefixes: Tuple[str, ...]  # state-dict key prefixes of the stage's parameters
    fn: Callable[[nn.Module, torch.Tensor], torch.Tensor]


def stages(module: nn.Module) -> List[Stage]:
    """The chain of stages of ``module``: open_clip ``VisionTransformer`` or ``nn.Sequential``."""
    if type(module).__name__ == "VisionTransformer" and hasattr(module, "transformer"):
        out = [
            Stage("embed", ("conv1.", "class_embedding", "positional_embedding", "ln_pre."), lambda m, x: m._embeds(x))
        ]
        for j in range(len(module.transformer.resblocks)):
            out.append(
                Stage(f"block{j}", (f"transformer.resblocks.{j}.",), lambda m, h, j=j: m.transformer.resblocks[j](h))
            )

        def head(m, h):
            pooled = m._pool(h)[0]
            return pooled @ m.proj if m.proj is not None else pooled

        out.append(Stage("pool", ("ln_post.", "proj", "attn_pool"), head))
        return out
    if isinstance(module, nn.Sequential):
        return [Stage(n, (f"{n}.",), lambda m, x, n=n: getattr(m, n)(x)) for n, _ in module.named_children()]
    raise TypeError(
        f"no stage decomposition known for {type(module).__name__}; pass an nn.Sequential or an "
        "open_clip VisionTransformer"
    )


def _run(module: nn.Module, st: List[Stage], x: torch.Tensor) -> List[torch.Tensor]:
    """Inputs of every stage plus the final output: [a_1 = x, a_2, ..., a_L, o_L]."""
    acts = [x]
    for s in st:
        acts.append(s.fn(module, acts[-1]))
    return acts


def _per_example_norm(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1).norm(dim=1)


def _loss_per_example(head: nn.Module, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(head(out).float(), y, reduction="none")


def _loaded(module: nn.Module, sd: Mapping[str, torch.Tensor]) -> nn.Module:
    m = copy.deepcopy(module).eval()
    with torch.no_grad():
        for k, v in m.state_dict().items():
            v.copy_(sd[k].to(v.dtype))
    return m


@torch.no_grad()
def loss(module: nn.Module, head: nn.Module, sd: Mapping[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean cross-entropy of ``head(module(x))`` with weights ``sd``."""
    m = _loaded(module, sd)
    return float(_loss_per_example(head, m(x), y).mean())


def conflict_matrix(
    module: nn.Module,
    heads: Sequence[nn.Module],
    pretrained: StateDict,
    finetuned: Sequence[StateDict],
    batches: Sequence[Tuple[torch.Tensor, torch.Tensor]],
    vectors: Optional[Sequence[Mapping[str, torch.Tensor]]] = None,
) -> torch.Tensor:
    """(K, K) matrix with entry [k, i] = ΔL_{k|i} = L_k(W_k + T_i) − L_k(W_k) (diagonal 0).

    ``vectors`` replaces the T_i (e.g. CAT's trimmed vectors); by default T_i = θ_i − θ0.
    """
    K = len(finetuned)
    if vectors is None:
        vectors = [
            {k: ft[k].float() - pretrained[k].float() for k in ft if ft[k].is_floating_point()} for ft in finetuned
        ]
    out = torch.zeros(K, K, dtype=torch.float64)
    for k in range(K):
        x, y = batches[k]
        base = loss(module, heads[k], finetuned[k], x, y)
        for i in range(K):
            if i != k:
                out[k, i] = loss(module, heads[k], apply(finetuned[k], vectors[i]), x, y) - base
    return out


def pair_conflict_grid(
    module: nn.Module,
    heads: Sequence[nn.Module],
    pretrained: StateDict,
    pair_vectors: Tuple[Mapping[str, torch.Tensor], Mapping[str, torch.Tensor]],
    batches: Sequence[Tuple[torch.Tensor, torch.Tensor]],
    alphas: Sequence[float],
) -> torch.Tensor:
    """Fig. 3: for the merge θ0 + a·T_a + b·T_b over a grid of (a, b), the summed conflict
    ΔL_{a|b} + ΔL_{b|a} with ΔL_{a|b} = L_a(θ0 + a T_a + b T_b) − L_a(θ0 + a T_a). Returns (len(alphas), len(alphas))
    indexed [a, b]. ``heads``/``batches``: the two tasks' heads and labelled batches."""
    ta, tb = pair_vectors
    n = len(alphas)
    out = torch.zeros(n, n, dtype=torch.float64)
    for p, a in enumerate(alphas):
        only_a = apply(pretrained, ta, a)
        la = loss(module, heads[0], only_a, *batches[0])
        for q, b in enumerate(alphas):
            only_b = apply(pretrained, tb, b)
            both = apply(only_a, tb, b)
            out[p, q] = (
                loss(module, heads[0], both, *batches[0])
                - la
                + loss(module, heads[1], both, *batches[1])
                - loss(module, heads[1], only_b, *batches[1])
            )
    return out


def _jacobian_norm(fn: Callable[[torch.Tensor], torch.Tensor], a: torch.Tensor, iters: int = 20) -> torch.Tensor:
    """Per-example spectral norm of d fn / d a at ``a`` (power iteration on JᵀJ), shape (B,)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    gen = torch.Generator().manual_seed(0)
    v = torch.randn(a.shape, generator=gen).to(a)
    v = v / _per_example_norm(v).view(-1, *([1] * (a.dim() - 1)))
    sigma = torch.zeros(a.shape[0])
    for _ in range(iters):
        with sdpa_kernel(SDPBackend.MATH):  # the fused CPU kernels have no double backward (needed by jvp)
            _, jv = torch.autograd.functional.jvp(fn, a, v)
            _, jtjv = torch.autograd.functional.vjp(fn, a, jv)
        n = _per_example_norm(jtjv).clamp_min(1e-30)
        sigma = _per_example_norm(jv)
        v = jtjv / n.view(-1, *([1] * (a.dim() - 1)))
    return sigma


def _ball_ratio(
    fn: Callable[[torch.Tensor], torch.Tensor], a: torch.Tensor, probes: int, radii: Sequence[float], seed: int
) -> float:
    """max over examples and random directions u (``probes`` per radius, ‖u‖ = r ‖a‖ per example) of
    ‖fn(a + u) − fn(a)‖ / ‖u‖ (per-example norms)."""
    gen = torch.Generator().manual_seed(seed)
    shape = (-1, *([1] * (a.dim() - 1)))
    with torch.no_grad():
        base, na, best = fn(a), _per_example_norm(a).clamp_min(1e-12), 0.0
        for r in radii:
            for _ in range(probes):
                u = torch.randn(a.shape, generator=gen).to(a)
                u = u * (r * na / _per_example_norm(u).clamp_min(1e-30)).view(shape)
                ratio = _per_example_norm(fn(a + u) - base) / _per_example_norm(u).clamp_min(1e-30)
                best = max(best, float(ratio.max()))
    return best


@dataclass
class BoundReport:
    """Theorem 4.4 for one (k, i) pair. Per-stage lists follow :func:`stages`."""

    stage_names: List[str]
    delta_f_hat: List[float]  # mean_x ‖Δf̂^l_{k|i}(x)‖
    delta_f: List[float]  # mean_x ‖Δf^l_{k|i}(x)‖
    gamma: List[float]  # γ_l (γ_1 is unused by the bound and reported as nan)
    beta: float
    delta_loss: float  # ΔL_{k|i}
    bound: float  # β Σ_l Π_{m>l} γ_m ‖Δf̂^l‖

    @property
    def holds(self) -> bool:
        return abs(self.delta_loss) <= self.bound * (1 + 1e-6) + 1e-9

    @property
    def tightness(self) -> float:
        """|ΔL| / bound (1 = tight)."""
        return abs(self.delta_loss) / self.bound if self.bound > 0 else float("nan")


def theorem44(
    module: nn.Module,
    head: nn.Module,
    expert: StateDict,
    perturbation: Mapping[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    lipschitz: str = "ball",
    probes: int = 8,
    radii: Sequence[float] = (0.01, 0.1),
) -> BoundReport:
    """Check Theorem 4.4 for W_k = ``expert`` and T_i = ``perturbation`` on task k's batch (x, y); ``probes`` and
    ``radii``: the random directions of ``lipschitz="ball"`` (module docstring)."""
    if lipschitz not in ("ball", "path", "jacobian"):
        raise ValueError(f"lipschitz must be 'ball', 'path' or 'jacobian', got {lipschitz!r}")
    clean = _loaded(module, expert)
    pert = _loaded(module, apply(expert, perturbation))
    st = stages(clean)
    with torch.no_grad():
        a = _run(clean, st, x)  # a[l] = input of stage l, a[-1] = output
        ap = _run(pert, st, x)
        fhat = [st[l].fn(pert, a[l]) - a[l + 1] for l in range(len(st))]
        dfh = [float(_per_example_norm(t).mean()) for t in fhat]
        df = [float(_per_example_norm(ap[l + 1] - a[l + 1]).mean()) for l in range(len(st))]
        lc, lp = _loss_per_example(head, a[-1], y), _loss_per_example(head, ap[-1], y)
    gamma = [float("nan")]
    for l in range(1, len(st)):
        if lipschitz == "path":
            with torch.no_grad():
                num = _per_example_norm(st[l].fn(pert, ap[l]) - st[l].fn(pert, a[l]))
                den = _per_example_norm(ap[l] - a[l]).clamp_min(1e-30)
            gamma.append(float((num / den).max()))
        elif lipschitz == "ball":
            gamma.append(_ball_ratio(lambda h, l=l: st[l].fn(pert, h), a[l], probes, radii, seed=l))
        else:
            gamma.append(float(_jacobian_norm(lambda h, l=l: st[l].fn(pert, h), a[l]).max()))
    if lipschitz == "path":
        beta = float(((lp - lc).abs() / _per_example_norm(ap[-1] - a[-1]).clamp_min(1e-30)).max())
    elif lipschitz == "ball":
        beta = _ball_ratio(lambda o: _loss_per_example(head, o, y), a[-1], probes, radii, seed=len(st))
    else:
        out = a[-1].clone().requires_grad_(True)
        g = torch.autograd.grad(_loss_per_example(head, out, y).sum(), out)[0]
        beta = float(_per_example_norm(g).max())
    bound = 0.0
    for l in range(len(st)):
        prod = 1.0
        for m in range(l + 1, len(st)):
            prod *= gamma[m]
        bound += prod * dfh[l]
    bound *= beta
    return BoundReport([s.name for s in st], dfh, df, gamma, beta, float(lp.mean() - lc.mean()), bound)
