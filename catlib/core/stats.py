"""Statistics from exemplars: what the data-dependent merge methods need, collected with forward hooks.

For each task k, the expert θ0 + s·τ_k (``expert_scale`` s, 1 by default; CAT's third-party port uses s = α) runs on
task k's exemplars, and hooks record, per parameter:

* **linear-type weights** (kind ``"linear"``): the input Gram matrix ``G = Xᵀ X`` of the layer (X: tokens × in).
  Covered: ``nn.Linear``; ``nn.MultiheadAttention``'s fused ``in_proj_weight`` (input: the normalized tokens) and its
  ``out_proj.weight`` (input: the concatenated heads, recomputed in the hook since MHA never calls
  ``out_proj.forward``); ``nn.Conv2d`` (groups = 1) as im2col, weight viewed as (out, in·kh·kw); open_clip's
  ``VisionTransformer.proj`` (input: the pooled token after ``ln_post``; stored (in, out), so marked transposed).
* **normalization scales** (kind ``"norm_scale"``): per dimension, ``Σ_x x̂_z²`` of the *normalized* input x̂ of
  LayerNorm (before its affine step).
* everything else is ``"shift"`` (1-D: biases, LayerNorm shifts, class embedding) or ``"other"`` (embeddings and
  2-D tensors without a hooked input).

Token batches (a mapping with ``input_ids`` and ``attention_mask``, :mod:`catlib.core.inputs`) run as
``module(**batch)``; a hooked input laid out ``(B, T, d)`` keeps only the rows of real tokens (``attention_mask``
1): padding enters no Gram matrix and no moment.

Gram matrices are streamed (:class:`Gram`): while fewer rows than columns were seen, the rows themselves are kept
(a thin factor, exact and cheaper); past that the dense d × d sum is kept. Memory is O(d²) per layer, never all
tokens. Fisher diagonals and mean absolute gradients need a loss, i.e. one head per task (features → logits), and
what its output means (``losses``): class logits (cross-entropy) or one regression value (squared error, the
Fisher of a unit-variance Gaussian), or next-token logits of a text decoder (the sequence's negative
log-likelihood, summed over its target tokens).

Orientation: every weight is handled as PyTorch stores a linear map, (out, in); the paper's ``T`` (in, out) is
our ``τᵀ``. ``LayerInfo.transposed`` marks parameters stored (in, out) (open_clip ``proj``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .checks import check_batch_size, check_exemplar_inputs
from .errors import MissingStatisticsError
from .inputs import batch_len, forward, is_mapping, take, to_device, token_mask
from .progress import progress
from .statedict import StateDict, float_keys, quick_digest

STAT_KINDS = ("gram", "norm_sq", "fisher", "grad_abs")
# What a head's output is: class logits (B, C); one regression value (B, 1); or a generated sequence's next-token
# logits (B, T, V) under teacher forcing, scored against target ids (B, T) with -100 where no token counts.
LOSSES = ("classification", "regression", "sequence")


# ----------------------------------------------------------------------------------------------------------------
# streamed Gram matrix
# ----------------------------------------------------------------------------------------------------------------
class Gram:
    """Streaming ``Σ xᵀx`` over rows ``x`` (d,). Keeps the rows while there are fewer than ``d`` of them."""

    def __init__(self, dim: int):
        self.dim = dim
        self.n = 0
        self._rows: Optional[List[torch.Tensor]] = []
        self._dense: Optional[torch.Tensor] = None

    def add(self, X: torch.Tensor) -> None:
        X = X.detach().reshape(-1, self.dim).to(torch.float32).cpu()
        self.n += X.shape[0]
        if self._rows is not None:
            self._rows.append(X)
            if self.n >= self.dim:  # switch to the dense sum: O(d²) memory from now on
                R = torch.cat(self._rows)
                self._dense = R.T.double() @ R.double()
                self._rows = None
        else:
            self._dense += X.T.double() @ X.double()

    @property
    def low_rank(self) -> bool:
        return self._rows is not None

    def factor(self) -> torch.Tensor:
        """F (r, d) with ``FᵀF = G``: the stored rows, or ``diag(√w) Vᵀ`` from the dense sum's eigenpairs."""
        if self._rows is not None:
            return torch.cat(self._rows) if self._rows else torch.zeros(0, self.dim)
        w, V = torch.linalg.eigh(self._dense)
        keep = w > w.max().clamp_min(0) * 1e-12
        return (V[:, keep] * w[keep].sqrt()).T.float()

    def matrix(self) -> torch.Tensor:
        """The dense (d, d) Gram matrix in fp64."""
        if self._rows is not None:
            R = self.factor().double()
            return R.T @ R
        return self._dense.clone()

    def diag(self) -> torch.Tensor:
        if self._rows is not None:
            return (self.factor().double() ** 2).sum(0)
        return self._dense.diagonal().clone()


