"""Build the glue-tiny zoo: ``python -m catlib.benchmarks.glue_tiny.build --out DIR [--threads N] [--jobs J]``.

1. pretrain θ0 by masked-language modelling on :func:`.data.mlm_corpus` (15% of the real tokens, 80/10/10);
2. fine-tune one expert per task from θ0 (whole encoder and a fresh :class:`.model.Head`), ``ft_steps`` steps
   (STS-B: ``STSB_STEPS``);
3. measure on val and test with :data:`catlib.benchmarks.metrics.GLUE_METRIC`: Pretrained (θ0, each expert's
   head), Individual, weight averaging, task arithmetic θ0 + α Σ τ_k (α in 0.05, 0.10, ..., 1.00, chosen on val by
   the mean over tasks; --smoke: 0.25, 0.5, 0.75, 1.0);
4. write the zoo into a temporary folder, then rename it to ``DIR``: ``pretrained.safetensors`` and
   ``finetuned_<task>.safetensors`` (fp16, :class:`.model.Encoder` keys), ``heads.safetensors`` (fp32,
   ``<task>.dense.weight`` ...), ``manifest.json``.

The encoders are measured as they are stored (fp16, computed in fp32). ``--reuse ZOO [--replicate R]`` takes
ZOO's θ0 (a replicate: other fine-tuning seeds); ``--refit TASK ...`` with it re-fine-tunes only those tasks.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from transformers import RobertaForMaskedLM

from .. import sha256_file
from ..metrics import GLUE_METRIC
from ..zoo_build import build_command, cpu_model, half, write_zoo_folder
from . import data as D
from .model import MAX_LEN, Encoder, Head, tiny_config

StateDict = Dict[str, torch.Tensor]

# STS-B's regression stays near its label mean for ~2 500 steps before it is learned (docs/glue_tiny_log.md)
STSB_STEPS = 8000
FULL = dict(
    mlm_examples=40000, mlm_steps=2000, mlm_batch=64, mlm_lr=5e-4,
    ft_steps=2500, ft_steps_by_task={"stsb": STSB_STEPS}, ft_batch=32, ft_lr=3e-4, n_train=None, n_val=D.N_VAL,
    n_test=D.N_TEST, warmup=0.06, weight_decay=0.01, eval_batch=250,
    alphas=tuple(round(0.05 * i, 2) for i in range(1, 21)),
)  # fmt: skip
SMOKE = dict(
    FULL, mlm_examples=300, mlm_steps=12, mlm_batch=16, ft_steps=6, ft_steps_by_task={}, ft_batch=8, n_train=64,
    n_val=24, n_test=24, alphas=(0.25, 0.5, 0.75, 1.0),
)  # fmt: skip
BUILD_VERSION = 3  # 3: STS-B fine-tuned for STSB_STEPS steps (version 2: 2 500, like every task)


def ft_steps(cfg: dict, task: str) -> int:
    """Fine-tuning steps of ``task``: ``ft_steps_by_task[task]``, else ``ft_steps``."""
    return int(cfg.get("ft_steps_by_task", {}).get(task, cfg["ft_steps"]))


def _schedule(opt: torch.optim.Optimizer, steps: int, warmup: float):
    """Linear warm-up over ``warmup`` of the steps, then cosine decay to 0."""
    n_warm = max(1, int(round(warmup * steps)))

    def f(step):
        if step < n_warm:
            return (step + 1) / n_warm
        return 0.5 * (1.0 + math.cos(math.pi * (step - n_warm) / max(1, steps - n_warm)))

    return torch.optim.lr_scheduler.LambdaLR(opt, f)


def _optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "LayerNorm" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "LayerNorm" not in n)]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}], lr=lr
    )


def mask_tokens(ids: torch.Tensor, attn: torch.Tensor, gen: torch.Generator, rate: float = 0.15):
    """BERT's masking of (B, T) ids: ``rate`` of the real, non-special tokens are predicted; of those 80% become
    ``<mask>``, 10% a random word, 10% stay. Returns (inputs, labels), labels −100 where nothing is predicted."""
    special = (ids == D.BOS) | (ids == D.EOS) | (ids == D.PAD) | (attn == 0)
    pick = (torch.rand(ids.shape, generator=gen) < rate) & ~special
    labels = torch.where(pick, ids, torch.full_like(ids, -100))
    u = torch.rand(ids.shape, generator=gen)
    inputs = ids.clone()
    inputs[pick & (u < 0.8)] = D.MASK
    rand_words = torch.randint(len(D.SPECIALS), D.MASK, ids.shape, generator=gen)
    swap = pick & (u >= 0.8) & (u < 0.9)
    inputs[swap] = rand_words[swap]
    return inputs, labels


def _batches(n: int, batch: int, steps: int, gen: torch.Generator):
    """``steps`` index batches: shuffled epochs over n items."""
    out: List[torch.Tensor] = []
    while len(out) < steps:
        perm = torch.randperm(n, generator=gen)
        out += [perm[i : i + batch] for i in range(0, n - batch + 1, batch)] or [perm]
    return out[:steps]


def _trim(enc: Dict[str, torch.Tensor], idx: torch.Tensor):
    ids, attn = enc["input_ids"][idx], enc["attention_mask"][idx]
    width = int(attn.sum(1).max())
    return ids[:, :width], attn[:, :width]


def pretrain(cfg: dict, seed: int, log) -> StateDict:
    """θ0: MLM-pretrained encoder weights (the ``roberta.*`` part, no LM head)."""
    torch.manual_seed(seed)
    model = RobertaForMaskedLM(tiny_config())
    enc = D.encode(D.mlm_corpus(cfg["mlm_examples"], seed), MAX_LEN)
    gen = torch.Generator().manual_seed(seed)
    opt = _optimizer(model, cfg["mlm_lr"], cfg["weight_decay"])
    sched = _schedule(opt, cfg["mlm_steps"], cfg["warmup"])
    model.train()
    t0, running = time.time(), None
    for step, idx in enumerate(_batches(len(enc["input_ids"]), cfg["mlm_batch"], cfg["mlm_steps"], gen)):
        ids, attn = _trim(enc, idx)
        inputs, labels = mask_tokens(ids, attn, gen)
        loss = model(input_ids=inputs, attention_mask=attn, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if (step + 1) % max(1, cfg["mlm_steps"] // 10) == 0:
            log(f"  mlm step {step + 1}/{cfg['mlm_steps']}: loss {running:.3f} ({time.time() - t0:.0f} s)")
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k.startswith("roberta.")}


def fp16_round(sd: StateDict) -> StateDict:
    """The weights as stored (fp16), back in fp32 for computing."""
    return {k: v.to(torch.float16).to(torch.float32) for k, v in sd.items()}


def _loss(task: D.Task, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if task.kind == "regression":
        return F.mse_loss(logits[:, 0], y)
    return F.cross_entropy(logits, y)


def _labels(task: D.Task, labels) -> torch.Tensor:
    return torch.tensor(labels, dtype=torch.float32 if task.kind == "regression" else torch.int64)


def finetune(task: D.Task, theta0: StateDict, train, cfg: dict, seed: int, log):
    """One expert: the whole encoder from θ0 and a fresh head; returns (encoder state, head state)."""
    torch.manual_seed(seed)
    encoder, head = Encoder(tiny_config()), Head(128, task.n_labels)
    encoder.load_state_dict(theta0)
    enc, y = D.encode(train[0], MAX_LEN), _labels(task, train[1])
    params = list(encoder.parameters()) + list(head.parameters())
    model = torch.nn.ModuleDict({"encoder": encoder, "head": head})
    steps = ft_steps(cfg, task.name)
    opt = _optimizer(model, cfg["ft_lr"], cfg["weight_decay"])
    sched = _schedule(opt, steps, cfg["warmup"])
    gen = torch.Generator().manual_seed(seed)
    model.train()
    running = None
    for step, idx in enumerate(_batches(len(y), cfg["ft_batch"], steps, gen)):
        ids, attn = _trim(enc, idx)
        loss = _loss(task, head(encoder(ids, attn)), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
    log(f"  {task.name}: {steps} steps, final loss {running:.3f}")
    sd = {k: v.detach().clone() for k, v in encoder.state_dict().items()}
    return sd, {k: v.detach().clone() for k, v in head.state_dict().items() if not k.startswith("dropout")}


@torch.no_grad()
def predict(task: D.Task, encoder: Encoder, head: Head, enc: Dict[str, torch.Tensor], batch: int) -> list:
    """Predictions over an encoded split: class ids, or the regression output."""
    encoder.eval()
    head.eval()
    out = []
    for i in range(0, len(enc["input_ids"]), batch):
        ids, attn = _trim(enc, torch.arange(i, min(i + batch, len(enc["input_ids"]))))
        z = head(encoder(ids, attn))
        out += (z[:, 0] if task.kind == "regression" else z.argmax(1)).tolist()
    return out


def _score(task: D.Task, pred, gold) -> float:
    return float(GLUE_METRIC[task.name][1](pred, gold))


class Evaluator:
    """Scores an encoder state on every task's val or test split, each task with its own head."""

    def __init__(self, splits: dict, heads: Dict[str, StateDict], batch: int):
        self.splits, self.batch = splits, batch
        self.encoder = Encoder(tiny_config())
        self.heads = {}
        for name, sd in heads.items():
            h = Head(128, D.TASKS[name].n_labels)
            h.load_state_dict(sd)
            self.heads[name] = h

    def __call__(self, sd: StateDict, split: str, tasks=None) -> Dict[str, float]:
        self.encoder.load_state_dict(sd)
        out = {}
        for name in tasks or self.heads:
            enc, gold = self.splits[name][split]
            out[name] = _score(
                D.TASKS[name], predict(D.TASKS[name], self.encoder, self.heads[name], enc, self.batch), gold
            )
        return out


