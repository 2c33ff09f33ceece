"""Building the tiny zoo from scratch: :func:`build` (data, pretraining, fine-tunes, measurement, files) and
:func:`write_zoo` (the zoo's files and manifest). Recipes: :mod:`.recipes`; training and the stage caches:
:mod:`.train`; what a build measures: :mod:`.results`. The command line is ``python -m catlib.benchmarks.tiny.zoo
build``; reading and verifying a built zoo is :mod:`catlib.benchmarks.tiny.zoo`."""

from __future__ import annotations

import copy
import json
import os
import platform
import time
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch

from ....core.progress import progress
from ....core.io import atomic_path, atomic_write_text
from .. import data as D
from ...zoo_build import cpu_model
from ..zoo import (
    FORMAT_VERSION,
    GENERATOR_VERSION,
    config_hash,
    default_root,
    model_files,
    sha256_array,
    sha256_file,
    task_data,
)
from .recipes import CONFIGS
from .results import evaluate_zoo
from .train import (
    BUILD_VERSION,
    _cached,
    _finetune_parallel,
    finetune,
    fp16_round,
    make_heads,
    pretrained_stage,
    reusable_stages,
    stage_dir,
    stage_threads,
)


def build(
    size: str = "default",
    out: Optional[Path] = None,
    cfg: Optional[dict] = None,
    use_cache: bool = True,
    threads: int = 1,
    jobs: int = 1,
    reuse: Optional[Path] = None,
    log=print,
) -> dict:
    """Build data and zoo from scratch; write it to ``out`` (default ``data/tiny/<size>``); return the manifest.

    ``threads``: torch threads of this process (pretraining, evaluation; and fine-tuning when ``jobs`` is 1).
    ``jobs`` > 1 runs the nine fine-tuning stages (8 tasks + MTL) in that many worker processes of one thread each;
    their weights are then bit-identical to a serial build with ``threads=1``. The workers are spawned, so a script
    that calls this with ``jobs`` > 1 needs the usual ``if __name__ == "__main__":`` guard.
    ``reuse``: a built zoo to take the stages from whose inputs are unchanged (:func:`reusable_stages`); it may be
    ``out`` itself (everything is read before anything is written)."""
    cfg = copy.deepcopy(cfg or CONFIGS[size])
    out = Path(out) if out is not None else default_root(size)
    if threads < 1 or jobs < 1:
        raise ValueError(f"threads and jobs must be >= 1, got threads={threads}, jobs={jobs}")
    torch.set_num_threads(threads)
    tasks = list(D.TASK_NAMES)
    timings: Dict[str, float] = {}
    T0 = time.time()
    # stage cache keys hold the thread count a stage ran with: float reductions differ between thread counts
    ft_threads = stage_threads(threads, jobs)
    bdir = stage_dir(size, cfg, threads)

    t = time.time()
    data_sha = {
        tk: {sp: sha256_array(*task_data(tk, sp, cfg["data"], use_cache=use_cache)) for sp in ("train", "val", "test")}
        for tk in progress(tasks, desc="task data")
    }
    train_sha = {tk: data_sha[tk]["train"] for tk in tasks}
    timings["data"] = time.time() - t
    log(f"data: {timings['data']:.0f}s")
    kept = reusable_stages(Path(reuse), cfg, tasks, train_sha, threads, jobs, log) if reuse is not None else {}
    reused = {k: str(Path(reuse) / model_files(tasks)["finetuned/" + k if k in tasks else k]) for k in kept}

    t = time.time()
    theta0 = kept.pop("pretrained") if "pretrained" in kept else pretrained_stage(size, cfg, threads, use_cache, log)
    theta0 = fp16_round(theta0)  # the zoo ships fp16: every later stage and number uses exactly the shipped weights
    timings["pretrain"] = time.time() - t

    heads = make_heads(cfg, theta0, tasks)
    # a stage's key: the recipe and the sha256 of the training data it sees (θ0's recipe is in bdir)
    ft_key = lambda tk: config_hash([BUILD_VERSION, cfg["finetune"], cfg["heads"], train_sha[tk]])  # noqa: E731
    mtl_key = config_hash([BUILD_VERSION, cfg["mtl"], cfg["heads"], [train_sha[tk] for tk in tasks]])
    stages = {
        tk: (bdir / f"ft-{ft_key(tk)}-t{ft_threads}-{tk}.pt", [tk], cfg["finetune"], f"finetune {tk}") for tk in tasks
    }
    stages["mtl"] = (bdir / f"mtl-{mtl_key}-t{ft_threads}.pt", tasks, cfg["mtl"], "finetune MTL (all tasks)")
    t = time.time()
    todo = {k: v for k, v in stages.items() if k not in kept}
    done = _finetune_parallel(cfg, theta0, heads, todo, jobs, use_cache, log) if jobs > 1 else {}
    if any(secs for _, secs in done.values()):
        timings["finetune_parallel_wall"] = time.time() - t

    def stage(name):
        path, tks, rc, desc = stages[name]
        if name in kept:
            return fp16_round(kept[name]), 0.0
        if name in done:
            return fp16_round(done[name][0]), done[name][1]
        t = time.time()
        fn = lambda: finetune(cfg, theta0, heads, tks, rc, desc, log)  # noqa: E731
        sd = _cached(path, fn, log) if use_cache else fn()
        return fp16_round(sd), time.time() - t

    finetuned, secs = {}, {}
    for name in tasks + ["mtl"]:
        sd, secs[name] = stage(name)
        if name != "mtl":
            finetuned[name] = sd
    mtl = sd
    timings["finetune"] = sum(secs[tk] for tk in tasks)  # per-task seconds, summed (serial or in workers)
    timings["mtl"] = secs["mtl"]

    t = time.time()
    res = evaluate_zoo(cfg, theta0, finetuned, mtl, heads, tasks, log)
    timings["evaluate"] = time.time() - t
    timings["total"] = time.time() - T0
    manifest = write_zoo(
        out, cfg, theta0, finetuned, mtl, heads, res, timings, threads, data_sha, log, reused=reused, jobs=jobs
    )
    return manifest


