"""The glue-tiny model: a 4-layer RoBERTa encoder (:class:`Encoder`, state-dict keys as the ``roberta.*`` part of a
HF ``RobertaForSequenceClassification`` checkpoint, no pooler) and RoBERTa's classification head (:class:`Head`,
keys as its ``classifier.*`` without the prefix). Only the encoder is merged; heads stay per task."""

from __future__ import annotations

from transformers import RobertaConfig

from ..text import ClassificationHead, RobertaEncoder
from .data import BOS, EOS, PAD, VOCAB_SIZE

MAX_LEN = 64  # tokens per example, special tokens included


def tiny_config(max_len: int = MAX_LEN, **overrides) -> RobertaConfig:
    """RoBERTa-base's architecture scaled down: hidden 128, 4 layers, 4 heads, intermediate 512; positions for
    ``max_len`` tokens plus RoBERTa's offset of ``pad_token_id + 1``."""
    if max_len < 6:
        raise ValueError(f"max_len must be at least 6, got {max_len}")
    kw = dict(
        vocab_size=VOCAB_SIZE,
        hidden_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=512,
        max_position_embeddings=max_len + PAD + 1,
        type_vocab_size=1,
        pad_token_id=PAD,
        bos_token_id=BOS,
        eos_token_id=EOS,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
    )
    kw.update(overrides)
    return RobertaConfig(**kw)


# The encoder and head every text benchmark uses (catlib.benchmarks.text), under the names of this package.
Encoder = RobertaEncoder
Head = ClassificationHead
