"""A positive control for CAT Merging: a synthetic benchmark on a real (small) network in which the premise CAT relies
on holds by construction at the first layer (``"control"``), and its twin in which it does not
(``"control-shared"``).

Construction (every number is a field of :class:`ControlConfig`; everything is generated in memory from ``seed``,
no file is shipped; a build takes about 5 CPU-seconds on one thread):

* **Inputs.** ``x = U_k z + S w + ε`` in R^``d_in`` (64): ``z ~ N(0, I)`` (``d_task`` = 8) is task k's own content
  and ``U_k`` (d_in × d_task) an orthonormal basis of task k's input subspace; ``w ~ N(0, I)`` (``d_shared`` = 2)
  is content that *every* task's inputs carry, along a small shared subspace ``S`` (d_in × d_shared, orthogonal to
  every ``U_k``); ``ε ~ N(0, noise² I)``. Variant ``"distinct"``: the ``U_k`` are mutually orthogonal blocks of one
  random orthonormal basis, so two tasks' inputs meet only along ``S``. Variant ``"shared"``: every task uses the
  same block ``U_0``. Both variants draw the same random numbers (θ0, teachers, heads, ``z``, ``w``, ``ε``) and
  differ in nothing else.
* **Labels.** A fixed random linear teacher per task, ``y = argmax_c (A_k z + B_k w)_c`` over ``n_classes`` (8)
  classes with Gaussian ``A_k``, ``B_k``; examples whose top two teacher scores are closer than ``margin`` are
  redrawn, so that the tasks are learnable to high accuracy from ``n_train`` examples. The teachers read the shared
  content ``w`` with independent weights ``B_k``: the tasks use ``S`` in conflicting ways, a conflict that lives in
  ``d_shared`` input directions.
* **Network.** The encoder is ``nn.Sequential(Linear(d_in, hidden), GELU, Linear(hidden, hidden), GELU,
  Linear(hidden, d_feat))`` (hidden = 64, d_feat = 32); θ0 is a fixed random initialisation (PyTorch's default
  ``nn.Linear`` init, drawn from the seed), not pretrained. Each task has a frozen linear head (d_feat → n_classes,
  Gaussian weights, no bias) shared by every model, the role CLIP's zero-shot heads play. With random θ0 and random
  heads Pretrained is at chance level: every gain comes from the task vectors.
* **Experts.** Expert k is θ0 fine-tuned on task k's training split (``steps`` = 150 full-batch Adam steps at
  ``lr`` = 1e-3, cross-entropy through the frozen head k). "Traditional MTL" is θ0 trained the same way on all the
  tasks at once (summed losses; ``train_mtl=False`` skips it). Training runs on one CPU thread, so the weights do not
  depend on the thread count; on another CPU model they may differ in the last bits.

By construction, and only there: at the **first layer** the distinct variant's tasks have orthogonal inputs apart
from ``S`` (and the small noise), so a task vector τ_i moves task k's first-layer outputs essentially only through
the ``S`` content; in the shared variant every τ_i acts on task k's whole input. The deeper layers see the first
layer's nonlinear outputs, where the tasks overlap in both variants. :func:`catlib.analysis.premise.diagnose`
measures this, and the functions at the end of this module make the measurements of the book page
``notebooks/12_control.ipynb`` (where task arithmetic loses accuracy, what CAT's trimming removes).

``load_control()`` (name ``"control"``) and ``load_control_shared()`` (``"control-shared"``) return a
:class:`ControlBenchmark`; ``seed`` chooses the build (each seed is a freshly built benchmark) and other keyword
arguments override :class:`ControlConfig` fields (``hidden=256``, ``train_mtl=False``, ...).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.linalg import torch_threads
from .base import SPLITS, Benchmark
from .in_memory import InMemorySplits

GENERATOR_VERSION = 1  # bump whenever the construction changes (part of the benchmark's fingerprint)
VARIANTS = ("distinct", "shared")
NAMES = {"distinct": "control", "shared": "control-shared"}


@dataclass(frozen=True)
class ControlConfig:
    """Every size and training setting of the control benchmark."""

    n_tasks: int = 6  # K
    n_classes: int = 8  # C per task
    d_in: int = 64  # input dimension
    d_task: int = 8  # dimension of each task's own input subspace U_k
    d_shared: int = 2  # dimension of the shared, conflicting subspace S
    noise: float = 0.05  # isotropic input noise (std per coordinate)
    margin: float = 0.5  # redraw examples whose top two teacher scores are closer than this
    hidden: int = 64  # encoder width
    d_feat: int = 32  # encoder output (feature) dimension
    n_train: int = 512  # examples per task and split
    n_val: int = 256
    n_test: int = 512
    steps: int = 150  # full-batch Adam steps per expert (and for the MTL model)
    lr: float = 1e-3
    train_mtl: bool = True  # also train the "Traditional MTL" model (else ``mtl`` is None)


class ControlBenchmark(InMemorySplits, Benchmark):
    """The control benchmark: one variant ("distinct" or "shared"), one build ``seed``, built in memory."""

    def __init__(
        self,
        variant: str = "distinct",
        seed: int = 0,
        tasks: Optional[Sequence[str]] = None,
        device="auto",
        config: Optional[ControlConfig] = None,
        **overrides,
    ):
        from ..core.device import resolve_device

        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        cfg = dataclasses.replace(config or ControlConfig(), **overrides)
        if cfg.n_tasks * cfg.d_task + cfg.d_shared > cfg.d_in:
            raise ValueError(
                f"d_in={cfg.d_in} cannot hold {cfg.n_tasks} orthogonal {cfg.d_task}-dimensional task "
                f"subspaces plus a {cfg.d_shared}-dimensional shared one"
            )
        self.variant, self.seed, self.config = variant, int(seed), cfg
        self.name = NAMES[variant]
        self.all_tasks = [f"task{k}" for k in range(cfg.n_tasks)]
        self.tasks = self._check_tasks(tasks) if tasks is not None else list(self.all_tasks)
        self.device = resolve_device(device)
        self.batch_size = 1024
        with torch_threads(1):
            self._build()
        # the identity of this build, read by catlib.protocol.bench_fingerprint: variant, seed, configuration,
        # generator version, and the sha256 of the generated data and of every weight
        files = {
            "pretrained": _sha_state(self.pretrained),
            **{f"finetuned/{t}": _sha_state(sd) for t, sd in self.finetuned.items()},
            **{f"heads/{t}": _sha_state(h.state_dict()) for t, h in self.heads.items()},
        }
        if self.mtl is not None:
            files["mtl"] = _sha_state(self.mtl)
        self.manifest = {
            "config": {"variant": variant, "seed": self.seed, **dataclasses.asdict(cfg)},
            "tasks": list(self.all_tasks),
            "generator_version": GENERATOR_VERSION,
            "data_sha256": {t: {s: _sha(*self._data[(t, s)]) for s in SPLITS} for t in self.all_tasks},
            "files": files,
        }
        self.heads = {t: h.to(self.device) for t, h in self.heads.items()}

    # --- construction ---------------------------------------------------------------------------------------------
    def _build(self) -> None:
        cfg, K = self.config, self.config.n_tasks
        rng = np.random.default_rng([self.seed, 0xC0A7])  # one stream, consumed identically by both variants
        # input geometry: one random orthonormal basis of R^d_in, cut into K task blocks and the shared block
        Q, _ = np.linalg.qr(rng.standard_normal((cfg.d_in, cfg.d_in)))
        blocks = [Q[:, k * cfg.d_task : (k + 1) * cfg.d_task] for k in range(K)]
        S = Q[:, K * cfg.d_task : K * cfg.d_task + cfg.d_shared]
        U = blocks if self.variant == "distinct" else [blocks[0]] * K
        self.subspaces: Dict[str, torch.Tensor] = {
            t: torch.from_numpy(U[k].copy()).float() for k, t in enumerate(self.all_tasks)
        }
        self.shared_subspace = torch.from_numpy(S.copy()).float()
        # teachers and data
        sizes = {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test}
        self._data: Dict[tuple, tuple] = {}
        for k, t in enumerate(self.all_tasks):
            A = rng.standard_normal((cfg.n_classes, cfg.d_task))
            B = rng.standard_normal((cfg.n_classes, cfg.d_shared))
            for split in SPLITS:
                z, w = _draw(rng, sizes[split], cfg, A, B)
                eps = cfg.noise * rng.standard_normal((sizes[split], cfg.d_in))
                x = z @ U[k].T + w @ S.T + eps
                y = np.argmax(z @ A.T + w @ B.T, axis=1)
                self._data[(t, split)] = (torch.from_numpy(x).float(), torch.from_numpy(y).long())
        # θ0 (the default nn.Linear init, drawn from the seed) and the frozen heads
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        enc = _encoder(cfg)
        with torch.no_grad():
            for m in enc:
                if isinstance(m, nn.Linear):
                    bound = 1.0 / m.in_features**0.5  # kaiming_uniform(a=√5) and nn.Linear's bias init
                    m.weight.copy_((torch.rand(m.weight.shape, generator=gen) * 2 - 1) * bound)
                    m.bias.copy_((torch.rand(m.bias.shape, generator=gen) * 2 - 1) * bound)
        self.pretrained = {k: v.detach().clone() for k, v in enc.state_dict().items()}
        self.heads: Dict[str, nn.Module] = {}
        for t in self.all_tasks:
            h = nn.Linear(cfg.d_feat, cfg.n_classes, bias=False)
            with torch.no_grad():
                h.weight.copy_(torch.randn(h.weight.shape, generator=gen))
            self.heads[t] = h.eval().requires_grad_(False)
        # the experts and the jointly trained model
        self.finetuned = {t: self._train([t]) for t in self.all_tasks}
        self.mtl = self._train(self.all_tasks) if cfg.train_mtl else None

    def _train(self, tasks: Sequence[str]) -> Dict[str, torch.Tensor]:
        enc = _encoder(self.config)
        enc.load_state_dict(self.pretrained)
        opt = torch.optim.Adam(enc.parameters(), lr=self.config.lr)
        data = [self._data[(t, "train")] for t in tasks]
        for _ in range(self.config.steps):
            opt.zero_grad()
            loss = sum(F.cross_entropy(self.heads[t](enc(x)), y) for t, (x, y) in zip(tasks, data))
            loss.backward()
            opt.step()
        return {k: v.detach().clone() for k, v in enc.state_dict().items()}

    # --- the Benchmark interface ----------------------------------------------------------------------------------
    def build_module(self) -> nn.Module:
        enc = _encoder(self.config)
        enc.load_state_dict(self.pretrained)
        return enc.to(self.device).eval()

    def tensors(self, task: str, split: str):
        """``(inputs (n, d_in), labels (n,))`` of one task and split (CPU tensors, shared: do not modify)."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if task not in self.all_tasks:
            raise KeyError(f"{self.name}: unknown task {task!r}; available: {self.all_tasks}")
        return self._data[(task, split)]

    def class_names(self, task: str) -> List[str]:
        if task not in self.all_tasks:
            raise KeyError(f"{self.name}: unknown task {task!r}; available: {self.all_tasks}")
        return [f"class {c}" for c in range(self.config.n_classes)]

    def __repr__(self) -> str:
        return f"ControlBenchmark(variant={self.variant!r}, seed={self.seed}, tasks={self.tasks})"


