"""The vl-tiny architecture: transformers' BLIP question-answering model at a tiny size (image 48 px in 8-px
patches, width 64, 4 vision layers, 2 text-encoder and 2 decoder layers, the word-level vocabulary of :mod:`.data`),
and the image preprocessing (uint8 (H, W, 3) → float (3, H, W), scaled to [-1, 1])."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from . import data as D


def tiny_config():
    from transformers import BlipConfig

    return BlipConfig(
        text_config=dict(
            vocab_size=len(D.VOCAB), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=256, max_position_embeddings=64, pad_token_id=D.PAD, bos_token_id=D.DEC,
            sep_token_id=D.SEP, eos_token_id=D.SEP, encoder_hidden_size=64, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        ),
        vision_config=dict(
            hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=256, image_size=D.SIZE,
            patch_size=8, attention_dropout=0.0,
        ),
    )  # fmt: skip


def pixels(images: Sequence[np.ndarray]) -> torch.Tensor:
    """uint8 images (H, W, 3) → (B, 3, H, W) float32 in [-1, 1]."""
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0