def _mean(scores: Dict[str, float]) -> float:
    return float(np.mean(list(scores.values())))


def _finetune_job(args, log=None):
    """One expert on one thread (a worker process of :func:`build`, or inline): ``(name, encoder state, head state,
    log lines)``."""
    name, theta0, train, cfg, seed = args
    if log is None:
        torch.set_num_threads(1)
    lines: List[str] = []
    sd, head = finetune(D.TASKS[name], theta0, train, cfg, seed, log or lines.append)
    return name, sd, head, lines


def build(
    out: Path,
    threads: int = 1,
    smoke: bool = False,
    seed: int = 0,
    log=print,
    jobs: int = 1,
    reuse: Optional[Path] = None,
    replicate: int = 0,
    refit: Sequence[str] = (),
    **overrides,
) -> dict:
    """Build the zoo into ``out`` (written under a temporary name, then renamed); return the manifest. ``threads``:
    torch threads for pretraining and measuring; ``jobs``: experts fine-tuned side by side, one process and one
    thread each (the experts do not depend on it: each has its own seed). ``reuse``: a built zoo whose θ0, seed and
    settings are taken (no pretraining); with ``replicate`` r > 0 the experts are fine-tuned with the seeds
    ``seed + 1 + k + 100 r`` (task k), a replicate of that zoo (loaded as ``load_benchmark("glue-tiny",
    replicate=r)`` from ``<zoo>-r<r>``). ``refit`` (with ``reuse``, which must be replicate ``replicate`` itself):
    fine-tune only these tasks with this version's settings and copy the other experts and heads from ``reuse``,
    which must have been built with the settings this version gives them (so the kept experts are the ones a full
    build of this version fine-tunes, on the same machine and thread count)."""
    if threads < 1:
        raise ValueError(f"threads must be ≥ 1, got {threads}")
    if jobs < 1:
        raise ValueError(f"jobs must be ≥ 1, got {jobs}")
    if replicate < 0 or (replicate and reuse is None):
        raise ValueError(f"replicate must be ≥ 0 and needs --reuse (the zoo whose θ0 it shares), got {replicate}")
    refit = list(refit)
    if refit and reuse is None:
        raise ValueError("--refit needs --reuse (the zoo whose other experts it keeps)")
    if set(refit) - set(D.TASKS):
        raise ValueError(f"--refit: unknown task(s) {sorted(set(refit) - set(D.TASKS))}; known: {sorted(D.TASKS)}")
    cfg = dict(SMOKE if smoke else FULL)
    unknown = set(overrides) - set(cfg)
    if unknown:
        raise ValueError(f"unknown build settings {sorted(unknown)}; known: {sorted(cfg)}")
    cfg.update(overrides)
    reused = None
    if reuse is not None:
        reuse = Path(reuse)
        if not (reuse / "manifest.json").is_file() or not (reuse / "pretrained.safetensors").is_file():
            raise ValueError(f"--reuse {reuse}: no built glue-tiny zoo there (manifest.json, pretrained.safetensors)")
        reused = json.loads((reuse / "manifest.json").read_text())
        for name in (
            ["pretrained.safetensors"]
            + (["heads.safetensors"] if refit else [])
            + [f"finetuned_{t}.safetensors" for t in D.TASKS if refit and t not in refit]
        ):
            if not (reuse / name).is_file() or sha256_file(reuse / name) != reused["files"][name]["sha256"]:
                raise ValueError(f"--reuse {reuse}: {name} is missing or differs from its manifest's sha256")
        if refit:
            _check_refit(reuse, reused, cfg, smoke, replicate, refit)
        elif reused.get("build_version") != BUILD_VERSION or reused.get("smoke") != smoke or overrides:
            raise ValueError(
                f"--reuse {reuse}: built by build version {reused.get('build_version')} (smoke "
                f"{reused.get('smoke')}); this is version {BUILD_VERSION} (smoke {smoke}) and a replicate takes the "
                "zoo's settings unchanged (no --set)"
            )
        seed = int(reused["seed"])
    torch.set_num_threads(threads)
    out = Path(out)
    timings: Dict[str, float] = {}
    t_all = time.time()

    log(f"glue-tiny build ({'smoke' if smoke else 'full'}), seed {seed}, {threads} thread(s)")
    t = time.time()
    splits, data_sha = {}, {}
    raw = {}
    for name, task in D.TASKS.items():
        splits[name], data_sha[name] = {}, {}
        for split in D.SPLITS:
            ex, y = D.task_split(name, split, seed, cfg["n_train"], cfg["n_val"], cfg["n_test"])
            data_sha[name][split] = D.split_hash(ex, y)
            if split == "train":
                raw[name] = (ex, y)
            else:
                splits[name][split] = (D.encode(ex, MAX_LEN), y)
    timings["data_s"] = time.time() - t
    log(f"data: {timings['data_s']:.1f} s")
    changed = [t for t in D.TASKS if refit and t not in refit and data_sha[t] != reused["data_sha256"][t]]
    if changed:
        raise ValueError(
            f"--reuse {reuse}: the data of {changed} differ from those its experts were fine-tuned on (another "
            "generator): build the whole zoo instead of --refit"
        )

    t = time.time()
    if reused is not None:
        from safetensors.torch import load_file

        theta0 = {k: v.to(torch.float32) for k, v in load_file(str(reuse / "pretrained.safetensors")).items()}
        log(f"θ0 from {reuse} (replicate {replicate})")
    else:
        theta0 = fp16_round(pretrain(cfg, seed, log))
    timings["pretrain_s"] = time.time() - t
    log(f"pretraining: {timings['pretrain_s']:.0f} s")

    t = time.time()
    experts, heads = {}, {}
    ft_seeds = {name: seed + 1 + k + 100 * replicate for k, name in enumerate(D.TASKS)}
    jobs_args = [(name, theta0, raw[name], cfg, ft_seeds[name]) for name in D.TASKS if not refit or name in refit]
    if refit:  # the other experts and heads as the reused zoo stores them
        from safetensors.torch import load_file

        flat = load_file(str(reuse / "heads.safetensors"))
        for name in D.TASKS:
            if name not in refit:
                sd = load_file(str(reuse / f"finetuned_{name}.safetensors"))
                experts[name] = {k: v.to(torch.float32) for k, v in sd.items()}
                heads[name] = {k.split(".", 1)[1]: v for k, v in flat.items() if k.split(".", 1)[0] == name}
        kept = ", ".join(t for t in D.TASKS if t not in refit)
        log(f"experts of {kept} from {reuse}; fine-tuning {', '.join(refit)}")
    if jobs > 1:  # one process per expert, one thread each: the same numbers as jobs=1, in less wall time
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
            done = list(pool.map(_finetune_job, jobs_args))
    else:
        done = [_finetune_job(a, log) for a in jobs_args]
    for name, sd, head, lines in done:
        if jobs > 1:
            for line in lines:
                log(line)
        experts[name], heads[name] = fp16_round(sd), head
    experts, heads = {t: experts[t] for t in D.TASKS}, {t: heads[t] for t in D.TASKS}  # the tasks' order
    timings["finetune_s"] = time.time() - t
    log(f"fine-tuning: {timings['finetune_s']:.0f} s")

    t = time.time()
    results = measure(theta0, experts, heads, splits, cfg, log)
    timings["measure_s"] = time.time() - t
    log(f"measuring: {timings['measure_s']:.0f} s")

    timings["total_s"] = time.time() - t_all
    manifest = {
        "benchmark": "glue-tiny",
        "build_version": BUILD_VERSION,
        "smoke": smoke,
        "seed": seed,
        "finetune_seeds": ft_seeds,
        "replicate": replicate,
        "theta0_from": None
        if reuse is None
        else reused.get("theta0_from")
        if refit
        else {"zoo": reuse.name, "sha256": sha256_file(reuse / "pretrained.safetensors")},
        "refit": None
        if not refit
        else {
            "tasks": refit,
            "others_from": {
                "zoo": reuse.name,
                "build_version": reused["build_version"],
                "manifest_sha256": sha256_file(reuse / "manifest.json"),
            },
        },
        "settings": cfg,
        "model_config": tiny_config().to_dict(),
        "max_len": MAX_LEN,
        "vocab_size": D.VOCAB_SIZE,
        "vocab_sha256": hashlib.sha256("\n".join(D.VOCAB).encode()).hexdigest(),
        "tasks": {
            n: {"analogue": t.analogue, "kind": t.kind, "n_labels": t.n_labels, "metric": GLUE_METRIC[n][0]}
            for n, t in D.TASKS.items()
        },
        "data_sha256": data_sha,
        "results": results,
        "timings_s": timings,
        "torch": torch.__version__,
        "cpu": cpu_model(),
        "threads": threads,
        "jobs": jobs,
    }
    write_zoo(out, theta0, experts, heads, manifest)
    log(f"wrote {out} in {time.time() - t_all:.0f} s")
    return manifest


