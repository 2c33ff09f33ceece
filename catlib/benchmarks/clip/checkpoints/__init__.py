"""Real CLIP checkpoints → one in-memory form: open_clip visual-tower state dicts (fp32, CPU) + frozen heads.

* :mod:`.keymaps`: HF ``CLIPModel`` / ``CLIPVisionModel`` ↔ open_clip state-dict keys (the full table is there);
* :mod:`.readers`: reading files (torch, safetensors, trusted pickles, HF model directories) into open_clip keys,
  converting pickled checkpoints, writing HF model directories;
* :mod:`.layouts`: open_clip architectures, the ``"task_vectors"`` and ``"hf"`` layouts, :class:`Checkpoints` and
  :func:`load_checkpoints`.

Every name is importable from this package (``from catlib.benchmarks.clip.checkpoints import load_checkpoints``).
"""

from __future__ import annotations

from ....core.errors import (
    ArchitectureMismatchError,
    CheckpointError,
    CheckpointNotFoundError,
    CorruptCheckpointError,
    UntrustedPickleError,
)
from .keymaps import (
    hf_clip_to_openclip,
    hf_text_to_openclip,
    hf_vision_to_openclip,
    openclip_text_to_hf,
    openclip_to_hf_clip,
    openclip_visual_to_hf,
    split_openclip,
)
from .readers import (
    ClipParts,
    NonFiniteCheckpointError,
    check_against,
    check_finite,
    convert_pickled_checkpoint,
    hf_weights_file,
    module_activation,
    read_clip_parts,
    read_file,
    resolve_hf_dir,
    save_hf_model_dir,
)
from .layouts import (
    HF_MODEL_NAMES,
    Checkpoints,
    build_openclip,
    build_visual,
    check_activation,
    check_hf_config,
    detect_layout,
    hf_vision_config,
    load_checkpoints,
    resolve_model_config,
    resolve_quick_gelu,
    text_shapes,
    visual_shapes,
)

# also importable from here, as they were from the old catlib.checkpoints (not in __all__)
from ....core.errors import CatlibError  # noqa: F401
from .keymaps import StateDict  # noqa: F401
from .layouts import OPENCLIP_CONFIG_FILE  # noqa: F401
from .readers import PathLike  # noqa: F401

__all__ = [
    "CheckpointError",
    "CheckpointNotFoundError",
    "CorruptCheckpointError",
    "UntrustedPickleError",
    "ArchitectureMismatchError",
    "NonFiniteCheckpointError",
    "Checkpoints",
    "ClipParts",
    "HF_MODEL_NAMES",
    "resolve_model_config",
    "build_openclip",
    "build_visual",
    "visual_shapes",
    "text_shapes",
    "hf_vision_to_openclip",
    "openclip_visual_to_hf",
    "hf_text_to_openclip",
    "openclip_text_to_hf",
    "openclip_to_hf_clip",
    "hf_clip_to_openclip",
    "split_openclip",
    "read_file",
    "read_clip_parts",
    "check_against",
    "check_finite",
    "resolve_hf_dir",
    "hf_weights_file",
    "check_hf_config",
    "check_activation",
    "module_activation",
    "resolve_quick_gelu",
    "detect_layout",
    "load_checkpoints",
    "save_hf_model_dir",
    "hf_vision_config",
    "convert_pickled_checkpoint",
]
