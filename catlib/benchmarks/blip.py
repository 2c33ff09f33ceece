"""The real Table 4 benchmark: BLIP experts fine-tuned from the VQA checkpoint on six vision-language tasks, from
files on the user's disk.

Checkpoints (``checkpoint_root``), each folder written by ``save_pretrained`` (``config.json`` and
``model.safetensors``, or a torch ``pytorch_model.bin`` holding tensors only)::

    blip-vqa-base/       θ0: a BlipForQuestionAnswering (Salesforce/blip-vqa-base), with its processor's files
                         (preprocessor_config.json and the tokenizer); ``processor/`` beside it also works
    coco_caption/ flickr30k/ textcaps/ okvqa/ textvqa/ scienceqa/
                         one BlipForQuestionAnswering expert per task (image encoder, text encoder and decoder
                         fine-tuned, as in the paper; no head: everything is merged)

Data (``data_root``), one folder per task, in the datasets' published layouts; files are recognised by content
and by the split word in their name (``train``; ``val`` or ``test`` for the evaluated split)::

    coco_caption/ flickr30k/ textcaps/
        COCO-style caption JSON ({"images": [{"id", "file_name"}], "annotations": [{"image_id", "caption"}]}),
        e.g. annotations/captions_train2014.json and captions_val2014.json, and the image files anywhere below
    okvqa/
        VQA-style questions ({"questions": [{"question_id", "image_id", "question"}]}) and annotations
        ({"annotations": [{"question_id", "answers": [{"answer"}, ...]}]}), e.g.
        OpenEnded_mscoco_train2014_questions.json + mscoco_train2014_annotations.json; images named by their
        id (COCO_val2014_000000000042.jpg or 42.jpg)
    textvqa/
        the same VQA-style pair, or TextVQA's own file ({"data": [{"question", "image_id", "answers": [...]}]},
        TextVQA_0.5.1_train.json / _val.json) with images <image_id>.jpg
    scienceqa/
        ScienceQA's problems.json ({pid: {"question", "choices", "answer", "image", "split"}}) and
        images/<split>/<pid>/image.png; only questions with an image are used; the question shows the choices and
        the answer is the correct choice's text

As for Table 3, 10% of the training set (images for captions, questions otherwise), drawn with ``seed``, is held
out as the validation split where hyperparameters are chosen; the published validation set (ScienceQA: its test
split) is the test split. What the paper does not say and this loader assumes: captioning experts are asked the
fixed question ``caption_prompt``; answers are decoded greedily (no beam search); images are preprocessed by θ0's
image processor (384 px for blip-vqa-base).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..core.device import resolve_device
from ..core.errors import ArchitectureMismatchError, CheckpointNotFoundError, DatasetMissingError
from ..core.statedict import tied_keys
from .hf import read_config, read_weights
from .vl import VL_TASKS, BlipVQA, VLBenchmark, VLItem, VLTask

THETA0 = "blip-vqa-base"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _config(folder: Path):
    from transformers import BlipConfig

    return read_config(folder, BlipConfig)


def _processor(root: Path, theta0: Path):
    """(tokenizer, image processor) from θ0's folder or ``processor/`` beside it."""
    from transformers import AutoTokenizer, BlipImageProcessor

    for folder in (theta0, root / "processor"):
        has_tok = (folder / "tokenizer.json").is_file() or (folder / "vocab.txt").is_file()
        if has_tok and (folder / "preprocessor_config.json").is_file():
            tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            return tok, BlipImageProcessor.from_pretrained(str(folder), local_files_only=True)
    raise CheckpointNotFoundError(
        f"no BLIP processor in {theta0} or {root / 'processor'}: save blip-vqa-base's processor there "
        "(BlipProcessor.save_pretrained: preprocessor_config.json and tokenizer.json or vocab.txt)",
        path=str(theta0),
    )


