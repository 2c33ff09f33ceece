"""What every benchmark whose splits are tensors in memory shares (the tiny zoos, the generated controls): the
evaluation loader and the seeded draw of exemplars. A subclass implements ``tensors(task, split) -> (x, y)``."""

from __future__ import annotations

import numpy as np
import torch


class InMemorySplits:
    """Mixin for a :class:`~catlib.benchmarks.base.Benchmark` whose ``tensors(task, split)`` returns ``(x, y)``."""

    def tensors(self, task: str, split: str):  # pragma: no cover - implemented by the benchmark
        raise NotImplementedError

    def loader(self, task: str, split: str, batch_size: int = 256) -> torch.utils.data.DataLoader:
        """The split in order, unshuffled, ``batch_size`` examples a batch."""
        x, y = self.tensors(task, split)
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch_size, shuffle=False)

    def exemplars(self, task: str, n: int, seed: int = 0, labelled: bool = False):
        """``n`` distinct training examples drawn with ``seed`` (numpy's generator, so a draw never changes with
        torch's state): inputs, or ``(inputs, labels)`` with ``labelled``."""
        x, y = self.tensors(task, "train")
        if not 0 < n <= len(x):
            raise ValueError(f"n must be in 1..{len(x)}, got {n}")
        idx = torch.from_numpy(np.random.default_rng(seed).choice(len(x), size=n, replace=False))
        return (x[idx], y[idx]) if labelled else x[idx]
