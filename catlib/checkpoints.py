"""Real CLIP checkpoints → one in-memory form: open_clip visual-tower state dicts (fp32, CPU) + frozen heads.

Two on-disk layouts are read (``baselines.md`` 1.2):

* ``"task_vectors"`` (Ilharco et al.; also AdaMerging, TIES-ViT, PCB, WUDI)::

      <root>/<model>/zeroshot.pt                 θ0 (an ImageEncoder; its .model is an open_clip CLIP)
      <root>/<model>/<Task>/finetuned.pt         θ_t          (<Task> or <Task>Val; nonlinear_finetuned.pt too)
      <root>/<model>/head_<Task>.pt              frozen zero-shot head (ClassificationHead), optional

  with ``<model>`` the open_clip name (``ViT-B-32``). Files are pickled whole modules (keys ``model.visual.*``) or
  plain state dicts. They are read with ``torch.load(weights_only=True)``; a pickled module is only unpickled when
  the caller passes ``trust_pickle=True`` (unpickling runs code named by the file), otherwise
  :class:`UntrustedPickleError` says so.

* ``"hf"`` (FusionBench): a directory per model, either plain (``<root>/openai/clip-vit-base-patch32``,
  ``<root>/tanganke/clip-vit-base-patch32_<task>``) or an HF cache entry
  (``<root>/models--tanganke--clip-vit-base-patch32_svhn/snapshots/<hash>/``), holding ``model.safetensors``
  (or ``pytorch_model.bin``) and ``config.json``. θ0 is the full ``CLIPModel`` (vision + text + projections); the
  fine-tuned models are ``CLIPVisionModel`` s (no ``visual_projection``: θ0's is used, as FusionBench does).

plus open_clip's own weight file (a full CLIP state dict; ``openclip_weights=``): its visual part can be θ0 and its
text tower builds the zero-shot heads.

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

OpenAI CLIP uses QuickGELU; ``open_clip.create_model("ViT-B-32")`` without the ``openai`` tag builds plain GELU. The
keys are the same, the outputs are not, so every model here is built with ``quick_gelu=True`` unless told otherwise.
"""
from __future__ import annotations

import dataclasses
import io
import json
import os
import pickle
import re
import types
import warnings
import zipfile
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from .errors import CatlibError

StateDict = Dict[str, torch.Tensor]
PathLike = Union[str, os.PathLike]

# open_clip model name -> the HF repo name used by openai/ and tanganke/ (FusionBench).
HF_MODEL_NAMES: Dict[str, str] = {
    "ViT-B-32": "clip-vit-base-patch32",
    "ViT-B-16": "clip-vit-base-patch16",
    "ViT-L-14": "clip-vit-large-patch14",
}
OPENCLIP_CONFIG_FILE = "open_clip_config.json"