def _check_refit(reuse: Path, reused: dict, cfg: dict, smoke: bool, replicate: int, refit: List[str]) -> None:
    """Refuses a ``--refit`` whose kept experts a full build with ``cfg`` would not reproduce: another replicate,
    smoke setting, or a setting other than the refit tasks' own steps."""
    if reused.get("smoke") != smoke or int(reused.get("replicate", 0)) != replicate:
        raise ValueError(
            f"--reuse {reuse}: replicate {reused.get('replicate', 0)} (smoke {reused.get('smoke')}); --refit keeps "
            f"its other experts, so it must be replicate {replicate} (smoke {smoke}) itself"
        )

    def kept(settings: dict) -> dict:
        steps = {t: ft_steps(settings, t) for t in D.TASKS if t not in refit}
        return {**{k: v for k, v in settings.items() if k != "ft_steps_by_task"}, "ft_steps_by_task": steps}

    old, new = kept(json.loads(json.dumps(reused["settings"]))), kept(json.loads(json.dumps(cfg)))
    old.pop("ft_steps", None), new.pop("ft_steps", None)  # folded into the kept tasks' steps
    if old != new:
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        raise ValueError(
            f"--reuse {reuse}: its settings differ from this build's in {diff}, which the kept experts depend on: "
            "build the whole zoo instead of --refit"
        )


