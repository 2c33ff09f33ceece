"""Build the vl-tiny zoo: ``python -m catlib.benchmarks.vl_tiny.build --out DIR [--threads N] [--jobs J]``.

1. pretrain θ0 (a tiny :class:`~catlib.benchmarks.vl.BlipVQA`, every weight from scratch) on
   :func:`.data.pretrain_item`: generic questions with short answers, next-token cross-entropy on the answer;
2. fine-tune one expert per task from θ0, the whole model (image encoder, text encoder and decoder), on that task's
   training split;
3. measure on val and test with the tasks' metrics (CIDEr-D, VQA accuracy, exact match), answers generated
   greedily: Pretrained, Individual, weight averaging, task arithmetic θ0 + α Σ τ_k (α in 0.1, ..., 1.0 chosen on
   val by the mean over tasks of each score divided by the task's Individual score, since CIDEr-D and accuracies
   have different scales);
4. write the zoo into a temporary folder, then rename it to ``DIR``: ``pretrained.safetensors`` and
   ``finetuned_<task>.safetensors`` (fp16; the decoder's output weight is the word embedding, stored once),
   ``manifest.json``.

The models are measured as they are stored (fp16, computed in fp32).
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
from transformers import BlipForQuestionAnswering

from ..glue_tiny.build import _optimizer, _schedule
from ..vl import BlipVQA, pad_pair
from ..zoo_build import build_command, cpu_model, half, write_zoo_folder
from . import data as D
from .benchmark import VLTinyBenchmark, tie, untie
from .model import pixels, tiny_config

StateDict = Dict[str, torch.Tensor]

FULL = dict(
    pre_steps=3000, pre_batch=64, pre_lr=5e-4, ft_steps=1500, ft_batch=32, ft_lr=5e-5, n_train=6000, n_val=200,
    n_test=400, warmup=0.05, weight_decay=0.01, eval_batch=100, alphas=tuple(round(0.1 * i, 1) for i in range(1, 11)),
)  # fmt: skip
SMOKE = dict(
    FULL, pre_steps=10, pre_batch=8, ft_steps=4, ft_batch=4, n_train=32, n_val=8, n_test=8,
    alphas=(0.3, 0.6, 1.0),
)  # fmt: skip
BUILD_VERSION = 1


def _step(model: BlipVQA, items, opt, sched) -> float:
    """One optimisation step of next-token cross-entropy on the answers of ``items`` [(image, q, a)]."""
    q, qm = pad_pair([D.question_ids(it[1]) for it in items], D.PAD)
    a, am = pad_pair([D.answer_ids(it[2]) for it in items], D.PAD)
    out = BlipForQuestionAnswering.forward(
        model, input_ids=q, pixel_values=pixels([it[0] for it in items]), attention_mask=qm, decoder_input_ids=a,
        decoder_attention_mask=am, labels=a.masked_fill(am == 0, -100),
    )  # fmt: skip
    opt.zero_grad(set_to_none=True)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()
    return float(out.loss.detach())


def _train(model, steps: int, batch: int, lr: float, cfg: dict, next_items, log, name: str) -> float:
    opt = _optimizer(model, lr, cfg["weight_decay"])
    sched = _schedule(opt, steps, cfg["warmup"])
    model.train()
    t0, running = time.time(), None
    for step in range(steps):
        loss = _step(model, next_items(step, batch), opt, sched)
        running = loss if running is None else 0.98 * running + 0.02 * loss
        if (step + 1) % max(1, steps // 10) == 0:
            log(f"  {name} step {step + 1}/{steps}: loss {running:.3f} ({time.time() - t0:.0f} s)")
    model.eval()
    return float(running)


def _state(model: BlipVQA) -> StateDict:
    """fp16-rounded fp32 copy of the weights (as stored), the tied alias dropped (restored on loading)."""
    return {k: v.detach().to(torch.float16).to(torch.float32) for k, v in untie(model.state_dict()).items()}


def pretrain(cfg: dict, seed: int, log) -> StateDict:
    torch.manual_seed(seed)
    model = BlipVQA(tiny_config())
    _train(
        model, cfg["pre_steps"], cfg["pre_batch"], cfg["pre_lr"], cfg,
        lambda step, b: [D.pretrain_item(step * b + j, seed) for j in range(b)], log, "pretrain",
    )  # fmt: skip
    return _state(model)


def finetune(task: str, theta0: StateDict, cfg: dict, data_seed: int, seed: int, log) -> StateDict:
    torch.manual_seed(seed)
    model = BlipVQA(tiny_config())
    model.load_state_dict(tie(theta0))
    rng = np.random.default_rng(seed)

    def items(step, b):
        return [D.task_item(task, "train", int(i), data_seed)[:3] for i in rng.integers(0, cfg["n_train"], b)]

    loss = _train(model, cfg["ft_steps"], cfg["ft_batch"], cfg["ft_lr"], cfg, items, log, task)
    log(f"  {task}: {cfg['ft_steps']} steps, final loss {loss:.3f}")
    return _state(model)


def _finetune_job(args, log=None):
    task, theta0, cfg, data_seed, seed = args
    if log is None:
        torch.set_num_threads(1)
    lines: List[str] = []
    return task, finetune(task, theta0, cfg, data_seed, seed, log or lines.append), lines


def relative_mean(scores: Dict[str, float], individual: Dict[str, float]) -> float:
    """Mean over tasks of score / Individual's score: one number across CIDEr-D and accuracies (α's choice)."""
    return float(np.mean([scores[t] / max(individual[t], 1e-9) for t in scores]))


def measure(bench: VLTinyBenchmark, theta0: StateDict, experts: Dict[str, StateDict], cfg: dict, log) -> dict:
    """Pretrained, Individual, weight averaging and task arithmetic (α on val by :func:`relative_mean`)."""
    from ..evaluate import evaluate

    ev = lambda sd, split, tasks=None: evaluate(bench, tie(sd), split, tasks, batch_size=cfg["eval_batch"])  # noqa: E731
    res: dict = {"metric": {t: bench.metric(t)[0] for t in bench.tasks}}
    for split in ("val", "test"):
        res.setdefault("pretrained", {})[split] = ev(theta0, split)
        res.setdefault("individual", {})[split] = {t: ev(sd, split, [t])[t] for t, sd in experts.items()}
    mean_sd = {k: torch.stack([sd[k] for sd in experts.values()]).mean(0) for k in theta0}
    res["weight_averaging"] = {split: ev(mean_sd, split) for split in ("val", "test")}
    tau = {k: sum(sd[k] - theta0[k] for sd in experts.values()) for k in theta0}
    curve = {}
    for a in cfg["alphas"]:
        curve[str(a)] = relative_mean(ev({k: theta0[k] + a * tau[k] for k in theta0}, "val"), res["individual"]["val"])
        log(f"  task arithmetic α={a:.1f}: val relative mean {curve[str(a)]:.3f}")
    best = max(cfg["alphas"], key=lambda a: curve[str(a)])
    ta = {k: theta0[k] + best * tau[k] for k in theta0}
    res["task_arithmetic"] = {"alpha": best, "val_curve": curve, "val": ev(ta, "val"), "test": ev(ta, "test")}
    for name in ("pretrained", "individual", "weight_averaging", "task_arithmetic"):
        for split in ("val", "test"):
            res[name][split]["relative"] = relative_mean(
                {t: v for t, v in res[name][split].items()}, res["individual"][split]
            )
        log(f"{name}: test " + ", ".join(f"{t} {v:.3g}" for t, v in res[name]["test"].items()))
    return res


def build(
    out: Path,
    threads: int = 1,
    smoke: bool = False,
    seed: int = 0,
    log=print,
    jobs: int = 1,
    reuse: Optional[Path] = None,
    replicate: int = 0,
) -> dict:
    """Build the zoo into ``out`` (written under a temporary name, then renamed); return the manifest. ``threads``:
    torch threads for pretraining and measuring; ``jobs``: experts fine-tuned side by side, one process and one
    thread each. ``reuse``: a built zoo whose θ0, seed, data and pretraining settings are taken (no pretraining; the
    fine-tuning settings are this build's); with ``replicate`` r > 0, a replicate of that zoo: its fine-tuning
    settings too (refused when they differ), the seeds ``seed + 1 + k + 100 r`` (task k), loaded as
    ``load_benchmark("vl-tiny", replicate=r)`` from ``<zoo>-r<r>``."""
    if threads < 1 or jobs < 1:
        raise ValueError(f"threads and jobs must be ≥ 1, got {threads} and {jobs}")
    if replicate < 0 or (replicate and reuse is None):
        raise ValueError(f"replicate must be ≥ 0 and needs --reuse (the zoo whose θ0 it shares), got {replicate}")
    reused = None
    if reuse is not None:
        from .benchmark import read_zoo

        reuse = Path(reuse)
        if not (reuse / "manifest.json").is_file():
            raise ValueError(f"--reuse {reuse}: no built vl-tiny zoo there (manifest.json)")
        reused, reused_theta0, _ = read_zoo(reuse)
        if reused.get("build_version") != BUILD_VERSION or reused.get("smoke") != smoke:
            raise ValueError(
                f"--reuse {reuse}: built by build version {reused.get('build_version')} (smoke {reused.get('smoke')});"
                f" this is version {BUILD_VERSION} (smoke {smoke})"
            )
        seed = int(reused["seed"])
    cfg = dict(SMOKE if smoke else FULL)
    if reused is not None:  # θ0 and the data are the zoo's: its pretraining and data settings with them
        cfg.update({k: v for k, v in reused["settings"].items() if not k.startswith("ft_")})
        cfg["alphas"] = tuple(cfg["alphas"])
        changed = sorted(k for k in cfg if k.startswith("ft_") and cfg[k] != reused["settings"].get(k))
        if replicate and changed:
            raise ValueError(
                f"--reuse {reuse}: a replicate fine-tunes as the zoo did, but this build's {changed} differ from its "
                f"{ {k: reused['settings'].get(k) for k in changed} }"
            )
    torch.set_num_threads(threads)
    out = Path(out)
    timings: Dict[str, float] = {}
    t_all = time.time()
    log(f"vl-tiny build ({'smoke' if smoke else 'full'}), seed {seed}, {threads} thread(s), {jobs} job(s)")

    t = time.time()
    if reused is not None:
        theta0 = untie(reused_theta0)
        log(f"θ0 from {reuse} (replicate {replicate})")
    else:
        theta0 = pretrain(cfg, seed, log)
    timings["pretrain_s"] = time.time() - t
    log(f"pretraining: {timings['pretrain_s']:.0f} s")

    t = time.time()
    ft_seeds = {task: seed + 1 + k + 100 * replicate for k, task in enumerate(D.TASKS)}
    args = [(task, theta0, cfg, seed, ft_seeds[task]) for task in D.TASKS]
    if jobs > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
            done = list(pool.map(_finetune_job, args))
    else:
        done = [_finetune_job(a, log) for a in args]
    experts = {}
    for task, sd, lines in done:
        for line in lines:
            log(line)
        experts[task] = sd
    timings["finetune_s"] = time.time() - t
    log(f"fine-tuning: {timings['finetune_s']:.0f} s")

    t = time.time()
    sizes = {"train": cfg["n_train"], "val": cfg["n_val"], "test": cfg["n_test"]}
    bench = VLTinyBenchmark(tie(theta0), {k: tie(v) for k, v in experts.items()}, sizes, seed)
    data_sha = {task: {split: D.split_hash(bench.raw(task, split)) for split in D.SPLITS} for task in D.TASKS}
    results = measure(bench, theta0, experts, cfg, log)
    timings["measure_s"] = time.time() - t
    log(f"measuring: {timings['measure_s']:.0f} s")
    timings["total_s"] = time.time() - t_all
    manifest = {
        "benchmark": "vl-tiny",
        "build_version": BUILD_VERSION,
        "smoke": smoke,
        "seed": seed,
        "finetune_seeds": ft_seeds,
        "replicate": replicate,
        "theta0_from": None
        if reuse is None
        else {"zoo": reuse.name, "sha256": reused["files"]["pretrained.safetensors"]},
        "settings": cfg,
        "model_config": tiny_config().to_dict(),
        "vocab_sha256": hashlib.sha256("\n".join(D.VOCAB).encode()).hexdigest(),
        "tasks": list(D.TASKS),
        "data_sha256": data_sha,
        "results": results,
        "timings_s": timings,
        "torch": torch.__version__,
        "cpu": cpu_model(),
        "threads": threads,
        "jobs": jobs,
    }
    manifest = write_zoo(out, theta0, experts, manifest)
    log(f"wrote {out} in {time.time() - t_all:.0f} s")
    return manifest


def write_zoo(out: Path, theta0: StateDict, experts: Dict[str, StateDict], manifest: dict) -> dict:
    """θ0 and the experts in fp16, each tied tensor once (:func:`untie`), written atomically with the manifest
    (:func:`catlib.benchmarks.zoo_build.write_zoo_folder`); the manifest as written."""
    files = {"pretrained.safetensors": half(untie(theta0))}
    files.update({f"finetuned_{task}.safetensors": half(untie(sd)) for task, sd in experts.items()})
    return write_zoo_folder(out, files, manifest)


def main(argv: Optional[List[str]] = None) -> int:
    return build_command(
        "python -m catlib.benchmarks.vl_tiny.build", __doc__.split("\n")[0], build,
        "a built zoo whose θ0, seed and data to take (no pretraining)", argv,
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
