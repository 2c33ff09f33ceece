"""Reading Hugging Face ``save_pretrained`` folders (the real text and vision-language benchmarks' checkpoints)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import torch

from ..core.errors import CheckpointNotFoundError, CorruptCheckpointError

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def read_weights(folder: Path) -> Dict[str, torch.Tensor]:
    """The tensors of a ``save_pretrained`` folder (safetensors preferred; a ``.bin`` is read with
    ``weights_only=True``, so a file holding other Python objects is refused, never executed)."""
    for name in WEIGHT_FILES:
        path = folder / name
        if not path.is_file():
            continue
        try:
            if name.endswith(".safetensors"):
                from safetensors.torch import load_file

                return load_file(str(path))
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # a damaged or foreign file: say which and why
            raise CorruptCheckpointError(f"cannot read {path}: {e}", path=str(path)) from None
    if (folder / "model.safetensors.index.json").is_file() or list(folder.glob("*.safetensors.index.json")):
        raise CheckpointNotFoundError(
            f"{folder} holds a sharded checkpoint; save it unsharded (save_pretrained(..., max_shard_size='2GB'))",
            path=str(folder),
        )
    raise CheckpointNotFoundError(f"no {' or '.join(WEIGHT_FILES)} in {folder}", path=str(folder))


def read_config(folder: Path, config_class):
    """``config_class.from_pretrained(folder)`` (e.g. ``transformers.RobertaConfig``), offline, with a clear error
    when the folder has no ``config.json``."""
    if not (folder / "config.json").is_file():
        raise CheckpointNotFoundError(
            f"no config.json in {folder} (a save_pretrained folder has one)", path=str(folder)
        )
    return config_class.from_pretrained(str(folder), local_files_only=True)