# ----------------------------------------------------------------------------------------------------------------
# which parameter is what
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class LayerInfo:
    """How a parameter acts. ``kind``: "linear" | "norm_scale" | "shift" | "other"."""

    kind: str
    transposed: bool = False  # stored (in, out) instead of (out, in)


def classify_parameters(module: nn.Module) -> Dict[str, LayerInfo]:
    """Map every floating state-dict key of ``module`` to a :class:`LayerInfo`."""
    info: Dict[str, LayerInfo] = {}
    for mname, m in module.named_modules():
        p = f"{mname}." if mname else ""
        if isinstance(m, nn.MultiheadAttention) and m._qkv_same_embed_dim and m.in_proj_weight is not None:
            info[p + "in_proj_weight"] = LayerInfo("linear")
        elif isinstance(m, nn.Linear):
            info[p + "weight"] = LayerInfo("linear")
        elif isinstance(m, nn.Conv2d) and m.groups == 1:
            info[p + "weight"] = LayerInfo("linear")
        elif isinstance(m, (nn.LayerNorm, nn.GroupNorm)) and getattr(m, "weight", None) is not None:
            info[p + "weight"] = LayerInfo("norm_scale")
        if _is_openclip_vit(m) and isinstance(getattr(m, "proj", None), nn.Parameter):
            info[p + "proj"] = LayerInfo("linear", transposed=True)
    for k, v in module.state_dict().items():
        if k in info or not v.is_floating_point():
            continue
        info[k] = LayerInfo("shift" if v.dim() == 1 else "other")
    return info


def _is_openclip_vit(m: nn.Module) -> bool:
    return (
        type(m).__name__ == "VisionTransformer"
        and hasattr(m, "ln_post")
        and hasattr(m, "pool_type")
        and getattr(m, "attn_pool", None) is None
    )


# ----------------------------------------------------------------------------------------------------------------
# hooks
# ----------------------------------------------------------------------------------------------------------------
def _mha_inputs(m: nn.MultiheadAttention, args, kwargs):
    q = args[0] if len(args) > 0 else kwargs["query"]
    k = args[1] if len(args) > 1 else kwargs.get("key", q)
    v = args[2] if len(args) > 2 else kwargs.get("value", q)
    mask = kwargs.get("attn_mask", args[5] if len(args) > 5 else None)
    return q, k, v, mask


def mha_head_outputs(m: nn.MultiheadAttention, x: torch.Tensor, attn_mask=None) -> torch.Tensor:
    """Self-attention output *before* ``out_proj`` (the input of ``out_proj``), same layout as ``x``."""
    if not m.batch_first:
        x = x.transpose(0, 1)
    B, L, D = x.shape
    h = m.num_heads
    qkv = F.linear(x, m.in_proj_weight, m.in_proj_bias).reshape(B, L, 3, h, D // h).permute(2, 0, 3, 1, 4)
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        attn_mask = torch.zeros_like(attn_mask, dtype=x.dtype).masked_fill(attn_mask, float("-inf"))
    z = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=attn_mask)
    z = z.transpose(1, 2).reshape(B, L, D)
    return z if m.batch_first else z.transpose(0, 1)


