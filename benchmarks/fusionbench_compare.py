"""catlib beside FusionBench on the same state dicts: seconds, peak memory and how far the merged weights differ.

Inputs: :func:`merge_cost.make_inputs` (the open_clip ViT-B/32 visual tower with random weights, 87.85 M
parameters, ``--tasks`` synthetic fine-tuned models), written once as safetensors files under ``--work``. Every
(library, method) pair runs in a fresh process that loads those files, restarts the peak-RSS counter, merges from
(θ0, fine-tuned state dicts) to the merged state dict (task vectors computed by each library's own code, as its
method does), and writes the result. catlib runs in this interpreter's environment; FusionBench in a separate
virtual environment that this script makes on first use (``--venv``, ``pip install fusion-bench==0.2.33`` and the
pinned torch from the registry): FusionBench is never a dependency of catlib.

The FusionBench side calls the functions its algorithm classes call (``simple_average``, ``task_arithmetic_merge``,
``ties_merging`` on the flattened model, ``TSVM_utils.compute_and_sum_svd_mem_reduction``, ``iso_c``, ``iso_cts``,
``wudi_merging``), with the same hyperparameters in its conventions (TIES' threshold in percent, WUDI's
``iter_num``); the merged task vector is scaled and added to θ0 as its ``run`` methods do.

Two differences are reported per method, each the maximum over the state dict's keys: ``rel_weights`` =
max|θ_catlib − θ_fb| / max|θ_fb| on the merged weights (what the issue asks), and ``rel_task_vector`` =
‖Δ_catlib − Δ_fb‖_F / ‖Δ_fb‖_F with Δ = θ − θ0 (the merged change itself: θ0 dominates the weights, so a
difference of the merge is clearer here), with the key where it is largest.

    python benchmarks/fusionbench_compare.py                         # every method both implement, CPU
    python benchmarks/fusionbench_compare.py --methods ties wudi --wudi-steps 30 --json out.json

WUDI's cost per step differs most: catlib's gradient 2 (m S − C) needs one (out × in)(in × in) product a step,
FusionBench's autograd loss 2K products through (out × out) residuals; at ViT-B/32 size FusionBench's 300 steps take
hours on two cores, so the default run compares 5 steps (the same Adam trajectory; the per-step cost is what the
table reports).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

FUSIONBENCH = "fusion-bench==0.2.33"
TORCH = "torch==2.14.1"

# name -> (catlib hyperparameters, FusionBench call and its hyperparameters); declared once, read by both children.
SETTINGS = {
    "weight_average": ({}, {}),
    "task_arithmetic": ({"alpha": 0.3}, {"scaling_factor": 0.3}),
    "ties": (
        {"alpha": 0.3, "k": 0.2, "merge_func": "sum"},
        {"scaling_factor": 0.3, "threshold": 20, "merge_func": "sum"},  # threshold: top-k in percent
    ),
    "tsv_m": ({"alpha": 1.0}, {"alpha": 1.0}),
    "iso_c": ({"alpha": 1.0}, {"scaling_factor": 1.0}),
    "iso_cts": ({"alpha": 1.0, "common_fraction": 0.8}, {"scaling_factor": 1.0, "common_space_fraction": 0.8}),
    "wudi": ({"lr": 1e-5, "others": "mean"}, {}),  # steps / iter_num: --wudi-steps, added at run time
}


def log(msg: str) -> None:
    print(f"[fusionbench] {msg}", flush=True)


# ------------------------------------------------------------------------------------------------------------------
# the children (one process per library and method)
# ------------------------------------------------------------------------------------------------------------------
def _load(work: Path, K: int):
    from safetensors.torch import load_file

    return load_file(str(work / "theta0.safetensors")), [load_file(str(work / f"ft{i}.safetensors")) for i in range(K)]


def _merge_catlib(method: str, p, fts, hp: dict):
    import catlib

    return catlib.merge(method, p, fts, **hp)


def _merge_fusionbench(method: str, p, fts, hp: dict):
    import torch
    from fusion_bench.utils.state_dict_arithmetic import state_dict_add, state_dict_mul, state_dict_sub

    class Held:  # what FusionBench's module-level functions read from a model: its state dict
        def __init__(self, sd):
            self.sd = sd

        def state_dict(self, keep_vars=False):
            return self.sd

        def load_state_dict(self, sd):
            self.sd = sd

    with torch.no_grad():
        if method == "weight_average":
            from fusion_bench.method.simple_average import simple_average

            return simple_average(fts)
        if method == "task_arithmetic":
            from fusion_bench.method.task_arithmetic.task_arithmetic import task_arithmetic_merge

            return task_arithmetic_merge(Held(dict(p)), [Held(f) for f in fts], hp["scaling_factor"]).sd
        if method == "ties":
            from fusion_bench.method.ties_merging.ties_merging_utils import (
                state_dict_to_vector,
                ties_merging,
                vector_to_state_dict,
            )

            flat_ft = torch.vstack([state_dict_to_vector(f, []) for f in fts])
            flat_p = state_dict_to_vector(p, [])
            merged = ties_merging(flat_ft - flat_p, reset_thresh=hp["threshold"], merge_func=hp["merge_func"])
            return vector_to_state_dict(flat_p + hp["scaling_factor"] * merged, p, remove_keys=[])
        tvs = [state_dict_sub(f, p) for f in fts]
        if method == "tsv_m":
            from fusion_bench.method.task_singular_vector.utils import TSVM_utils

            tv = TSVM_utils.compute_and_sum_svd_mem_reduction(tvs, exclude_keys=[], accelerator="cpu")
            return state_dict_add(state_dict_mul(tv, hp["alpha"]), p)
        if method == "iso_c":
            from fusion_bench.method.isotropic_merging.iso_utils import iso_c

            return state_dict_add(p, state_dict_mul(iso_c(tvs, accelerator="cpu"), hp["scaling_factor"]))
        if method == "iso_cts":
            from fusion_bench.method.isotropic_merging.iso_utils import iso_cts

            tv = iso_cts(tvs, common_space_fraction=hp["common_space_fraction"], accelerator="cpu")
            return state_dict_add(p, state_dict_mul(tv, hp["scaling_factor"]))
        if method == "wudi":
            from fusion_bench.method.wudi.wudi import wudi_merging

            with torch.enable_grad():  # as WUDIMerging.run: task vectors without, the Adam loop with autograd
                tv = wudi_merging(tvs, accelerator="cpu", iter_num=hp["iter_num"])
            return state_dict_add(p, {k: v.detach() for k, v in tv.items()})
    raise ValueError(f"no FusionBench call for {method!r}")


def child(lib: str, method: str, work: Path, K: int, hp: dict) -> dict:
    import contextlib
    import io

    import torch
    from merge_cost import peak_rss_mb, reset_peak, rss_mb
    from safetensors.torch import save_file

    torch.manual_seed(0)
    merge = _merge_catlib if lib == "catlib" else _merge_fusionbench
    with contextlib.redirect_stdout(io.StringIO()):  # FusionBench prints a line per key
        g = torch.Generator().manual_seed(0)
        tiny = [{"w": torch.randn(8, 8, generator=g), "b": torch.randn(8, generator=g)} for _ in range(3)]
        merge(method, tiny[0], tiny[1:], hp)  # imports the library's modules outside the timed, measured part
        base = rss_mb()
        p, fts = _load(work, K)
        reset_peak()
        t = time.perf_counter()
        out = merge(method, p, fts, hp)
        seconds = time.perf_counter() - t
    peak = peak_rss_mb() - base
    out = {k: v.detach().contiguous().float() for k, v in out.items()}
    save_file(out, str(work / f"out_{lib}_{method}.safetensors"))
    return {"seconds": seconds, "peak_mb": peak, "torch": torch.__version__, "threads": torch.get_num_threads()}


# ------------------------------------------------------------------------------------------------------------------
# the parent
# ------------------------------------------------------------------------------------------------------------------
def ensure_venv(venv: Path) -> Path:
    """The FusionBench environment's python, made on first use (a separate virtual environment)."""
    py = venv / "bin" / "python"
    stamp = venv / ".installed"
    if py.exists() and stamp.exists() and stamp.read_text().strip() == f"{TORCH} {FUSIONBENCH}":
        return py
    log(f"making {venv} with {TORCH} {FUSIONBENCH} (once; a few minutes)")
    for cmd in ([sys.executable, "-m", "venv", str(venv)], [str(py), "-m", "pip", "install", "-q", TORCH, FUSIONBENCH]):
        if subprocess.run(cmd).returncode:
            sys.exit(
                f"fusionbench_compare: '{' '.join(cmd)}' failed (output above); fix that, or give an existing "
                f"environment with FusionBench with --venv"
            )
    stamp.write_text(f"{TORCH} {FUSIONBENCH}\n")
    return py


