"""Building, writing, loading and verifying the tiny benchmark's model zoo.

Build from scratch (data, pretraining, 8 fine-tunes, joint MTL fine-tune, TA/WA measurement, manifest)::

    python -m catlib.benchmarks.tiny.zoo build --size default      # -> data/tiny/default/
    python -m catlib.benchmarks.tiny.zoo build --size large --threads 2 --jobs 2   # -> data/tiny/large/
    python -m catlib.benchmarks.tiny.zoo verify --size default

Every stage is seeded; stage results are cached under the build cache (``$CATLIB_CACHE`` or ``~/.cache/catlib``)
keyed by a hash of the stage's inputs (recipe, renderer versions, the torch thread count it ran with, and for a
fine-tune the sha256 of its task's training data), so re-running after changing one task's renderer re-runs only
that task's fine-tune and the MTL stage; an unreadable cache file is recomputed. ``--reuse DIR`` also takes those
stages from an already built zoo (e.g. the shipped one) whose recorded inputs are identical: a rebuild after a
one-task change then costs minutes, and gives the same files as a from-scratch build with the same ``--threads``
on the same type of CPU (another CPU rounds floats differently; the manifest's ``build`` block names the CPU, and
``build.reused`` what was taken).
The zoo on disk: one fp16 safetensors file per model, ``heads.safetensors`` (fp32 prototypes) and
``manifest.json`` (configs, sha256 of each file, sha256 of the generated data, accuracies).
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import CatlibError
from ...progress import progress
from . import data as D
from .model import PrototypeHead, build_encoder, to_tensor

FORMAT_VERSION = 1
BUILD_VERSION = 2  # salt of the training stages' cache keys: bump it when the training code changes
ALPHAS = [round(0.05 * k, 2) for k in range(1, 21)]

CONFIGS: Dict[str, dict] = {
    "default": dict(
        benchmark="tiny", seed=0,
        data=dict(seed=0, n_train=4000, n_val=500, n_test=1000),
        model=dict(image_size=32, patch_size=8, width=192, layers=5, heads=6, mlp_ratio=4.0, output_dim=128),
        pretrain=dict(n_source=80000, easy_frac=0.4, steps=4000, batch=128, lr=7e-4, wd=0.05, warmup=100,
                      label_smoothing=0.1, cls_scale=16.0, colour_weight=1.0, seed=1),
        heads=dict(logit_scale=30.0, shots=8),  # 8 exemplars per class: θ0 at CLIP ViT-B/32's zero-shot level
        finetune=dict(steps=300, batch=64, lr=3e-4, wd=0.0, warmup=30, seed=2),
        mtl=dict(steps=1000, batch_per_task=12, lr=3e-4, wd=0.0, warmup=50, seed=3, fused_batch=True),
        merge=dict(alphas=ALPHAS),
    ),
}
CONFIGS["large"] = copy.deepcopy(CONFIGS["default"])
CONFIGS["large"].update(benchmark="tiny-large")
CONFIGS["large"]["model"].update(width=256, layers=6, heads=8, output_dim=192)

# Recipe keys that the training code reads but the shipped recipes leave out, with the value that applies when a
# recipe has none (so the shipped recipes, and their cache keys, stay as they were built). Read via :func:`option`.
OPTIONAL_KEYS: Dict[str, Dict[str, object]] = {"pretrain": {"labels": "glyph", "attribute_weight": 0.0},
                                               "heads": {"seed": 0}}


def option(section: dict, name: str, key: str):
    """``section[key]`` of the recipe section called ``name``, or its default from :data:`OPTIONAL_KEYS`."""
    return section.get(key, OPTIONAL_KEYS[name][key])


def repo_root() -> Path:
    return Path(__file__).resolve().parents[3]


def default_root(size: str) -> Path:
    env = os.environ.get("CATLIB_TINY_ROOT")
    return Path(env) / size if env else repo_root() / "data" / "tiny" / size


def cache_dir() -> Path:
    return Path(os.environ.get("CATLIB_CACHE", Path.home() / ".cache" / "catlib")) / "tiny"


def config_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_array(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------------------------
# data (cached arrays, validated by the generator-config hash)
# ----------------------------------------------------------------------------------------------------------------

GENERATOR_VERSION = 1  # bump when the shared rendering helpers change (one task's renderer: its "version" in D.TASKS)


def split_size(data_cfg: dict, split: str) -> int:
    return data_cfg[f"n_{split}"]


def task_data(task: str, split: str, data_cfg: dict, use_cache: bool = True):
    """(images uint8 (N, 32, 32, 3), labels int64) of one task and split; cached as .npz keyed by the config hash."""
    key = dict(v=GENERATOR_VERSION, rv=D.task_version(task), task=task, split=split, n=split_size(data_cfg, split),
               seed=data_cfg["seed"])
    h = config_hash(key)
    path = cache_dir() / "data" / f"{task}-{split}-{h}.npz"
    if use_cache and path.exists():
        try:
            z = np.load(path)
            if str(z["config_hash"]) == h:
                return z["x"], z["y"]
        except Exception:  # a broken cache file is regenerated
            pass
    x, y = D.generate_split(task, split, split_size(data_cfg, split), data_cfg["seed"])
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
        np.savez(tmp, x=x, y=y, config_hash=np.array(h))
        os.replace(tmp, path)
    return x, y


# ----------------------------------------------------------------------------------------------------------------
# training pieces
# ----------------------------------------------------------------------------------------------------------------

def _set_determinism(seed: int):
    torch.manual_seed(seed)
    np.random.seed(seed % (2 ** 32))
    try:
        torch.use_deterministic_algorithms(True)
    except Exception:  # pragma: no cover
        pass


def _lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return lr * 0.5 * (1 + math.cos(math.pi * t))


def _set_lr(opt, lr):
    for g in opt.param_groups:
        g["lr"] = lr


def _param_groups(module, wd):
    decay, no_decay = [], []
    for n, p in module.named_parameters():
        (no_decay if p.ndim < 2 or n in ("class_embedding", "positional_embedding") else decay).append(p)
    return [dict(params=decay, weight_decay=wd), dict(params=no_decay, weight_decay=0.0)]


def sd_cpu(module) -> Dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", torch.float32).clone() for k, v in module.state_dict().items()}


def attribute_loss(heads: torch.nn.ModuleList, f: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """Mean over the source attributes (:data:`data.SOURCE_ATTRIBUTES`) of the cross-entropy of ``heads[k](f)``
    (f: (B, output_dim)) against ``A[:, k]`` (B,), skipping the images where attribute k does not apply (-1) and
    the attributes that apply to none of the batch."""
    losses = [F.cross_entropy(h(f), A[:, k], ignore_index=-1) for k, h in enumerate(heads) if (A[:, k] >= 0).any()]
    return torch.stack(losses).mean()


def pretrain(cfg: dict, log=print) -> Dict[str, torch.Tensor]:
    """θ0 from scratch on the source: cosine classifier of the source labels (``pretrain.labels``, absent from the
    shipped recipes: the glyph; see :data:`data.SOURCE_LABELS`) + colour regression, plus, when
    ``pretrain.attribute_weight`` > 0 (absent from the shipped recipes), the caption-like attribute classes."""
    pc, mc = cfg["pretrain"], cfg["model"]
    _set_determinism(pc["seed"])
    t0 = time.time()
    labels = option(pc, "pretrain", "labels")
    C = len(D.source_classes(labels))
    X, Y, T, A = D.make_source(pc["n_source"], pc["seed"], progress_desc="pretraining source images",
                               easy_frac=pc.get("easy_frac", 0.0), labels=labels)
    log(f"source: {len(X)} images, {C} classes ({labels}), {time.time() - t0:.0f}s")
    enc = build_encoder(mc)
    cls = torch.nn.Parameter(torch.randn(C, mc["output_dim"]) * 0.02)
    colour = torch.nn.Linear(mc["output_dim"], 6)
    params = _param_groups(enc, pc["wd"]) + [dict(params=[cls] + list(colour.parameters()), weight_decay=0.0)]
    aw = option(pc, "pretrain", "attribute_weight")
    if aw:  # created after the other heads, so a recipe without attributes initialises exactly as before
        attr = torch.nn.ModuleList(torch.nn.Linear(mc["output_dim"], len(v)) for v in D.SOURCE_ATTRIBUTE_VALUES.values())
        params.append(dict(params=list(attr.parameters()), weight_decay=0.0))
    opt = torch.optim.AdamW(params, lr=pc["lr"], betas=(0.9, 0.98))
    rng = np.random.default_rng(pc["seed"])
    order = np.concatenate([rng.permutation(len(X)) for _ in range(pc["steps"] * pc["batch"] // len(X) + 1)])
    Tt, At = torch.from_numpy(T), torch.from_numpy(A)
    enc.train()
    bar = progress(range(pc["steps"]), desc="pretrain", mininterval=5)
    run_acc = run_loss = 0.0
    for step in bar:
        idx = order[step * pc["batch"]:(step + 1) * pc["batch"]]
        x, y = to_tensor(X[idx]), torch.from_numpy(Y[idx])
        _set_lr(opt, _lr_at(step, pc["steps"], pc["lr"], pc["warmup"]))
        f = enc(x)
        logits = pc["cls_scale"] * F.normalize(f, dim=-1) @ F.normalize(cls, dim=-1).t()
        loss_c = F.cross_entropy(logits, y, label_smoothing=pc["label_smoothing"])
        loss_r = F.mse_loss(torch.sigmoid(colour(f)), Tt[idx])
        loss = loss_c + pc["colour_weight"] * 10 * loss_r
        if aw:
            loss = loss + aw * attribute_loss(attr, f, At[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(enc.parameters(), 1.0)
        opt.step()
        run_acc = 0.98 * run_acc + 0.02 * (logits.argmax(1) == y).float().mean().item()
        run_loss = 0.98 * run_loss + 0.02 * loss.item()
        if step % 100 == 0 or step == pc["steps"] - 1:
            bar.set_postfix(loss=f"{run_loss:.3f}", acc=f"{run_acc:.3f}")
            log(f"pretrain step {step}/{pc['steps']} loss {run_loss:.3f} acc~{run_acc:.3f} "
                f"colour_mse {loss_r.item():.4f} ({time.time() - t0:.0f}s)")
    enc.eval()
    return sd_cpu(enc)


@torch.no_grad()
def features(enc, X: np.ndarray, batch: int = 500) -> torch.Tensor:
    enc.eval()
    return torch.cat([enc(to_tensor(X[i:i + batch])) for i in range(0, len(X), batch)])


def head_exemplars(Y: np.ndarray, n_classes: int, shots: Optional[int], seed: int, task: str) -> list:
    """Indices into the training split behind each class prototype: all of the class's images, or ``shots`` of
    them drawn without replacement (seeded per task), the analogue of a single imperfect text prompt per class."""
    idx = [np.flatnonzero(Y == c) for c in range(n_classes)]
    if shots is None:
        return idx
    smallest = min(len(i) for i in idx)
    if shots < 1 or smallest < shots:
        raise ValueError(f"heads.shots={shots}: task {task!r} has {smallest} images in its smallest class")
    rng = np.random.default_rng([seed, D.TASK_NAMES.index(task)])
    return [np.sort(rng.choice(i, shots, replace=False)) for i in idx]


@torch.no_grad()
def make_heads(cfg: dict, theta0, tasks: Sequence[str]) -> Dict[str, PrototypeHead]:
    """One frozen :class:`PrototypeHead` per task: the normalised mean θ0 feature of each class over the images of
    :func:`head_exemplars` (``cfg["heads"]``: ``logit_scale``; optional ``shots`` and ``seed``, absent: all)."""
    enc = build_encoder(cfg["model"]); enc.load_state_dict(theta0)
    hc = cfg["heads"]
    heads = {}
    for t in tasks:
        X, Y = task_data(t, "train", cfg["data"])
        f = F.normalize(features(enc, X), dim=-1)
        C = len(D.TASKS[t]["classes"])
        protos = torch.stack([f[torch.from_numpy(i)].mean(0)
                              for i in head_exemplars(Y, C, hc.get("shots"), option(hc, "heads", "seed"), t)])
        heads[t] = PrototypeHead(protos, hc["logit_scale"])
    return heads


def finetune(cfg: dict, theta0, heads, tasks: Sequence[str], rc: dict, desc: str, log=print):
    """Fine-tune the whole encoder on ``tasks`` (one task: individual; all: joint MTL) with frozen heads."""
    _set_determinism(rc["seed"] + 1000 * (D.TASK_NAMES.index(tasks[0]) if len(tasks) == 1 else 99))
    enc = build_encoder(cfg["model"]); enc.load_state_dict(theta0); enc.train()
    opt = torch.optim.AdamW(_param_groups(enc, rc["wd"]), lr=rc["lr"], betas=(0.9, 0.98))
    data = {t: task_data(t, "train", cfg["data"]) for t in tasks}
    rng = np.random.default_rng([rc["seed"]] + [D.TASK_NAMES.index(t) for t in tasks])
    per = rc["batch"] if len(tasks) == 1 else rc["batch_per_task"]
    t0 = time.time()
    for step in progress(range(rc["steps"]), desc=desc, mininterval=5, leave=False):
        _set_lr(opt, _lr_at(step, rc["steps"], rc["lr"], rc["warmup"]))
        batch = []
        for t in tasks:
            X, Y = data[t]
            idx = rng.integers(0, len(X), per)
            batch.append((X[idx], torch.from_numpy(Y[idx])))
        if rc.get("fused_batch", False):  # one forward pass over all tasks' images, split per head
            feats = enc(to_tensor(np.concatenate([x for x, _ in batch]))).split(per)
        else:
            feats = [enc(to_tensor(x)) for x, _ in batch]
        loss = sum(F.cross_entropy(heads[t](f), y) for t, f, (_, y) in zip(tasks, feats, batch))
        loss = loss / len(tasks)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(enc.parameters(), 1.0)
        opt.step()
    log(f"{desc}: {rc['steps']} steps, final loss {loss.item():.3f} ({time.time() - t0:.0f}s)")
    enc.eval()
    return sd_cpu(enc)


@torch.no_grad()
def accuracies(cfg: dict, sd, heads, tasks: Sequence[str], split: str, enc=None) -> Dict[str, float]:
    enc = enc or build_encoder(cfg["model"])
    enc.load_state_dict(sd); enc.eval()
    out = {}
    for t in tasks:
        X, Y = task_data(t, split, cfg["data"])
        pred = heads[t](features(enc, X)).argmax(1).numpy()
        out[t] = float(100.0 * (pred == Y).mean())
    return out


def task_arithmetic(theta0, finetuned: Sequence[dict], alpha: float):
    return {k: theta0[k] + alpha * sum(ft[k] - theta0[k] for ft in finetuned) for k in theta0}


def weight_average(finetuned: Sequence[dict]):
    return {k: sum(ft[k] for ft in finetuned) / len(finetuned) for k in finetuned[0]}


def mean(d: Dict[str, float]) -> float:
    return float(sum(d.values()) / len(d))


# ----------------------------------------------------------------------------------------------------------------
# build
# ----------------------------------------------------------------------------------------------------------------

def fp16_round(sd):
    """fp32 copy of the state dict rounded through fp16 (the precision the zoo is stored in)."""
    return {k: v.to(torch.float16).to(torch.float32) for k, v in sd.items()}


def _save_atomic(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path.with_suffix(".tmp"))
    os.replace(path.with_suffix(".tmp"), path)


def _load_cached(path: Path, log=print) -> Optional[Dict[str, torch.Tensor]]:
    """The state dict stored at ``path`` by a former stage, or None when there is none or it does not load as one
    (a truncated or foreign file is recomputed, never trusted)."""
    if not path.exists():
        return None
    try:
        out = torch.load(path, weights_only=True)
        if isinstance(out, dict) and out and all(isinstance(v, torch.Tensor) for v in out.values()):
            log(f"reusing {path}")
            return out
    except Exception:
        pass
    log(f"stage cache {path} is unreadable: recomputing it")
    return None


def _cached(path: Path, fn, log=print):
    out = _load_cached(path, log)
    if out is None:
        out = fn()
        _save_atomic(out, path)
    return out


def _finetune_job(cfg, theta0, heads, tasks, rc, desc):
    """One fine-tuning stage in a worker process (one torch thread, as the serial 1-thread build):
    returns (state dict, seconds)."""
    torch.set_num_threads(1)
    t = time.time()
    sd = finetune(cfg, theta0, heads, tasks, rc, desc, log=lambda s: print(s, flush=True))
    return sd, time.time() - t


def _finetune_parallel(cfg, theta0, heads, stages: dict, jobs: int, use_cache: bool, log=print) -> dict:
    """Run the stages ``{name: (cache path, tasks, recipe, description)}`` not yet in the stage cache in ``jobs``
    worker processes (spawned; one torch thread each, so every stage computes exactly what the serial build
    with one thread computes) and write them to the cache. Returns ``{name: (state dict, seconds)}`` for every
    stage, seconds 0 for the ones taken from the cache."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    done = {}
    for k, v in stages.items():
        sd = _load_cached(v[0], log) if use_cache else None
        if sd is not None:
            done[k] = (sd, 0.0)
    todo = {k: v for k, v in stages.items() if k not in done}
    todo = dict(sorted(todo.items(), key=lambda kv: -kv[1][2]["steps"]))  # longest first (MTL): shortest wall time
    if not todo:
        return done
    log(f"fine-tuning {len(todo)} stages in {jobs} processes: {', '.join(todo)}")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as ex:
        futs = {ex.submit(_finetune_job, cfg, theta0, heads, tasks, rc, desc): k
                for k, (_, tasks, rc, desc) in todo.items()}
        for fut in progress(as_completed(futs), total=len(futs), desc="fine-tuning stages"):
            k = futs[fut]
            sd, secs = fut.result()
            if use_cache:
                _save_atomic(sd, todo[k][0])
            done[k] = (sd, secs)
            log(f"{todo[k][3]}: {secs:.0f}s (worker)")
    return done