class _Recorder:
    """Registers hooks on a module and accumulates Gram matrices and normalized second moments."""

    def __init__(self, module: nn.Module, info: Mapping[str, LayerInfo]):
        self.mask: Optional[torch.Tensor] = None  # (B, T) bool of the batch running now: the tokens that count
        self.grams: Dict[str, Gram] = {}
        self.norm_sq: Dict[str, torch.Tensor] = {}
        self.counts: Dict[str, int] = {}
        self.handles = []
        for mname, m in module.named_modules():
            p = f"{mname}." if mname else ""
            if isinstance(m, nn.MultiheadAttention) and info.get(p + "in_proj_weight", LayerInfo("")).kind == "linear":
                self.handles.append(m.register_forward_pre_hook(self._mha_hook(p), with_kwargs=True))
            elif isinstance(m, nn.Linear) and not _is_mha_out_proj(module, mname):
                self.handles.append(m.register_forward_pre_hook(self._linear_hook(p + "weight", m.in_features)))
            elif isinstance(m, nn.Conv2d) and m.groups == 1:
                self.handles.append(m.register_forward_pre_hook(self._conv_hook(p + "weight", m)))
            elif isinstance(m, nn.LayerNorm) and m.weight is not None:
                self.handles.append(m.register_forward_pre_hook(self._ln_hook(p + "weight", m)))
            if _is_openclip_vit(m) and (p + "proj") in info:
                self.handles.append(m.ln_post.register_forward_hook(self._proj_hook(p + "proj", m)))

    def _rows(self, X: torch.Tensor) -> torch.Tensor:
        """``X`` (..., d) as rows (n, d), without padded tokens when ``X`` is laid out (B, T, d) like the mask."""
        if self.mask is not None and X.dim() >= 3 and tuple(X.shape[:2]) == tuple(self.mask.shape):
            X = X[self.mask]
        return X.reshape(-1, X.shape[-1])

    def _add(self, key: str, X: torch.Tensor) -> None:
        X = self._rows(X)
        if key not in self.grams:
            self.grams[key] = Gram(X.shape[-1])
        self.grams[key].add(X)

    def _linear_hook(self, key, d):
        def hook(mod, args):
            self._add(key, args[0])

        return hook

    def _conv_hook(self, key, m: nn.Conv2d):
        def hook(mod, args):
            x = args[0]
            cols = F.unfold(x, m.kernel_size, m.dilation, m.padding, m.stride)  # (B, C*kh*kw, L)
            self._add(key, cols.transpose(1, 2))

        return hook

    def _mha_hook(self, p):
        def hook(mod, args, kwargs):
            q, k, v, mask = _mha_inputs(mod, args, kwargs)
            if not (q is k and k is v):
                raise NotImplementedError(
                    f"{p}: statistics for cross-attention (query is not key) are not "
                    "supported; only self-attention layers can be merged with data"
                )
            self._add(p + "in_proj_weight", q)
            with torch.no_grad():
                self._add(p + "out_proj.weight", mha_head_outputs(mod, q, mask))

        return hook

    def _ln_hook(self, key, m: nn.LayerNorm):
        def hook(mod, args):
            x = args[0].float()
            xhat = self._rows(F.layer_norm(x, m.normalized_shape, None, None, m.eps)).reshape(-1, m.weight.numel())
            self.norm_sq[key] = self.norm_sq.get(key, 0) + (xhat.double() ** 2).sum(0).cpu()
            self.counts[key] = self.counts.get(key, 0) + xhat.shape[0]

        return hook

    def _proj_hook(self, key, vit):
        def hook(mod, args, out):
            if vit.final_ln_after_pool:
                rows = out
            elif vit.pool_type == "tok":
                rows = out[:, 0]
            elif vit.pool_type == "avg":
                rows = out[:, 1:].mean(1)
            else:
                rows = out
            self._add(key, rows)

        return hook

    def remove(self):
        for h in self.handles:
            h.remove()


def _is_mha_out_proj(root: nn.Module, mname: str) -> bool:
    if not mname.endswith("out_proj"):
        return False
    parent = root.get_submodule(mname.rsplit(".", 1)[0]) if "." in mname else root
    return isinstance(parent, nn.MultiheadAttention)


