"""The real Table 3 benchmark: fine-tuned ``roberta-base`` experts on eight GLUE tasks, from files on the user's disk.

Checkpoints (``checkpoint_root``), each folder written by ``save_pretrained`` (``config.json`` and
``model.safetensors``, or a torch ``pytorch_model.bin`` holding tensors only)::

    roberta-base/        θ0: RobertaModel, RobertaForMaskedLM or RobertaForSequenceClassification weights, and the
                         tokenizer (tokenizer.json, or vocab.json + merges.txt); ``tokenizer/`` beside it also works
    cola/ mnli/ mrpc/ qnli/ qqp/ rte/ sst2/ stsb/
                         one RobertaForSequenceClassification expert per task, with its own head (``classifier.*``;
                         num_labels 3 for MNLI, 1 for STS-B, 2 for the others)

Data (``data_root``), one folder per task holding the ``glue`` dataset's parquet export (``train-*.parquet``,
``validation-*.parquet``; MNLI ``validation_matched-*.parquet``) or GLUE's original TSV files (``train.tsv``,
``dev.tsv``; MNLI ``dev_matched.tsv``). As in the paper (after Lu et al., 2024), 10% of the training set, drawn
with ``seed``, is held out as the validation split where hyperparameters are chosen, the rest gives the exemplars,
and GLUE's validation set is the test split. Labels are the ``glue`` dataset's ids (MNLI 0 entailment, 1 neutral, 2
contradiction; QNLI and RTE 0 entailment, 1 not entailment); the TSV files' label words are mapped to them.
Only the encoder (``roberta.*``, no pooler) is merged; each task keeps its expert's head.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..core.errors import ArchitectureMismatchError, CheckpointNotFoundError
from ..core.device import resolve_device
from ..core.errors import DatasetMissingError
from .hf import read_config, read_weights
from .text import GLUE_TASKS, ClassificationHead, GlueTask, RobertaEncoder, TextBenchmark

# GLUE's original TSV files: (header or None, column of text a, column of text b, label column) per task
TSV = {
    "cola": (None, 3, None, 1),
    "sst2": (0, "sentence", None, "label"),
    "mrpc": (0, "#1 String", "#2 String", "Quality"),
    "qqp": (0, "question1", "question2", "is_duplicate"),
    "stsb": (0, "sentence1", "sentence2", "score"),
    "mnli": (0, "sentence1", "sentence2", "gold_label"),
    "qnli": (0, "question", "sentence", "label"),
    "rte": (0, "sentence1", "sentence2", "label"),
}
LABEL_WORDS = {"entailment": 0, "neutral": 1, "contradiction": 2, "not_entailment": 1}


def encoder_weights(sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The encoder's tensors under ``roberta.*`` keys: a RobertaModel's bare keys get the prefix; the pooler, the
    masked-LM head and a classifier are left out."""
    out = {}
    for k, v in sd.items():
        key = k if k.startswith("roberta.") else f"roberta.{k}" if k.startswith(("embeddings.", "encoder.")) else None
        if key is not None and not key.startswith("roberta.pooler."):
            out[key] = v
    return out


def _config(folder: Path):
    from transformers import RobertaConfig

    return read_config(folder, RobertaConfig)


def _tokenizer(root: Path, theta0: Path):
    from transformers import AutoTokenizer

    for folder in (theta0, root / "tokenizer"):
        if (folder / "tokenizer.json").is_file() or (folder / "vocab.json").is_file():
            return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    raise CheckpointNotFoundError(
        f"no tokenizer in {theta0} or {root / 'tokenizer'}: save roberta-base's tokenizer there "
        "(tokenizer.save_pretrained: tokenizer.json, or vocab.json + merges.txt)",
        path=str(theta0),
    )