# ----------------------------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------------------------
class CheckpointError(CatlibError, ValueError):
    """A checkpoint that cannot be used. ``path`` and ``key`` (when known) are attributes and in the message."""

    def __init__(self, message: str, path: Optional[PathLike] = None, key: Optional[str] = None):
        self.path = None if path is None else str(path)
        self.key = key
        parts = [message]
        if key is not None:
            parts.append(f"key {key!r}")
        if path is not None:
            parts.append(f"file {str(path)!r}")
        super().__init__(" | ".join(parts))


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A checkpoint file or directory that does not exist (a missing task, a wrong root)."""


class CorruptCheckpointError(CheckpointError):
    """A file that exists but cannot be read (truncated, not a checkpoint, damaged archive)."""


class UntrustedPickleError(CheckpointError):
    """A file holding pickled Python objects, read without ``trust_pickle=True``."""


class ArchitectureMismatchError(CheckpointError):
    """Keys, shapes or config of a checkpoint that do not fit the requested open_clip architecture."""


# ----------------------------------------------------------------------------------------------------------------
# open_clip architectures
# ----------------------------------------------------------------------------------------------------------------
def resolve_model_config(model_name: str, model_config: Union[None, Mapping, PathLike] = None,
                         search_dirs: Sequence[PathLike] = ()) -> Dict[str, Any]:
    """The open_clip config dict (``embed_dim``, ``vision_cfg``, ``text_cfg``) of ``model_name``.

    Order: ``model_config`` (a dict, or a path to a JSON file in open_clip's format, bare or under ``model_cfg``);
    open_clip's built-in configs; an ``open_clip_config.json`` in one of ``search_dirs`` (how the stand-in
    checkpoint roots describe their tiny model).
    """
    import open_clip

    def _read(path: Path) -> Dict[str, Any]:
        try:
            cfg = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise CheckpointError(f"cannot read open_clip model config ({e})", path=path) from e
        return dict(cfg.get("model_cfg", cfg))

    if model_config is not None:
        cfg = dict(model_config) if isinstance(model_config, Mapping) else _read(Path(model_config))
    else:
        cfg = open_clip.get_model_config(model_name)
        if cfg is None:
            for d in search_dirs:
                for cand in (Path(d) / OPENCLIP_CONFIG_FILE, Path(d) / model_name / OPENCLIP_CONFIG_FILE):
                    if cand.is_file():
                        cfg = _read(cand)
                        break
                if cfg is not None:
                    break
        if cfg is None:
            raise ArchitectureMismatchError(
                f"unknown open_clip model {model_name!r}: not among open_clip.list_models() and no "
                f"{OPENCLIP_CONFIG_FILE} in {[str(d) for d in search_dirs]}; pass model_config=")
    for k in ("embed_dim", "vision_cfg", "text_cfg"):
        if k not in cfg:
            raise ArchitectureMismatchError(f"open_clip config of {model_name!r} lacks {k!r}")
    return cfg


def build_openclip(model_name: str, model_config: Union[None, Mapping, PathLike] = None,
                   quick_gelu: bool = True, search_dirs: Sequence[PathLike] = ()) -> nn.Module:
    """A randomly initialised fp32 open_clip ``CLIP`` (both towers) on CPU, in eval mode."""
    from open_clip.model import CLIP

    cfg = dict(resolve_model_config(model_name, model_config, search_dirs))
    cfg.pop("custom_text", None)
    cfg["quick_gelu"] = bool(quick_gelu) or bool(cfg.get("quick_gelu", False))
    if "hf_model_name" in cfg.get("text_cfg", {}) or "timm_model_name" in cfg.get("vision_cfg", {}):
        raise ArchitectureMismatchError(f"{model_name!r}: only open_clip's own ViT/text towers are supported")
    return CLIP(**cfg).eval()


def build_visual(model_name: str, model_config: Union[None, Mapping, PathLike] = None,
                 quick_gelu: bool = True, search_dirs: Sequence[PathLike] = ()) -> nn.Module:
    """Only the vision tower (open_clip ``VisionTransformer``), without building the text tower."""
    from open_clip.model import CLIPVisionCfg, _build_vision_tower

    cfg = resolve_model_config(model_name, model_config, search_dirs)
    qg = bool(quick_gelu) or bool(cfg.get("quick_gelu", False))
    return _build_vision_tower(cfg["embed_dim"], CLIPVisionCfg(**cfg["vision_cfg"]), quick_gelu=qg).eval()


def visual_shapes(model_name: str, model_config=None, search_dirs: Sequence[PathLike] = ()) -> Dict[str, torch.Size]:
    """Key → shape of ``open_clip.create_model(model_name).visual.state_dict()``, computed without allocating."""
    with torch.device("meta"):
        visual = build_visual(model_name, model_config, True, search_dirs)
    return {k: v.shape for k, v in visual.state_dict().items()}


def text_shapes(model_name: str, model_config=None, search_dirs: Sequence[PathLike] = ()) -> Dict[str, torch.Size]:
    """Key → shape of the text-tower part of the full CLIP state dict (everything not under ``visual.``)."""
    with torch.device("meta"):
        model = build_openclip(model_name, model_config, True, search_dirs)
    return {k: v.shape for k, v in model.state_dict().items() if not k.startswith("visual.")}


# ----------------------------------------------------------------------------------------------------------------
# key mapping open_clip <-> HF
# ----------------------------------------------------------------------------------------------------------------
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
                out[f"transformer.resblocks.{i}.{b}{rest[len(a):]}"] = v
                break
        else:
            raise ArchitectureMismatchError(f"unknown HF key in {where}", key=f"encoder.layers.{k}")
    for (i, kind), parts in sorted(qkv.items()):
        missing = [p for p in "qkv" if p not in parts]
        if missing:
            raise ArchitectureMismatchError(f"{where}: layer {i} lacks {missing} projection {kind}",
                                            key=f"encoder.layers.{i}.self_attn.{missing[0]}_proj.{kind}")
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
                out[f"{base}{a}{rest[len(b):]}"] = v
                break
        else:
            raise ArchitectureMismatchError("unknown open_clip block key", key=k)


_HF_VISION_TOP = {
    "embeddings.class_embedding": "class_embedding",
    "embeddings.patch_embedding.weight": "conv1.weight",
    "embeddings.position_embedding.weight": "positional_embedding",
    "pre_layrnorm.weight": "ln_pre.weight", "pre_layrnorm.bias": "ln_pre.bias",
    "post_layernorm.weight": "ln_post.weight", "post_layernorm.bias": "ln_post.bias",
}
_HF_TEXT_TOP = {
    "embeddings.token_embedding.weight": "token_embedding.weight",
    "embeddings.position_embedding.weight": "positional_embedding",
    "final_layer_norm.weight": "ln_final.weight", "final_layer_norm.bias": "ln_final.bias",
}


def _float_only(sd: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    return {k: v for k, v in sd.items() if torch.is_tensor(v) and v.is_floating_point()}


def hf_vision_to_openclip(hf: Mapping[str, torch.Tensor], visual_projection: Optional[torch.Tensor] = None,
                          where: str = "HF vision state dict") -> StateDict:
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
        body[k[len("vision_model."):] if k.startswith("vision_model.") else k] = v
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
    body = {k[len("text_model."):]: v for k, v in _float_only(hf).items() if k.startswith("text_model.")}
    if not body:
        raise CheckpointError(f"{where} holds no text tower (text_model.*)")
    out: StateDict = {}
    for k, v in body.items():
        if k in _HF_TEXT_TOP:
            out[_HF_TEXT_TOP[k]] = v
        elif not _HF_BLOCK.match(k):
            raise ArchitectureMismatchError(f"unknown text key in {where}", key="text_model." + k)
    _hf_blocks_to_openclip(body, out, where)
    for src, dst, transpose in (("text_projection.weight", "text_projection", True), ("logit_scale", "logit_scale",
                                                                                      False)):
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
    visual = {k[len("visual."):]: v for k, v in full.items() if k.startswith("visual.")}
    text = {k: v for k, v in full.items() if not k.startswith("visual.") and k != "attn_mask"}
    return visual, text


# ----------------------------------------------------------------------------------------------------------------
# reading files
# ----------------------------------------------------------------------------------------------------------------
class _Placeholder(nn.Module):
    """Stands in for a class a trusted pickle names but this environment cannot import (``src.modeling.*``)."""

    def forward(self, *args, **kwargs):  # pragma: no cover - never called
        raise RuntimeError(f"{type(self).__module__}.{type(self).__name__} is a placeholder for unpickling only")


def _lenient_pickle_module() -> types.ModuleType:
    """A ``pickle``-like module whose Unpickler replaces unimportable classes (the task_vectors repo's
    ``src.modeling.ImageEncoder`` / ``ClassificationHead``) with :class:`_Placeholder` subclasses; the state of
    ``nn.Module`` s survives, so ``.state_dict()`` works on the result."""
    mod = types.ModuleType("catlib_lenient_pickle")
    mod.__dict__.update({k: getattr(pickle, k) for k in dir(pickle) if not k.startswith("__")})
    cache: Dict[Tuple[str, str], type] = {}

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            try:
                return super().find_class(module, name)
            except (ImportError, AttributeError):
                key = (module, name)
                if key not in cache:
                    base = (_Placeholder, nn.Linear)[name == "ClassificationHead"]
                    cache[key] = type(name, (base,), {"__module__": module})
                return cache[key]

    mod.Unpickler = Unpickler
    mod.load = lambda f, **kw: Unpickler(f, **kw).load()
    mod.loads = lambda b, **kw: Unpickler(io.BytesIO(b), **kw).load()
    return mod


def _looks_like_pickled_objects(msg: str) -> bool:
    return "Unsupported global" in msg or "GLOBAL" in msg or "Unsupported class" in msg


def read_file(path: PathLike, trust_pickle: bool = False) -> Any:
    """Read one checkpoint file into Python objects (a dict of tensors, or an ``nn.Module`` when trusted).

    ``.safetensors`` → safetensors; anything else → ``torch.load(weights_only=True)``; a file that holds pickled
    objects other than tensors, or a TorchScript archive (OpenAI's original CLIP files), raises
    :class:`UntrustedPickleError` unless ``trust_pickle`` (then it is unpickled, with unimportable classes replaced
    by placeholders, or loaded with ``torch.jit.load``). Missing → :class:`CheckpointNotFoundError`; unreadable →
    :class:`CorruptCheckpointError`.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointNotFoundError("checkpoint file not found", path=path)
    if path.is_dir():
        raise CheckpointError("expected a file, found a directory", path=path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        try:
            return load_file(str(path), device="cpu")
        except Exception as e:  # safetensors raises its own SafetensorError / OSError
            raise CorruptCheckpointError(f"unreadable safetensors file ({type(e).__name__}: {e})", path=path) from e
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*TorchScript archive.*")
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        if not _looks_like_pickled_objects(msg):
            raise CorruptCheckpointError(f"unreadable torch file ({msg.splitlines()[0][:200]})", path=path) from e
        found = re.search(r"GLOBAL ([\w.]+)", msg)
        what = found.group(1) if found else "Python objects"
        if not trust_pickle:
            raise UntrustedPickleError(
                f"the file holds a pickled module ({what}), not a plain state dict. Unpickling it runs code the file "
                f"names, so it is only done with trust_pickle=True, for files from a source you trust (the "
                f"task_vectors release does ship pickled ImageEncoder modules). Or convert it once to a plain state dict "
                f"with catlib.checkpoints.convert_pickled_checkpoint(src, dst)", path=path) from e
    except RuntimeError as e:
        if "TorchScript" not in str(e):
            raise CorruptCheckpointError(f"unreadable torch file, truncated or not a checkpoint "
                                         f"({type(e).__name__}: {str(e).splitlines()[0][:200]})", path=path) from e
        if not trust_pickle:
            raise UntrustedPickleError(
                "the file is a TorchScript archive (like OpenAI's original CLIP .pt files), not a plain state dict; "
                "loading it runs the code it contains, so it is only done with trust_pickle=True. open_clip's "
                "safetensors / .bin weight files need no trust", path=path) from e
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return torch.jit.load(str(path), map_location="cpu").state_dict()
        except Exception as e2:
            raise CorruptCheckpointError(f"cannot load trusted TorchScript archive ({type(e2).__name__}: {e2})",
                                         path=path) from e2
    except (EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise CorruptCheckpointError(f"unreadable torch file, truncated or not a checkpoint "
                                     f"({type(e).__name__}: {str(e).splitlines()[0][:200]})", path=path) from e
    # trusted pickle
    try:
        return torch.load(str(path), map_location="cpu", weights_only=False, pickle_module=_lenient_pickle_module())
    except Exception as e:
        raise CorruptCheckpointError(f"cannot unpickle trusted file ({type(e).__name__}: {e})", path=path) from e


def _as_state_dict(obj: Any, path: PathLike) -> StateDict:
    """Whatever a checkpoint file held → a flat ``{name: tensor}`` dict (nn.Module → state_dict; the
    ``state_dict`` entry of open_clip training checkpoints; ``module.`` prefixes of DDP removed; non-tensors
    dropped)."""
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"file holds {type(obj).__name__}, not a state dict or module", path=path)
    sd: StateDict = {}
    for k, v in obj.items():
        if not torch.is_tensor(v):
            continue
        sd[k[len("module."):] if k.startswith("module.") else k] = v
    if not sd:
        raise CheckpointError("file holds no tensors", path=path)
    return sd


def _strip_to_openclip_full(sd: StateDict) -> StateDict:
    """Remove the ``model.`` prefix of task_vectors' ImageEncoder (``model.visual.conv1.weight``)."""
    if any(k.startswith("model.") for k in sd):
        return {k[len("model."):]: v for k, v in sd.items() if k.startswith("model.")}
    return sd


def _is_hf(sd: Mapping[str, torch.Tensor]) -> bool:
    return any(k.endswith("embeddings.patch_embedding.weight") for k in sd)


def check_against(sd: Mapping[str, torch.Tensor], shapes: Mapping[str, torch.Size], path: PathLike,
                  what: str) -> None:
    """Raise :class:`ArchitectureMismatchError` naming the file and the first missing / unexpected / misshaped key."""
    missing = sorted(set(shapes) - set(sd))
    unexpected = sorted(set(sd) - set(shapes))
    if missing or unexpected:
        key = missing[0] if missing else unexpected[0]
        raise ArchitectureMismatchError(
            f"{what} does not fit the architecture: {len(missing)} missing key(s) {missing[:3]}, "
            f"{len(unexpected)} unexpected key(s) {unexpected[:3]}", path=path, key=key)
    for k in sorted(shapes):
        if tuple(sd[k].shape) != tuple(shapes[k]):
            raise ArchitectureMismatchError(f"{what}: wrong shape {tuple(sd[k].shape)}, the architecture has "
                                            f"{tuple(shapes[k])}", path=path, key=k)


def _fp32(sd: Mapping[str, torch.Tensor]) -> StateDict:
    return {k: (v.detach().float() if v.is_floating_point() else v.detach()).contiguous() for k, v in sd.items()}


@dataclasses.dataclass
class ClipParts:
    """What one file gave: ``visual`` (open_clip visual keys, fp32), ``text`` (open_clip text keys incl.
    ``logit_scale`` when the file has a complete text tower, else ``None``) and the ``path``."""
    visual: StateDict
    text: Optional[StateDict]
    path: str


def read_clip_parts(path: PathLike, shapes: Mapping[str, torch.Size], text_shapes_: Mapping[str, torch.Size],
                    trust_pickle: bool = False, proj: Optional[torch.Tensor] = None) -> ClipParts:
    """Read one file (or HF model directory) and convert it to open_clip keys, checked against ``shapes``.

    Handles: task_vectors ImageEncoder (pickled or state dict, ``model.visual.*``), open_clip full CLIP state dicts
    (``visual.*`` + text), bare visual state dicts (``conv1.weight``...), HF CLIPModel / CLIPVisionModel
    (``vision_model.*`` or unprefixed). ``proj`` (open_clip (W, E)) fills a missing ``proj`` (HF vision models).
    """
    p = Path(path)
    if p.is_dir():
        p = hf_weights_file(p)
    sd = _as_state_dict(read_file(p, trust_pickle=trust_pickle), p)
    text: Optional[StateDict] = None
    if _is_hf(sd):
        visual = hf_vision_to_openclip(sd, where=str(p))
        if any(k.startswith("text_model.") for k in sd):
            text = hf_text_to_openclip(sd, where=str(p))
    else:
        sd = _strip_to_openclip_full(sd)
        if any(k.startswith("visual.") for k in sd):
            visual, rest = split_openclip(sd)
            text = rest
        else:
            visual = {k: v for k, v in sd.items()}
    if "proj" not in visual and proj is not None:
        visual["proj"] = proj
    if "proj" not in visual:
        raise ArchitectureMismatchError("no visual projection: the file is a CLIPVisionModel without "
                                        "visual_projection and no θ0 projection was given", path=p,
                                        key="visual_projection.weight")
    visual = _fp32(visual)
    check_against(visual, shapes, p, "visual tower")
    if text is not None:
        text = {k: v for k, v in text.items() if torch.is_tensor(v) and v.is_floating_point()}
        if set(text) == set(text_shapes_):
            check_against(text, text_shapes_, p, "text tower")
            text = _fp32(text)
        else:  # e.g. task_vectors' ImageEncoder(keep_lang=False) deletes the text transformer
            text = None
    return ClipParts(visual, text, str(p))


# ----------------------------------------------------------------------------------------------------------------
# HF directories
# ----------------------------------------------------------------------------------------------------------------
def resolve_hf_dir(path: PathLike) -> Path:
    """A plain model directory, or an HF cache entry ``models--org--name`` (→ ``snapshots/<refs/main or the only
    hash>``)."""
    p = Path(path)
    if (p / "snapshots").is_dir():
        snaps = sorted(d for d in (p / "snapshots").iterdir() if d.is_dir())
        ref = p / "refs" / "main"
        if ref.is_file() and (p / "snapshots" / ref.read_text().strip()).is_dir():
            return p / "snapshots" / ref.read_text().strip()
        if len(snaps) == 1:
            return snaps[0]
        raise CheckpointError(f"{len(snaps)} snapshots and no refs/main: cannot tell which to use", path=p)
    return p


def hf_weights_file(model_dir: PathLike) -> Path:
    d = resolve_hf_dir(model_dir)
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (d / name).is_file():
            return d / name
    raise CheckpointNotFoundError("no model.safetensors or pytorch_model.bin in the HF model directory", path=d)


def check_hf_config(model_dir: PathLike, model_cfg: Mapping[str, Any], quick_gelu: bool) -> None:
    """Compare an HF ``config.json`` (CLIPConfig or CLIPVisionConfig) with the open_clip config: width, layers,
    heads, MLP size, patch and image size, activation. Silent when there is no config.json."""
    d = resolve_hf_dir(model_dir)
    f = d / "config.json"
    if not f.is_file():
        return
    try:
        cfg = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CorruptCheckpointError(f"unreadable config.json ({e})", path=f) from e
    vc = cfg.get("vision_config", cfg)
    v = model_cfg["vision_cfg"]
    width, layers = v["width"], v["layers"]
    heads = width // v.get("head_width", 64)
    mlp = int(width * v.get("mlp_ratio", 4.0))
    expected = {"hidden_size": width, "num_hidden_layers": layers, "num_attention_heads": heads,
                "intermediate_size": mlp, "patch_size": v["patch_size"], "image_size": v["image_size"],
                "hidden_act": "quick_gelu" if quick_gelu else "gelu"}
    for k, want in expected.items():
        if k in vc and vc[k] != want:
            raise ArchitectureMismatchError(f"config.json has {k}={vc[k]!r}, the open_clip architecture needs "
                                            f"{want!r}", path=f, key=k)


# ----------------------------------------------------------------------------------------------------------------
# whole layouts
# ----------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Checkpoints:
    """Everything a real benchmark needs from disk, in open_clip form.

    ``pretrained``/``finetuned``: visual state dicts (fp32, CPU; keys of ``visual.state_dict()``);
    ``text``: the text tower + ``logit_scale`` (open_clip keys) when one was found, else ``None``;
    ``head_weights``: task → ``(weight (C, E), bias (C,))`` from task_vectors' ``head_<Task>.pt`` files (weight
    already multiplied by ``logit_scale.exp()``; inputs are L2-normalised first); ``sources``: what was read.
    """
    model_name: str
    layout: str
    pretrained: StateDict
    finetuned: Dict[str, StateDict]
    text: Optional[StateDict]
    head_weights: Dict[str, Tuple[torch.Tensor, torch.Tensor]]
    sources: Dict[str, str]
    model_config: Dict[str, Any]
    quick_gelu: bool = True


def _first_existing(cands: Sequence[Path]) -> Optional[Path]:
    for c in cands:
        if c.exists():
            return c
    return None


def _read_head(path: Path, trust_pickle: bool, embed_dim: int) -> Tuple[torch.Tensor, torch.Tensor]:
    sd = _as_state_dict(read_file(path, trust_pickle=trust_pickle), path)
    if "weight" not in sd:
        raise CheckpointError("head file has no 'weight'", path=path, key="weight")
    w = sd["weight"].float()
    if w.ndim != 2 or w.shape[1] != embed_dim:
        raise ArchitectureMismatchError(f"head weight has shape {tuple(w.shape)}, expected (classes, {embed_dim})",
                                        path=path, key="weight")
    b = sd.get("bias", torch.zeros(w.shape[0])).float()
    if b.shape != (w.shape[0],):
        raise ArchitectureMismatchError(f"head bias has shape {tuple(b.shape)}, expected ({w.shape[0]},)",
                                        path=path, key="bias")
    return w.contiguous(), b.contiguous()


def detect_layout(root: PathLike, model_name: str, hf_name: Optional[str] = None) -> str:
    """``"task_vectors"`` when ``<root>/<model_name>/`` exists, ``"hf"`` when an HF θ0 directory does."""
    r = Path(root)
    if (r / model_name).is_dir():
        return "task_vectors"
    hn = hf_name or HF_MODEL_NAMES.get(model_name, model_name)
    if (r / "openai" / hn).is_dir() or (r / f"models--openai--{hn}").is_dir():
        return "hf"
    raise CheckpointNotFoundError(
        f"cannot detect the checkpoint layout of {model_name!r}: expected {r / model_name} (task_vectors layout) "
        f"or {r / 'openai' / hn} / {r / ('models--openai--' + hn)} (HF layout)", path=r)


def load_checkpoints(root: PathLike, model_name: str, tasks: Sequence[str], layout: str = "auto",
                     trust_pickle: bool = False, openclip_weights: Optional[PathLike] = None,
                     model_config: Union[None, Mapping, PathLike] = None, quick_gelu: bool = True,
                     hf_name: Optional[str] = None) -> Checkpoints:
    """Load θ0, the fine-tuned visual towers of ``tasks`` and whatever head sources exist.

    ``layout``: ``"task_vectors"``, ``"hf"`` or ``"auto"`` (:func:`detect_layout`). ``openclip_weights``: a local
    open_clip weight file (full CLIP state dict); its text tower builds zero-shot heads and its visual part is θ0
    when the layout has no ``zeroshot.pt``. ``hf_name``: the HF repo name (default from :data:`HF_MODEL_NAMES`,
    else ``model_name``).
    """
    root = Path(root)
    if not root.is_dir():
        raise CheckpointNotFoundError("checkpoint root not found", path=root)
    if layout == "auto":
        layout = detect_layout(root, model_name, hf_name)
    if layout not in ("task_vectors", "hf"):
        raise ValueError(f"layout must be 'task_vectors', 'hf' or 'auto', got {layout!r}")
    search = [root, root / model_name]
    cfg = resolve_model_config(model_name, model_config, search)
    shapes = visual_shapes(model_name, cfg)
    tshapes = text_shapes(model_name, cfg)
    sources: Dict[str, str] = {}
    text: Optional[StateDict] = None
    pretrained: Optional[StateDict] = None
    if openclip_weights is not None:
        parts = read_clip_parts(openclip_weights, shapes, tshapes, trust_pickle=trust_pickle)
        if parts.text is None:
            raise CheckpointError("open_clip weight file has no complete text tower", path=openclip_weights)
        text, pretrained = parts.text, parts.visual
        sources["openclip_weights"] = parts.path
    finetuned: Dict[str, StateDict] = {}
    heads: Dict[str, Tuple[torch.Tensor, torch.Tensor]] = {}

    if layout == "task_vectors":
        mdir = root / model_name
        if not mdir.is_dir():
            raise CheckpointNotFoundError(f"model directory of {model_name!r} not found (task_vectors layout "
                                          f"<root>/<model>/...)", path=mdir)
        z = _first_existing([mdir / "zeroshot.pt", mdir / "nonlinear_zeroshot.pt"])
        if z is not None:
            parts = read_clip_parts(z, shapes, tshapes, trust_pickle=trust_pickle)
            pretrained = parts.visual
            text = text if text is not None else parts.text
            sources["pretrained"] = parts.path
        elif pretrained is None:
            raise CheckpointNotFoundError("θ0 not found (and no openclip_weights= given)", path=mdir / "zeroshot.pt")
        for t in tasks:
            cands = [mdir / d / f for d in (t, t + "Val") for f in ("finetuned.pt", "nonlinear_finetuned.pt")]
            f = _first_existing(cands)
            if f is None:
                raise CheckpointNotFoundError(f"fine-tuned checkpoint of task {t!r} not found", path=cands[0])
            finetuned[t] = read_clip_parts(f, shapes, tshapes, trust_pickle=trust_pickle).visual
            sources[t] = str(f)
            h = _first_existing([mdir / f"head_{t}.pt", mdir / f"head_{t}Val.pt"])
            if h is not None:
                heads[t] = _read_head(h, trust_pickle, cfg["embed_dim"])
                sources[f"head_{t}"] = str(h)
    else:
        from .real_tasks import HF_TASK_NAMES
        hn = hf_name or HF_MODEL_NAMES.get(model_name, model_name)

        def hf_dir(org: str, name: str) -> Path:
            cands = [root / org / name, root / f"models--{org}--{name}"]
            d = _first_existing(cands)
            if d is None:
                raise CheckpointNotFoundError(f"HF model directory {org}/{name} not found (also tried "
                                              f"{cands[1].name})", path=cands[0])
            return d

        d0 = hf_dir("openai", hn)
        check_hf_config(d0, cfg, quick_gelu)
        parts = read_clip_parts(d0, shapes, tshapes, trust_pickle=trust_pickle)
        pretrained = parts.visual
        text = text if text is not None else parts.text
        sources["pretrained"] = parts.path
        for t in tasks:
            suffix = HF_TASK_NAMES.get(t, t.lower())
            d = hf_dir("tanganke", f"{hn}_{suffix}")
            check_hf_config(d, cfg, quick_gelu)
            ft = read_clip_parts(d, shapes, tshapes, trust_pickle=trust_pickle, proj=pretrained["proj"])
            finetuned[t] = ft.visual
            sources[t] = ft.path
    assert pretrained is not None
    return Checkpoints(model_name=model_name, layout=layout, pretrained=pretrained, finetuned=finetuned, text=text,
                       head_weights=heads, sources=sources, model_config=cfg, quick_gelu=quick_gelu)


def convert_pickled_checkpoint(src: PathLike, dst: PathLike) -> Path:
    """Unpickle a trusted checkpoint (e.g. a task_vectors ``finetuned.pt`` holding an ImageEncoder module) and write
    its flat state dict to ``dst`` (``.safetensors`` or ``torch.save``), so later loads need no trust."""
    sd = _as_state_dict(read_file(src, trust_pickle=True), src)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.suffix == ".safetensors":
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in sd.items()}, str(dst))
    else:
        torch.save(sd, dst)
    return dst