# ----------------------------------------------------------------------------------------------------------------
# the statistics container and collection
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class Statistics:
    """Per-task statistics, lists indexed like the fine-tuned models.

    grams[k][key]: :class:`Gram` of the inputs of linear-type parameter ``key`` under expert k on task k's data.
    norm_sq[k][key]: (d,) ``Σ x̂_z²`` for normalization scale ``key``.  counts[k][key]: tokens seen.
    fisher[k][key]: diagonal Fisher of expert k.  grad_abs[k][key]: mean |∇ loss_k| at θ0.
    layers: key → :class:`LayerInfo`.
    """

    layers: Dict[str, LayerInfo]
    grams: List[Dict[str, Gram]] = field(default_factory=list)
    norm_sq: List[Dict[str, torch.Tensor]] = field(default_factory=list)
    counts: List[Dict[str, int]] = field(default_factory=list)
    fisher: List[StateDict] = field(default_factory=list)
    grad_abs: List[StateDict] = field(default_factory=list)
    expert_scale: float = 1.0
    sources: Optional[Tuple[str, Tuple[str, ...]]] = None  # quick_digest of θ0 and of each fine-tuned model

    def check_sources(self, pretrained: StateDict, finetuned: Sequence[StateDict], method: str = "merge") -> None:
        """Raise :class:`MissingStatisticsError` unless these statistics were collected for these models (θ0 and
        the fine-tuned models, in this order). Statistics without ``sources`` (built by hand) are not checked."""
        if self.num_tasks != len(finetuned):
            raise MissingStatisticsError(
                f"{method}: statistics cover {self.num_tasks} tasks, got {len(finetuned)} fine-tuned models"
            )
        if self.sources is None:
            return
        theta0, experts = self.sources
        if quick_digest(pretrained) != theta0:
            raise MissingStatisticsError(
                f"{method}: these statistics were collected with another pretrained model (θ0); collect them again "
                "for this one (catlib.collect_statistics)"
            )
        wrong = [i for i, (sd, d) in enumerate(zip(finetuned, experts)) if quick_digest(sd) != d]
        if wrong:
            raise MissingStatisticsError(
                f"{method}: these statistics were collected for other fine-tuned models at positions {wrong} "
                "(other experts, or the same in another task order); collect them again for these models"
            )

    @property
    def num_tasks(self) -> int:
        return max(len(self.grams), len(self.fisher), len(self.grad_abs))

    def has(self, kind: str) -> bool:
        return bool(
            {"gram": self.grams, "norm_sq": self.norm_sq, "fisher": self.fisher, "grad_abs": self.grad_abs}[kind]
        )


def _split_exemplars(batch) -> Tuple[object, Optional[torch.Tensor]]:
    if isinstance(batch, (tuple, list)) and len(batch) == 2 and (torch.is_tensor(batch[0]) or is_mapping(batch[0])):
        return batch[0], batch[1]
    if torch.is_tensor(batch) or is_mapping(batch):
        return batch, None
    raise TypeError(
        "each exemplar batch must be a Tensor of inputs, a token batch (a mapping of tensors: input_ids, "
        f"attention_mask), or an (inputs, labels) pair, got {type(batch).__name__}"
    )