def _state(folder: Path, module: BlipVQA) -> Dict[str, torch.Tensor]:
    """A checkpoint's tensors under the module's keys, fp32; a tied alias that the file leaves out (save_pretrained
    writes a tied tensor once) is the same tensor as its source, so a merge sees one parameter."""
    sd = read_weights(folder)
    own = module.state_dict()
    aliases = tied_keys(own)
    missing = sorted(k for k in own if k not in sd and k not in aliases)
    if missing:
        parts = sorted({k.split(".")[0] for k in missing})
        raise ArchitectureMismatchError(
            f"{folder}: {len(missing)} tensors of BlipForQuestionAnswering are missing, e.g. {missing[:3]} (parts "
            f"{parts}); is it a BlipForConditionalGeneration or another model? Every expert must be fine-tuned from "
            "the VQA checkpoint and saved whole",
            path=str(folder),
        )
    out: Dict[str, torch.Tensor] = {}
    for k, v in own.items():
        if k in aliases and k not in sd:
            continue
        if tuple(sd[k].shape) != tuple(v.shape):
            raise ArchitectureMismatchError(
                f"{folder}: {k} has shape {tuple(sd[k].shape)}, θ0's architecture {tuple(v.shape)}", path=str(folder)
            )
        out[k] = sd[k].float()
    for alias, source in aliases.items():
        out[alias] = out[source]  # the same tensor: tied, as in the module
    return {k: out[k] for k in own}


# ----------------------------------------------------------------------------------------------------------------
# data files
# ----------------------------------------------------------------------------------------------------------------
def _split_word(split: str) -> Tuple[str, ...]:
    return ("train",) if split == "train" else ("val", "test")


def _json_files(folder: Path, split: str) -> List[Tuple[Path, object]]:
    words = _split_word(split)
    out = []
    for p in sorted(folder.rglob("*.json")):
        name = p.name.lower()
        if any(w in name for w in words) and not (split != "train" and "train" in name):
            with open(p, encoding="utf-8") as f:
                out.append((p, json.load(f)))
    return out


def _image_index(folder: Path) -> Dict[str, Path]:
    """Image files below ``folder`` by file name, by stem, and by the integer their stem ends with (COCO's ids)."""
    index: Dict[str, Path] = {}
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
            index.setdefault(p.name, p)
            index.setdefault(p.stem, p)
            m = re.search(r"(\d+)$", p.stem)
            if m:
                index.setdefault(str(int(m.group(1))), p)
    return index


def _find_image(index: Dict[str, Path], task: str, folder: Path, key) -> Path:
    key = str(key)
    for k in (key, Path(key).name, Path(key).stem, str(int(key)) if key.isdigit() else None):
        if k is not None and k in index:
            return index[k]
    raise DatasetMissingError(task, folder / key, "an image the annotations name is not below the task's folder")


def _caption_items(task: str, folder: Path, split: str) -> List[Tuple[Path, List[str]]]:
    """(image, its captions) per image of COCO-style caption files."""
    files = [(p, d) for p, d in _json_files(folder, split) if isinstance(d, dict) and "images" in d]
    if not files:
        raise DatasetMissingError(
            task, folder, f"no COCO-style caption JSON for the {split!r} split (a *{_split_word(split)[0]}*.json file "
            'with "images" and "annotations")'
        )  # fmt: skip
    index = _image_index(folder)
    out = []
    for path, d in files:
        caps: Dict[int, List[str]] = {}
        for a in d.get("annotations", []):
            caps.setdefault(a["image_id"], []).append(str(a["caption"]))
        for im in d["images"]:
            if caps.get(im["id"]):
                out.append((_find_image(index, task, folder, im["file_name"]), caps[im["id"]]))
    return out


