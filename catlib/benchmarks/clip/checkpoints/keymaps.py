"""State-dict key conversions between HF ``CLIPModel`` / ``CLIPVisionModel`` and open_clip ``CLIP`` (pure functions).

Key mapping HF ``CLIPVisionModel`` ↔ open_clip ``VisionTransformer`` (``vision_model.`` prefix optional)::

    embeddings.class_embedding                  class_embedding                       (W,)
    embeddings.patch_embedding.weight           conv1.weight                          (W, 3, P, P)
    embeddings.position_embedding.weight        positional_embedding                  (N, W)
    pre_layrnorm.{weight,bias}                  ln_pre.{weight,bias}
    encoder.layers.i.self_attn.{q,k,v}_proj.w   transformer.resblocks.i.attn.in_proj_weight  = cat([q,k,v], 0)  (3W, W)
    encoder.layers.i.self_attn.{q,k,v}_proj.b   transformer.resblocks.i.attn.in_proj_bias    = cat([q,k,v], 0)  (3W,)
    encoder.layers.i.self_attn.out_proj.*       transformer.resblocks.i.attn.out_proj.*
    encoder.layers.i.layer_norm1.* / 2.*        transformer.resblocks.i.ln_1.* / ln_2.*
    encoder.layers.i.mlp.fc1.* / fc2.*          transformer.resblocks.i.mlp.c_fc.* / c_proj.*
    post_layernorm.*                            ln_post.*
    visual_projection.weight  (E, W) out×in     proj  (W, E) in×out  = visual_projection.weight.T

and for the text tower (``text_model.`` prefix): ``embeddings.token_embedding.weight`` → ``token_embedding.weight``,
``embeddings.position_embedding.weight`` → ``positional_embedding``, ``encoder.layers.i.*`` →
``transformer.resblocks.i.*`` (as above), ``final_layer_norm`` → ``ln_final``, ``text_projection.weight`` (E, W) →
``text_projection`` (W, E) transposed, ``logit_scale`` → ``logit_scale``. PyTorch ``nn.Linear`` weights are
(out, in); open_clip's ``proj`` / ``text_projection`` are (in, out) because it computes ``x @ proj``.
Integer buffers (``position_ids``) are dropped.
"""

from __future__ import annotations

import re
from typing import Dict, Mapping, Optional, Tuple

import torch

from ....core.errors import ArchitectureMismatchError, CheckpointError

StateDict = Dict[str, torch.Tensor]

_HF_BLOCK = re.compile(r"^encoder\.layers\.(\d+)\.(.+)$")
_OC_BLOCK = re.compile(r"^transformer\.resblocks\.(\d+)\.(.+)$")
_BLOCK_RENAMES = [  # HF suffix -> open_clip suffix, inside one transformer block
    ("self_attn.out_proj.", "attn.out_proj."),
    ("layer_norm1.", "ln_1."),
    ("layer_norm2.", "ln_2."),
    ("mlp.fc1.", "mlp.c_fc."),
    ("mlp.fc2.", "mlp.c_proj."),
]


