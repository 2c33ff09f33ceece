"""Generated stand-ins for the real CLIP benchmarks: a tiny open_clip model saved in every checkpoint layout catlib
reads, and a tiny dataset root in the task_vectors layout. Nothing here is committed data: tests (and the lead's
papermill run) call :func:`make_standin_roots` on a temporary directory.

Written independently of catlib's loaders where it matters: pickled modules use a fake ``src.modeling`` module
(as task_vectors' checkpoints do, and removed again before loading), the head files follow task_vectors'
``build_classification_head`` with ``open_clip.tokenize``, and the HF files use the key mapping of
``catlib.benchmarks.clip.checkpoints`` (its round trip and forward equivalence are tested separately in
test_checkpoints.py).
"""

from __future__ import annotations

import copy
import json
import struct
import sys
import types
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import torch
from torch import nn

TINY_MODEL_NAME = "catlib-tiny-clip"
TINY_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
    # vocab_size must stay 49408: the CLIP BPE tokenizer emits ids up to 49407.
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
DEFAULT_TASKS = ("MNIST", "DTD", "EuroSAT")
DTD_STANDIN_CLASSES = ["banded", "blotchy", "braided"]
SUN397_STANDIN_CLASSES = ["abbey", "airplane cabin", "bakery shop"]
CARS_STANDIN_CLASSES = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Acura TL Sedan 2012"]
RESISC45_STANDIN_FOLDERS = ["airplane", "baseball_diamond", "wetland"]
ALL_STANDIN_TASKS = ("SUN397", "Cars", "RESISC45", "EuroSAT", "SVHN", "GTSRB", "MNIST", "DTD")


def tiny_clip(seed: int = 0, config: Dict = TINY_CONFIG) -> nn.Module:
    """A randomly initialised tiny open_clip CLIP (QuickGELU, like OpenAI's weights), fp32, eval mode."""
    from open_clip.model import CLIP

    torch.manual_seed(seed)
    return CLIP(**copy.deepcopy(config), quick_gelu=True).eval()


# ------------------------------------------------------------------------------------------------------------
# task_vectors' classes, pickled under their real module path
# ------------------------------------------------------------------------------------------------------------
class _FakeSrc:
    """Context manager installing a fake ``src.modeling`` with ImageEncoder / ClassificationHead while saving."""

    def __enter__(self):
        src = types.ModuleType("src")
        modeling = types.ModuleType("src.modeling")

        class ImageEncoder(nn.Module):
            def __init__(self, clip_model, keep_lang=False):
                super().__init__()
                self.model = clip_model
                self.cache_dir = None
                if not keep_lang and hasattr(self.model, "transformer"):
                    delattr(self.model, "transformer")

            def forward(self, images):
                return self.model.encode_image(images)

        class ClassificationHead(nn.Linear):
            def __init__(self, normalize, weights, biases=None):
                out_size, in_size = weights.shape
                super().__init__(in_size, out_size)
                self.normalize = normalize
                self.weight = nn.Parameter(weights.clone())
                self.bias = nn.Parameter(torch.zeros(out_size) if biases is None else biases.clone())

            def forward(self, inputs):
                if self.normalize:
                    inputs = inputs / inputs.norm(dim=-1, keepdim=True)
                return super().forward(inputs)

        for cls in (ImageEncoder, ClassificationHead):
            cls.__module__, cls.__qualname__ = "src.modeling", cls.__name__
            setattr(modeling, cls.__name__, cls)
        src.modeling = modeling
        self._saved = {k: sys.modules.get(k) for k in ("src", "src.modeling")}
        sys.modules["src"], sys.modules["src.modeling"] = src, modeling
        return modeling

    def __exit__(self, *exc):
        for k, v in self._saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
        return False