def stage_threads(threads: int, jobs: int) -> int:
    """Torch threads of one fine-tuning stage: 1 in each of ``jobs`` > 1 worker processes, else ``threads``."""
    return 1 if jobs > 1 else threads


def reusable_stages(root: Path, cfg: dict, tasks: Sequence[str], train_sha: Dict[str, str], threads: int,
                    jobs: int = 1, log=print) -> Dict[str, Dict[str, torch.Tensor]]:
    """The stages of the built zoo at ``root`` (sha256-verified first) whose inputs equal this build's, as fp32 state
    dicts: ``"pretrained"`` when the encoder, pretraining recipe, source renderer version, torch version and thread
    count are the same; a task's fine-tune when, in addition, the build version, fine-tuning and head recipes and
    the sha256 of that task's training data are (its head is made from θ0 features of that data), and the fine-tunes
    ran with as many threads (1 in ``jobs`` > 1 workers, else ``threads``; checked where the zoo records ``jobs``);
    ``"mtl"`` when that holds for every task and the MTL recipe. The zoo stores fp16 weights and a build rounds
    every stage through fp16 before using it, so a reused stage is exactly what recomputing it would feed the later
    stages."""
    m = read_manifest(root)
    verify_zoo(root, m)
    same = lambda *keys: all(m["config"].get(k) == cfg[k] for k in keys)  # noqa: E731
    why = []
    if not same("model", "pretrain"):
        why.append("encoder or pretraining recipe differs")
    if m.get("source_version", 1) != D.SOURCE_VERSION:  # zoos built before the field existed: version 1
        why.append("source renderer version differs")
    if m["build"].get("threads") != threads or m["build"].get("torch") != torch.__version__:
        why.append(f"built with {m['build'].get('threads')} threads / torch {m['build'].get('torch')}, "
                   f"this build: {threads} / {torch.__version__}")
    if why:
        log(f"reuse {root}: nothing reused ({'; '.join(why)})")
        return {}
    out = {"pretrained": load_state(root, m, "pretrained")}
    src_jobs = m["build"].get("jobs")  # not recorded before 2026-12-01 (default: 1-thread fine-tunes, large: --jobs 2)
    same_ft = src_jobs is None or stage_threads(m["build"]["threads"], src_jobs) == stage_threads(threads, jobs)
    if m.get("build_version", 2) == BUILD_VERSION and same("heads") and same_ft:  # version 2: before the field
        ok = {t: m.get("data_sha256", {}).get(t, {}).get("train") == train_sha[t] and f"finetuned/{t}" in m["files"]
              for t in tasks}
        if same("finetune"):
            out.update({t: load_state(root, m, f"finetuned/{t}") for t in tasks if ok[t]})
        if same("mtl") and all(ok.values()) and list(m["tasks"]) == list(tasks):
            out["mtl"] = load_state(root, m, "mtl")
    log(f"reuse {root}: {', '.join(out)}; recomputing {', '.join(s for s in [*tasks, 'mtl'] if s not in out)}")
    return out


