"""What the vision-language benchmarks share (the real BLIP one and the embedded ``vl-tiny``): the six tasks of the
paper's Table 4, BLIP's question-answering architecture as the one model of every task, and :class:`VLBenchmark`,
which scores generated text.

Conventions (beside :mod:`catlib.benchmarks.base`'s):

* The model is transformers' ``BlipForQuestionAnswering`` (the paper merges experts fine-tuned from BLIP's VQA
  checkpoint): an image encoder (``vision_model.*``), a text encoder that reads the question with cross-attention
  to the image (``text_encoder.*``) and a text decoder that writes the answer (``text_decoder.*``). **All three are
  merged**; there is no task-specific head (:attr:`VLBenchmark.heads` are identities). A captioning task is a
  question-answering task with a fixed question (:attr:`VLTask.prompt`) whose answer is the caption.
* An item is one image, its question's token ids (special tokens included), the answer's ids used as the training
  target (``[bos] ... [sep]``: ``bos`` is the decoder's start token, ``sep`` its end) and the reference strings
  the metric compares with (captions; the annotators' answers; the correct choice).
* Batches for the module (exemplars, teacher forcing) are mappings ``pixel_values (B, 3, H, W)``, ``input_ids`` and
  ``question_mask`` ``(B, Tq)``, ``answer_ids`` and ``answer_mask`` ``(B, Ta)``; labels are the next-token targets
  ``(B, Ta − 1)``, -100 on padding. The module (:class:`BlipVQA`) returns next-token logits ``(B, Ta − 1, V)`` and
  runs each example alone without its padding, so the statistics of every layer (image, question and answer
  streams alike) see no padded token.
* Metrics (:mod:`catlib.benchmarks.metrics`), every one in points so that a mean over tasks (the book's one rule
  for choosing hyperparameters on validation) weighs them alike: captions CIDEr-D × 100 (BLIP's own papers print
  it so, e.g. 133.3; the CAT paper prints the fraction, 0.86 = 86 here), open questions VQA accuracy,
  ScienceQA-like multiple choice exact-match accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn
from transformers import BlipForQuestionAnswering

from ..core.inputs import pad_batch
from ..core.progress import progress
from .base import Benchmark
from .metrics import cider_d, in_points, vqa_accuracy


@dataclass(frozen=True)
class VLTask:
    """One task of Table 4: ``kind`` "caption" (CIDEr-D), "vqa" (VQA accuracy) or "choice" (exact-match accuracy
    of the chosen option); ``prompt``: the fixed question a captioning task asks; ``max_new_tokens``: the longest
    answer generated."""

    name: str
    analogue: str
    kind: str
    prompt: Optional[str] = None
    max_new_tokens: int = 20


# The paper's Table 4 columns, in its order.
VL_TASKS: Dict[str, VLTask] = {
    t.name: t
    for t in (
        VLTask("coco_caption", "COCO Caption", "caption", "what does the image describe?"),
        VLTask("flickr30k", "Flickr30k Caption", "caption", "what does the image describe?"),
        VLTask("textcaps", "TextCaps", "caption", "what does the image describe?"),
        VLTask("okvqa", "OKVQA", "vqa", max_new_tokens=10),
        VLTask("textvqa", "TextVQA", "vqa", max_new_tokens=10),
        VLTask("scienceqa", "ScienceQA", "choice", max_new_tokens=10),
    )
}


@in_points(0, 1000)  # CIDEr-D is at most 10
def _cider(pred, refs) -> float:
    return 100.0 * cider_d(pred, refs)[0]


def _vqa(pred, refs) -> float:
    return vqa_accuracy(pred, refs)[0]


# kind -> (the name a table column shows, the function of (predictions, references))
VL_METRIC: Dict[str, Tuple[str, Callable]] = {
    "caption": ("CIDEr-D (× 100)", _cider),
    "vqa": ("VQA accuracy", _vqa),
    "choice": ("accuracy", _vqa),  # one reference (the correct option): exact match after VQA's normalisation
}


@dataclass
class VLItem:
    """One example. ``image``: a ``(3, H, W)`` tensor (uint8 or float) or the path of an image file; ``question``
    and ``answer``: token ids with special tokens; ``references``: the strings the metric compares with."""

    image: Union[torch.Tensor, Path]
    question: List[int]
    answer: List[int]
    references: List[str] = field(default_factory=list)


class BlipVQA(BlipForQuestionAnswering):
    """transformers' ``BlipForQuestionAnswering`` (its keys, its ``generate``) with the forward pass the statistics
    run: ``forward(pixel_values, input_ids, question_mask, answer_ids, answer_mask)`` → next-token logits
    ``(B, Ta − 1, V)`` under teacher forcing, zeros past each answer's end. Each example runs alone, trimmed to
    its real tokens, so no layer sees a padded position."""

    def forward(self, pixel_values, input_ids, question_mask, answer_ids, answer_mask) -> torch.Tensor:
        B, Ta = answer_ids.shape
        out = None
        for i in range(B):
            q = input_ids[i, question_mask[i].bool()][None]
            a = answer_ids[i, answer_mask[i].bool()][None]
            image = self.vision_model(pixel_values=pixel_values[i : i + 1]).last_hidden_state
            question = self.text_encoder(input_ids=q, encoder_hidden_states=image, return_dict=True).last_hidden_state
            logits = self.text_decoder(input_ids=a, encoder_hidden_states=question, return_logits=True)
            if out is None:
                out = logits.new_zeros(B, Ta - 1, logits.shape[-1])
            out[i, : logits.shape[1]] = logits[0]
        return out

    @torch.no_grad()
    def answer(self, pixel_values, input_ids, max_new_tokens: int = 20) -> torch.Tensor:
        """Greedy answers' ids ``(B, ≤ 1 + max_new_tokens)``, the decoder's start token first. The questions of one
        call share their length (BLIP's decoder attends to every question position: padding would change answers)."""
        return self.generate(
            input_ids=input_ids, pixel_values=pixel_values, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1
        )


def pad_pair(rows: Sequence[Sequence[int]], pad_id: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(ids, mask)``, both ``(B, T)``: :func:`catlib.core.inputs.pad_batch` as the two tensors BLIP takes."""
    batch = pad_batch(rows, pad_id)
    return batch["input_ids"], batch["attention_mask"]


class VLBenchmark(Benchmark):
    """A benchmark of Table 4's kind. A subclass sets ``name``, ``tasks``, ``all_tasks``, ``pretrained``,
    ``finetuned``, ``task_specs`` ({task: :class:`VLTask`}), ``pad_id``, ``_make_module`` and implements
    :meth:`examples`, :meth:`pixels` (items → ``(B, 3, H, W)`` preprocessed floats) and :meth:`decode` (ids →
    text, special tokens dropped)."""

    generative = True
    pad_id: int = 0
    task_specs: Dict[str, VLTask]
    _make_module: Callable[[], nn.Module]
    mtl = None

    # --- what a subclass provides ---------------------------------------------------------------------------------
    def examples(self, task: str, split: str) -> List[VLItem]:
        raise NotImplementedError

    def pixels(self, items: Sequence[VLItem]) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, ids: Sequence[int]) -> str:
        raise NotImplementedError

    # --- the Benchmark interface -------------------------------------------------------------------------------------
    @property
    def heads(self) -> Dict[str, nn.Module]:
        """Identities: the module's output (next-token logits) is what the statistics' ``"sequence"`` loss reads."""
        return {t: nn.Identity() for t in self.all_tasks}

    def build_module(self) -> nn.Module:
        module = self._make_module()
        module.load_state_dict(self.pretrained)
        return module.to(self.device).eval()

    def batch(self, items: Sequence[VLItem]) -> Tuple[Dict[str, torch.Tensor], torch.Tensor]:
        """(module inputs, next-token labels ``(B, Ta − 1)``, -100 on padding) of ``items``."""
        q, qm = pad_pair([it.question for it in items], self.pad_id)
        a, am = pad_pair([it.answer for it in items], self.pad_id)
        labels = a[:, 1:].masked_fill(am[:, 1:] == 0, -100)
        x = {
            "pixel_values": self.pixels(items),
            "input_ids": q,
            "question_mask": qm,
            "answer_ids": a,
            "answer_mask": am,
        }
        return x, labels

    def loader(self, task: str, split: str, batch_size: int = 64):
        """The split in order as (module inputs, labels) batches (teacher forcing; :meth:`generate` scores)."""
        items = self.examples(task, split)
        return [self.batch(items[i : i + batch_size]) for i in range(0, len(items), batch_size)]

    def exemplars(self, task: str, n: int, seed: int = 0, labelled: bool = False):
        """``n`` distinct training items drawn with ``seed`` (numpy's generator): module inputs, or (inputs,
        next-token labels) with ``labelled``."""
        items = self.examples(task, "train")
        if not 0 < n <= len(items):
            raise ValueError(f"n must be in 1..{len(items)}, got {n}")
        idx = np.random.default_rng(seed).choice(len(items), size=n, replace=False)
        x, y = self.batch([items[i] for i in idx])
        return (x, y) if labelled else x

    def class_names(self, task: str) -> List[str]:
        return []

    def metric(self, task: str) -> Tuple[str, Callable]:
        return VL_METRIC[self.task_specs[task].kind]

    def loss(self, task: str) -> str:
        return "sequence"

    @torch.no_grad()
    def generate(self, module: nn.Module, task: str, split: str, batch_size: int = 64, amp: bool = False):
        """Greedy answers of ``module`` to every item of the split, and the items' references. Items are batched
        by question length (no padding: BLIP's decoder attends to every question position)."""
        from contextlib import nullcontext

        items = self.examples(task, split)
        if not items:
            raise ValueError(f"empty evaluation split ({task}/{split})")
        spec, device = self.task_specs[task], self.device
        order = sorted(range(len(items)), key=lambda i: (len(items[i].question), i))
        groups: List[List[int]] = []
        for i in order:
            if groups and len(groups[-1]) < batch_size and len(items[groups[-1][0]].question) == len(items[i].question):
                groups[-1].append(i)
            else:
                groups.append([i])
        ctx = torch.autocast(device.type, dtype=torch.float16) if (amp and device.type == "cuda") else nullcontext()
        module.eval()
        preds: List[str] = [""] * len(items)
        for g in progress(groups, desc=f"generate {task}/{split}", leave=False):
            batch = [items[i] for i in g]
            pixel_values = self.pixels(batch).to(device)
            q = torch.as_tensor([it.question for it in batch], dtype=torch.long, device=device)
            with ctx:
                out = module.answer(pixel_values, q, spec.max_new_tokens)
            for i, ids in zip(g, out.tolist()):
                preds[i] = self.decode(ids)
        return preds, [it.references for it in items]