@torch.no_grad()
def task_vectors_head_weights(clip_model: nn.Module, class_names: Sequence[str], templates: Sequence[str]):
    """task_vectors' ``build_classification_head``: (C, E) weights including ``logit_scale.exp()``."""
    import open_clip

    ctx = clip_model.context_length
    rows = []
    for c in class_names:
        tok = open_clip.tokenize([t.replace("{c}", c) for t in templates], context_length=ctx)
        e = clip_model.encode_text(tok)
        e = e / e.norm(dim=-1, keepdim=True)
        e = e.mean(dim=0)
        rows.append(e / e.norm())
    return torch.stack(rows) * clip_model.logit_scale.exp()


# ------------------------------------------------------------------------------------------------------------
# datasets
# ------------------------------------------------------------------------------------------------------------
def _class_image(rng: np.random.Generator, label: int, n_classes: int, size: int = 20) -> np.ndarray:
    """An RGB uint8 image whose hue and stripe frequency depend on the label, plus noise."""
    hue = np.array([np.cos(2 * np.pi * label / n_classes), np.sin(2 * np.pi * label / n_classes), 0.5])
    xs = np.linspace(0, 1, size)
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * (label + 1) * xs)[None, :, None]
    img = 0.5 + 0.4 * hue[None, None, :] * stripes + 0.1 * rng.standard_normal((size, size, 3))
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def _write_png(path: Path, arr: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _write_image_folder(root: Path, folders: List[str], per_class: int, rng, prefix: str, keep=None) -> None:
    for label, f in enumerate(folders):
        for j in range(per_class):
            arr = _class_image(rng, label, len(folders))
            _write_png(root / f / f"{prefix}_{label}_{j}.png", arr)
            if keep is not None:
                keep.append((arr, label))


def _write_mnist_raw(root: Path, n_train: int, n_test: int, rng, keep=None) -> None:
    """torchvision's MNIST on-disk format: <root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        imgs = np.zeros((n, 28, 28), np.uint8)
        for i, y in enumerate(labels):
            imgs[i] = _class_image(rng, int(y), 10, 28).mean(axis=2).astype(np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + imgs.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + labels.tobytes())
        if keep is not None and prefix == "train":
            keep.extend((np.repeat(imgs[i][:, :, None], 3, axis=2), int(labels[i])) for i in range(n))


def make_data_root(data_root: Path, tasks: Sequence[str] = DEFAULT_TASKS, seed: int = 0) -> Dict[str, list]:
    """Tiny datasets in the task_vectors layout (any of the eight tasks: MNIST raw idx files, SVHN .mat files,
    GTSRB's torchvision tree, ImageFolder trees for SUN397, Cars (folder-based), RESISC45, EuroSAT, DTD).
    Returns task → the training images as ``[(uint8 HxWx3 array, label), ...]`` (used to fine-tune the stand-ins)."""
    from catlib.benchmarks.clip.tasks import EUROSAT_FOLDER_TO_NAME

    rng = np.random.default_rng(seed)
    data_root = Path(data_root)
    train: Dict[str, list] = {}
    for t in tasks:
        keep = train.setdefault(t, [])
        if t == "MNIST":
            _write_mnist_raw(data_root, n_train=30, n_test=20, rng=rng, keep=keep)
        elif t == "DTD":
            _write_image_folder(data_root / "dtd" / "train", DTD_STANDIN_CLASSES, 10, rng, "tr", keep)
            _write_image_folder(data_root / "dtd" / "val", DTD_STANDIN_CLASSES, 4, rng, "te")
        elif t == "EuroSAT":
            folders = sorted(EUROSAT_FOLDER_TO_NAME)
            for split, n in (("train", 2), ("val", 1), ("test", 2)):
                _write_image_folder(
                    data_root / "EuroSAT_splits" / split, folders, n, rng, split, keep if split == "train" else None
                )
        elif t == "SUN397":  # task_vectors' prepared tree: <letter>_<name> folders, test = val
            folders = [f"{f[0]}_{f.replace(' ', '_')}" for f in SUN397_STANDIN_CLASSES]
            _write_image_folder(data_root / "sun397" / "train", folders, 10, rng, "tr", keep)
            _write_image_folder(data_root / "sun397" / "val", folders, 2, rng, "te")
        elif t == "Cars":  # the folder-based fallback of task_vectors' Cars
            _write_image_folder(
                data_root / "stanford_cars_folder_based" / "train", CARS_STANDIN_CLASSES, 10, rng, "tr", keep
            )
            _write_image_folder(data_root / "stanford_cars_folder_based" / "test", CARS_STANDIN_CLASSES, 2, rng, "te")
        elif t == "RESISC45":  # one image tree + split lists of file names
            base = data_root / "resisc45"
            tmp_keep: list = []
            _write_image_folder(base / "NWPU-RESISC45", RESISC45_STANDIN_FOLDERS, 12, rng, "img", tmp_keep)
            files = sorted(p.name for p in (base / "NWPU-RESISC45").rglob("*.png"))
            (base / "resisc45-train.txt").write_text("\n".join(f for f in files if int(f[:-4].split("_")[-1]) < 10))
            (base / "resisc45-test.txt").write_text("\n".join(f for f in files if int(f[:-4].split("_")[-1]) >= 10))
            keep.extend(it for k, it in enumerate(tmp_keep) if k % 12 < 10)
        elif t == "GTSRB":  # torchvision's layout: Training/<5-digit class>/*.ppm, Final_Test/Images + csv
            base = data_root / "gtsrb"
            from PIL import Image

            rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
            for label in range(3):
                for j in range(10):
                    arr = _class_image(rng, label, 3)
                    p = base / "GTSRB" / "Training" / f"{label:05d}" / f"{label:05d}_{j:05d}.ppm"
                    p.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(arr).save(p)
                    keep.append((arr, label))
                for j in range(2):
                    name = f"{label * 2 + j:05d}.ppm"
                    p = base / "GTSRB" / "Final_Test" / "Images" / name
                    p.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(_class_image(rng, label, 3)).save(p)
                    rows.append(f"{name};20;20;0;0;19;19;{label}")
            (base / "GT-final_test.csv").write_text("\n".join(rows) + "\n")
        elif t == "SVHN":  # torchvision's .mat files: X (32, 32, 3, N) uint8, y (N, 1) in 1..10 (10 = digit 0)
            import scipy.io

            (data_root / "svhn").mkdir(parents=True, exist_ok=True)
            for split, n in (("train", 30), ("test", 10)):
                digits = np.arange(n) % 10
                x = np.stack([_class_image(rng, int(d), 10, 32) for d in digits], axis=3)
                scipy.io.savemat(
                    str(data_root / "svhn" / f"{split}_32x32.mat"),
                    {"X": x, "y": np.where(digits == 0, 10, digits).astype(np.uint8)[:, None]},
                )
                if split == "train":
                    keep.extend((x[..., i], int(d)) for i, d in enumerate(digits))
        else:
            raise ValueError(f"no stand-in generator for {t!r}")
    return train


def standin_class_names(task: str) -> List[str]:
    """The class names catlib should derive for the stand-in datasets (folder-based ones have 3 classes)."""
    from catlib.benchmarks.clip.tasks import CLASS_NAMES

    folder_based = {
        "DTD": DTD_STANDIN_CLASSES,
        "SUN397": SUN397_STANDIN_CLASSES,
        "Cars": CARS_STANDIN_CLASSES,
        "RESISC45": [f.replace("_", " ") for f in RESISC45_STANDIN_FOLDERS],
    }
    return list(folder_based.get(task, CLASS_NAMES[task]))


# ------------------------------------------------------------------------------------------------------------
# checkpoints
# ------------------------------------------------------------------------------------------------------------
def finetuned_clips(
    base: nn.Module,
    train: Dict[str, list],
    heads: Dict[str, torch.Tensor],
    seed: int = 0,
    steps: int = 40,
    lr: float = 3e-3,
) -> Dict[str, nn.Module]:
    """Copies of ``base`` whose visual tower was fine-tuned for a few full-batch Adam steps on the stand-in
    training images through the frozen zero-shot head (the task_vectors recipe in miniature). ``proj`` stays θ0's,
    as in FusionBench's models (so every layout holds the same state dicts)."""
    import open_clip
    from PIL import Image

    tf = open_clip.image_transform(base.visual.image_size[0], is_train=False)
    out = {}
    for i, (t, items) in enumerate(train.items()):
        torch.manual_seed(seed * 1000 + i + 1)
        x = torch.stack([tf(Image.fromarray(a).convert("RGB")) for a, _ in items])
        y = torch.tensor([lab for _, lab in items])
        m = copy.deepcopy(base)
        params = [p.requires_grad_(True) for n, p in m.visual.named_parameters() if n != "proj"]
        opt = torch.optim.Adam(params, lr=lr)
        w = heads[t]
        for _ in range(steps):
            logits = torch.nn.functional.normalize(m.encode_image(x), dim=-1) @ w.T
            loss = torch.nn.functional.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        out[t] = m.eval().requires_grad_(False)
    return out


def _write_config(root: Path, config: Dict) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "open_clip_config.json").write_text(json.dumps({"model_cfg": {**config, "quick_gelu": True}}, indent=2))


def write_task_vectors_layout(
    root: Path,
    model_name: str,
    base: nn.Module,
    finetuned: Dict[str, nn.Module],
    heads: Dict[str, torch.Tensor],
    pickled: bool,
    config: Dict,
) -> Path:
    """<root>/<model>/{zeroshot.pt, <Task>/finetuned.pt, head_<Task>.pt}; whole pickled modules or state dicts."""
    mdir = Path(root) / model_name
    mdir.mkdir(parents=True, exist_ok=True)
    _write_config(Path(root), config)
    with _FakeSrc() as src:

        def encoder(m):
            return src.ImageEncoder(copy.deepcopy(m), keep_lang=False)

        def save(obj, path):
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(obj if pickled else obj.state_dict(), path)

        save(encoder(base), mdir / "zeroshot.pt")
        for t, m in finetuned.items():
            save(encoder(m), mdir / t / "finetuned.pt")
        for t, w in heads.items():
            save(src.ClassificationHead(normalize=True, weights=w), mdir / f"head_{t}.pt")
    return Path(root)


def write_raw_pickled_encoder(path: Path, clip_model: nn.Module) -> Path:
    """``pickle.dump`` (not ``torch.save``) of a task_vectors ``ImageEncoder`` holding ``clip_model``: the format of
    some released checkpoints, which ``torch.load`` cannot read (no magic number)."""
    import pickle

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _FakeSrc() as src, open(path, "wb") as f:
        pickle.dump(src.ImageEncoder(copy.deepcopy(clip_model), keep_lang=False), f)
    return path


def write_hf_layout(
    root: Path,
    model_name: str,
    base: nn.Module,
    finetuned: Dict[str, nn.Module],
    config: Dict,
    cache_style_tasks: Sequence[str] = (),
) -> Path:
    """openai/<hf>/ (full CLIPModel) and tanganke/<hf>_<task>/ (CLIPVisionModel) with model.safetensors +
    config.json; tasks in ``cache_style_tasks`` go to an HF cache entry without the ``vision_model.`` prefix."""
    from catlib.benchmarks.clip.checkpoints import (
        HF_MODEL_NAMES,
        hf_vision_config,
        openclip_to_hf_clip,
        openclip_visual_to_hf,
        save_hf_model_dir,
    )
    from catlib.benchmarks.clip.tasks import HF_TASK_NAMES

    root = Path(root)
    _write_config(root, config)
    hn = HF_MODEL_NAMES.get(model_name, model_name)
    vcfg = hf_vision_config(config)
    full = openclip_to_hf_clip(base.state_dict())
    full["text_model.embeddings.position_ids"] = torch.arange(config["text_cfg"]["context_length"])[None]
    save_hf_model_dir(
        root / "openai" / hn,
        full,
        {"architectures": ["CLIPModel"], "vision_config": vcfg, "projection_dim": config["embed_dim"]},
    )
    for t, m in finetuned.items():
        name = f"{hn}_{HF_TASK_NAMES[t]}"
        if t in cache_style_tasks:
            vis = openclip_visual_to_hf(m.visual.state_dict(), prefix="")
            vis.pop("visual_projection.weight")
            entry = root / f"models--tanganke--{name}"
            (entry / "refs").mkdir(parents=True, exist_ok=True)
            (entry / "refs" / "main").write_text("0123abcd")
            save_hf_model_dir(entry / "snapshots" / "0123abcd", vis, {"architectures": ["CLIPVisionModel"], **vcfg})
        else:
            vis = openclip_visual_to_hf(m.visual.state_dict())
            vis.pop("visual_projection.weight")  # CLIPVisionModel has no projection
            vis["vision_model.embeddings.position_ids"] = torch.arange(
                (config["vision_cfg"]["image_size"] // config["vision_cfg"]["patch_size"]) ** 2 + 1
            )[None]
            save_hf_model_dir(root / "tanganke" / name, vis, {"architectures": ["CLIPVisionModel"], **vcfg})
    return root


def make_standin_roots(
    tmp_dir,
    tasks: Sequence[str] = DEFAULT_TASKS,
    seed: int = 0,
    model_name: str = TINY_MODEL_NAME,
    config: Dict = TINY_CONFIG,
) -> Dict:
    """Write every stand-in under ``tmp_dir`` and describe them.

    Returns ``dict(checkpoint_root, data_root, model_name, tasks, model_config, pickle_root, hf_root,
    openclip_weights, class_names, base, finetuned)``:

    * ``checkpoint_root``: task_vectors layout with plain state dicts and head files (loads without trust);
    * ``pickle_root``: the same with whole pickled modules (``trust_pickle=True`` needed);
    * ``hf_root``: the FusionBench/HF layout (heads built from θ0's text tower);
    * ``openclip_weights``: open_clip's own full CLIP state dict file of θ0;
    * ``base`` / ``finetuned``: the in-memory CLIP modules the files were written from (for checks).
    """
    tmp = Path(tmp_dir)
    tasks = list(tasks)
    base = tiny_clip(seed, config).requires_grad_(False)
    with torch.no_grad():
        base.logit_scale.fill_(float(np.log(100.0)))
    from catlib.benchmarks.clip.tasks import TEMPLATES

    names = {t: standin_class_names(t) for t in tasks}
    heads = {t: task_vectors_head_weights(base, names[t], TEMPLATES[t]) for t in tasks}
    data_root = tmp / "data"
    train = make_data_root(data_root, tasks, seed)
    ft = finetuned_clips(base, train, heads, seed)
    ckpt = write_task_vectors_layout(tmp / "ckpt_state", model_name, base, ft, heads, pickled=False, config=config)
    pick = write_task_vectors_layout(tmp / "ckpt_pickle", model_name, base, ft, heads, pickled=True, config=config)
    hf = write_hf_layout(tmp / "ckpt_hf", model_name, base, ft, config, cache_style_tasks=tasks[-1:])
    ocw = tmp / "openclip" / f"{model_name}.pt"
    ocw.parent.mkdir(parents=True, exist_ok=True)
    torch.save(base.state_dict(), ocw)
    return dict(
        checkpoint_root=str(ckpt),
        data_root=str(data_root),
        model_name=model_name,
        tasks=tasks,
        model_config={**copy.deepcopy(config), "quick_gelu": True},
        pickle_root=str(pick),
        hf_root=str(hf),
        openclip_weights=str(ocw),
        class_names=names,
        base=base,
        finetuned=ft,
    )


__all__ = [
    "TINY_MODEL_NAME",
    "TINY_CONFIG",
    "DEFAULT_TASKS",
    "ALL_STANDIN_TASKS",
    "standin_class_names",
    "tiny_clip",
    "make_standin_roots",
    "make_data_root",
    "write_task_vectors_layout",
    "write_raw_pickled_encoder",
    "write_hf_layout",
    "task_vectors_head_weights",
    "finetuned_clips",
]