def stage_dir(size: str, cfg: dict, threads: int) -> Path:
    """The build cache folder of one recipe's stages: keyed by θ0's inputs (encoder, pretraining, data, source
    renderer version) and the thread count of this process."""
    recipe = config_hash([cfg['model'], cfg['pretrain'], cfg['data'], D.SOURCE_VERSION])
    return cache_dir() / "build" / f"{size}-{recipe}-t{threads}"


def pretrained_stage(size: str, cfg: dict, threads: int, use_cache: bool = True, log=print) -> Dict[str, torch.Tensor]:
    """θ0 of ``cfg`` (fp32), from the build cache when a build with the same recipe and threads already made it."""
    fn = lambda: pretrain(cfg, log)  # noqa: E731
    return _cached(stage_dir(size, cfg, threads) / "pretrained.pt", fn, log) if use_cache else fn()


def build(size: str = "default", out: Optional[Path] = None, cfg: Optional[dict] = None, use_cache: bool = True,
          threads: int = 1, jobs: int = 1, reuse: Optional[Path] = None, log=print) -> dict:
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
    data_sha = {tk: {sp: sha256_array(*task_data(tk, sp, cfg["data"], use_cache=use_cache))
                     for sp in ("train", "val", "test")} for tk in progress(tasks, desc="task data")}
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
    stages = {tk: (bdir / f"ft-{ft_key(tk)}-t{ft_threads}-{tk}.pt", [tk], cfg["finetune"], f"finetune {tk}")
              for tk in tasks}
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
    manifest = write_zoo(out, cfg, theta0, finetuned, mtl, heads, res, timings, threads, data_sha, log,
                         reused=reused, jobs=jobs)
    return manifest