def _vqa_items(task: str, folder: Path, split: str) -> List[Tuple[Path, str, List[str]]]:
    """(image, question, annotators' answers) of VQA-style or TextVQA-style files."""
    files = _json_files(folder, split)
    index = _image_index(folder)
    out = []
    questions = [d for _, d in files if isinstance(d, dict) and "questions" in d]
    annotations = [d for _, d in files if isinstance(d, dict) and "annotations" in d]
    textvqa = [d for _, d in files if isinstance(d, dict) and "data" in d]
    if questions and annotations:
        answers = {
            a["question_id"]: [str(x["answer"]) for x in a["answers"]] for d in annotations for a in d["annotations"]
        }
        for d in questions:
            for q in d["questions"]:
                if q["question_id"] not in answers:
                    raise DatasetMissingError(task, folder, f"question {q['question_id']} has no annotation")
                image = _find_image(index, task, folder, q.get("image", q["image_id"]))
                out.append((image, str(q["question"]), answers[q["question_id"]]))
    for d in textvqa:
        for q in d["data"]:
            if q.get("answers"):
                out.append((_find_image(index, task, folder, q["image_id"]), str(q["question"]), list(q["answers"])))
    if not out:
        raise DatasetMissingError(
            task, folder, f"no VQA-style questions and annotations (or TextVQA 'data') for the {split!r} split"
        )
    return out


def _scienceqa_items(task: str, folder: Path, split: str) -> List[Tuple[Path, str, List[str]]]:
    path = folder / "problems.json"
    if not path.is_file():
        raise DatasetMissingError(task, path, "ScienceQA's problems.json")
    with open(path, encoding="utf-8") as f:
        problems = json.load(f)
    want = ("train",) if split == "train" else ("test",)
    out = []
    for pid, p in sorted(problems.items()):
        if p.get("split") not in want or not p.get("image"):
            continue
        image = next((c for c in (folder / "images" / p["split"] / pid / p["image"], folder / p["split"] / pid /
                                  p["image"]) if c.is_file()), None)  # fmt: skip
        if image is None:
            raise DatasetMissingError(task, folder / "images" / p["split"] / pid / p["image"], "a ScienceQA image")
        letters = "ABCDE"
        shown = " ".join(f"({letters[i]}) {c}" for i, c in enumerate(p["choices"]))
        out.append((image, f"{p['question']} choices: {shown}", [str(p["choices"][int(p["answer"])])]))
    if not out:
        raise DatasetMissingError(task, path, f"no {want[0]} question with an image")
    return out