def _draw(rng: np.random.Generator, n: int, cfg: ControlConfig, A: np.ndarray, B: np.ndarray):
    """``n`` latent pairs ``(z, w)`` whose teacher scores ``A z + B w`` have a top-two gap of at least
    ``cfg.margin`` (rejection sampling)."""
    zs, ws, have = [], [], 0
    while have < n:
        z = rng.standard_normal((2 * n, cfg.d_task))
        w = rng.standard_normal((2 * n, cfg.d_shared))
        top = np.sort(z @ A.T + w @ B.T, axis=1)
        keep = top[:, -1] - top[:, -2] >= cfg.margin
        zs.append(z[keep])
        ws.append(w[keep])
        have += int(keep.sum())
    return np.concatenate(zs)[:n], np.concatenate(ws)[:n]


def _encoder(cfg: ControlConfig) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(cfg.d_in, cfg.hidden),
        nn.GELU(),
        nn.Linear(cfg.hidden, cfg.hidden),
        nn.GELU(),
        nn.Linear(cfg.hidden, cfg.d_feat),
    )


def _sha(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def _sha_state(sd: Mapping[str, torch.Tensor]) -> str:
    return hashlib.sha256(json.dumps({k: _sha(v) for k, v in sorted(sd.items())}).encode()).hexdigest()


def load_control(tasks: Optional[Sequence[str]] = None, device="auto", seed: int = 0, **kw) -> ControlBenchmark:
    """The control benchmark whose tasks' inputs occupy distinct subspaces (name ``"control"``); ``kw`` overrides
    :class:`ControlConfig` fields."""
    return ControlBenchmark("distinct", seed=seed, tasks=tasks, device=device, **kw)


def load_control_shared(tasks: Optional[Sequence[str]] = None, device="auto", seed: int = 0, **kw) -> ControlBenchmark:
    """Its twin, every task's inputs in the same subspace (name ``"control-shared"``)."""
    return ControlBenchmark("shared", seed=seed, tasks=tasks, device=device, **kw)


# ----------------------------------------------------------------------------------------------------------------
# measurements for the book page (notebooks/12_control.ipynb)
# ----------------------------------------------------------------------------------------------------------------
def linear_layers(bench: ControlBenchmark) -> List[str]:
    """The encoder's linear layers, input first, as module names ("0", "2", "4": weight key ``<name>.weight``)."""
    return [name for name, m in bench.build_module().named_children() if isinstance(m, nn.Linear)]


def _vectors(bench: ControlBenchmark, tasks: Sequence[str]) -> List[Dict[str, torch.Tensor]]:
    return [{k: bench.finetuned[t][k] - bench.pretrained[k] for k in bench.pretrained} for t in tasks]


def layer_oracle(
    bench: ControlBenchmark, alpha: float, split: str = "val", tasks: Optional[Sequence[str]] = None
) -> Dict[str, float]:
    """Where task arithmetic loses accuracy: the mean accuracy over tasks of θ0 + α Σ_i τ_i when, for task k, one
    linear layer (weight and bias) holds θ0 + α τ_k instead (no other task vector at that layer). Keys: each layer
    of :func:`linear_layers`, ``"none"`` (task arithmetic itself) and ``"all"`` (θ0 + α τ_k at every layer: no
    interference anywhere). The gain of a layer over ``"none"`` is what the other task vectors cost at that layer."""
    from .evaluate import evaluate

    tasks = bench._check_tasks(tasks)
    vec = _vectors(bench, tasks)
    ta = {k: bench.pretrained[k] + alpha * sum(v[k] for v in vec) for k in bench.pretrained}
    enc = bench.build_module()
    out = {}
    for layer in ["none", *linear_layers(bench), "all"]:
        accs = []
        for k, t in enumerate(tasks):
            sd = {
                key: (
                    bench.pretrained[key] + alpha * vec[k][key] if layer == "all" or key.split(".")[0] == layer else w
                )
                for key, w in ta.items()
            }
            accs.append(evaluate(bench, sd, split, [t], encoder=enc)[t])
        out[layer] = sum(accs) / len(accs)
    return out


def interference_sources(
    bench: ControlBenchmark, split: str = "val", n: int = 64, tasks: Optional[Sequence[str]] = None
) -> Dict[str, float]:
    """Where the other task vectors move task k's first-layer outputs: ``Σ_{i≠k} ‖τ_i X_kᵀ‖²`` (X_k: the first
    ``n`` inputs of task k's ``split``) split along the construction's input subspaces, task k's own ``U_k``, the
    shared ``S`` and the rest (noise directions), each summed over k and divided by the tasks' own shift
    ``Σ_k ‖τ_k X_kᵀ‖²``. Keys ``"own_subspace"``, ``"shared_subspace"``, ``"rest"`` and ``"total"`` (their sum: all
    the first-layer interference relative to the tasks' own shift, a ratio of sums over k)."""
    tasks = bench._check_tasks(tasks)
    key = linear_layers(bench)[0] + ".weight"
    taus = [v[key].double() for v in _vectors(bench, tasks)]
    S = bench.shared_subspace.double()
    parts = {"own_subspace": 0.0, "shared_subspace": 0.0, "rest": 0.0}
    own = 0.0
    for k, t in enumerate(tasks):
        X = bench.tensors(t, split)[0][:n].double()
        U = bench.subspaces[t].double()
        PU, PS = X @ U @ U.T, X @ S @ S.T
        split_x = {"own_subspace": PU, "shared_subspace": PS, "rest": X - PU - PS}
        for i, tau in enumerate(taus):
            if i == k:
                own += float(((tau @ X.T) ** 2).sum())
                continue
            for name, Xp in split_x.items():
                parts[name] += float(((tau @ Xp.T) ** 2).sum())
    out = {name: v / own for name, v in parts.items()}
    out["total"] = sum(out.values())
    return out


def trimming_effect(
    bench: ControlBenchmark,
    trimmed: Sequence[Mapping[str, torch.Tensor]],
    split: str = "val",
    n: int = 64,
    tasks: Optional[Sequence[str]] = None,
) -> Dict[str, Dict[str, float]]:
    """What a trimming of the task vectors (τ_i → τ̃_i, e.g. :func:`catlib.merge.cat.trim`) did at each linear layer,
    measured on the first ``n`` inputs of each task's ``split`` (layer inputs under expert k for task k, as CAT's
    statistics): ``"interference_removed"`` = 1 − Σ_k Σ_{i≠k} ‖τ̃_i X_kᵀ‖² / Σ_k Σ_{i≠k} ‖τ_i X_kᵀ‖² and
    ``"own_removed"`` = Σ_i ‖(τ_i − τ̃_i) X_iᵀ‖² / Σ_i ‖τ_i X_iᵀ‖², the share of each task vector's own feature
    change that the trimming took away. Returns ``{layer: {...}}``."""
    from ..core.stats import collect_statistics

    tasks = bench._check_tasks(tasks)
    vec = _vectors(bench, tasks)
    xs = [bench.tensors(t, split)[0][:n] for t in tasks]
    stats = collect_statistics(bench.build_module(), bench.pretrained, bench.finetuned_list(tasks), xs, needs=("gram",))
    out = {}
    for layer in linear_layers(bench):
        key = f"{layer}.weight"
        G = [g[key].matrix() for g in stats.grams]
        tau = [v[key].double() for v in vec]
        new = [t[key].double() for t in trimmed]

        def shift(M, k):
            return float(torch.trace(M @ G[k] @ M.T))

        K = len(tasks)
        inter = sum(shift(tau[i], k) for k in range(K) for i in range(K) if i != k)
        inter_new = sum(shift(new[i], k) for k in range(K) for i in range(K) if i != k)
        own = sum(shift(tau[i], i) for i in range(K))
        own_removed = sum(shift(tau[i] - new[i], i) for i in range(K))
        out[layer] = {
            "interference_removed": 1 - inter_new / inter if inter > 0 else 0.0,
            "own_removed": own_removed / own if own > 0 else 0.0,
        }
    return out


def shared_input_oracle(
    bench: ControlBenchmark,
    alphas: Sequence[float],
    tasks: Optional[Sequence[str]] = None,
    select_split: str = "val",
    report_split: str = "test",
) -> Dict[str, float]:
    """Task arithmetic after removing, from every task vector's first layer, its response to the shared subspace S:
    ``τ_i ← τ_i (I − S Sᵀ)`` (an input-side removal of the constructed conflict that needs the construction's S,
    which no merging method is given; it also takes away each task's own use of S). α is chosen on
    ``select_split`` among ``alphas`` (first maximum) and reported on ``report_split``: ``{"alpha", "val",
    "test"}`` (mean accuracies)."""
    from .evaluate import average, evaluate

    tasks = bench._check_tasks(tasks)
    vec = _vectors(bench, tasks)
    key = linear_layers(bench)[0] + ".weight"
    S = bench.shared_subspace
    for v in vec:
        v[key] = v[key] - v[key] @ S @ S.T
    enc = bench.build_module()

    def merged(a):
        return {k: bench.pretrained[k] + a * sum(v[k] for v in vec) for k in bench.pretrained}

    best, best_val = None, -1.0
    for a in alphas:  # the first maximum wins, as in catlib.protocol.search
        val = average(evaluate(bench, merged(a), select_split, tasks, encoder=enc))
        if val > best_val:
            best, best_val = a, val
    return {
        "alpha": best,
        "val": best_val,
        "test": average(evaluate(bench, merged(best), report_split, tasks, encoder=enc)),
    }


__all__ = [
    "ControlBenchmark",
    "ControlConfig",
    "load_control",
    "load_control_shared",
    "VARIANTS",
    "NAMES",
    "GENERATOR_VERSION",
    "linear_layers",
    "layer_oracle",
    "interference_sources",
    "trimming_effect",
    "shared_input_oracle",
]