def evaluate_zoo(cfg, theta0, finetuned, mtl, heads, tasks, log=print) -> dict:
    enc = build_encoder(cfg["model"])
    ev = lambda sd, split="test": accuracies(cfg, sd, heads, tasks, split, enc)  # noqa: E731
    res = {"pretrained": ev(theta0)}
    res["individual"] = {t: accuracies(cfg, finetuned[t], heads, [t], "test", enc)[t] for t in tasks}
    res["mtl"] = ev(mtl) if mtl is not None else None
    fts = [finetuned[t] for t in tasks]
    res["weight_averaging"] = ev(weight_average(fts))
    val_curve = {}
    for a in progress(cfg["merge"]["alphas"], desc="task arithmetic alpha grid (val)"):
        val_curve[a] = mean(ev(task_arithmetic(theta0, fts, a), "val"))
    best = max(val_curve, key=lambda a: (val_curve[a], -a))
    res["task_arithmetic"] = dict(alpha=best, val_curve={str(k): v for k, v in val_curve.items()},
                                  test=ev(task_arithmetic(theta0, fts, best)))
    summ = {k: mean(res[k]) for k in ("pretrained", "individual", "weight_averaging")}
    summ["mtl"] = mean(res["mtl"]) if res["mtl"] else None
    summ["task_arithmetic"] = mean(res["task_arithmetic"]["test"])
    res["average"] = summ
    log("test averages: " + ", ".join(f"{k} {v:.1f}" for k, v in summ.items() if v is not None)
        + f"; TA alpha {best}")
    res["acceptance"] = acceptance(res)
    return res


