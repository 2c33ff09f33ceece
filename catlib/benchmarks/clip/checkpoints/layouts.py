"""The open_clip architectures and the two on-disk checkpoint layouts, read into one :class:`Checkpoints`.

Two on-disk layouts are read (``baselines.md`` 1.2):

* ``"task_vectors"`` (Ilharco et al.; also AdaMerging, TIES-ViT, PCB, WUDI)::

      <root>/<model>/zeroshot.pt                 θ0 (an ImageEncoder; its .model is an open_clip CLIP)
      <root>/<model>/<Task>/finetuned.pt         θ_t          (<Task> or <Task>Val; nonlinear_finetuned.pt too)
      <root>/<model>/head_<Task>.pt              frozen zero-shot head (ClassificationHead), optional

  with ``<model>`` the open_clip name (``ViT-B-32``). Files are pickled whole modules (keys ``model.visual.*``) or
  plain state dicts (some written with a raw ``pickle.dump``). They are read with ``torch.load(weights_only=True)``;
  a pickled module is only unpickled when the caller passes ``trust_pickle=True`` (CLI: ``--trust-pickle``;
  unpickling runs code named by the file), otherwise :class:`UntrustedPickleError` says so.

* ``"hf"`` (FusionBench): a directory per model, either plain (``<root>/openai/clip-vit-base-patch32``,
  ``<root>/tanganke/clip-vit-base-patch32_<task>``) or an HF cache entry
  (``<root>/models--tanganke--clip-vit-base-patch32_svhn/snapshots/<hash>/``), holding ``model.safetensors``
  (or ``pytorch_model.bin``) and ``config.json``. θ0 is the full ``CLIPModel`` (vision + text + projections); the
  fine-tuned models are ``CLIPVisionModel`` s (no ``visual_projection``: θ0's is used, as FusionBench does).

plus open_clip's own weight file (a full CLIP state dict; ``openclip_weights=``): its visual part can be θ0 and its
text tower builds the zero-shot heads.

OpenAI CLIP uses QuickGELU; ``open_clip.create_model("ViT-B-32")`` without the ``openai`` tag builds plain GELU. The
keys are the same, the outputs are not. ``quick_gelu=None`` (the default here) takes the model config's
``quick_gelu`` (open_clip's ``*-quickgelu`` configs set it; the named OpenAI benchmarks pass True); a file that
says otherwise (an HF ``config.json``'s ``hidden_act``, a pickled module's activation) is an
:class:`ArchitectureMismatchError` naming the switch (CLI ``--quick-gelu`` / ``--no-quick-gelu``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ....core.errors import ArchitectureMismatchError, CheckpointError, CheckpointNotFoundError, CorruptCheckpointError
from .keymaps import StateDict
from .readers import (
    ClipParts,
    PathLike,
    _as_state_dict,
    check_finite,
    read_clip_parts,
    read_file,
    resolve_hf_dir,
)

# open_clip model name -> the HF repo name used by openai/ and tanganke/ (FusionBench).
HF_MODEL_NAMES: Dict[str, str] = {
    "ViT-B-32": "clip-vit-base-patch32",
    "ViT-B-16": "clip-vit-base-patch16",
    "ViT-L-14": "clip-vit-large-patch14",
}
OPENCLIP_CONFIG_FILE = "open_clip_config.json"


# ----------------------------------------------------------------------------------------------------------------
# open_clip architectures
# ----------------------------------------------------------------------------------------------------------------
def resolve_model_config(
    model_name: str, model_config: Union[None, Mapping, PathLike] = None, search_dirs: Sequence[PathLike] = ()
) -> Dict[str, Any]:
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
                f"{OPENCLIP_CONFIG_FILE} in {[str(d) for d in search_dirs]}; pass model_config="
            )
    for k in ("embed_dim", "vision_cfg", "text_cfg"):
        if k not in cfg:
            raise ArchitectureMismatchError(f"open_clip config of {model_name!r} lacks {k!r}")
    return cfg


def resolve_quick_gelu(quick_gelu: Optional[bool], cfg: Mapping[str, Any]) -> bool:
    """``quick_gelu`` when given, else the model config's ``quick_gelu`` (False when it has none)."""
    return bool(cfg.get("quick_gelu", False)) if quick_gelu is None else bool(quick_gelu)