def measure(theta0: StateDict, experts: Dict[str, StateDict], heads: Dict[str, StateDict], splits, cfg, log) -> dict:
    """Pretrained, Individual, weight averaging and task arithmetic (α chosen on val) on val and test."""
    ev = Evaluator(splits, heads, cfg["eval_batch"])
    res: dict = {"metric": {n: GLUE_METRIC[n][0] for n in D.TASKS}}
    for split in ("val", "test"):
        res.setdefault("pretrained", {})[split] = ev(theta0, split)
        res.setdefault("individual", {})[split] = {n: ev(sd, split, [n])[n] for n, sd in experts.items()}
    mean_sd = {k: torch.stack([sd[k] for sd in experts.values()]).mean(0) for k in theta0}
    res["weight_averaging"] = {split: ev(mean_sd, split) for split in ("val", "test")}
    tau = {k: sum(sd[k] - theta0[k] for sd in experts.values()) for k in theta0}
    curve = {}
    for a in cfg["alphas"]:
        curve[str(a)] = _mean(ev({k: theta0[k] + a * tau[k] for k in theta0}, "val"))
        log(f"  task arithmetic α={a:.2f}: val mean {curve[str(a)]:.1f}")
    best = max(cfg["alphas"], key=lambda a: curve[str(a)])
    ta_sd = {k: theta0[k] + best * tau[k] for k in theta0}
    res["task_arithmetic"] = {"alpha": best, "val_curve": curve, "val": ev(ta_sd, "val"), "test": ev(ta_sd, "test")}
    for name in ("pretrained", "individual", "weight_averaging", "task_arithmetic"):
        for split in ("val", "test"):
            res[name][split]["avg"] = _mean({n: v for n, v in res[name][split].items() if n != "avg"})
        log(f"{name}: test " + ", ".join(f"{n} {v:.1f}" for n, v in res[name]["test"].items()))
    return res


def write_zoo(out: Path, theta0: StateDict, experts, heads, manifest: dict) -> None:
    """θ0 and the experts in fp16, the heads in fp32 (``<task>.<key>``), written atomically with the manifest
    (:func:`catlib.benchmarks.zoo_build.write_zoo_folder`)."""
    files = {"pretrained.safetensors": half(theta0)}
    files.update({f"finetuned_{name}.safetensors": half(sd) for name, sd in experts.items()})
    files["heads.safetensors"] = {f"{n}.{k}": v.to(torch.float32) for n, h in heads.items() for k, v in h.items()}
    write_zoo_folder(out, files, manifest)


def main(argv: Optional[List[str]] = None) -> int:
    return build_command(
        "python -m catlib.benchmarks.glue_tiny.build", __doc__.split("\n")[0], build,
        "a built zoo whose θ0, seed and settings to take (no pretraining)", argv, refit=True,
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