def acceptance(res: dict) -> dict:
    a = res["average"]
    ind, pre, ta, wa = a["individual"], a["pretrained"], a["task_arithmetic"], a["weight_averaging"]
    alpha = res["task_arithmetic"]["alpha"]
    checks = {
        "individual_avg_ge_85": dict(value=ind, target=">= 85", met=ind >= 85),
        "individual_each_ge_75": dict(value=min(res["individual"].values()), target="min >= 75",
                                      met=min(res["individual"].values()) >= 75),
        "pretrained_le_individual_minus_20": dict(value=ind - pre, target="Ind - Pre >= 20", met=ind - pre >= 20),
        "ta_ge_pretrained_plus_10": dict(value=ta - pre, target="TA - Pre >= 10", met=ta - pre >= 10),
        "ta_le_individual_minus_10": dict(value=ind - ta, target="Ind - TA >= 10", met=ind - ta >= 10),
        "ta_alpha_in_0.2_0.6": dict(value=alpha, target="0.2 <= alpha <= 0.6", met=0.2 <= alpha <= 0.6),
        "wa_below_ta": dict(value=ta - wa, target="TA - WA > 0", met=ta > wa),
    }
    return checks


# ----------------------------------------------------------------------------------------------------------------
# zoo files
# ----------------------------------------------------------------------------------------------------------------

