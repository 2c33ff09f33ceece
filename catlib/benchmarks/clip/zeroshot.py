"""Zero-shot classification heads from the open_clip text tower (the task_vectors / FusionBench construction).

For each class ``c``: encode every template prompt, L2-normalise each embedding, average over templates,
L2-normalise again → ``e_c`` (E,). The head stores ``weight = logit_scale.exp() · [e_1; …; e_C]`` (C, E) and a zero
bias, and computes ``logits = normalize(features) @ weight.T + bias`` (= ``logit_scale.exp() · normalize(f) @ Wᵀ``),
exactly task_vectors' ``ClassificationHead(normalize=True)``; its ``head_<Task>.pt`` files load into the same module.

Heads are cached on disk as safetensors, keyed by model name + a hash of the text-tower weights + class names +
templates; the key is stored in the file's metadata and checked before a cached head is used.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Callable, Dict, Mapping, Optional, Sequence, Union

import torch
from torch import nn
import torch.nn.functional as F

from ...core.io import atomic_path

StateDict = Dict[str, torch.Tensor]
PathLike = Union[str, os.PathLike]


class ZeroShotHead(nn.Module):
    """Frozen linear head on L2-normalised features: ``(B, E) → (B, C)``.

    ``weight`` (C, E) already includes the logit scale; ``bias`` (C,) is zero for CLIP zero-shot heads.
    Both are buffers (not parameters): heads never train and never enter a state dict that gets merged.
    """

    def __init__(self, weight: torch.Tensor, bias: Optional[torch.Tensor] = None, normalize: bool = True):
        super().__init__()
        if weight.ndim != 2:
            raise ValueError(f"head weight must be (classes, embed_dim), got {tuple(weight.shape)}")
        self.register_buffer("weight", weight.detach().float().clone())
        b = torch.zeros(weight.shape[0]) if bias is None else bias.detach().float().clone()
        if b.shape != (weight.shape[0],):
            raise ValueError(f"head bias must be ({weight.shape[0]},), got {tuple(b.shape)}")
        self.register_buffer("bias", b)
        self.normalize = normalize

    @property
    def num_classes(self) -> int:
        return self.weight.shape[0]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = features
        if self.normalize:
            x = F.normalize(x.float(), dim=-1)
        return F.linear(x.to(self.weight.dtype), self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"classes={self.weight.shape[0]}, embed_dim={self.weight.shape[1]}, normalize={self.normalize}"


def text_tower_hash(text: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over the sorted keys, dtypes, shapes and bytes of a text-tower state dict (incl. ``logit_scale``)."""
    h = hashlib.sha256()
    for k in sorted(text):
        v = text[k].detach().cpu().contiguous()
        h.update(f"{k}|{v.dtype}|{tuple(v.shape)}|".encode())
        h.update(v.reshape(-1).view(torch.uint8).numpy().tobytes() if v.numel() else b"")
    return h.hexdigest()