def _hf_blocks_to_openclip(hf: Mapping[str, torch.Tensor], out: StateDict, where: str) -> None:
    """Map ``encoder.layers.i.*`` keys (prefix already removed) into ``transformer.resblocks.i.*``; fuses q/k/v."""
    qkv: Dict[Tuple[int, str], Dict[str, torch.Tensor]] = {}
    for k, v in hf.items():
        m = _HF_BLOCK.match(k)
        if not m:
            continue
        i, rest = int(m.group(1)), m.group(2)
        qm = re.match(r"^self_attn\.([qkv])_proj\.(weight|bias)$", rest)
        if qm:
            qkv.setdefault((i, qm.group(2)), {})[qm.group(1)] = v
            continue
        for a, b in _BLOCK_RENAMES:
            if rest.startswith(a):
                out[f"transformer.resblocks.{i}.{b}{rest[len(a) :]}"] = v
                break
        else:
            raise ArchitectureMismatchError(f"unknown HF key in {where}", key=f"encoder.layers.{k}")
    for (i, kind), parts in sorted(qkv.items()):
        missing = [p for p in "qkv" if p not in parts]
        if missing:
            raise ArchitectureMismatchError(
                f"{where}: layer {i} lacks {missing} projection {kind}",
                key=f"encoder.layers.{i}.self_attn.{missing[0]}_proj.{kind}",
            )
        out[f"transformer.resblocks.{i}.attn.in_proj_{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], 0)


def _openclip_blocks_to_hf(oc: Mapping[str, torch.Tensor], out: StateDict, prefix: str) -> None:
    for k, v in oc.items():
        m = _OC_BLOCK.match(k)
        if not m:
            continue
        i, rest = int(m.group(1)), m.group(2)
        base = f"{prefix}encoder.layers.{i}."
        if rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
            kind = rest.rsplit("_", 1)[1]
            q, kk, vv = torch.chunk(v, 3, dim=0)
            out[f"{base}self_attn.q_proj.{kind}"] = q.clone()
            out[f"{base}self_attn.k_proj.{kind}"] = kk.clone()
            out[f"{base}self_attn.v_proj.{kind}"] = vv.clone()
            continue
        for a, b in _BLOCK_RENAMES:
            if rest.startswith(b):
                out[f"{base}{a}{rest[len(b) :]}"] = v
                break
        else:
            raise ArchitectureMismatchError("unknown open_clip block key", key=k)


_HF_VISION_TOP = {
    "embeddings.class_embedding": "class_embedding",
    "embeddings.patch_embedding.weight": "conv1.weight",
    "embeddings.position_embedding.weight": "positional_embedding",
    "pre_layrnorm.weight": "ln_pre.weight",
    "pre_layrnorm.bias": "ln_pre.bias",
    "post_layernorm.weight": "ln_post.weight",
    "post_layernorm.bias": "ln_post.bias",
}
_HF_TEXT_TOP = {
    "embeddings.token_embedding.weight": "token_embedding.weight",
    "embeddings.position_embedding.weight": "positional_embedding",
    "final_layer_norm.weight": "ln_final.weight",
    "final_layer_norm.bias": "ln_final.bias",
}


def _float_only(sd: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    return {k: v for k, v in sd.items() if torch.is_tensor(v) and v.is_floating_point()}


def hf_vision_to_openclip(
    hf: Mapping[str, torch.Tensor],
    visual_projection: Optional[torch.Tensor] = None,
    where: str = "HF vision state dict",
) -> StateDict:
    """HF ``CLIPVisionModel`` / ``CLIPModel`` vision keys → open_clip ``VisionTransformer`` state dict.

    Accepts keys with or without ``vision_model.``; ``text_model.*``, ``text_projection.weight``, ``logit_scale`` and
    integer buffers are ignored. ``visual_projection`` (E, W), out×in, is taken from ``hf["visual_projection.weight"]``
    when present, else from the argument; it becomes ``proj`` = its transpose (W, E). Without either, the result
    has no ``proj`` key (the caller must supply θ0's).
    """
    body: Dict[str, torch.Tensor] = {}
    for k, v in _float_only(hf).items():
        if k.startswith("text_model.") or k in ("text_projection.weight", "logit_scale"):
            continue
        if k == "visual_projection.weight":
            visual_projection = v
            continue
        body[k[len("vision_model.") :] if k.startswith("vision_model.") else k] = v
    out: StateDict = {}
    for k, v in body.items():
        if k in _HF_VISION_TOP:
            out[_HF_VISION_TOP[k]] = v
        elif not _HF_BLOCK.match(k):
            raise ArchitectureMismatchError(f"unknown key in {where}", key=k)
    _hf_blocks_to_openclip(body, out, where)
    if visual_projection is not None:
        out["proj"] = visual_projection.t().contiguous()
    return out


def openclip_visual_to_hf(visual: Mapping[str, torch.Tensor], prefix: str = "vision_model.") -> StateDict:
    """Inverse of :func:`hf_vision_to_openclip`: open_clip visual keys → HF keys (with ``prefix``), and ``proj``
    (W, E) → ``visual_projection.weight`` (E, W) (never prefixed: it sits on ``CLIPModel``)."""
    inv = {v: k for k, v in _HF_VISION_TOP.items()}
    out: StateDict = {}
    for k, v in visual.items():
        if k == "proj":
            out["visual_projection.weight"] = v.t().contiguous()
        elif k in inv:
            out[prefix + inv[k]] = v
        elif not _OC_BLOCK.match(k):
            raise ArchitectureMismatchError("unknown open_clip visual key", key=k)
    _openclip_blocks_to_hf(visual, out, prefix)
    return out


def hf_text_to_openclip(hf: Mapping[str, torch.Tensor], where: str = "HF CLIPModel state dict") -> StateDict:
    """HF ``CLIPModel`` text keys (``text_model.*``, ``text_projection.weight`` (E, W), ``logit_scale``) → the
    non-visual keys of an open_clip ``CLIP`` state dict (``text_projection`` (W, E) = transpose)."""
    body = {k[len("text_model.") :]: v for k, v in _float_only(hf).items() if k.startswith("text_model.")}
    if not body:
        raise CheckpointError(f"{where} holds no text tower (text_model.*)")
    out: StateDict = {}
    for k, v in body.items():
        if k in _HF_TEXT_TOP:
            out[_HF_TEXT_TOP[k]] = v
        elif not _HF_BLOCK.match(k):
            raise ArchitectureMismatchError(f"unknown text key in {where}", key="text_model." + k)
    _hf_blocks_to_openclip(body, out, where)
    for src, dst, transpose in (
        ("text_projection.weight", "text_projection", True),
        ("logit_scale", "logit_scale", False),
    ):
        if src not in hf:
            raise CheckpointError(f"{where} lacks the CLIPModel key", key=src)
        out[dst] = hf[src].t().contiguous() if transpose else hf[src]
    return out


def openclip_text_to_hf(text: Mapping[str, torch.Tensor]) -> StateDict:
    """Inverse of :func:`hf_text_to_openclip`."""
    inv = {v: k for k, v in _HF_TEXT_TOP.items()}
    out: StateDict = {}
    for k, v in text.items():
        if k == "text_projection":
            out["text_projection.weight"] = v.t().contiguous()
        elif k == "logit_scale":
            out["logit_scale"] = v
        elif k in inv:
            out["text_model." + inv[k]] = v
        elif not _OC_BLOCK.match(k):
            raise ArchitectureMismatchError("unknown open_clip text key", key=k)
    _openclip_blocks_to_hf(text, out, "text_model.")
    return out


def openclip_to_hf_clip(full: Mapping[str, torch.Tensor]) -> StateDict:
    """A full open_clip ``CLIP`` state dict → HF ``CLIPModel`` keys (both towers)."""
    visual, text = split_openclip(full)
    return {**openclip_visual_to_hf(visual), **openclip_text_to_hf(text)}


def hf_clip_to_openclip(hf: Mapping[str, torch.Tensor]) -> StateDict:
    """HF ``CLIPModel`` keys → a full open_clip ``CLIP`` state dict (``visual.*`` + text keys)."""
    visual = hf_vision_to_openclip(hf)
    return {**{"visual." + k: v for k, v in visual.items()}, **hf_text_to_openclip(hf)}


def split_openclip(full: Mapping[str, torch.Tensor]) -> Tuple[StateDict, StateDict]:
    """Full open_clip CLIP state dict → (visual keys without ``visual.``, text keys). ``attn_mask`` is dropped."""
    visual = {k[len("visual.") :]: v for k, v in full.items() if k.startswith("visual.")}
    text = {k: v for k, v in full.items() if not k.startswith("visual.") and k != "attn_mask"}
    return visual, text