def model_files(tasks: Sequence[str]) -> Dict[str, str]:
    files = {"pretrained": "pretrained.safetensors", "mtl": "mtl.safetensors", "heads": "heads.safetensors"}
    files.update({f"finetuned/{t}": f"finetuned_{t}.safetensors" for t in tasks})
    return files


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; else ``platform.processor()``): float rounding in MKL/oneDNN
    kernels differs between CPU types, so bit-identical rebuilds hold per CPU type."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_zoo(out: Path, cfg, theta0, finetuned, mtl, heads, results, timings, threads, data_sha, log=print,
              reused: Optional[dict] = None, jobs: int = 1) -> dict:
    """Write the zoo's files (fp16 models, fp32 heads) and then its manifest, each atomically; ``data_sha``: task ->
    split -> sha256 of that split's (images, labels)."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    tasks = list(finetuned)
    files = model_files(tasks)
    half = lambda sd: {k: v.to(torch.float16).contiguous() for k, v in sd.items()}  # noqa: E731

    def save(tensors, key, metadata):  # atomic: a crash never leaves a half-written zoo file
        tmp = out / (files[key] + f".tmp{os.getpid()}")
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, out / files[key])

    save(half(theta0), "pretrained", {"model": "pretrained"})
    for t in tasks:
        save(half(finetuned[t]), f"finetuned/{t}", {"model": f"finetuned/{t}"})
    save(half(mtl), "mtl", {"model": "mtl"})
    save({t: h.prototypes.contiguous() for t, h in heads.items()}, "heads",
         {"logit_scale": str(cfg["heads"]["logit_scale"])})
    manifest = dict(
        format_version=FORMAT_VERSION, benchmark=cfg["benchmark"], tasks=tasks,
        task_info={t: {k: v for k, v in info.items()} for t, info in D.task_info().items()},
        config=cfg, generator_version=GENERATOR_VERSION, build_version=BUILD_VERSION,
        source_version=D.SOURCE_VERSION, task_versions={t: D.task_version(t) for t in tasks},
        files={k: dict(path=v, sha256=sha256_file(out / v), bytes=(out / v).stat().st_size) for k, v in files.items()},
        data_sha256=data_sha,
        accuracy_note=("accuracies measured at build time, in fp32, on the weights exactly as shipped (rounded "
                       "through fp16); percent top-1 on the test split unless stated"),
        results=results,
        build=dict(seconds={k: round(v, 1) for k, v in timings.items()}, threads=threads, jobs=jobs,
                   torch=torch.__version__,
                   numpy=np.__version__, python=platform.python_version(), machine=platform.machine(),
                   cpu=cpu_model(),
                   **({"reused": reused} if reused else {})),
    )
    tmp = out / f"manifest.json.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=False)
    os.replace(tmp, out / "manifest.json")
    log(f"wrote zoo to {out} ({sum(v['bytes'] for v in manifest['files'].values()) / 1e6:.1f} MB)")
    return manifest


class ZooError(CatlibError, RuntimeError):
    """The zoo on disk is missing, not built, or does not match its manifest."""


def read_manifest(root: Path, size: str = "default") -> dict:
    mpath = Path(root) / "manifest.json"
    if not mpath.exists():
        raise ZooError(f"the tiny zoo '{size}' is not built: {mpath} does not exist. Build it with\n"
                       f"    python -m catlib.benchmarks.tiny.zoo build --size {size}\n"
                       f"(or python scripts/build_zoo.py --size {size}); about an hour on one CPU thread, "
                       f"or 40 minutes (large) with --threads 2 --jobs 2 on two cores.")
    with open(mpath) as f:
        return json.load(f)


def verify_zoo(root: Path, manifest: dict) -> None:
    """Raise :class:`ZooError` naming the file when a zoo file is missing, changed or truncated."""
    for key, info in manifest["files"].items():
        p = Path(root) / info["path"]
        if not p.exists():
            raise ZooError(f"tiny zoo file missing: {p} (manifest entry {key!r}); rebuild the zoo")
        size = p.stat().st_size
        if size != info["bytes"]:
            raise ZooError(f"tiny zoo file {p} has {size} bytes, the manifest says {info['bytes']}: the file is "
                           f"truncated or changed; restore it (git checkout) or rebuild the zoo")
        digest = sha256_file(p)
        if digest != info["sha256"]:
            raise ZooError(f"tiny zoo file {p} fails its sha256 check (got {digest[:12]}..., manifest "
                           f"{info['sha256'][:12]}...): the file was changed; restore it or rebuild the zoo")


def load_state(root: Path, manifest: dict, key: str) -> Dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    p = Path(root) / manifest["files"][key]["path"]
    try:
        sd = load_file(str(p))
    except Exception as e:  # pragma: no cover - caught by verify_zoo first
        raise ZooError(f"cannot read tiny zoo file {p}: {e}") from e
    return {k: v.to(torch.float32) for k, v in sd.items()}


def load_heads(root: Path, manifest: dict) -> Dict[str, PrototypeHead]:
    raw = load_state(root, manifest, "heads")
    scale = manifest["config"]["heads"]["logit_scale"]
    return {t: PrototypeHead(raw[t], scale) for t in manifest["tasks"]}


# ----------------------------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------------------------

def recipe_with(size: str, changes: Sequence[str], error=None) -> dict:
    """A copy of ``CONFIGS[size]`` with ``"SECTION.KEY=VALUE"`` changes applied (VALUE parsed as JSON, so a string
    needs quotes: ``pretrain.labels="glyph_family"``). KEY must be one the recipe has or :data:`OPTIONAL_KEYS`
    names, so that a misspelt key is an error rather than a build of the unchanged recipe."""
    cfg = copy.deepcopy(CONFIGS[size])
    sections = sorted(k for k, v in cfg.items() if isinstance(v, dict))
    for item in changes:
        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        try:
            if section not in sections or not name:
                raise ValueError(f"expected SECTION.KEY=VALUE with SECTION one of {sections}")
            known = sorted(set(cfg[section]) | set(OPTIONAL_KEYS.get(section, {})))
            if name not in known:
                raise ValueError(f"no key {name!r} in section {section!r}; its keys: {', '.join(known)}")
            try:
                cfg[section][name] = json.loads(value)
            except json.JSONDecodeError as e:
                hint = (f"; VALUE is JSON, so a string needs quotes: --set '{key}=\"{value}\"'"
                        if value.replace("_", "").replace("-", "").isalpha() else "")
                raise ValueError(f"VALUE {value!r} is not JSON ({e}){hint}") from None
        except ValueError as e:
            msg = f"recipe change {item!r}: {e}"
            if error is None:
                raise ValueError(msg) from None
            error(msg)
    return cfg


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m catlib.benchmarks.tiny.zoo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build data and zoo from scratch")
    b.add_argument("--size", choices=sorted(CONFIGS), default="default")
    b.add_argument("--out", type=Path, default=None, help="output folder (default data/tiny/<size>)")
    b.add_argument("--threads", type=int, default=1, help="torch threads (the shipped zoo was built with 1)")
    b.add_argument("--jobs", type=int, default=1,
                   help="worker processes for the nine fine-tuning stages (one thread each; e.g. 2 on 2 cores)")
    b.add_argument("--no-cache", action="store_true", help="ignore and do not write the stage cache")
    b.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="change one recipe value (VALUE in JSON) for a probe build, e.g. "
                        "pretrain.attribute_weight=1.0; needs --out, so a shipped zoo keeps its recipe")
    b.add_argument("--reuse", type=Path, default=None, metavar="DIR",
                   help="take the stages whose inputs are unchanged from the built zoo in DIR (e.g. data/tiny/<size>)")
    v = sub.add_parser("verify", help="check the sha256 of every zoo file against the manifest")
    v.add_argument("--size", choices=sorted(CONFIGS), default="default")
    v.add_argument("--root", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.cmd == "build":
        cfg = recipe_with(args.size, args.set, error=ap.error)
        if args.set and args.out is None:
            ap.error("--set builds a probe with another recipe: give --out (the shipped zoo keeps its recipe)")
        m = build(args.size, args.out, cfg=cfg, use_cache=not args.no_cache, threads=args.threads,
                  jobs=args.jobs, reuse=args.reuse, log=lambda s: print(s, flush=True))
        print(json.dumps(m["results"]["acceptance"], indent=1))
        print(json.dumps(m["build"], indent=1))
    else:
        root = args.root or default_root(args.size)
        m = read_manifest(root, args.size)
        verify_zoo(root, m)
        print(f"{root}: {len(m['files'])} files OK")


if __name__ == "__main__":
    sys.exit(main())
