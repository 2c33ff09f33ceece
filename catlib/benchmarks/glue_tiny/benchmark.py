"""``load_benchmark("glue-tiny")``: the embedded stand-in of the paper's Table 3, a 4-layer RoBERTa pretrained with
masked-language modelling on a procedural corpus and fine-tuned on eight GLUE-like procedural tasks
(:mod:`.data`; built by :mod:`.build` into ``data/glue-tiny/``). Each expert keeps its own head; only the encoder
is merged. Splits are regenerated from the manifest's seed and sizes, and checked against its sha256s."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from ...core.device import resolve_device
from ...core.errors import ZooError
from .. import sha256_file
from ..text import GLUE_TASKS, ClassificationHead, RobertaEncoder, TextBenchmark
from . import data as D

FILES = ("pretrained.safetensors", "heads.safetensors", "manifest.json")


def default_root() -> Path:
    return Path(__file__).resolve().parents[3] / "data" / "glue-tiny"


class GlueTinyBenchmark(TextBenchmark):
    """The built glue-tiny zoo in ``root`` (default ``data/glue-tiny``), every file verified by its sha256."""

    code_files = ("text.py", "metrics.py", "glue_tiny")

    def __init__(self, root=None, tasks: Optional[Sequence[str]] = None, device="cpu"):
        from safetensors.torch import load_file
        from transformers import RobertaConfig

        self.root = Path(root) if root is not None else default_root()
        if not (self.root / "manifest.json").is_file():
            raise ZooError(
                f"no glue-tiny zoo in {self.root}: build it with python -m catlib.benchmarks.glue_tiny.build "
                f"--out {self.root}"
            )
        self.manifest = json.loads((self.root / "manifest.json").read_text())
        for name, rec in self.manifest["files"].items():
            path = self.root / name
            if not path.is_file() or sha256_file(path) != rec["sha256"]:
                raise ZooError(f"{path} is missing or differs from the manifest's sha256: rebuild or restore the zoo")
        self.name, self.all_tasks = "glue-tiny", [t for t in GLUE_TASKS if t in self.manifest["tasks"]]
        self.tasks = list(self.all_tasks)
        self.tasks = self._check_tasks(tasks)
        self.task_specs = {t: GLUE_TASKS[t] for t in self.all_tasks}
        self.device, self.pad_id, self.mtl = resolve_device(device), D.PAD, None
        config = RobertaConfig.from_dict(self.manifest["model_config"])
        self._make_module = lambda: RobertaEncoder(config)
        as32 = lambda sd: {k: v.float() for k, v in sd.items()}  # noqa: E731
        self.pretrained = as32(load_file(str(self.root / "pretrained.safetensors")))
        self.finetuned = {t: as32(load_file(str(self.root / f"finetuned_{t}.safetensors"))) for t in self.tasks}
        flat = load_file(str(self.root / "heads.safetensors"))
        self.heads = {}
        for t in self.tasks:
            head = ClassificationHead(config.hidden_size, GLUE_TASKS[t].labels)
            head.load_state_dict({k.split(".", 1)[1]: v for k, v in flat.items() if k.split(".", 1)[0] == t})
            self.heads[t] = head.eval()
        self._splits: Dict[Tuple[str, str], Tuple[List[List[int]], torch.Tensor]] = {}

    def examples(self, task: str, split: str) -> Tuple[List[List[int]], torch.Tensor]:
        """Regenerated from the manifest's seed and sizes (checked against its sha256), tokenized once."""
        if (task, split) not in self._splits:
            s = self.manifest["settings"]
            ex, y = D.task_split(task, split, self.manifest["seed"], s["n_train"], s["n_val"], s["n_test"])
            if D.split_hash(ex, y) != self.manifest["data_sha256"][task][split]:
                raise ZooError(
                    f"glue-tiny {task}/{split}: the generated data differ from the zoo's (another generator)"
                )
            enc = D.encode(ex, self.manifest["max_len"])
            ids = [row[: int(n)].tolist() for row, n in zip(enc["input_ids"], enc["attention_mask"].sum(1))]
            dtype = torch.float32 if GLUE_TASKS[task].labels == 1 else torch.int64
            self._splits[(task, split)] = (ids, torch.tensor(y, dtype=dtype))
        return self._splits[(task, split)]


def load_glue_tiny(root=None, tasks=None, device="cpu", replicate: int = 0, **kwargs) -> GlueTinyBenchmark:
    """The glue-tiny zoo (``root``: replicate 0's folder, default ``data/glue-tiny``); ``replicate`` k > 0: its
    sibling ``<root>-r<k>``, whose experts were fine-tuned with other seeds from the same θ0."""
    if kwargs:
        raise TypeError(f"glue-tiny: unknown option(s) {sorted(kwargs)}; it takes root, tasks, device, replicate")
    from .. import replicate_root

    root = replicate_root("glue-tiny", Path(root) if root is not None else default_root(), replicate)
    return GlueTinyBenchmark(root, tasks, device)
