"""Reading checkpoint files into open_clip-keyed state dicts, and writing them back.

Files are read with ``torch.load(weights_only=True)`` (``.safetensors`` with safetensors). A file holding pickled
Python objects (task_vectors' whole ``ImageEncoder`` modules, OpenAI's TorchScript archives) is only unpickled when
the caller passes ``trust_pickle=True`` (unpickling runs code named by the file), otherwise
:class:`UntrustedPickleError` says so; :func:`convert_pickled_checkpoint` turns such a file, once, into a plain state
dict. HF model directories (plain, or an HF cache entry ``models--org--name/snapshots/<hash>``) hold
``model.safetensors`` or ``pytorch_model.bin``.

A file is identified by its first bytes before it is parsed: empty → :class:`CorruptCheckpointError`; a raw Python
pickle (``pickle.dump`` of a whole model, as some released checkpoints are) → unpickled only with trust, else
:class:`UntrustedPickleError`; torch's zip or legacy format → ``torch.load``. Every tensor read for a model is then
checked for NaN / Inf (:class:`NonFiniteCheckpointError`, naming the file and the first such key).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import pickle
import pickletools
import re
import types
import warnings
import zipfile
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import torch
from torch import nn

from ....core.io import atomic_path, atomic_write_text
from ....core.errors import (
    ArchitectureMismatchError,
    CheckpointError,
    CheckpointNotFoundError,
    CorruptCheckpointError,
    NonFiniteError,
    UntrustedPickleError,
)
from .keymaps import StateDict, hf_text_to_openclip, hf_vision_to_openclip, split_openclip

PathLike = Union[str, os.PathLike]


class NonFiniteCheckpointError(CheckpointError, NonFiniteError):
    """A checkpoint whose floating-point tensors hold NaN or Inf (``path`` and the first such ``key`` are
    attributes). Both a :class:`~catlib.core.errors.CheckpointError` and a
    :class:`~catlib.core.errors.NonFiniteError`."""


def check_finite(sd: Mapping[str, torch.Tensor], path: PathLike, what: str) -> None:
    """Raise :class:`NonFiniteCheckpointError` naming ``path`` and the first key (in ``sd``'s order) whose floating
    tensor holds NaN or Inf."""
    for k, v in sd.items():
        if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all()):
            n_nan, n_inf = int(torch.isnan(v).sum()), int(torch.isinf(v).sum())
            raise NonFiniteCheckpointError(
                f"{what} holds non-finite weights ({n_nan} NaN, {n_inf} Inf of {v.numel()} values in this tensor; "
                f"a diverged fine-tune or a damaged file): refused, since one NaN spreads through every merge. "
                f"Replace the file (download or export it again)",
                path=path,
                key=k,
            )


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


def _reason(e: BaseException) -> str:
    """``Type: first meaningful line`` of an exception (torch's weights-only errors bury it under a preamble; an
    ``EOFError`` may have no message at all)."""
    msg = str(e)
    if "WeightsUnpickler error:" in msg:
        msg = msg.split("WeightsUnpickler error:", 1)[1]
    lines = [ln.strip() for ln in msg.splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[0][:200]}" if lines else type(e).__name__


# torch.save's legacy (non-zip) format starts with a pickled magic number; a raw ``pickle.dump`` does not
_TORCH_LEGACY_MAGIC = b"\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19"


def _sniff(path: Path) -> str:
    """``"empty"``, ``"zip"`` (torch.save / TorchScript), ``"torch_legacy"``, ``"pickle"`` (a raw binary pickle)
    or ``"other"``, from the first bytes."""
    with open(path, "rb") as f:
        head = f.read(64)
    if not head:
        return "empty"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "torch_legacy" if _TORCH_LEGACY_MAGIC in head[:32] else "pickle"
    return "other"


def _first_pickled_class(path: Path) -> Optional[str]:
    """The first class or function a pickle names (``torch.nn.modules.linear.Linear``), read without unpickling;
    None when there is none in its first opcodes or the file cannot be parsed."""
    strings: list = []
    try:
        with open(path, "rb") as f:
            for n, (op, arg, _) in enumerate(pickletools.genops(f)):
                if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"):
                    strings.append(arg)
                elif op.name == "GLOBAL":
                    return str(arg).replace(" ", ".")
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    return f"{strings[-2]}.{strings[-1]}"
                if n > 1000:
                    return None
    except Exception:  # truncated or not a pickle: the caller reports that
        return None
    return None


def _read_raw_pickle(path: Path, trust_pickle: bool) -> Any:
    """A file written with ``pickle.dump`` (not ``torch.save``): torch.load cannot read it (no magic number)."""
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        complete = f.read(1) == b"."  # pickle's STOP opcode ends every complete pickle
    if not complete:
        raise CorruptCheckpointError(
            "truncated pickle file: it does not end with pickle's STOP opcode (an interrupted download or copy); "
            "fetch the file again",
            path=path,
        )
    what = _first_pickled_class(path) or "Python objects"
    if not trust_pickle:
        raise UntrustedPickleError(
            f"the file is a raw Python pickle (written with pickle.dump, not torch.save; it holds {what}): "
            f"torch.load cannot read it, and unpickling it runs code the file names, so it is only done with "
            f"--trust-pickle (Python: trust_pickle=True), for files from a source you trust. Or convert it once to a "
            f"plain state dict with catlib.benchmarks.clip.checkpoints.convert_pickled_checkpoint(src, dst)",
            path=path,
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's storage unpickling warns about weights_only
            with open(path, "rb") as f:
                return _lenient_pickle_module().load(f)
    except Exception as e:
        raise CorruptCheckpointError(f"cannot unpickle trusted raw pickle file ({_reason(e)})", path=path) from e


def read_file(path: PathLike, trust_pickle: bool = False) -> Any:
    """Read one checkpoint file into Python objects (a dict of tensors, or an ``nn.Module`` when trusted).

    ``.safetensors`` → safetensors; a raw Python pickle (``pickle.dump`` of a whole model) → unpickled only with
    ``trust_pickle`` (unimportable classes replaced by placeholders); anything else →
    ``torch.load(weights_only=True)``; a torch file that holds pickled objects other than tensors, or a TorchScript
    archive (OpenAI's original CLIP files), raises :class:`UntrustedPickleError` unless ``trust_pickle`` (then it
    is unpickled, or loaded with ``torch.jit.load``). Missing → :class:`CheckpointNotFoundError`; empty, truncated
    or unreadable → :class:`CorruptCheckpointError`, naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointNotFoundError("checkpoint file not found", path=path)
    if path.is_dir():
        raise CheckpointError("expected a file, found a directory", path=path)
    try:
        kind = _sniff(path)
    except OSError as e:
        raise CorruptCheckpointError(f"cannot read the file ({_reason(e)})", path=path) from e
    if kind == "empty":
        raise CorruptCheckpointError(
            "empty file (0 bytes): an interrupted download or copy; fetch the file again", path=path
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as e:  # safetensors raises its own SafetensorError / OSError
            raise CorruptCheckpointError(
                f"unreadable safetensors file, truncated or not a safetensors file ({_reason(e)})", path=path
            ) from e
    if kind == "pickle":
        return _read_raw_pickle(path, trust_pickle)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*TorchScript archive.*")
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        if not _looks_like_pickled_objects(msg):
            raise CorruptCheckpointError(
                f"unreadable torch file, truncated or not a checkpoint ({_reason(e)})", path=path
            ) from e
        found = re.search(r"GLOBAL ([\w.]+)", msg)
        what = found.group(1) if found else "Python objects"
        if not trust_pickle:
            raise UntrustedPickleError(
                f"the file holds a pickled module ({what}), not a plain state dict. Unpickling it runs code the file "
                f"names, so it is only done with --trust-pickle (Python: trust_pickle=True), for files from a source "
                f"you trust (the task_vectors release does ship pickled ImageEncoder modules). Or convert it once to "
                f"a plain state dict with catlib.benchmarks.clip.checkpoints.convert_pickled_checkpoint(src, dst)",
                path=path,
            ) from e
    except RuntimeError as e:
        if "TorchScript" not in str(e):
            raise CorruptCheckpointError(
                f"unreadable torch file, truncated or not a checkpoint ({_reason(e)})", path=path
            ) from e
        if not trust_pickle:
            raise UntrustedPickleError(
                "the file is a TorchScript archive (like OpenAI's original CLIP .pt files), not a plain state dict; "
                "loading it runs the code it contains, so it is only done with --trust-pickle (Python: "
                "trust_pickle=True). open_clip's safetensors / .bin weight files need no trust",
                path=path,
            ) from e
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return torch.jit.load(str(path), map_location="cpu").state_dict()
        except Exception as e2:
            raise CorruptCheckpointError(f"cannot load trusted TorchScript archive ({_reason(e2)})", path=path) from e2
    except (EOFError, zipfile.BadZipFile, OSError, ValueError, IndexError, KeyError, TypeError) as e:
        raise CorruptCheckpointError(
            f"unreadable torch file, truncated or not a checkpoint ({_reason(e)})", path=path
        ) from e
    # trusted pickle
    try:
        return torch.load(str(path), map_location="cpu", weights_only=False, pickle_module=_lenient_pickle_module())
    except Exception as e:
        raise CorruptCheckpointError(f"cannot unpickle trusted file ({_reason(e)})", path=path) from e


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
        sd[k[len("module.") :] if k.startswith("module.") else k] = v
    if not sd:
        raise CheckpointError("file holds no tensors", path=path)
    return sd


def _strip_to_openclip_full(sd: StateDict) -> StateDict:
    """Remove the ``model.`` prefix of task_vectors' ImageEncoder (``model.visual.conv1.weight``)."""
    if any(k.startswith("model.") for k in sd):
        return {k[len("model.") :]: v for k, v in sd.items() if k.startswith("model.")}
    return sd


def _is_hf(sd: Mapping[str, torch.Tensor]) -> bool:
    return any(k.endswith("embeddings.patch_embedding.weight") for k in sd)


def check_against(sd: Mapping[str, torch.Tensor], shapes: Mapping[str, torch.Size], path: PathLike, what: str) -> None:
    """Raise :class:`ArchitectureMismatchError` naming the file and the first missing / unexpected / misshaped key."""
    missing = sorted(set(shapes) - set(sd))
    unexpected = sorted(set(sd) - set(shapes))
    if missing or unexpected:
        key = missing[0] if missing else unexpected[0]
        raise ArchitectureMismatchError(
            f"{what} does not fit the architecture: {len(missing)} missing key(s) {missing[:3]}, "
            f"{len(unexpected)} unexpected key(s) {unexpected[:3]}",
            path=path,
            key=key,
        )
    for k in sorted(shapes):
        if tuple(sd[k].shape) != tuple(shapes[k]):
            raise ArchitectureMismatchError(
                f"{what}: wrong shape {tuple(sd[k].shape)}, the architecture has {tuple(shapes[k])}", path=path, key=k
            )


def _fp32(sd: Mapping[str, torch.Tensor]) -> StateDict:
    return {k: (v.detach().float() if v.is_floating_point() else v.detach()).contiguous() for k, v in sd.items()}


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


# ----------------------------------------------------------------------------------------------------------------
# one file -> open_clip parts
# ----------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class ClipParts:
    """What one file gave: ``visual`` (open_clip visual keys, fp32), ``text`` (open_clip text keys incl.
    ``logit_scale`` when the file has a complete text tower, else ``None``) and the ``path``."""

    visual: StateDict
    text: Optional[StateDict]
    path: str
    activation: Optional[str] = None  # "quick_gelu" / "gelu" when the file held a whole module, else unknown


def module_activation(obj: Any) -> Optional[str]:
    """The MLP activation of a pickled model (``"quick_gelu"`` for open_clip's ``QuickGELU``, ``"gelu"`` for
    ``nn.GELU``), or None for a state dict (whose weights do not say which activation they were trained with)."""
    if not isinstance(obj, nn.Module):
        return None
    names = {type(m).__name__ for m in obj.modules()}
    if "QuickGELU" in names:
        return "quick_gelu"
    return "gelu" if "GELU" in names else None


def read_clip_parts(
    path: PathLike,
    shapes: Mapping[str, torch.Size],
    text_shapes_: Mapping[str, torch.Size],
    trust_pickle: bool = False,
    proj: Optional[torch.Tensor] = None,
) -> ClipParts:
    """Read one file (or HF model directory) and convert it to open_clip keys, checked against ``shapes``.

    Handles: task_vectors ImageEncoder (pickled or state dict, ``model.visual.*``), open_clip full CLIP state dicts
    (``visual.*`` + text), bare visual state dicts (``conv1.weight``...), HF CLIPModel / CLIPVisionModel
    (``vision_model.*`` or unprefixed). ``proj`` (open_clip (W, E)) fills a missing ``proj`` (HF vision models).
    """
    p = Path(path)
    if p.is_dir():
        p = hf_weights_file(p)
    obj = read_file(p, trust_pickle=trust_pickle)
    activation = module_activation(obj)
    sd = _as_state_dict(obj, p)
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
        raise ArchitectureMismatchError(
            "no visual projection: the file is a CLIPVisionModel without "
            "visual_projection and no θ0 projection was given",
            path=p,
            key="visual_projection.weight",
        )
    visual = _fp32(visual)
    check_against(visual, shapes, p, "visual tower")
    check_finite(visual, p, "visual tower")
    if text is not None:
        text = {k: v for k, v in text.items() if torch.is_tensor(v) and v.is_floating_point()}
        if set(text) == set(text_shapes_):
            check_against(text, text_shapes_, p, "text tower")
            text = _fp32(text)
            check_finite(text, p, "text tower")
        else:  # e.g. task_vectors' ImageEncoder(keep_lang=False) deletes the text transformer
            text = None
    return ClipParts(visual, text, str(p), activation)


# ----------------------------------------------------------------------------------------------------------------
# converting and writing (used by the stand-in generator and by users converting checkpoints)
# ----------------------------------------------------------------------------------------------------------------
def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return a.resolve() == b.resolve()


def convert_pickled_checkpoint(src: PathLike, dst: PathLike) -> Path:
    """Unpickle a trusted checkpoint (e.g. a task_vectors ``finetuned.pt`` holding an ImageEncoder module) and write
    its flat state dict to ``dst`` (``.safetensors`` or ``torch.save``) atomically, so later loads need no trust.
    Refuses (ValueError) a ``dst`` that is ``src`` itself: the input is never overwritten."""
    src, dst = Path(src), Path(dst)
    if _same_file(src, dst):
        raise ValueError(f"convert_pickled_checkpoint: output {dst} is the input {src}; choose another output path")
    sd = _as_state_dict(read_file(src, trust_pickle=True), src)
    with atomic_path(dst) as tmp:
        if dst.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp))
        else:
            torch.save(sd, tmp)
    return dst


def save_hf_model_dir(
    directory: PathLike, hf_state_dict: Mapping[str, torch.Tensor], config: Optional[Mapping[str, Any]] = None
) -> Path:
    """Write ``model.safetensors`` (+ ``config.json``) the way ``save_pretrained`` lays them out, each atomically."""
    from safetensors.torch import save_file

    d = Path(directory)
    with atomic_path(d / "model.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in hf_state_dict.items()}, str(tmp), metadata={"format": "pt"})
    if config is not None:
        atomic_write_text(d / "config.json", json.dumps(dict(config), indent=2))
    return d