def build_openclip(
    model_name: str,
    model_config: Union[None, Mapping, PathLike] = None,
    quick_gelu: Optional[bool] = True,
    search_dirs: Sequence[PathLike] = (),
) -> nn.Module:
    """A randomly initialised fp32 open_clip ``CLIP`` (both towers) on CPU, in eval mode."""
    from open_clip.model import CLIP

    cfg = dict(resolve_model_config(model_name, model_config, search_dirs))
    cfg.pop("custom_text", None)
    cfg["quick_gelu"] = resolve_quick_gelu(quick_gelu, cfg)
    if "hf_model_name" in cfg.get("text_cfg", {}) or "timm_model_name" in cfg.get("vision_cfg", {}):
        raise ArchitectureMismatchError(f"{model_name!r}: only open_clip's own ViT/text towers are supported")
    return CLIP(**cfg).eval()


def build_visual(
    model_name: str,
    model_config: Union[None, Mapping, PathLike] = None,
    quick_gelu: Optional[bool] = True,
    search_dirs: Sequence[PathLike] = (),
) -> nn.Module:
    """Only the vision tower (open_clip ``VisionTransformer``), without building the text tower."""
    from open_clip.model import CLIPVisionCfg, _build_vision_tower

    cfg = resolve_model_config(model_name, model_config, search_dirs)
    qg = resolve_quick_gelu(quick_gelu, cfg)
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
# HF config.json <-> the open_clip config
# ----------------------------------------------------------------------------------------------------------------
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
    expected = {
        "hidden_size": width,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": mlp,
        "patch_size": v["patch_size"],
        "image_size": v["image_size"],
        "hidden_act": "quick_gelu" if quick_gelu else "gelu",
    }
    for k, want in expected.items():
        if k in vc and vc[k] != want:
            fix = f"; {_ACTIVATION_FIX}" if k == "hidden_act" else ""
            raise ArchitectureMismatchError(
                f"config.json has {k}={vc[k]!r}, the open_clip architecture needs {want!r}{fix}", path=f, key=k
            )


_ACTIVATION_FIX = (
    "OpenAI CLIP weights use QuickGELU, most other open_clip weights GELU: load with --quick-gelu or "
    "--no-quick-gelu to match the file (Python: quick_gelu=True / False)"
)


def check_activation(parts: ClipParts, quick_gelu: bool) -> None:
    """A file that held a whole pickled model says which activation it was trained with: refuse a mismatch."""
    want = "quick_gelu" if quick_gelu else "gelu"
    if parts.activation is not None and parts.activation != want:
        raise ArchitectureMismatchError(
            f"the pickled model uses {parts.activation}, but the benchmark was loaded with quick_gelu={quick_gelu}; "
            + _ACTIVATION_FIX,
            path=parts.path,
        )


def hf_vision_config(model_cfg: Mapping[str, Any], quick_gelu: bool = True) -> Dict[str, Any]:
    """The ``vision_config`` part of an HF ``config.json`` matching an open_clip config."""
    v = model_cfg["vision_cfg"]
    return {
        "hidden_size": v["width"],
        "num_hidden_layers": v["layers"],
        "num_attention_heads": v["width"] // v.get("head_width", 64),
        "intermediate_size": int(v["width"] * v.get("mlp_ratio", 4.0)),
        "patch_size": v["patch_size"],
        "image_size": v["image_size"],
        "hidden_act": "quick_gelu" if quick_gelu else "gelu",
        "projection_dim": model_cfg["embed_dim"],
    }


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
        raise ArchitectureMismatchError(
            f"head weight has shape {tuple(w.shape)}, expected (classes, {embed_dim})", path=path, key="weight"
        )
    b = sd.get("bias", torch.zeros(w.shape[0])).float()
    if b.shape != (w.shape[0],):
        raise ArchitectureMismatchError(
            f"head bias has shape {tuple(b.shape)}, expected ({w.shape[0]},)", path=path, key="bias"
        )
    check_finite({"weight": w, "bias": b}, path, "head")
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
        f"or {r / 'openai' / hn} / {r / ('models--openai--' + hn)} (HF layout)",
        path=r,
    )