def _read_table(folder: Path, task: GlueTask, split: str) -> Tuple[List[str], Optional[List[str]], np.ndarray]:
    """(texts a, texts b or None, labels) of ``split`` ("train" or "validation") from parquet or GLUE's TSV."""
    import pandas as pd

    stem = task.validation if split == "validation" else "train"
    parquet = sorted(folder.glob(f"{stem}-*.parquet")) + sorted(folder.glob(f"{stem}.parquet"))
    if parquet:
        df = pd.concat([pd.read_parquet(p) for p in parquet], ignore_index=True)
        cols = [task.a] + ([task.b] if task.b else []) + ["label"]
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise DatasetMissingError(task.name, parquet[0], f"no column(s) {missing}; the glue dataset's has {cols}")
        a, b, y = df[task.a], df[task.b] if task.b else None, df["label"]
    else:
        name = {"train": "train.tsv", "validation": "dev_matched.tsv" if task.name == "mnli" else "dev.tsv"}[split]
        path = folder / name
        if not path.is_file():
            raise DatasetMissingError(
                task.name,
                path,
                f"{task.analogue} {split}: neither {stem}-*.parquet (the glue dataset's export) nor {name}",
            )
        header, ca, cb, cy = TSV[task.name]
        df = pd.read_csv(path, sep="\t", header=header, quoting=3, dtype=str, keep_default_na=False)
        try:
            a, b, y = df[ca], df[cb] if cb is not None else None, df[cy]
        except KeyError as e:
            raise DatasetMissingError(task.name, path, f"no column {e}, which GLUE's {task.analogue} TSV has") from None
        y = y.map(lambda v: LABEL_WORDS[v] if v in LABEL_WORDS else float(v) if task.labels == 1 else int(v))
    labels = np.asarray(y, dtype=np.float32 if task.labels == 1 else np.int64)
    if task.labels > 1 and len(labels) and (labels.min() < 0 or labels.max() >= task.labels):
        raise ValueError(
            f"{task.analogue} {split} in {folder}: labels outside 0..{task.labels - 1} (the test split of GLUE has no "
            "labels: use its validation split)"
        )
    return [str(t) for t in a], None if b is None else [str(t) for t in b], labels


