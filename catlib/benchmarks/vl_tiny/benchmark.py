"""``load_benchmark("vl-tiny")``: the embedded stand-in of the paper's Table 4, a tiny BLIP question-answering model
pretrained on generic short-answer questions and fine-tuned (image encoder, text encoder and decoder) on six
procedural vision-language tasks (:mod:`.data`; built by :mod:`.build` into ``data/vl-tiny/``). Everything is
merged; captions are scored by CIDEr-D, open answers by VQA accuracy, choices by exact match. Splits are
regenerated from the manifest's seed and sizes, and checked against its sha256s."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from ...core.device import resolve_device
from ...core.errors import ZooError
from .. import sha256_file
from ..vl import VL_TASKS, BlipVQA, VLBenchmark, VLItem, VLTask
from . import data as D
from .model import pixels, tiny_config

StateDict = Dict[str, torch.Tensor]


def default_root() -> Path:
    return Path(__file__).resolve().parents[3] / "data" / "vl-tiny"


def task_specs() -> Dict[str, VLTask]:
    """Table 4's tasks with vl-tiny's fixed captioning question."""
    return {
        t: VLTask(s.name, s.analogue, s.kind, D.CAPTION_PROMPT if s.kind == "caption" else None, s.max_new_tokens)
        for t, s in VL_TASKS.items()
    }


class VLTinyBenchmark(VLBenchmark):
    """vl-tiny from state dicts and the data settings (``sizes``: split → items per task, ``seed``); the built zoo
    is read by :func:`load_vl_tiny`, the build measures its models through this class."""

    code_files = ("vl.py", "metrics.py", "vl_tiny")

    def __init__(
        self,
        pretrained: StateDict,
        finetuned: Dict[str, StateDict],
        sizes: Dict[str, int],
        seed: int,
        tasks: Optional[Sequence[str]] = None,
        device="cpu",
        data_sha256: Optional[Dict[str, Dict[str, str]]] = None,
    ):
        self.name, self.all_tasks = "vl-tiny", [t for t in D.TASKS if t in finetuned]
        self.tasks = list(self.all_tasks)
        self.tasks = self._check_tasks(tasks)
        self.task_specs = task_specs()
        self.device, self.pad_id = resolve_device(device), D.PAD
        config = tiny_config()
        self._make_module = lambda: BlipVQA(config)
        self.pretrained = pretrained
        self.finetuned = {t: finetuned[t] for t in self.tasks}
        self.sizes, self.seed, self.data_sha256 = dict(sizes), int(seed), data_sha256
        self._splits: Dict[Tuple[str, str], List[VLItem]] = {}

    def raw(self, task: str, split: str) -> List[D.Item]:
        return [D.task_item(task, split, i, self.seed) for i in range(self.sizes[split])]

    def examples(self, task: str, split: str) -> List[VLItem]:
        """Regenerated from the seed and sizes (checked against the manifest's sha256 when there is one)."""
        if (task, split) not in self._splits:
            raw = self.raw(task, split)
            if self.data_sha256 is not None and D.split_hash(raw) != self.data_sha256[task][split]:
                raise ZooError(f"vl-tiny {task}/{split}: the generated data differ from the zoo's (another generator)")
            self._splits[(task, split)] = [
                VLItem(torch.from_numpy(img), D.question_ids(q), D.answer_ids(a), list(refs)) for img, q, a, refs in raw
            ]
        return self._splits[(task, split)]

    def pixels(self, items: Sequence[VLItem]) -> torch.Tensor:
        return pixels([it.image.numpy() for it in items])

    def decode(self, ids: Sequence[int]) -> str:
        return D.decode(ids)


def read_zoo(root: Path) -> Tuple[dict, StateDict, Dict[str, StateDict]]:
    """(manifest, θ0, experts) of a built zoo, every file checked against the manifest's sha256."""
    from safetensors.torch import load_file

    if not (root / "manifest.json").is_file():
        raise ZooError(
            f"no vl-tiny zoo in {root}: build it with python -m catlib.benchmarks.vl_tiny.build --out {root}"
        )
    manifest = json.loads((root / "manifest.json").read_text())
    for name, rec in manifest["files"].items():
        path = root / name
        if not path.is_file() or sha256_file(path) != rec["sha256"]:
            raise ZooError(f"{path} is missing or differs from the manifest's sha256: rebuild or restore the zoo")
    as32 = lambda sd: {k: v.float() for k, v in sd.items()}  # noqa: E731
    theta0 = as32(load_file(str(root / "pretrained.safetensors")))
    experts = {t: as32(load_file(str(root / f"finetuned_{t}.safetensors"))) for t in manifest["tasks"]}
    return manifest, tie(theta0), {t: tie(sd) for t, sd in experts.items()}


#: BLIP's tied parameters as ``{alias: source}`` (the decoder's output layer is the word embedding and its bias is
#: the prediction head's bias): the zoo stores each once, under the source's key; :func:`tie` restores the alias as
#: the same tensor, so a merge (:func:`catlib.core.statedict.tied_keys`) sees one parameter, as the module does.
TIED = {
    "text_decoder.cls.predictions.decoder.weight": "text_decoder.bert.embeddings.word_embeddings.weight",
    "text_decoder.cls.predictions.decoder.bias": "text_decoder.cls.predictions.bias",
}


def tie(sd: StateDict) -> StateDict:
    """``sd`` with every alias of :data:`TIED` set to its source's tensor (a stored copy of an alias is replaced)."""
    out = dict(sd)
    for alias, source in TIED.items():
        out[alias] = out[source]
    return out


def untie(sd: StateDict) -> StateDict:
    """``sd`` without the aliases of :data:`TIED` (what the zoo stores)."""
    return {k: v for k, v in sd.items() if k not in TIED}


def load_vl_tiny(root=None, tasks=None, device="cpu", replicate: int = 0, **kwargs) -> VLTinyBenchmark:
    """The vl-tiny zoo (``root``: replicate 0's folder, default ``data/vl-tiny``); ``replicate`` k > 0: its
    sibling ``<root>-r<k>``, whose experts were fine-tuned with other seeds from the same θ0."""
    if kwargs:
        raise TypeError(f"vl-tiny: unknown option(s) {sorted(kwargs)}; it takes root, tasks, device, replicate")
    from .. import replicate_root

    root = replicate_root("vl-tiny", Path(root) if root is not None else default_root(), replicate)
    manifest, theta0, experts = read_zoo(root)
    s = manifest["settings"]
    bench = VLTinyBenchmark(
        theta0, experts, {"train": s["n_train"], "val": s["n_val"], "test": s["n_test"]}, manifest["seed"], tasks,
        device, manifest["data_sha256"],
    )  # fmt: skip
    bench.root, bench.manifest = root, manifest
    return bench