def load_checkpoints(
    root: PathLike,
    model_name: str,
    tasks: Sequence[str],
    layout: str = "auto",
    trust_pickle: bool = False,
    openclip_weights: Optional[PathLike] = None,
    model_config: Union[None, Mapping, PathLike] = None,
    quick_gelu: Optional[bool] = None,
    hf_name: Optional[str] = None,
) -> Checkpoints:
    """Load θ0, the fine-tuned visual towers of ``tasks`` and whatever head sources exist.

    ``layout``: ``"task_vectors"``, ``"hf"`` or ``"auto"`` (:func:`detect_layout`). ``openclip_weights``: a local
    open_clip weight file (full CLIP state dict); its text tower builds zero-shot heads and its visual part is θ0
    when the layout has no ``zeroshot.pt``. ``hf_name``: the HF repo name (default from :data:`HF_MODEL_NAMES`,
    else ``model_name``). Every file is refused with a :class:`CheckpointError` naming it when it is empty or
    truncated (:class:`CorruptCheckpointError`), holds pickled objects without ``trust_pickle``
    (:class:`UntrustedPickleError`), or holds NaN / Inf weights (:class:`NonFiniteCheckpointError`, with the key).
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
    quick_gelu = resolve_quick_gelu(quick_gelu, cfg)
    shapes = visual_shapes(model_name, cfg)
    tshapes = text_shapes(model_name, cfg)

    def read_parts(path: PathLike, proj: Optional[torch.Tensor] = None) -> ClipParts:
        parts = read_clip_parts(path, shapes, tshapes, trust_pickle=trust_pickle, proj=proj)
        check_activation(parts, quick_gelu)
        return parts

    sources: Dict[str, str] = {}
    text: Optional[StateDict] = None
    pretrained: Optional[StateDict] = None
    if openclip_weights is not None:
        parts = read_parts(openclip_weights)
        if parts.text is None:
            raise CheckpointError("open_clip weight file has no complete text tower", path=openclip_weights)
        text, pretrained = parts.text, parts.visual
        sources["openclip_weights"] = parts.path
    finetuned: Dict[str, StateDict] = {}
    heads: Dict[str, Tuple[torch.Tensor, torch.Tensor]] = {}

    if layout == "task_vectors":
        mdir = root / model_name
        if not mdir.is_dir():
            raise CheckpointNotFoundError(
                f"model directory of {model_name!r} not found (task_vectors layout <root>/<model>/...)", path=mdir
            )
        z = _first_existing([mdir / "zeroshot.pt", mdir / "nonlinear_zeroshot.pt"])
        if z is not None:
            parts = read_parts(z)
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
            finetuned[t] = read_parts(f).visual
            sources[t] = str(f)
            h = _first_existing([mdir / f"head_{t}.pt", mdir / f"head_{t}Val.pt"])
            if h is not None:
                heads[t] = _read_head(h, trust_pickle, cfg["embed_dim"])
                sources[f"head_{t}"] = str(h)
    else:
        from ..tasks import HF_TASK_NAMES

        hn = hf_name or HF_MODEL_NAMES.get(model_name, model_name)

        def hf_dir(org: str, name: str) -> Path:
            cands = [root / org / name, root / f"models--{org}--{name}"]
            d = _first_existing(cands)
            if d is None:
                raise CheckpointNotFoundError(
                    f"HF model directory {org}/{name} not found (also tried {cands[1].name})", path=cands[0]
                )
            return d

        d0 = hf_dir("openai", hn)
        check_hf_config(d0, cfg, quick_gelu)
        parts = read_parts(d0)
        pretrained = parts.visual
        text = text if text is not None else parts.text
        sources["pretrained"] = parts.path
        for t in tasks:
            suffix = HF_TASK_NAMES.get(t, t.lower())
            d = hf_dir("tanganke", f"{hn}_{suffix}")
            check_hf_config(d, cfg, quick_gelu)
            ft = read_parts(d, proj=pretrained["proj"])
            finetuned[t] = ft.visual
            sources[t] = ft.path
    assert pretrained is not None
    return Checkpoints(
        model_name=model_name,
        layout=layout,
        pretrained=pretrained,
        finetuned=finetuned,
        text=text,
        head_weights=heads,
        sources=sources,
        model_config=cfg,
        quick_gelu=quick_gelu,
    )
