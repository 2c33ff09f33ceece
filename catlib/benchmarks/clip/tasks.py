"""Class names and prompt templates of the eight CLIP merging tasks (data, not code).

The strings live in ``data/*.json`` next to this module, read once at import into the constant dicts below:

* ``templates.json``: task → prompt templates;
* ``class_names.json``: task → class names in label order, for SUN397, Cars, GTSRB and DTD;
* ``class_folders.json``: RESISC45's folder names (label order) and EuroSAT's folder → class name map, from which
  those two tasks' class names are derived (SVHN and MNIST are the digits ``"0"`` … ``"9"``).

Sources (copied verbatim, as data):

* templates: ``mlfoundations/task_vectors`` ``src/datasets/templates.py`` (identical to FusionBench's
  ``fusion_bench/tasks/clip_classification/<ds>.py`` for the tasks compared, see ``baselines.md`` 2.7);
* GTSRB, RESISC45, EuroSAT, MNIST, SVHN class names: the task_vectors dataset classes
  (``src/datasets/{gtsrb,resisc45,eurosat,mnist,svhn}.py``; EuroSAT through its ``ours_to_open_ai`` map);
* SUN397, Cars, DTD class names: FusionBench ``fusion_bench/tasks/clip_classification/{sun397,stanford_cars,dtd}.py``
  (task_vectors derives the same names at run time from the dataset's folders / ``cars_meta.mat``).

Templates are strings with a ``{c}`` placeholder (``template.replace("{c}", name)``). Class lists are in label
order: index ``i`` is the name of label ``i`` in the task_vectors dataset classes. Where a dataset is read from
ImageFolder trees the labels follow the sorted folder names, and :mod:`catlib.benchmarks.clip.datasets` derives the
names from the folders with task_vectors' rules (and warns when they differ from the list here).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, Dict, List

# Task names as task_vectors spells them (directory names of its checkpoints: <root>/ViT-B-32/<Task>/finetuned.pt).
TASKS: List[str] = ["SUN397", "Cars", "RESISC45", "EuroSAT", "SVHN", "GTSRB", "MNIST", "DTD"]

# Task name -> FusionBench / HF suffix (tanganke/clip-vit-base-patch32_<suffix>).
HF_TASK_NAMES: Dict[str, str] = {
    "SUN397": "sun397",
    "Cars": "stanford-cars",
    "RESISC45": "resisc45",
    "EuroSAT": "eurosat",
    "SVHN": "svhn",
    "GTSRB": "gtsrb",
    "MNIST": "mnist",
    "DTD": "dtd",
}


def _read_data(name: str) -> Any:
    """The parsed JSON file ``data/<name>`` of this package (read anew on every call)."""
    return json.loads(resources.files(__package__).joinpath("data").joinpath(name).read_text(encoding="utf-8"))


TEMPLATES: Dict[str, List[str]] = _read_data("templates.json")

_NAMES: Dict[str, List[str]] = _read_data("class_names.json")
_FOLDERS: Dict[str, Any] = _read_data("class_folders.json")

# RESISC45 folder names (label order); task_vectors' class names replace "_" by " ".
RESISC45_FOLDERS: List[str] = _FOLDERS["RESISC45"]

# EuroSAT: folder name (EuroSAT_splits/<split>/<folder>) -> the OpenAI-style class name task_vectors uses.
EUROSAT_FOLDER_TO_NAME: Dict[str, str] = _FOLDERS["EuroSAT"]

_DIGITS = [str(i) for i in range(10)]

CLASS_NAMES: Dict[str, List[str]] = {
    "SUN397": _NAMES["SUN397"],
    "Cars": _NAMES["Cars"],
    "RESISC45": [f.replace("_", " ") for f in RESISC45_FOLDERS],
    "EuroSAT": list(EUROSAT_FOLDER_TO_NAME.values()),
    "SVHN": list(_DIGITS),
    "GTSRB": _NAMES["GTSRB"],
    "MNIST": list(_DIGITS),
    "DTD": _NAMES["DTD"],
}

NUM_CLASSES: Dict[str, int] = {t: len(v) for t, v in CLASS_NAMES.items()}
# Expected sizes (checked by tests/test_checkpoints.py::test_class_name_counts).
EXPECTED_NUM_CLASSES: Dict[str, int] = {
    "SUN397": 397,
    "Cars": 196,
    "RESISC45": 45,
    "EuroSAT": 10,
    "SVHN": 10,
    "GTSRB": 43,
    "MNIST": 10,
    "DTD": 47,
}


def prompts(task: str, class_name: str) -> List[str]:
    """All prompts of ``task``'s templates for one class name."""
    return [t.replace("{c}", class_name) for t in TEMPLATES[task]]