def head_cache_key(
    model_name: str,
    text_hash: str,
    class_names: Sequence[str],
    templates: Sequence[str],
    quick_gelu: bool = True,
) -> str:
    """sha256 of everything a zero-shot head depends on (the text tower's activation included)."""
    payload = json.dumps(
        {
            "model": model_name,
            "text": text_hash,
            "classes": list(class_names),
            "templates": list(templates),
            "quick_gelu": bool(quick_gelu),
            "version": 1,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


@torch.no_grad()
def class_embeddings(
    clip_model: nn.Module,
    tokenizer: Callable,
    class_names: Sequence[str],
    templates: Sequence[str],
    device: Union[str, torch.device] = "cpu",
    batch_size: int = 256,
) -> torch.Tensor:
    """``(C, E)`` unit vectors: per class, mean over templates of L2-normalised text embeddings, re-normalised.

    ``clip_model`` is an open_clip ``CLIP`` (``encode_text``); ``tokenizer(list_of_str) → (N, L)`` token ids.
    Templates hold ``{c}``.
    """
    clip_model = clip_model.to(device).eval()
    prompts = [t.replace("{c}", c) for c in class_names for t in templates]
    feats = []
    for i in range(0, len(prompts), batch_size):
        tok = tokenizer(prompts[i : i + batch_size]).to(device)
        feats.append(F.normalize(clip_model.encode_text(tok).float(), dim=-1).cpu())
    emb = torch.cat(feats).view(len(class_names), len(templates), -1).mean(dim=1)
    return F.normalize(emb, dim=-1)


def build_head(
    clip_model: nn.Module,
    tokenizer: Callable,
    class_names: Sequence[str],
    templates: Sequence[str],
    device: Union[str, torch.device] = "cpu",
) -> ZeroShotHead:
    """A :class:`ZeroShotHead` with ``weight = logit_scale.exp() · class_embeddings`` (C, E)."""
    emb = class_embeddings(clip_model, tokenizer, class_names, templates, device)
    scale = clip_model.logit_scale.detach().float().cpu().exp()
    return ZeroShotHead(scale * emb)


def _cache_file(cache_dir: PathLike, model_name: str, key: str) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in model_name)
    return Path(cache_dir) / f"head-{safe}-{key[:24]}.safetensors"


def load_cached_head(path: PathLike, key: str, num_classes: int) -> Optional[ZeroShotHead]:
    """The cached head at ``path`` if it exists, is readable and its stored key and class count match; else None."""
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        return None
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
            weight, bias = f.get_tensor("weight"), f.get_tensor("bias")
    except Exception as e:  # damaged cache file: rebuild
        warnings.warn(f"ignoring unreadable head cache {p} ({type(e).__name__}: {e})")
        return None
    if meta.get("key") != key or weight.ndim != 2 or weight.shape[0] != num_classes:
        warnings.warn(f"ignoring head cache {p}: key or shape does not match; rebuilding")
        return None
    if not bool(torch.isfinite(weight).all()):
        warnings.warn(f"ignoring head cache {p}: non-finite values; rebuilding")
        return None
    return ZeroShotHead(weight, bias)


def save_cached_head(path: PathLike, head: ZeroShotHead, key: str, info: Mapping[str, object]) -> None:
    from safetensors.torch import save_file

    meta = {"key": key, "info": json.dumps(dict(info))}
    with atomic_path(path) as tmp:  # several runs may build the same head at once: each renames its own file
        save_file({"weight": head.weight.contiguous(), "bias": head.bias.contiguous()}, str(tmp), metadata=meta)


def make_tokenizer(model_name: str, model_cfg: Mapping) -> Callable:
    """open_clip's tokenizer for ``model_name`` (the CLIP BPE for every OpenAI ViT), with the config's context
    length. Works offline (the BPE vocabulary ships with open_clip)."""
    from open_clip.tokenizer import SimpleTokenizer

    ctx = int(model_cfg.get("text_cfg", {}).get("context_length", 77))
    return SimpleTokenizer(context_length=ctx)


def zeroshot_heads(
    text: Mapping[str, torch.Tensor],
    model_name: str,
    model_cfg: Mapping,
    classes: Mapping[str, Sequence[str]],
    templates: Mapping[str, Sequence[str]],
    cache_dir: Optional[PathLike] = None,
    device: Union[str, torch.device] = "cpu",
    quick_gelu: bool = True,
) -> Dict[str, ZeroShotHead]:
    """Heads for every task of ``classes`` (task → class names) from a text tower (open_clip keys incl.
    ``logit_scale``), reusing valid cached heads in ``cache_dir`` and writing new ones there."""
    from .checkpoints import build_openclip, check_against, text_shapes

    th = text_tower_hash(text)
    out: Dict[str, ZeroShotHead] = {}
    todo = {}
    for task, names in classes.items():
        key = head_cache_key(model_name, th, names, templates[task], quick_gelu)
        f = _cache_file(cache_dir, model_name, key) if cache_dir is not None else None
        head = load_cached_head(f, key, len(names)) if f is not None else None
        if head is not None:
            out[task] = head
        else:
            todo[task] = (key, f)
    if todo:
        model = build_openclip(model_name, model_cfg, quick_gelu=quick_gelu)
        check_against(dict(text), text_shapes(model_name, model_cfg), "<text tower>", "text tower")
        own = model.state_dict()
        with torch.no_grad():
            for k, v in text.items():
                own[k].copy_(v)
        tokenizer = make_tokenizer(model_name, model_cfg)
        for task, (key, f) in todo.items():
            head = build_head(model, tokenizer, classes[task], templates[task], device)
            out[task] = head
            if f is not None:
                save_cached_head(
                    f,
                    head,
                    key,
                    {
                        "model": model_name,
                        "task": task,
                        "text_hash": th,
                        "classes": len(classes[task]),
                        "templates": list(templates[task]),
                    },
                )
        del model
    return {t: out[t] for t in classes}


__all__ = [
    "ZeroShotHead",
    "text_tower_hash",
    "head_cache_key",
    "class_embeddings",
    "build_head",
    "load_cached_head",
    "save_cached_head",
    "make_tokenizer",
    "zeroshot_heads",
]
