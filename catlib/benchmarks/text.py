"""What the text benchmarks share (the real RoBERTa/GLUE one and the embedded ``glue-tiny``): the GLUE tasks of the
paper's Table 3, a RoBERTa encoder and classification head with the keys of a Hugging Face checkpoint, and
:class:`TextBenchmark`, whose splits are tokenized examples batched with padding.

Conventions (beside :mod:`catlib.benchmarks.base`'s):

* An example is a list of token ids, special tokens included (RoBERTa: ``<s> A </s></s> B </s>``); a batch is a
  token batch ``{"input_ids": (B, T), "attention_mask": (B, T)}`` padded with the tokenizer's pad id to the
  longest example of the batch (:func:`pad_batch`), ``attention_mask`` 0 on padding.
* The merged state dict is the encoder's, keys ``roberta.embeddings...`` and ``roberta.encoder.layer.<i>...`` (the
  ``roberta.*`` part of ``RobertaForSequenceClassification``; no pooler). Heads are task-specific and never merged:
  each expert's own head (``classifier.*`` of its checkpoint, without the prefix) scores every model on its task.
* Each task reports GLUE's number for it (:data:`catlib.benchmarks.metrics.GLUE_METRIC`): CoLA Matthews correlation,
  MRPC and QQP the mean of accuracy and F1, STS-B the mean of Pearson and Spearman correlation (a regression head
  with one output), the others accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from ..core.inputs import pad_batch
from .base import Benchmark
from .metrics import GLUE_METRIC


@dataclass(frozen=True)
class GlueTask:
    """One GLUE task: ``labels`` classes (1: a regression score), the text columns of its data files (the ``glue``
    dataset's names; ``b`` None for one sentence) and the name of its validation split there."""

    name: str
    analogue: str
    labels: int
    a: str
    b: Optional[str]
    validation: str = "validation"

    @property
    def loss(self) -> str:
        return "regression" if self.labels == 1 else "classification"


# The paper's Table 3 columns, in its order.
GLUE_TASKS: Dict[str, GlueTask] = {
    t.name: t
    for t in (
        GlueTask("cola", "CoLA", 2, "sentence", None),
        GlueTask("mnli", "MNLI", 3, "premise", "hypothesis", "validation_matched"),
        GlueTask("mrpc", "MRPC", 2, "sentence1", "sentence2"),
        GlueTask("qnli", "QNLI", 2, "question", "sentence"),
        GlueTask("qqp", "QQP", 2, "question1", "question2"),
        GlueTask("rte", "RTE", 2, "sentence1", "sentence2"),
        GlueTask("sst2", "SST-2", 2, "sentence", None),
        GlueTask("stsb", "STS-B", 1, "sentence1", "sentence2"),
    )
}


class RobertaEncoder(nn.Module):
    """A RoBERTa encoder without pooler (``self.roberta``: transformers' ``RobertaModel``); ``forward(input_ids,
    attention_mask)`` (B, T) → the last hidden state of the ``<s>`` token, (B, hidden): what RoBERTa's
    classification head reads."""

    def __init__(self, config):
        super().__init__()
        from transformers import RobertaModel

        self.roberta = RobertaModel(config, add_pooling_layer=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.roberta(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[:, 0]


class ClassificationHead(nn.Module):
    """RoBERTa's classification head: dropout → dense (hidden → hidden) → tanh → dropout → out_proj (hidden →
    labels); (B, hidden) → (B, labels). Keys ``dense.*``, ``out_proj.*`` (a checkpoint's ``classifier.*``)."""

    def __init__(self, hidden: int, labels: int, dropout: float = 0.1):
        super().__init__()
        if hidden < 1 or labels < 1:
            raise ValueError(f"a classification head needs hidden ≥ 1 and labels ≥ 1, got {hidden} and {labels}")
        self.dense = nn.Linear(hidden, hidden)
        self.out_proj = nn.Linear(hidden, labels)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.dropout(torch.tanh(self.dense(self.dropout(h)))))


class TextBenchmark(Benchmark):
    """A benchmark of GLUE-like tasks on token batches. A subclass sets ``name``, ``tasks``, ``all_tasks``,
    ``pretrained``, ``finetuned``, ``heads``, ``mtl``, ``pad_id``, ``task_specs`` ({task: :class:`GlueTask`}),
    ``_make_module`` (a callable returning a fresh encoder) and implements :meth:`examples`."""

    pad_id: int = 1
    task_specs: Dict[str, GlueTask]
    _make_module: Callable[[], nn.Module]

    def examples(self, task: str, split: str) -> Tuple[List[List[int]], torch.Tensor]:
        """(token-id lists, labels: int64 classes or float32 scores) of one task and split."""
        raise NotImplementedError

    def build_module(self) -> nn.Module:
        module = self._make_module()
        module.load_state_dict(self.pretrained)
        return module.to(self.device).eval()

    def loader(self, task: str, split: str, batch_size: int = 256):
        """The split in order, ``batch_size`` examples a batch, each padded to its own longest example."""
        ids, y = self.examples(task, split)
        return [
            (pad_batch(ids[i : i + batch_size], self.pad_id), y[i : i + batch_size])
            for i in range(0, len(ids), batch_size)
        ]

    def exemplars(self, task: str, n: int, seed: int = 0, labelled: bool = False):
        """``n`` distinct training examples drawn with ``seed`` (numpy's generator): a token batch, or (token
        batch, labels) with ``labelled``."""
        ids, y = self.examples(task, "train")
        if not 0 < n <= len(ids):
            raise ValueError(f"n must be in 1..{len(ids)}, got {n}")
        idx = np.random.default_rng(seed).choice(len(ids), size=n, replace=False)
        batch = pad_batch([ids[i] for i in idx], self.pad_id)
        return (batch, y[torch.from_numpy(idx)]) if labelled else batch

    def class_names(self, task: str) -> List[str]:
        return [str(i) for i in range(self.task_specs[task].labels)]

    def metric(self, task: str) -> Tuple[str, Callable]:
        return GLUE_METRIC[task]

    def loss(self, task: str) -> str:
        return self.task_specs[task].loss