def write_zoo(
    out: Path,
    cfg,
    theta0,
    finetuned,
    mtl,
    heads,
    results,
    timings,
    threads,
    data_sha,
    log=print,
    reused: Optional[dict] = None,
    jobs: int = 1,
) -> dict:
    """Write the zoo's files (fp16 models, fp32 heads) and then its manifest, each atomically; ``data_sha``: task ->
    split -> sha256 of that split's (images, labels)."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    tasks = list(finetuned)
    files = model_files(tasks)
    half = lambda sd: {k: v.to(torch.float16).contiguous() for k, v in sd.items()}  # noqa: E731

    def save(tensors, key, metadata):  # atomic: a crash never leaves a half-written zoo file
        with atomic_path(out / files[key]) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)

    save(half(theta0), "pretrained", {"model": "pretrained"})
    for t in tasks:
        save(half(finetuned[t]), f"finetuned/{t}", {"model": f"finetuned/{t}"})
    save(half(mtl), "mtl", {"model": "mtl"})
    save(
        {t: h.prototypes.contiguous() for t, h in heads.items()},
        "heads",
        {"logit_scale": str(cfg["heads"]["logit_scale"])},
    )
    manifest = dict(
        format_version=FORMAT_VERSION,
        benchmark=cfg["benchmark"],
        tasks=tasks,
        task_info={t: {k: v for k, v in info.items()} for t, info in D.task_info().items()},
        config=cfg,
        generator_version=GENERATOR_VERSION,
        build_version=BUILD_VERSION,
        source_version=D.SOURCE_VERSION,
        task_versions={t: D.task_version(t) for t in tasks},
        files={k: dict(path=v, sha256=sha256_file(out / v), bytes=(out / v).stat().st_size) for k, v in files.items()},
        data_sha256=data_sha,
        accuracy_note=(
            "accuracies measured at build time, in fp32, on the weights exactly as shipped (rounded "
            "through fp16); percent top-1 on the test split unless stated"
        ),
        results=results,
        build=dict(
            seconds={k: round(v, 1) for k, v in timings.items()},
            threads=threads,
            jobs=jobs,
            torch=torch.__version__,
            numpy=np.__version__,
            python=platform.python_version(),
            machine=platform.machine(),
            cpu=cpu_model(),
            **({"reused": reused} if reused else {}),
        ),
    )
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=1, sort_keys=False))
    log(f"wrote zoo to {out} ({sum(v['bytes'] for v in manifest['files'].values()) / 1e6:.1f} MB)")
    return manifest