def write_inputs(work: Path, K: int, seed: int, width=None, layers=None) -> None:
    from merge_cost import make_inputs
    from safetensors.torch import save_file

    stamp = work / "inputs.json"
    want = {"model": "ViT-B-32 visual, random weights", "tasks": K, "seed": seed, "width": width, "layers": layers}
    if stamp.exists() and json.loads(stamp.read_text()) == want:
        return
    log(f"writing the inputs (θ0 + {K} fine-tuned models) to {work}")
    work.mkdir(parents=True, exist_ok=True)
    _, p, fts = make_inputs(K, seed, width, layers)
    save_file(p, str(work / "theta0.safetensors"))
    for i, f in enumerate(fts):
        save_file(f, str(work / f"ft{i}.safetensors"))
    stamp.write_text(json.dumps(want))


def run_child(python: Path, lib: str, method: str, work: Path, K: int, hp: dict) -> dict:
    cmd = [str(python), str(Path(__file__).resolve()), "--child", lib, method, "--work", str(work), "--tasks", str(K)]
    cmd += ["--hp", json.dumps(hp)]
    from merge_cost import result_of

    return result_of(cmd, f"{lib} {method}")


def differences(work: Path, method: str) -> dict:
    from safetensors.torch import load_file

    p = load_file(str(work / "theta0.safetensors"))
    a = load_file(str(work / f"out_catlib_{method}.safetensors"))
    b = load_file(str(work / f"out_fusionbench_{method}.safetensors"))
    if set(a) != set(b):
        return {"keys_differ": sorted(set(a) ^ set(b))}
    rel_w, rel_tv, worst = 0.0, 0.0, ""
    for k in sorted(a):
        x, y = a[k].double(), b[k].double()
        rel_w = max(rel_w, float((x - y).abs().max() / y.abs().max().clamp_min(1e-30)))
        dx, dy = x - p[k].double(), y - p[k].double()
        r = float((dx - dy).norm() / dy.norm().clamp_min(1e-30)) if dy.norm() > 0 or dx.norm() > 0 else 0.0
        if r > rel_tv:
            rel_tv, worst = r, k
    return {"rel_weights": rel_w, "rel_task_vector": rel_tv, "worst_key": worst}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="*", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--tasks", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--width", type=int, default=None, help="a smaller model (smoke tests): its width")
    ap.add_argument("--layers", type=int, default=None, help="... and its depth")
    ap.add_argument("--wudi-steps", type=int, default=5, help="WUDI's Adam steps in both libraries (default 5)")
    ap.add_argument("--work", type=Path, default=ROOT / ".cache" / "fusionbench")
    ap.add_argument("--venv", type=Path, default=None, help="FusionBench's environment (default: WORK/venv)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here (after every method)")
    ap.add_argument("--resume", action="store_true", help="keep the methods --json already has in this setting")
    ap.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--hp", default="{}", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print("RESULT " + json.dumps(child(a.child[0], a.child[1], a.work, a.tasks, json.loads(a.hp))))
        return
    import torch

    fb_python = ensure_venv(a.venv or a.work / "venv")
    write_inputs(a.work, a.tasks, a.seed, a.width, a.layers)
    setting = (
        (
            "ViT-B/32 visual tower"
            if a.width is None and a.layers is None
            else f"VisionTransformer width {a.width or 768}, {a.layers or 12} layers"
        )
        + f" (random weights), {a.tasks} synthetic fine-tuned models, CPU, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {FUSIONBENCH}; WUDI {a.wudi_steps} steps"
    )
    rows = {}
    if a.resume and a.json and a.json.exists():  # the methods already measured in this setting are kept
        old = json.loads(a.json.read_text())
        rows = dict(old["methods"]) if old.get("setting") == setting else {}
    for m in a.methods:
        if m in rows:
            log(f"{m}: kept from {a.json}")
            continue
        ours, theirs = (dict(h) for h in SETTINGS[m])
        if m == "wudi":
            ours["steps"], theirs["iter_num"] = a.wudi_steps, a.wudi_steps
        r_c = run_child(Path(sys.executable), "catlib", m, a.work, a.tasks, ours)
        r_f = run_child(fb_python, "fusionbench", m, a.work, a.tasks, theirs)
        rows[m] = {
            "catlib": r_c,
            "fusionbench": r_f,
            "catlib_hparams": ours,
            "fusionbench_hparams": theirs,
            **differences(a.work, m),
        }
        log(
            f"{m}: catlib {r_c['seconds']:.2f} s, FusionBench {r_f['seconds']:.2f} s, "
            f"rel. difference of the merged task vector {rows[m].get('rel_task_vector', float('nan')):.2e}"
        )
        if a.json:  # after every method, so that an interrupted run keeps what it measured (--resume)
            save(a.json, {"setting": setting, "methods": rows})
    from merge_cost import machine

    doc = {"setting": setting, "machine": machine(), "methods": rows}
    print()
    print(
        f"{'method':<16} {'catlib s':>9} {'FB s':>9} {'FB/catlib':>9} {'catlib MB':>10} {'FB MB':>9} "
        f"{'rel. weights':>13} {'rel. Δ':>10}"
    )
    for m, r in rows.items():
        c, f = r["catlib"], r["fusionbench"]
        print(
            f"{m:<16} {c['seconds']:>9.2f} {f['seconds']:>9.2f} {f['seconds'] / c['seconds']:>9.2f} "
            f"{c['peak_mb']:>10.0f} {f['peak_mb']:>9.0f} {r.get('rel_weights', float('nan')):>13.2e} "
            f"{r.get('rel_task_vector', float('nan')):>10.2e}"
        )
    print(json.dumps(doc))
    if a.json:
        save(a.json, doc)


def save(path: Path, doc: dict) -> None:
    from catlib.core.io import atomic_write_text

    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