class BlipBenchmark(VLBenchmark):
    """The paper's Table 4 from local files (module docstring); ``load_benchmark("blip", ...)``."""

    code_files = ("vl.py", "blip.py", "hf.py", "metrics.py")

    def __init__(
        self,
        checkpoint_root,
        data_root,
        tasks: Optional[Sequence[str]] = None,
        device="auto",
        val_fraction: float = 0.1,
        seed: int = 0,
        caption_prompt: Optional[str] = None,
        max_question_tokens: int = 35,
    ):
        if checkpoint_root is None or data_root is None:
            raise ValueError("blip needs checkpoint_root (the fine-tuned experts) and data_root (the six datasets)")
        root, self.data_root = Path(checkpoint_root), Path(data_root)
        self.name, self.all_tasks = "blip", list(VL_TASKS)
        self.tasks = list(self.all_tasks)
        self.tasks = self._check_tasks(tasks)
        self.task_specs = dict(VL_TASKS)
        if caption_prompt is not None:
            self.task_specs = {
                t: VLTask(s.name, s.analogue, s.kind, caption_prompt, s.max_new_tokens) if s.kind == "caption" else s
                for t, s in VL_TASKS.items()
            }
        self.device = resolve_device(device)
        self.val_fraction, self.seed, self.max_question_tokens = (
            float(val_fraction),
            int(seed),
            int(max_question_tokens),
        )
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        theta0 = root / THETA0
        if not theta0.is_dir():
            raise CheckpointNotFoundError(f"no {THETA0}/ in {root} (θ0's save_pretrained folder)", path=str(theta0))
        config = _config(theta0)
        self.config = config
        self._make_module = lambda: BlipVQA(config)
        shape = self._make_module()
        self.pretrained = _state(theta0, shape)
        self.finetuned = {}
        for t in self.tasks:
            folder = root / t
            if not folder.is_dir():
                raise CheckpointNotFoundError(f"no expert for task {t!r}: {folder} does not exist", path=str(folder))
            cfg = _config(folder)
            a = (cfg.vision_config.hidden_size, cfg.text_config.hidden_size, cfg.text_config.vocab_size)
            b = (config.vision_config.hidden_size, config.text_config.hidden_size, config.text_config.vocab_size)
            if a != b:
                raise ArchitectureMismatchError(
                    f"{folder}: vision width, text width, vocabulary {a}, but θ0 has {b}", path=str(folder)
                )
            self.finetuned[t] = _state(folder, shape)
        del shape
        self.tokenizer, self.image_processor = _processor(root, theta0)
        self.pad_id = int(config.text_config.pad_token_id)
        self.bos_id = int(config.text_config.bos_token_id)
        self._splits: Dict[Tuple[str, str], List[VLItem]] = {}

    # --- VLBenchmark --------------------------------------------------------------------------------------------------
    def _question(self, text: str) -> List[int]:
        return list(self.tokenizer(text, truncation=True, max_length=self.max_question_tokens)["input_ids"])

    def _answer(self, text: str) -> List[int]:
        ids = list(self.tokenizer(text, truncation=True, max_length=40)["input_ids"])
        return [self.bos_id] + ids[1:]  # [CLS] → the decoder's start token, as generate() starts

    def examples(self, task: str, split: str) -> List[VLItem]:
        """Read once per task and split; "train" and "val" split the training files with ``seed``."""
        if (task, split) in self._splits:
            return self._splits[(task, split)]
        spec, folder = self.task_specs[task], self.data_root / task
        if not folder.is_dir():
            raise DatasetMissingError(task, folder, "data_root holds one folder per task")
        source = "train" if split in ("train", "val") else "test"
        if spec.kind == "caption":
            rows = [(img, spec.prompt, caps) for img, caps in _caption_items(task, folder, source)]
        elif task == "scienceqa" or (folder / "problems.json").is_file():
            rows = _scienceqa_items(task, folder, source)
        else:
            rows = _vqa_items(task, folder, source)
        if source == "train":
            order = np.random.default_rng(self.seed).permutation(len(rows))
            n_val = max(1, int(round(self.val_fraction * len(rows))))
            rows = [rows[i] for i in np.sort(order[:n_val] if split == "val" else order[n_val:])]
        items = []
        for image, question, refs in rows:
            if split == "train" and spec.kind == "caption":  # one training item per caption
                items += [VLItem(image, self._question(question), self._answer(c), [c]) for c in refs]
            else:  # the most frequent answer is the training target; all of them are references
                target = Counter(refs).most_common(1)[0][0]
                items.append(VLItem(image, self._question(question), self._answer(target), list(refs)))
        self._splits[(task, split)] = items
        return items

    def pixels(self, items: Sequence[VLItem]) -> torch.Tensor:
        from PIL import Image

        images = []
        for it in items:
            with Image.open(it.image) as im:
                images.append(im.convert("RGB"))
        return self.image_processor(images=images, return_tensors="pt")["pixel_values"].float()

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()


def load_blip(
    checkpoint_root=None,
    data_root=None,
    tasks=None,
    device="auto",
    val_fraction: float = 0.1,
    seed: int = 0,
    caption_prompt: Optional[str] = None,
    max_question_tokens: int = 35,
    **kwargs,
) -> BlipBenchmark:
    """``load_benchmark("blip", checkpoint_root=..., data_root=...)`` (module docstring for the layouts).
    ``val_fraction`` of each training set, drawn with ``seed``, is the validation split; ``caption_prompt`` replaces
    the question the captioning tasks ask; questions are truncated to ``max_question_tokens``."""
    if kwargs:
        raise TypeError(
            f"blip: unknown option(s) {sorted(kwargs)}; it takes val_fraction, seed, caption_prompt, "
            "max_question_tokens"
        )
    return BlipBenchmark(
        checkpoint_root, data_root, tasks, device, val_fraction, seed, caption_prompt, max_question_tokens
    )