def _load(module: nn.Module, sd: Mapping[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for k, v in module.state_dict().items():
            v.copy_(sd[k].to(v.dtype))


def collect_statistics(
    module: nn.Module,
    pretrained: StateDict,
    finetuned: Sequence[StateDict],
    exemplars: Sequence,
    needs: Sequence[str] = ("gram", "norm_sq"),
    heads: Optional[Sequence[nn.Module]] = None,
    expert_scale: float = 1.0,
    fisher_estimator: str = "sampled",
    batch_size: int = 64,
    seed: int = 0,
    device: Optional[torch.device] = None,
    losses: Optional[Sequence[str]] = None,
) -> Statistics:
    """Run each expert on its task's exemplars and collect the statistics named in ``needs``.

    module: the architecture (its weights are never touched: a copy is used). pretrained/finetuned: state dicts
    whose keys are ``module.state_dict()``'s. exemplars: one batch per task, inputs (a tensor, or a token batch:
    a mapping with ``input_ids`` and ``attention_mask``, padding excluded from the statistics) or (inputs,
    labels). heads: one module per task mapping ``module``'s output to logits (needed for "fisher" and
    "grad_abs"); ``losses`` says per task what a head's output is (:data:`LOSSES`, default every task
    "classification"): class logits (cross-entropy), ``(B, 1)`` regression values (squared error, targets as
    floats) or ``(B, T, V)`` next-token logits (targets ``(B, T)`` token ids, -100 where none counts).
    expert_scale: features come from θ0 + expert_scale·τ_k. fisher_estimator: "sampled" (true Fisher, one label
    drawn from the model's prediction per example; for regression a target drawn from N(prediction, 1); for a
    sequence one token per position from the teacher-forced prediction), "exact" (the expectation: over all
    classes; for regression the squared gradient of the prediction; refused for sequences) or "empirical" (given
    labels).
    """
    needs = tuple(needs)
    unknown = set(needs) - set(STAT_KINDS)
    if unknown:
        raise ValueError(f"unknown statistics {sorted(unknown)}; known: {STAT_KINDS}")
    if len(exemplars) != len(finetuned):
        raise ValueError(
            f"got {len(exemplars)} exemplar batches for {len(finetuned)} fine-tuned models "
            "(one batch per task is needed)"
        )
    batch_size = check_batch_size(batch_size)
    if batch_size is None:
        raise ValueError("batch_size must be a whole number ≥ 1, got None")
    if ("fisher" in needs or "grad_abs" in needs) and (heads is None or len(heads) != len(finetuned)):
        raise ValueError("Fisher and gradient statistics need one head per task (heads=[...])")
    losses = ["classification"] * len(finetuned) if losses is None else list(losses)
    if len(losses) != len(finetuned) or any(v not in LOSSES for v in losses):
        raise ValueError(f"losses must name one of {LOSSES} per fine-tuned model ({len(finetuned)}), got {losses}")
    model = copy.deepcopy(module)
    device = device or next(model.parameters()).device
    model.to(device).eval()
    info = classify_parameters(model)
    sources = (quick_digest(pretrained), tuple(quick_digest(ft) for ft in finetuned))
    stats = Statistics(layers=info, expert_scale=float(expert_scale), sources=sources)
    own = set(model.state_dict())
    missing = sorted(own - set(pretrained))
    if missing:
        raise KeyError(
            f"module parameter {missing[0]!r} is not in the pretrained state dict (is this the right architecture?)"
        )
    fkeys = set(float_keys(pretrained))
    for t, (ft, batch) in enumerate(progress(list(zip(finetuned, exemplars)), desc="statistics")):
        x, y = _split_exemplars(batch)
        check_exemplar_inputs(x, f"exemplars[{t}]")
        x = to_device(x, device)
        if "gram" in needs or "norm_sq" in needs:
            if expert_scale == 1.0:
                _load(model, ft)
            else:  # θ0 + s·(θ_k − θ0), key by key
                _load(
                    model,
                    {
                        k: torch.lerp(pretrained[k].float(), ft[k].float(), expert_scale)
                        if k in fkeys
                        else pretrained[k]
                        for k in pretrained
                    },
                )
            rec = _Recorder(model, info)
            try:
                with torch.no_grad():
                    for s in range(0, batch_len(x), batch_size):
                        xb = take(x, slice(s, s + batch_size))
                        rec.mask = token_mask(xb)
                        forward(model, xb)
            finally:
                rec.remove()
            stats.grams.append(rec.grams)
            stats.norm_sq.append(rec.norm_sq)
            stats.counts.append(rec.counts)
        if "fisher" in needs:
            _load(model, ft)
            stats.fisher.append(_fisher(model, heads[t].to(device), x, y, fisher_estimator, seed + t, losses[t]))
        if "grad_abs" in needs:
            if y is None:
                raise ValueError(
                    "mean |gradient| statistics (TATR) need labelled exemplars: pass (inputs, "
                    "labels) pairs, or use the method's zero-shot variant"
                )
            _load(model, pretrained)
            stats.grad_abs.append(_grad_abs(model, heads[t].to(device), x, y.to(device), losses[t]))
    return stats


def _terms(out: torch.Tensor, y, i: int, estimator: str, loss: str, gen: torch.Generator) -> list:
    """One example's Fisher terms ``[(scalar, weight), ...]``: the squared gradient of each scalar, weighted,
    summed over the terms, is the example's Fisher diagonal. ``out``: the head's output (1, classes) or (1, 1)."""
    if loss == "sequence":
        if out.dim() != 3:
            raise ValueError(f"a sequence model must output next-token logits (1, T, V), got shape {tuple(out.shape)}")
        logp = F.log_softmax(out[0], dim=-1)  # (T, V)
        target = torch.as_tensor(y[i], device=out.device) if y is not None else None
        keep = (target != -100) if target is not None else torch.ones(logp.shape[0], dtype=torch.bool)
        if target is not None and target.shape[0] != logp.shape[0]:
            raise ValueError(f"sequence targets ({target.shape[0]} positions) do not match logits ({logp.shape[0]})")
        logp = logp[keep]
        if estimator == "exact":
            raise ValueError(
                "the exact Fisher of a sequence needs a backward pass per vocabulary entry and position; "
                "use fisher_estimator='sampled' or 'empirical'"
            )
        if estimator == "sampled":  # one token per position from the model's own teacher-forced prediction
            drawn = torch.multinomial(logp.detach().exp().cpu(), 1, generator=gen)[:, 0].to(logp.device)
        else:
            drawn = target[keep]
        return [(-logp.gather(1, drawn[:, None]).sum(), 1.0)]
    if loss == "regression":
        if out.shape[-1] != 1:
            raise ValueError(f"a regression head must output one value per example, got {out.shape[-1]}")
        f = out[0, 0]
        if estimator == "exact":  # E_y[((y − f)∇f)²] = ∇f² for y ~ N(f, 1)
            return [(f, 1.0)]
        target = f.detach() + torch.randn((), generator=gen) if estimator == "sampled" else float(y[i])
        return [(0.5 * (target - f) ** 2, 1.0)]
    logp = F.log_softmax(out, dim=-1)[0]
    if estimator == "exact":
        probs = logp.detach().exp()
        return [(-logp[c], float(probs[c])) for c in range(logp.numel())]
    if estimator == "sampled":
        return [(-logp[int(torch.multinomial(logp.detach().exp().cpu(), 1, generator=gen))], 1.0)]
    return [(-logp[int(y[i])], 1.0)]


def _fisher(model, head, x, y, estimator: str, seed: int, loss: str = "classification") -> StateDict:
    if estimator not in ("sampled", "exact", "empirical"):
        raise ValueError(f"fisher_estimator must be 'sampled', 'exact' or 'empirical', got {estimator!r}")
    if estimator == "empirical" and y is None:
        raise ValueError("the empirical Fisher needs labelled exemplars")
    gen = torch.Generator().manual_seed(seed)
    params = {k: p.requires_grad_(True) for k, p in model.named_parameters()}
    acc = {k: torch.zeros_like(p, dtype=torch.float32, device="cpu") for k, p in params.items()}
    n = batch_len(x)
    for i in range(n):
        terms = _terms(head(forward(model, take(x, slice(i, i + 1)))).float(), y, i, estimator, loss, gen)
        for j, (value, w) in enumerate(terms):
            grads = torch.autograd.grad(
                value, list(params.values()), retain_graph=j < len(terms) - 1, allow_unused=True
            )
            for (k, _), g in zip(params.items(), grads):
                if g is not None:
                    acc[k] += w * g.detach().float().cpu() ** 2
    return {k: v / n for k, v in acc.items()}


def _grad_abs(model, head, x, y, loss: str = "classification") -> StateDict:
    params = {k: p.requires_grad_(True) for k, p in model.named_parameters()}
    acc = {k: torch.zeros_like(p, dtype=torch.float32, device="cpu") for k, p in params.items()}
    n = batch_len(x)
    for i in range(n):
        out = head(forward(model, take(x, slice(i, i + 1)))).float()
        if loss == "sequence":  # mean next-token cross-entropy over the target tokens
            value = F.cross_entropy(out[0], y[i].long(), ignore_index=-100)
        elif loss == "regression":
            value = F.mse_loss(out[:, 0], y[i : i + 1].float())
        else:
            value = F.cross_entropy(out, y[i : i + 1])
        grads = torch.autograd.grad(value, list(params.values()), allow_unused=True)
        for (k, _), g in zip(params.items(), grads):
            if g is not None:
                acc[k] += g.detach().float().abs().cpu()
    return {k: v / n for k, v in acc.items()}
