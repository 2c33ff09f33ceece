"""Training the tiny zoo's models: pretraining θ0 (:func:`pretrain`), the frozen prototype heads
(:func:`make_heads`), the fine-tunes (:func:`finetune`: one task, or all tasks jointly for the MTL model), and the
stage caches that let a build take a stage from a former build (:func:`pretrained_stage`, :func:`stage_dir`,
:func:`reusable_stages`) or run the fine-tuning stages in worker processes."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ....core.progress import progress
from ....core.io import atomic_path
from .. import data as D
from ..model import PrototypeHead, build_encoder, to_tensor
from ..zoo import cache_dir, config_hash, load_state, read_manifest, task_data, verify_zoo
from .recipes import option

BUILD_VERSION = 2  # salt of the training stages' cache keys: bump it when the training code changes


def _set_determinism(seed: int):
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
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
    X, Y, T, A = D.make_source(
        pc["n_source"],
        pc["seed"],
        progress_desc="pretraining source images",
        easy_frac=pc.get("easy_frac", 0.0),
        labels=labels,
    )
    log(f"source: {len(X)} images, {C} classes ({labels}), {time.time() - t0:.0f}s")
    enc = build_encoder(mc)
    cls = torch.nn.Parameter(torch.randn(C, mc["output_dim"]) * 0.02)
    colour = torch.nn.Linear(mc["output_dim"], 6)
    params = _param_groups(enc, pc["wd"]) + [dict(params=[cls] + list(colour.parameters()), weight_decay=0.0)]
    aw = option(pc, "pretrain", "attribute_weight")
    if aw:  # created after the other heads, so a recipe without attributes initialises exactly as before
        attr = torch.nn.ModuleList(
            torch.nn.Linear(mc["output_dim"], len(v)) for v in D.SOURCE_ATTRIBUTE_VALUES.values()
        )
        params.append(dict(params=list(attr.parameters()), weight_decay=0.0))
    opt = torch.optim.AdamW(params, lr=pc["lr"], betas=(0.9, 0.98))
    rng = np.random.default_rng(pc["seed"])
    order = np.concatenate([rng.permutation(len(X)) for _ in range(pc["steps"] * pc["batch"] // len(X) + 1)])
    Tt, At = torch.from_numpy(T), torch.from_numpy(A)
    enc.train()
    bar = progress(range(pc["steps"]), desc="pretrain", mininterval=5)
    run_acc = run_loss = 0.0
    for step in bar:
        idx = order[step * pc["batch"] : (step + 1) * pc["batch"]]
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
            log(
                f"pretrain step {step}/{pc['steps']} loss {run_loss:.3f} acc~{run_acc:.3f} "
                f"colour_mse {loss_r.item():.4f} ({time.time() - t0:.0f}s)"
            )
    enc.eval()
    return sd_cpu(enc)


@torch.no_grad()
def features(enc, X: np.ndarray, batch: int = 500) -> torch.Tensor:
    enc.eval()
    return torch.cat([enc(to_tensor(X[i : i + batch])) for i in range(0, len(X), batch)])


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
    enc = build_encoder(cfg["model"])
    enc.load_state_dict(theta0)
    hc = cfg["heads"]
    heads = {}
    for t in tasks:
        X, Y = task_data(t, "train", cfg["data"])
        f = F.normalize(features(enc, X), dim=-1)
        C = len(D.TASKS[t]["classes"])
        protos = torch.stack(
            [
                f[torch.from_numpy(i)].mean(0)
                for i in head_exemplars(Y, C, hc.get("shots"), option(hc, "heads", "seed"), t)
            ]
        )
        heads[t] = PrototypeHead(protos, hc["logit_scale"])
    return heads


def finetune(cfg: dict, theta0, heads, tasks: Sequence[str], rc: dict, desc: str, log=print):
    """Fine-tune the whole encoder on ``tasks`` (one task: individual; all: joint MTL) with frozen heads."""
    _set_determinism(rc["seed"] + 1000 * (D.TASK_NAMES.index(tasks[0]) if len(tasks) == 1 else 99))
    enc = build_encoder(cfg["model"])
    enc.load_state_dict(theta0)
    enc.train()
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


# ----------------------------------------------------------------------------------------------------------------
# stages: fp16 rounding, the stage cache, parallel fine-tuning, reuse of a built zoo
# ----------------------------------------------------------------------------------------------------------------


def fp16_round(sd):
    """fp32 copy of the state dict rounded through fp16 (the precision the zoo is stored in)."""
    return {k: v.to(torch.float16).to(torch.float32) for k, v in sd.items()}


def _save_atomic(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


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
        futs = {
            ex.submit(_finetune_job, cfg, theta0, heads, tasks, rc, desc): k for k, (_, tasks, rc, desc) in todo.items()
        }
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


def reusable_stages(
    root: Path, cfg: dict, tasks: Sequence[str], train_sha: Dict[str, str], threads: int, jobs: int = 1, log=print
) -> Dict[str, Dict[str, torch.Tensor]]:
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
        why.append(
            f"built with {m['build'].get('threads')} threads / torch {m['build'].get('torch')}, "
            f"this build: {threads} / {torch.__version__}"
        )
    if why:
        log(f"reuse {root}: nothing reused ({'; '.join(why)})")
        return {}
    out = {"pretrained": load_state(root, m, "pretrained")}
    src_jobs = m["build"].get("jobs")  # not recorded before 2026-12-01 (default: 1-thread fine-tunes, large: --jobs 2)
    same_ft = src_jobs is None or stage_threads(m["build"]["threads"], src_jobs) == stage_threads(threads, jobs)
    if m.get("build_version", 2) == BUILD_VERSION and same("heads") and same_ft:  # version 2: before the field
        ok = {
            t: m.get("data_sha256", {}).get(t, {}).get("train") == train_sha[t] and f"finetuned/{t}" in m["files"]
            for t in tasks
        }
        if same("finetune"):
            out.update({t: load_state(root, m, f"finetuned/{t}") for t in tasks if ok[t]})
        if same("mtl") and all(ok.values()) and list(m["tasks"]) == list(tasks):
            out["mtl"] = load_state(root, m, "mtl")
    log(f"reuse {root}: {', '.join(out)}; recomputing {', '.join(s for s in [*tasks, 'mtl'] if s not in out)}")
    return out


def stage_dir(size: str, cfg: dict, threads: int) -> Path:
    """The build cache folder of one recipe's stages: keyed by θ0's inputs (encoder, pretraining, data, source
    renderer version) and the thread count of this process."""
    recipe = config_hash([cfg["model"], cfg["pretrain"], cfg["data"], D.SOURCE_VERSION])
    return cache_dir() / "build" / f"{size}-{recipe}-t{threads}"


def pretrained_stage(size: str, cfg: dict, threads: int, use_cache: bool = True, log=print) -> Dict[str, torch.Tensor]:
    """θ0 of ``cfg`` (fp32), from the build cache when a build with the same recipe and threads already made it."""
    fn = lambda: pretrain(cfg, log)  # noqa: E731
    return _cached(stage_dir(size, cfg, threads) / "pretrained.pt", fn, log) if use_cache else fn()
