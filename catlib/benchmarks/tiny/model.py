"""The tiny benchmark's encoder (open_clip's own ``VisionTransformer``) and its frozen prototype heads."""

from __future__ import annotations

from typing import Dict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# preprocessing: uint8 (N, 32, 32, 3) -> float (N, 3, 32, 32), per-channel (x / 255 - MEAN) / STD
MEAN, STD = 0.5, 0.25


def to_tensor(x_uint8: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(x_uint8)).permute(0, 3, 1, 2).float()
    return (t / 255.0 - MEAN) / STD


def build_encoder(model_cfg: Dict) -> nn.Module:
    """``open_clip.transformer.VisionTransformer`` with the given config: the module structure of CLIP's ViT
    (conv1, class/positional embedding, ln_pre, resblocks with nn.MultiheadAttention, ln_post, proj), so merge
    code written for real ViT-B/32 state dicts applies unchanged."""
    from open_clip.transformer import VisionTransformer

    return VisionTransformer(
        image_size=model_cfg["image_size"],
        patch_size=model_cfg["patch_size"],
        width=model_cfg["width"],
        layers=model_cfg["layers"],
        heads=model_cfg["heads"],
        mlp_ratio=model_cfg["mlp_ratio"],
        output_dim=model_cfg["output_dim"],
    )


class PrototypeHead(nn.Module):
    """Frozen zero-shot-style head: ``logit_scale * normalize(features) @ normalize(prototypes).T``.

    The prototypes ``(classes, output_dim)`` are the normalised mean θ0 feature of a few training images of each
    class (``build.train.make_heads``; the role CLIP's class-name text embeddings play: one imperfect description
    per class) and are fixed before any fine-tuning; every model of the benchmark shares them.
    """

    def __init__(self, prototypes: torch.Tensor, logit_scale: float):
        super().__init__()
        self.register_buffer("prototypes", F.normalize(prototypes.float(), dim=-1))
        self.logit_scale = float(logit_scale)

    @property
    def n_classes(self) -> int:
        return self.prototypes.shape[0]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.logit_scale * F.normalize(features.float(), dim=-1) @ self.prototypes.t()

    def extra_repr(self) -> str:
        return f"classes={self.prototypes.shape[0]}, dim={self.prototypes.shape[1]}, logit_scale={self.logit_scale}"