class RobertaGlueBenchmark(TextBenchmark):
    """The paper's Table 3 from local files (module docstring); ``load_benchmark("roberta-glue", ...)``."""

    code_files = ("text.py", "roberta_glue.py", "metrics.py", "hf.py")

    def __init__(
        self,
        checkpoint_root,
        data_root,
        tasks: Optional[Sequence[str]] = None,
        device="auto",
        max_length: int = 128,
        val_fraction: float = 0.1,
        seed: int = 0,
    ):
        if checkpoint_root is None or data_root is None:
            raise ValueError("roberta-glue needs checkpoint_root (the fine-tuned experts) and data_root (GLUE's files)")
        root, self.data_root = Path(checkpoint_root), Path(data_root)
        self.name, self.all_tasks = "roberta-glue", list(GLUE_TASKS)
        self.tasks = list(self.all_tasks)
        self.tasks = self._check_tasks(tasks)
        self.task_specs = {t: GLUE_TASKS[t] for t in self.all_tasks}
        self.device = resolve_device(device)
        self.max_length, self.val_fraction, self.seed = int(max_length), float(val_fraction), int(seed)
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        theta0 = root / "roberta-base"
        if not theta0.is_dir():
            raise CheckpointNotFoundError(f"no roberta-base/ in {root} (θ0's save_pretrained folder)", path=str(theta0))
        config = _config(theta0)
        # RoBERTa's positions start after the padding index: a sequence may hold max_position_embeddings − pad − 1
        # tokens (512 for roberta-base); longer inputs are truncated to what the model can embed
        self.max_length = min(self.max_length, int(config.max_position_embeddings) - int(config.pad_token_id) - 1)
        self._make_module = lambda: RobertaEncoder(config)
        keys = set(RobertaEncoder(config).state_dict())
        self.pretrained = self._encoder(encoder_weights(read_weights(theta0)), keys, theta0)
        self.finetuned, self.heads = {}, {}
        for t in self.tasks:
            folder = root / t
            if not folder.is_dir():
                raise CheckpointNotFoundError(f"no expert for task {t!r}: {folder} does not exist", path=str(folder))
            cfg = _config(folder)
            if (cfg.hidden_size, cfg.num_hidden_layers, cfg.vocab_size) != (
                config.hidden_size,
                config.num_hidden_layers,
                config.vocab_size,
            ):
                raise ArchitectureMismatchError(
                    f"{folder}: hidden {cfg.hidden_size}, layers {cfg.num_hidden_layers}, vocabulary {cfg.vocab_size}, "
                    f"but θ0 has {config.hidden_size}, {config.num_hidden_layers}, {config.vocab_size}",
                    path=str(folder),
                )
            sd = read_weights(folder)
            self.finetuned[t] = self._encoder(encoder_weights(sd), keys, folder)
            self.heads[t] = self._head(sd, config.hidden_size, GLUE_TASKS[t], folder)
        self.mtl = None
        self.tokenizer = _tokenizer(root, theta0)
        self.pad_id = int(self.tokenizer.pad_token_id)
        self._splits: Dict[Tuple[str, str], Tuple[List[List[int]], torch.Tensor]] = {}

    @staticmethod
    def _encoder(sd, keys, folder: Path) -> Dict[str, torch.Tensor]:
        missing = sorted(keys - set(sd))
        if missing:
            raise ArchitectureMismatchError(
                f"{folder}: the encoder lacks {len(missing)} tensors, e.g. {missing[:3]} (is it a RoBERTa checkpoint?)",
                path=str(folder),
            )
        return {k: sd[k].float() for k in sorted(keys)}

    @staticmethod
    def _head(sd, hidden: int, task: GlueTask, folder: Path) -> ClassificationHead:
        names = ("dense.weight", "dense.bias", "out_proj.weight", "out_proj.bias")
        missing = [f"classifier.{n}" for n in names if f"classifier.{n}" not in sd]
        if missing:
            raise CheckpointNotFoundError(
                f"{folder}: no classification head ({missing[0]} missing): save the RobertaForSequenceClassification "
                "model, not only its encoder",
                path=str(folder),
            )
        labels = sd["classifier.out_proj.weight"].shape[0]
        if labels != task.labels:
            raise ArchitectureMismatchError(
                f"{folder}: the head has {labels} outputs, but {task.analogue} needs {task.labels}", path=str(folder)
            )
        head = ClassificationHead(hidden, labels)
        head.load_state_dict({n: sd[f"classifier.{n}"].float() for n in names})
        return head.eval()

    def examples(self, task: str, split: str) -> Tuple[List[List[int]], torch.Tensor]:
        """Tokenized once per task and split; "train" and "val" split GLUE's training set with ``seed``."""
        if (task, split) not in self._splits:
            spec, folder = GLUE_TASKS[task], self.data_root / task
            if not folder.is_dir():
                raise DatasetMissingError(task, folder, "data_root holds one folder per task")
            if split == "test":
                a, b, y = _read_table(folder, spec, "validation")
                idx = np.arange(len(y))
            else:
                a, b, y = _read_table(folder, spec, "train")
                order = np.random.default_rng(self.seed).permutation(len(y))
                n_val = max(1, int(round(self.val_fraction * len(y))))
                idx = np.sort(order[:n_val] if split == "val" else order[n_val:])
            enc = self.tokenizer(
                [a[i] for i in idx],
                None if b is None else [b[i] for i in idx],
                truncation=True,
                max_length=self.max_length,
            )
            self._splits[(task, split)] = ([list(e) for e in enc["input_ids"]], torch.from_numpy(y[idx]))
        return self._splits[(task, split)]


def load_roberta_glue(
    checkpoint_root=None,
    data_root=None,
    tasks=None,
    device="auto",
    max_length: int = 128,
    val_fraction: float = 0.1,
    seed: int = 0,
    **kwargs,
) -> RobertaGlueBenchmark:
    """``load_benchmark("roberta-glue", checkpoint_root=..., data_root=...)`` (module docstring for the layouts).
    ``max_length``: tokens per example after truncation (at most what θ0's position table holds); ``val_fraction``
    of each training set, drawn with ``seed``, is the validation split."""
    if kwargs:
        raise TypeError(f"roberta-glue: unknown option(s) {sorted(kwargs)}; it takes max_length, val_fraction, seed")
    return RobertaGlueBenchmark(checkpoint_root, data_root, tasks, device, max_length, val_fraction, seed)
