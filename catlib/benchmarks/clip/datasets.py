"""The eight CLIP merging datasets from a local ``data_root`` in the task_vectors layout (nothing is downloaded).

Expected paths (those of ``mlfoundations/task_vectors`` ``src/datasets/*.py``; torchvision with ``download=False``)::

    SUN397    <root>/sun397/{train,val}/<a_abbey, ...>/*.jpg        ImageFolder; test = val folder
    Cars      <root>/stanford_cars/{devkit,cars_train,cars_test,cars_test_annos_withlabels.mat}  (torchvision
              StanfordCars) or <root>/stanford_cars_folder_based/{train,test}/<class>/ (ImageFolder)
    RESISC45  <root>/resisc45/NWPU-RESISC45/<class>/*.jpg + <root>/resisc45/resisc45-{train,test}.txt
    EuroSAT   <root>/EuroSAT_splits/{train,val,test}/<AnnualCrop, ...>/*   ImageFolder; val = its own val folder
    SVHN      <root>/svhn/{train,test}_32x32.mat                    torchvision SVHN's files (no md5 check)
    GTSRB     <root>/gtsrb/GTSRB/Training/..., <root>/gtsrb/GTSRB/Final_Test/Images, <root>/gtsrb/GT-final_test.csv
    MNIST     <root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte   torchvision MNIST
    DTD       <root>/dtd/{train,val}/<class>/*   ImageFolder; test = val folder
              (fallback: torchvision DTD at <root>/dtd/dtd/{images,labels})

Splits: ``"test"`` is task_vectors' test set. ``"val"`` is task_vectors' ``<Task>Val``: 10 % of the training set
(at most 5000 images) drawn with ``torch.utils.data.random_split(generator=torch.Generator().manual_seed(0))``,
except EuroSAT, which has its own ``val`` folder. ``"train"`` is the training set minus the val part (so exemplars
never overlap the images that choose hyperparameters).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

import torch
from torch.utils.data import Dataset, Subset

from ...core.errors import CatlibError, DatasetMissingError  # noqa: F401  (CatlibError: importable here as before)
from .tasks import CLASS_NAMES, EUROSAT_FOLDER_TO_NAME, TASKS

PathLike = Union[str, os.PathLike]
VAL_FRACTION = 0.1
MAX_VAL = 5000
VAL_SEED = 0


def _require(task: str, path: Path, what: str = "directory") -> Path:
    if not path.exists():
        raise DatasetMissingError(task, path, f"missing {what}")
    return path


def _image_folder(task: str, path: Path, transform, is_valid_file=None):
    from torchvision.datasets import ImageFolder

    _require(task, path)
    try:
        return ImageFolder(str(path), transform=transform, is_valid_file=is_valid_file)
    except FileNotFoundError as e:  # no class folders / no images
        raise DatasetMissingError(task, path, str(e)) from e


def _folder_classnames(task: str, ds) -> List[str]:
    """Class names from ImageFolder folder names, by task_vectors' rules."""
    idx_to_class = {v: k for k, v in ds.class_to_idx.items()}
    folders = [idx_to_class[i] for i in range(len(idx_to_class))]
    if task == "SUN397":
        return [f[2:].replace("_", " ") for f in folders]
    if task == "EuroSAT":
        unknown = [f for f in folders if f not in EUROSAT_FOLDER_TO_NAME]
        if unknown:
            raise DatasetMissingError(
                task, ds.root, f"unknown EuroSAT class folders {unknown[:3]}; expected {sorted(EUROSAT_FOLDER_TO_NAME)}"
            )
        return [EUROSAT_FOLDER_TO_NAME[f] for f in folders]
    return [f.replace("_", " ") for f in folders]


