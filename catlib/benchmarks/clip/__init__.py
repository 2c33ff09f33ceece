"""The real benchmarks: fine-tuned CLIP ViTs (open_clip) on the eight tasks, from local checkpoints and datasets.

``load_vit_b_32(checkpoint_root=..., data_root=...)`` (and ``_b_16``, ``_l_14``) return a
:class:`~catlib.benchmarks.base.Benchmark` whose encoder is the open_clip visual tower (``VisionTransformer``:
images ``(B, 3, S, S)`` → features ``(B, E)``, E = 512 for B/32 and B/16, 768 for L/14) with θ0 loaded, and whose
heads are zero-shot heads (``(B, E)`` → ``(B, C_task)``, see :mod:`catlib.benchmarks.clip.zeroshot`). The three
wrap :func:`load_openclip_benchmark`, which also takes other open_clip model names and task lists (the tests use a
tiny config). Nothing is downloaded; set ``HF_HUB_OFFLINE=1`` to make sure open_clip never tries.

The parts: :mod:`.checkpoints` (reading checkpoints into open_clip form), :mod:`.zeroshot` (heads from the text
tower), :mod:`.datasets` (the eight datasets from a local root), :mod:`.tasks` (class names and templates).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from ...core.device import resolve_device
from ..base import Benchmark, SPLITS
from .checkpoints import CheckpointError, Checkpoints, build_visual, load_checkpoints
from .datasets import TaskData
from .tasks import TASKS, TEMPLATES
from .zeroshot import ZeroShotHead, zeroshot_heads

PathLike = Union[str, os.PathLike]


def _default_cache_dir() -> Path:
    base = os.environ.get("CATLIB_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "catlib"
    )
    return Path(base) / "heads"


def image_transform(model_name: str, model_cfg: Mapping[str, Any]):
    """open_clip's evaluation preprocessing for this architecture (resize shortest side to S, bicubic; centre crop;
    ToTensor; normalise with OpenAI's mean/std) — what ``create_model_and_transforms(name)`` returns as its
    second transform."""
    from open_clip.transform import PreprocessCfg, image_transform_v2

    size = model_cfg["vision_cfg"]["image_size"]
    cfg = PreprocessCfg(size=size, **model_cfg.get("preprocess_cfg", {}))
    return image_transform_v2(cfg, is_train=False)


class OpenCLIPBenchmark(Benchmark):
    """A real CLIP benchmark (see the module docstring). Build with :func:`load_openclip_benchmark`."""

    code_files = ("clip",)  # the loaders, zero-shot heads, class names and templates decide its numbers

    def __init__(
        self,
        name: str,
        ckpt: Checkpoints,
        data_root: PathLike,
        tasks: Sequence[str],
        device: torch.device,
        batch_size: int,
        heads: Dict[str, nn.Module],
        num_workers: int = 0,
        amp: bool = False,
    ):
        self.name = name
        self.model_name = ckpt.model_name
        self.checkpoints = ckpt
        self.tasks = list(tasks)
        self.all_tasks = list(tasks)
        self.pretrained = ckpt.pretrained
        self.finetuned = ckpt.finetuned
        self.mtl = None
        self.heads = heads
        self.device = device
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.amp = amp  # fp16 autocast in catlib.evaluate (CUDA only)
        self.data_root = Path(data_root)
        self.transform = image_transform(ckpt.model_name, ckpt.model_config)
        self._data: Dict[str, TaskData] = {}

    # --- architecture ---
    def build_module(self) -> nn.Module:
        from ..evaluate import load_into

        m = build_visual(self.model_name, self.checkpoints.model_config, quick_gelu=self.checkpoints.quick_gelu)
        load_into(m, self.pretrained)
        return m.to(self.device).eval()

    # --- data ---
    def _task_data(self, task: str) -> TaskData:
        self._check_tasks([task])
        if task not in self._data:
            data = TaskData(task, self.data_root, self.transform)
            head = self.heads.get(task)
            if head is not None and head.weight.shape[0] != len(data.class_names):
                raise ValueError(
                    f"{task}: the head has {head.weight.shape[0]} classes, the dataset at "
                    f"{self.data_root} has {len(data.class_names)}"
                )
            self._data[task] = data
        return self._data[task]

    def dataset(self, task: str, split: str):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return self._task_data(task)[split]

    def loader(self, task: str, split: str, batch_size: Optional[int] = None) -> torch.utils.data.DataLoader:
        ds = self.dataset(task, split)
        return torch.utils.data.DataLoader(
            ds,
            batch_size=batch_size or self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
        )

    def exemplars(self, task: str, n: int, seed: int = 0, labelled: bool = False):
        ds = self.dataset(task, "train")
        if not 0 < n <= len(ds):
            raise ValueError(f"{task}: asked for {n} exemplars, the train split has {len(ds)} images")
        idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n].tolist()
        items = [ds[i] for i in idx]
        x = torch.stack([it[0] for it in items])
        if labelled:
            return x, torch.tensor([int(it[1]) for it in items])
        return x

    def class_names(self, task: str) -> List[str]:
        return list(self._task_data(task).class_names)


def load_openclip_benchmark(
    model_name: str,
    checkpoint_root: PathLike,
    data_root: PathLike,
    layout: str = "auto",
    tasks: Optional[Sequence[str]] = None,
    device: Union[str, torch.device, None] = "auto",
    batch_size: int = 128,
    trust_pickle: bool = False,
    cache_dir: Optional[PathLike] = None,
    openclip_weights: Optional[PathLike] = None,
    model_config: Union[None, Mapping, PathLike] = None,
    quick_gelu: Optional[bool] = None,
    hf_name: Optional[str] = None,
    num_workers: Optional[int] = None,
    name: Optional[str] = None,
    amp: Optional[bool] = None,
) -> OpenCLIPBenchmark:
    """Load a real (or stand-in) CLIP benchmark.

    ``model_name``: open_clip architecture (``"ViT-B-32"``), or a name described by ``model_config`` / an
    ``open_clip_config.json`` in the checkpoint root. ``layout``: ``"task_vectors"``, ``"hf"`` or ``"auto"``.
    ``tasks``: subset of the eight (default all). Heads: the layout's ``head_<Task>.pt`` files when present, else
    zero-shot heads built from the text tower (θ0's HF CLIPModel, a complete ``zeroshot.pt``, or
    ``openclip_weights``) and cached under ``cache_dir`` (default ``$CATLIB_CACHE/heads`` or
    ``~/.cache/catlib/heads``). Class names come from the dataset on disk for folder-based datasets (task_vectors'
    rule) and from :mod:`catlib.benchmarks.clip.tasks` otherwise. ``quick_gelu``: the MLP activation, True for
    OpenAI CLIP weights (the named benchmarks' default), False for GELU ones; None: the model config's
    ``quick_gelu`` (open_clip's ``*-quickgelu`` configs), else False; a file that says otherwise is refused.
    ``num_workers``: DataLoader workers decoding images (default 0 on CPU, ``min(8, cpu_count)`` on CUDA).
    ``batch_size`` is the default of :meth:`~OpenCLIPBenchmark.loader` and of ``catlib.evaluate``. ``amp``: fp16
    autocast during evaluation (default: on when the device is CUDA; merging and statistics stay fp32).
    """
    tasks = list(TASKS if tasks is None else tasks)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise KeyError(f"unknown task(s) {unknown}; the real benchmarks know {TASKS}")
    dev = resolve_device(device)
    if num_workers is None:
        num_workers = min(8, os.cpu_count() or 1) if dev.type == "cuda" else 0
    ckpt = load_checkpoints(
        checkpoint_root,
        model_name,
        tasks,
        layout=layout,
        trust_pickle=trust_pickle,
        openclip_weights=openclip_weights,
        model_config=model_config,
        quick_gelu=quick_gelu,
        hf_name=hf_name,
    )
    bench = OpenCLIPBenchmark(
        name or model_name,
        ckpt,
        data_root,
        tasks,
        dev,
        batch_size,
        heads={},
        num_workers=num_workers,
        amp=(dev.type == "cuda") if amp is None else bool(amp),
    )
    heads: Dict[str, nn.Module] = {}
    need = [t for t in tasks if t not in ckpt.head_weights]
    for t in tasks:
        if t in ckpt.head_weights:
            w, b = ckpt.head_weights[t]
            heads[t] = ZeroShotHead(w, b)
    if need:
        if ckpt.text is None:
            raise CheckpointError(
                f"no zero-shot head files for {need} and no complete text tower in the "
                f"checkpoints; pass openclip_weights=<open_clip weight file of {model_name}>",
                path=checkpoint_root,
            )
        classes = {t: bench.class_names(t) for t in need}
        heads.update(
            zeroshot_heads(
                ckpt.text,
                model_name,
                ckpt.model_config,
                classes,
                {t: TEMPLATES[t] for t in need},
                cache_dir=_default_cache_dir() if cache_dir is None else cache_dir,
                device=dev,
                quick_gelu=ckpt.quick_gelu,
            )
        )
    bench.heads = {t: heads[t].eval() for t in tasks}
    for t in bench._data:  # datasets opened for class names: a head and its dataset must agree
        if heads[t].weight.shape[0] != len(bench._data[t].class_names):
            raise ValueError(
                f"{t}: the head has {heads[t].weight.shape[0]} classes, the dataset at {data_root} "
                f"has {len(bench._data[t].class_names)}"
            )
    return bench


def _named_loader(model_name: str, name: str, what: str):
    """A loader for one fixed open_clip architecture: ``f(checkpoint_root, data_root, **kwargs)`` with the keyword
    arguments of :func:`load_openclip_benchmark` (``layout``, ``tasks``, ``device``, ``batch_size``,
    ``trust_pickle``, ``cache_dir``, ``openclip_weights``, ``num_workers``, ``hf_name``, ...)."""

    def load(checkpoint_root: PathLike, data_root: PathLike, **kwargs) -> OpenCLIPBenchmark:
        if kwargs.get("quick_gelu") is None:
            kwargs["quick_gelu"] = True  # the paper's checkpoints are fine-tuned from OpenAI's (QuickGELU) weights
        return load_openclip_benchmark(model_name, checkpoint_root, data_root, name=name, **kwargs)

    load.__name__ = "load_" + name.replace("-", "_")
    load.__doc__ = f"{what}, 8 tasks; keyword arguments as in :func:`load_openclip_benchmark`."
    return load


def load_openclip(model_name: str, checkpoint_root: PathLike, data_root: PathLike, **kwargs) -> OpenCLIPBenchmark:
    """Any open_clip architecture (``load_benchmark("openclip", model_name=..., checkpoint_root=..., data_root=...)``):
    an open_clip model name, or one described by ``model_config=`` / an ``open_clip_config.json`` in the checkpoint
    root (how the tests' generated stand-ins are loaded); other keyword arguments as in
    :func:`load_openclip_benchmark`."""
    return load_openclip_benchmark(model_name, checkpoint_root, data_root, **kwargs)


load_vit_b_32 = _named_loader("ViT-B-32", "vit-b-32", "CLIP ViT-B/32 (open_clip ``ViT-B-32``, QuickGELU, E = 512)")
load_vit_b_16 = _named_loader("ViT-B-16", "vit-b-16", "CLIP ViT-B/16 (open_clip ``ViT-B-16``, QuickGELU, E = 512)")
load_vit_l_14 = _named_loader("ViT-L-14", "vit-l-14", "CLIP ViT-L/14 (open_clip ``ViT-L-14``, QuickGELU, E = 768)")


__all__ = [
    "OpenCLIPBenchmark",
    "load_openclip_benchmark",
    "load_openclip",
    "load_vit_b_32",
    "load_vit_b_16",
    "load_vit_l_14",
    "image_transform",
]
