"""Names the pages print: methods in the order of the paper's tables with their display names (declared by each
method in the registry), and the tiny tasks' paper analogues."""

from __future__ import annotations

from ..protocol import REFERENCE, display_names

# The order of the paper's Table 1 (reference rows, baselines, CAT), then AWD, then the newer data-free methods.
ORDER = (
    "pretrained",
    "individual",
    "mtl",
    "weight_average",
    "fisher",
    "regmean",
    "task_arithmetic",
    "ties",
    "tatr",
    "ties_tatr",
    "consensus",
    "pcb",
    "cat",
    "awd_ta",
    "awd_ties",
    "tsv_m",
    "iso_c",
    "iso_cts",
    "wudi",
)
DISPLAY = {m: display_names()[m] for m in ORDER}

# The tiny benchmark's tasks and the paper's datasets they stand in for (same order as the paper's columns).
ANALOGUE = {
    "scenes": "SUN397",
    "vehicles": "Cars",
    "aerial": "RESISC45",
    "landcover": "EuroSAT",
    "streetnum": "SVHN",
    "signs": "GTSRB",
    "handwritten": "MNIST",
    "textures": "DTD",
}
PAPER_TASK = {v: v for v in ANALOGUE.values()}

# The paper's vision tables (data/paper/<name>.csv) and the model each one reports.
PAPER_MODEL = {"table1_vit_b32": "CLIP ViT-B/32", "table2_vit_l14": "CLIP ViT-L/14", "table6_vit_b16": "CLIP ViT-B/16"}


def task_label(task: str) -> str:
    """``"scenes (SUN397)"`` for tiny tasks, the name itself otherwise."""
    return f"{task} ({ANALOGUE[task]})" if task in ANALOGUE else task


__all__ = ["ORDER", "DISPLAY", "REFERENCE", "ANALOGUE", "PAPER_TASK", "PAPER_MODEL", "task_label"]
