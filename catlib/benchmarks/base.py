"""The one interface every benchmark implements (the embedded tiny one and the real open_clip ones).

A benchmark is: an encoder architecture, a pretrained state dict θ0, one fine-tuned state dict per task, a frozen
classification head per task (the role CLIP's zero-shot text heads play), and data splits. Merge methods never see a
benchmark: they see state dicts and the statistics computed from :meth:`Benchmark.exemplars`.

Conventions
-----------
* State dicts are the *encoder's* (open_clip ``VisionTransformer`` keys such as ``conv1.weight``,
  ``transformer.resblocks.0.attn.in_proj_weight``), fp32 on CPU.
* A head maps encoder features ``(B, D)`` to logits ``(B, C_task)``; heads are frozen and shared by all models.
* Images are float tensors ``(B, 3, H, W)`` already preprocessed for the encoder; text comes as token batches, a
  mapping with ``input_ids`` and ``attention_mask`` ``(B, T)`` (:mod:`catlib.core.inputs`), given to the encoder as
  keyword arguments.
* Each task reports one number in points (:meth:`Benchmark.metric`, default top-1 accuracy) and says what its
  head outputs (:meth:`Benchmark.loss`: class logits, or one regression value). A :attr:`Benchmark.generative`
  one (vision-language: captions, open answers) scores generated text instead (:meth:`Benchmark.generate`); its
  heads are identities and its module returns next-token logits under teacher forcing.
* Splits are ``"train"``, ``"val"`` and ``"test"``. Hyperparameters are chosen on ``"val"``, reported on ``"test"``;
  exemplars for data-dependent merges come from ``"train"``.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ..core.checks import check_tasks
from .metrics import accuracy, points_range

StateDict = Dict[str, torch.Tensor]
SPLITS = ("train", "val", "test")


class Benchmark:
    """Abstract benchmark. Subclasses fill the attributes in ``__init__`` and implement the methods below.

    Attributes
    ----------
    name: benchmark name as given to :func:`catlib.load_benchmark`.
    tasks: names of the tasks in use (a subset when ``tasks=`` was given), in a fixed order.
    all_tasks: every task the benchmark has.
    pretrained: θ0, the encoder state dict.
    finetuned: task name → θ_t (same keys and shapes as ``pretrained``).
    mtl: jointly fine-tuned encoder for the "Traditional MTL" row, or ``None`` when the benchmark has none.
    heads: task name → frozen head module.
    code_files: the benchmark's own code that decides its numbers, as paths relative to ``catlib/benchmarks/``
        (files or folders): part of the result cache's code fingerprint for this benchmark only. Empty when the
        benchmark's identity covers it (the tiny zoos: their manifest hashes every weight file and the data).
    """

    name: str
    tasks: List[str]
    all_tasks: List[str]
    pretrained: StateDict
    finetuned: Dict[str, StateDict]
    mtl: Optional[StateDict]
    heads: Dict[str, nn.Module]
    device: torch.device = torch.device("cpu")
    code_files: Tuple[str, ...] = ()

    # --- architecture ---------------------------------------------------------------------------------------
    def build_module(self) -> nn.Module:
        """A fresh encoder module with θ0 loaded, in eval mode, on ``self.device``."""
        raise NotImplementedError

    # --- data ---------------------------------------------------------------------------------------------------
    def loader(self, task: str, split: str, batch_size: int = 256) -> torch.utils.data.DataLoader:
        """A deterministic (unshuffled) loader of ``(images, labels)`` for one task and split."""
        raise NotImplementedError

    def exemplars(self, task: str, n: int, seed: int = 0, labelled: bool = False):
        """``n`` images drawn with ``seed`` from the task's training split: a tensor ``(n, 3, H, W)``, or
        ``(images, labels)`` when ``labelled``."""
        raise NotImplementedError

    def class_names(self, task: str) -> List[str]:
        raise NotImplementedError

    # --- what a task reports ---------------------------------------------------------------------------------------
    def metric(self, task: str) -> Tuple[str, Callable]:
        """The name of the number ``task`` reports and the function computing it (points) from the predictions
        and the labels: top-1 accuracy unless a benchmark says otherwise (GLUE's Matthews, F1, correlations)."""
        return "accuracy", accuracy

    def metric_range(self, task: str) -> Tuple[float, float]:
        """The values ``task``'s number can take (points): [0, 100] for accuracy, [-100, 100] for a correlation,
        [0, 1000] for CIDEr-D × 100 (:func:`catlib.benchmarks.metrics.points_range` of :meth:`metric`). The result
        cache refuses a stored number outside it."""
        return points_range(self.metric(task)[1])

    def loss(self, task: str) -> str:
        """What ``task``'s head outputs (:data:`catlib.core.stats.LOSSES`): ``"classification"`` (class logits,
        predictions by argmax), ``"regression"`` (one value per example, ``(B, 1)``) or ``"sequence"`` (a text
        decoder's next-token logits, ``(B, T, V)``, on a :attr:`generative` benchmark)."""
        return "classification"

    # --- generative benchmarks (captions, open answers) ---------------------------------------------------------
    generative: bool = False  # True: tasks are scored from generated text (:meth:`generate`), not through a head

    def generate(self, module: nn.Module, task: str, split: str, batch_size: int = 64, amp: bool = False):
        """(predictions, references) of ``module`` (this benchmark's architecture, weights loaded) on one task and
        split, for the task's :meth:`metric`: generated strings and each item's reference strings."""
        raise NotImplementedError(f"{self.name} scores its tasks through heads; it generates no text")

    # --- conveniences shared by all benchmarks -------------------------------------------------------------------
    def finetuned_list(self, tasks: Optional[Sequence[str]] = None) -> List[StateDict]:
        """Fine-tuned state dicts in task order (``tasks`` defaults to :attr:`tasks`)."""
        return [self.finetuned[t] for t in self._check_tasks(tasks)]

    def exemplar_batches(
        self, n: int, seed: int = 0, labelled: bool = False, tasks: Optional[Sequence[str]] = None
    ) -> list:
        """One exemplar batch per task, in task order (the ``exemplars=`` argument of :func:`catlib.merge`)."""
        return [self.exemplars(t, n, seed=seed, labelled=labelled) for t in self._check_tasks(tasks)]

    def head_list(self, tasks: Optional[Sequence[str]] = None) -> List[nn.Module]:
        return [self.heads[t] for t in self._check_tasks(tasks)]

    def _check_tasks(self, tasks: Optional[Sequence[str]]) -> List[str]:
        if tasks is None:
            return list(self.tasks)
        tasks = check_tasks(tasks)
        unknown = [t for t in tasks if t not in self.all_tasks]
        if unknown:
            raise KeyError(f"{self.name}: unknown task(s) {unknown}; available: {self.all_tasks}")
        return list(tasks)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, tasks={self.tasks})"