def _check_names(task: str, names: List[str]) -> None:
    ref = CLASS_NAMES[task]
    if len(names) == len(ref) and names != ref:
        first = next(i for i, (a, b) in enumerate(zip(names, ref)) if a != b)
        warnings.warn(
            f"{task}: class name {first} from the dataset folders is {names[first]!r}, catlib's list has "
            f"{ref[first]!r}; using the dataset's"
        )


class _RGB:
    """Wrap a transform so every image is converted to RGB first (MNIST is L, SVHN arrays, GTSRB ppm)."""

    def __init__(self, transform: Optional[Callable]):
        self.transform = transform

    def __call__(self, img):
        if hasattr(img, "convert"):
            img = img.convert("RGB")
        return self.transform(img) if self.transform is not None else img


class _IntLabels(Dataset):
    """Labels as plain ints (RESISC45's torchgeo-style dataset returns tensors; keep one convention)."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        x, y = self.ds[i]
        return x, int(y)


class SVHNMat(Dataset):
    """SVHN ``{train,test}_32x32.mat`` (the files torchvision's SVHN reads; label 10 means digit 0), read without
    torchvision's md5 check of the whole file on every load."""

    def __init__(self, task: str, path: Path, transform: Optional[Callable]):
        import numpy as np
        import scipy.io

        _require(task, path, "file")
        try:
            mat = scipy.io.loadmat(str(path))
            self.data = np.transpose(mat["X"], (3, 0, 1, 2))  # (N, 32, 32, 3) uint8
            self.labels = (mat["y"].astype(np.int64).reshape(-1) % 10).tolist()
        except Exception as e:
            raise DatasetMissingError(task, path, f"unreadable SVHN .mat file ({type(e).__name__}: {e})") from e
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        img = Image.fromarray(self.data[i])
        return (self.transform(img) if self.transform is not None else img), self.labels[i]


def base_splits(
    task: str, data_root: PathLike, transform: Optional[Callable]
) -> Tuple[Dataset, Dataset, Optional[Dataset], List[str]]:
    """``(train, test, val_or_None, class_names)`` of one task as task_vectors builds them (``val`` only for
    EuroSAT, which ships one). Images come out through ``transform`` (after conversion to RGB)."""
    import torchvision.datasets as tvd

    if task not in TASKS:
        raise KeyError(f"unknown task {task!r}; the real benchmarks know {TASKS}")
    root = Path(data_root)
    if not root.is_dir():
        raise DatasetMissingError(task, root, "data_root does not exist")
    tf = _RGB(transform)
    val = None
    if task == "SUN397":
        train = _image_folder(task, root / "sun397" / "train", tf)
        test = _image_folder(task, root / "sun397" / "val", tf)
        names = _folder_classnames(task, train)
    elif task == "DTD":
        if (root / "dtd" / "train").is_dir():
            train = _image_folder(task, root / "dtd" / "train", tf)
            test = _image_folder(task, root / "dtd" / "val", tf)
            names = _folder_classnames(task, train)
        elif (root / "dtd" / "dtd" / "images").is_dir():  # torchvision's DTD(root=data_root) layout
            train = tvd.DTD(str(root), split="train", transform=tf, download=False)
            test = tvd.DTD(str(root), split="test", transform=tf, download=False)
            names = [c.replace("_", " ") for c in train.classes]
        else:
            raise DatasetMissingError(task, root / "dtd" / "train", f"nor torchvision's {root / 'dtd' / 'dtd'}")
    elif task == "EuroSAT":
        base = root / "EuroSAT_splits"
        train = _image_folder(task, base / "train", tf)
        test = _image_folder(task, base / "test", tf)
        val = _image_folder(task, base / "val", tf)
        names = _folder_classnames(task, train)
    elif task == "RESISC45":
        base = root / "resisc45"
        img_root = _require(task, base / "NWPU-RESISC45")
        sets = []
        for split in ("train", "test"):
            lst = _require(task, base / f"resisc45-{split}.txt", "split file")
            valid = {line.strip() for line in lst.read_text().splitlines() if line.strip()}
            sets.append(_image_folder(task, img_root, tf, is_valid_file=lambda p, v=valid: os.path.basename(p) in v))
        train, test = sets
        names = _folder_classnames(task, train)
    elif task == "Cars":
        if (root / "stanford_cars").is_dir():
            try:
                train = tvd.StanfordCars(str(root), split="train", transform=tf, download=False)
                test = tvd.StanfordCars(str(root), split="test", transform=tf, download=False)
            except RuntimeError as e:
                raise DatasetMissingError(task, root / "stanford_cars", str(e)) from e
            names = list(train.classes)
        elif (root / "stanford_cars_folder_based").is_dir():
            train = _image_folder(task, root / "stanford_cars_folder_based" / "train", tf)
            test = _image_folder(task, root / "stanford_cars_folder_based" / "test", tf)
            names = _folder_classnames(task, train)
        else:
            raise DatasetMissingError(task, root / "stanford_cars", f"nor {root / 'stanford_cars_folder_based'}")
    elif task == "SVHN":
        base = _require(task, root / "svhn")
        train = SVHNMat(task, base / "train_32x32.mat", tf)
        test = SVHNMat(task, base / "test_32x32.mat", tf)
        names = list(CLASS_NAMES["SVHN"])
    elif task == "GTSRB":
        _require(task, root / "gtsrb")
        try:
            train = tvd.GTSRB(str(root), split="train", transform=tf, download=False)
            test = tvd.GTSRB(str(root), split="test", transform=tf, download=False)
        except (RuntimeError, FileNotFoundError) as e:
            raise DatasetMissingError(task, root / "gtsrb" / "GTSRB", str(e)) from e
        names = list(CLASS_NAMES["GTSRB"])
    elif task == "MNIST":
        try:
            train = tvd.MNIST(str(root), train=True, transform=tf, download=False)
            test = tvd.MNIST(str(root), train=False, transform=tf, download=False)
        except RuntimeError as e:
            raise DatasetMissingError(task, root / "MNIST" / "raw", str(e)) from e
        names = list(CLASS_NAMES["MNIST"])
    else:  # pragma: no cover - TASKS is exhaustive
        raise KeyError(task)
    _check_names(task, names)
    return _IntLabels(train), _IntLabels(test), (None if val is None else _IntLabels(val)), names


def carve_val(
    n: int, val_fraction: float = VAL_FRACTION, max_val: int = MAX_VAL, seed: int = VAL_SEED
) -> Tuple[List[int], List[int]]:
    """``(train_indices, val_indices)`` as task_vectors' ``split_train_into_train_val``: ``random_split`` of
    ``[n - v, v]`` with ``v = min(int(n · val_fraction), max_val)`` and a generator seeded with ``seed``."""
    v = min(int(n * val_fraction), max_val)
    if v <= 0 or v >= n:
        raise ValueError(f"cannot carve a val split of {v} from {n} training images")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return perm[: n - v], perm[n - v :]


class TaskData:
    """The three splits of one task (lazily opened datasets sharing one transform)."""

    def __init__(self, task: str, data_root: PathLike, transform: Optional[Callable]):
        train, test, val, names = base_splits(task, data_root, transform)
        self.task, self.class_names = task, names
        if val is None:
            tr_idx, val_idx = carve_val(len(train))
            self.splits: Dict[str, Dataset] = {
                "train": Subset(train, tr_idx),
                "val": Subset(train, val_idx),
                "test": test,
            }
        else:
            self.splits = {"train": train, "val": val, "test": test}

    def __getitem__(self, split: str) -> Dataset:
        if split not in self.splits:
            raise ValueError(f"split must be one of {sorted(self.splits)}, got {split!r}")
        return self.splits[split]


__all__ = ["DatasetMissingError", "base_splits", "carve_val", "TaskData", "VAL_FRACTION", "MAX_VAL", "VAL_SEED"]