# ----------------------------------------------------------------------------------------------------------------
# writing (used by the stand-in generator and by users converting checkpoints)
# ----------------------------------------------------------------------------------------------------------------
def save_hf_model_dir(directory: PathLike, hf_state_dict: Mapping[str, torch.Tensor],
                      config: Optional[Mapping[str, Any]] = None) -> Path:
    """Write ``model.safetensors`` (+ ``config.json``) the way ``save_pretrained`` lays them out."""
    from safetensors.torch import save_file
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in hf_state_dict.items()}, str(d / "model.safetensors"),
              metadata={"format": "pt"})
    if config is not None:
        (d / "config.json").write_text(json.dumps(dict(config), indent=2))
    return d


def hf_vision_config(model_cfg: Mapping[str, Any], quick_gelu: bool = True) -> Dict[str, Any]:
    """The ``vision_config`` part of an HF ``config.json`` matching an open_clip config."""
    v = model_cfg["vision_cfg"]
    return {"hidden_size": v["width"], "num_hidden_layers": v["layers"],
            "num_attention_heads": v["width"] // v.get("head_width", 64),
            "intermediate_size": int(v["width"] * v.get("mlp_ratio", 4.0)), "patch_size": v["patch_size"],
            "image_size": v["image_size"], "hidden_act": "quick_gelu" if quick_gelu else "gelu",
            "projection_dim": model_cfg["embed_dim"]}


__all__ = [
    "CheckpointError", "CheckpointNotFoundError", "CorruptCheckpointError", "UntrustedPickleError",
    "ArchitectureMismatchError", "Checkpoints", "ClipParts", "HF_MODEL_NAMES", "resolve_model_config",
    "build_openclip", "build_visual", "visual_shapes", "text_shapes", "hf_vision_to_openclip",
    "openclip_visual_to_hf", "hf_text_to_openclip", "openclip_text_to_hf", "openclip_to_hf_clip",
    "hf_clip_to_openclip", "split_openclip", "read_file", "read_clip_parts", "check_against", "resolve_hf_dir",
    "hf_weights_file", "check_hf_config", "detect_layout", "load_checkpoints", "save_hf_model_dir",
    "hf_vision_config", "convert_pickled_checkpoint",
]
