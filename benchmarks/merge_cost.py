"""Wall time and peak memory of every merge method at real ViT-B/32 scale (``--model``: ViT-B/16's or ViT-L/14's).

Setting: the open_clip ViT-B/32 visual tower with random weights (``open_clip.create_model('ViT-B-32',
pretrained=None).visual``, 87.85 M parameters; ViT-L/14: 24 layers of width 1024, 303.97 M), 8 synthetic fine-tuned
models (θ0 + a low-rank part + noise per task), statistics from ``--exemplars`` random 224×224 images per task (50
tokens each; ViT-B/16: 197, ViT-L/14: 257) collected with the real hooks. Each method runs in a fresh subprocess
so its peak RSS is its own; the merge is timed with its statistics already computed (the statistics' own time is a
separate row). Prints a table with the ratio to task arithmetic measured in the same run, then one JSON line
``{method: {"seconds": s, "peak_mb": m}}``.

``peak_mb`` is the peak resident memory during the merge (the counter is reset once the inputs and statistics
exist, Linux ``clear_refs``) minus the process's memory before the inputs were created, so it counts the inputs
(θ0 + 8 models, ``inputs_mb``, and the statistics, ``stats_mb``) plus everything the merge allocates; the target is
``peak_mb ≤ 2 × (inputs_mb + stats_mb)`` (a data-dependent method's statistics are inputs too).

    python benchmarks/merge_cost.py                     # all methods, CPU
    python benchmarks/merge_cost.py --methods cat ties --device cuda
    python benchmarks/merge_cost.py --model ViT-L-14 --exemplars 3 --methods cat
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

HPARAMS = {"awd_ta": {"steps": 50}, "awd_ties": {"steps": 50}}  # AWD: fewer Adam steps than the default 300


def machine() -> str:
    """``"<date>, <CPU model>, <n> cores"``: where and when a stored measurement was made."""
    import datetime

    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{datetime.date.today().isoformat()}, {cpu}, {os.cpu_count()} cores"


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """Peak resident memory since the last :func:`reset_peak` (Linux VmHWM), else since the process started."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> None:
    """Return freed heap to the OS and restart the peak-RSS counter (``/proc/self/clear_refs``), so that the peak
    of the merge is not the transient peak of generating the inputs or collecting the statistics."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def make_inputs(K: int, seed: int, width: int = None, layers: int = None, model: str = "ViT-B-32"):
    """(visual tower, θ0, [K fine-tuned state dicts]): open_clip's ``model`` visual tower with random weights, or
    with ``width``/``layers`` a VisionTransformer of that size (patch 32, 224 px, heads = width / 64), and per task
    θ0 + a rank-8 part + noise on every tensor."""
    import open_clip

    torch.manual_seed(seed)
    if width is None and layers is None:
        visual = open_clip.create_model(model, pretrained=None).visual.eval()
    else:
        from open_clip.transformer import VisionTransformer

        w, L = width or 768, layers or 12
        visual = VisionTransformer(224, 32, w, L, max(1, w // 64), 4.0, output_dim=512).eval()
    p = {k: v.detach().clone() for k, v in visual.state_dict().items()}
    g = torch.Generator().manual_seed(seed + 1)
    fts = []
    for _ in range(K):
        ft = {}
        for k, v in p.items():
            if v.dim() >= 2:
                m = v.reshape(v.shape[0], -1)
                r = 8
                low = (torch.randn(m.shape[0], r, generator=g) @ torch.randn(r, m.shape[1], generator=g)) / r
                ft[k] = v + (1e-3 * low + 3e-4 * torch.randn(m.shape, generator=g)).reshape(v.shape)
            else:
                ft[k] = v + 1e-3 * torch.randn(v.shape, generator=g)
        fts.append(ft)
    return visual, p, fts


def tensor_mb(obj, seen=None) -> float:
    """MB held in the tensors reachable from ``obj`` (dicts, lists, dataclasses, Gram objects), each counted once."""
    seen = set() if seen is None else seen
    if isinstance(obj, torch.Tensor):
        if id(obj) in seen:
            return 0.0
        seen.add(id(obj))
        return obj.numel() * obj.element_size() / 2**20
    if isinstance(obj, dict):
        return sum(tensor_mb(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_mb(v, seen) for v in obj)
    if hasattr(obj, "__dict__"):
        return sum(tensor_mb(v, seen) for v in vars(obj).values())
    return 0.0


def exemplars(K: int, n_ex: int, seed: int, out_dim: int):
    """Per task ``n_ex`` random 224×224 images with random labels, and a random 10-class head per task."""
    g = torch.Generator().manual_seed(seed + 2)
    ex = [(torch.randn(n_ex, 3, 224, 224, generator=g), torch.randint(0, 10, (n_ex,), generator=g)) for _ in range(K)]
    return ex, [torch.nn.Linear(out_dim, 10) for _ in range(K)]


def statistics_for(method: str, hparams: dict, visual, p, fts, ex, heads):
    """The statistics ``method`` needs with ``hparams`` (None for a data-free method), collected with the hooks."""
    import catlib
    from catlib.core.stats import collect_statistics

    spec = catlib.get_method(method)
    needs = spec.needs_for(hparams)
    if not needs:
        return None
    return collect_statistics(visual, p, fts, ex if spec.labelled else [e[0] for e in ex], needs=needs, heads=heads)


def timed_merge(method: str, p, fts, stats, hparams: dict):
    """(seconds, peak RSS MB during the merge, RSS MB just before it): the peak counter restarted first
    (:func:`reset_peak`), so the peak minus the RSS before is what the merge itself allocates."""
    import catlib

    reset_peak()
    before = rss_mb()
    t = time.perf_counter()
    out = catlib.merge(method, p, fts, stats=stats, **hparams)
    seconds = time.perf_counter() - t
    assert set(out) == set(p)
    return seconds, peak_rss_mb(), before


def child(method: str, K: int, n_ex: int, seed: int, device: str, model: str = "ViT-B-32") -> dict:
    torch.manual_seed(seed)
    base = rss_mb()
    visual, p, fts = make_inputs(K, seed, model=model)
    inputs_mb = sum(v.numel() * v.element_size() for sd in [p] + fts for v in sd.values()) / 2**20
    ex, heads = exemplars(K, n_ex, seed, visual.output_dim)
    t = time.perf_counter()
    stats = statistics_for(method, HPARAMS.get(method, {}), visual, p, fts, ex, heads)
    stats_s = time.perf_counter() - t if stats is not None else 0.0
    del visual, ex, heads
    seconds, peak, _ = timed_merge(method, p, fts, stats, HPARAMS.get(method, {}))
    return {
        "seconds": seconds,
        "peak_mb": peak - base,
        "inputs_mb": inputs_mb,
        "stats_seconds": stats_s,
        "stats_mb": tensor_mb(stats) if stats is not None else 0.0,
    }


def stats_child(K: int, n_ex: int, seed: int, model: str = "ViT-B-32") -> dict:
    from catlib.core.stats import collect_statistics

    visual, p, fts = make_inputs(K, seed, model=model)
    g = torch.Generator().manual_seed(seed + 2)
    ex = [torch.randn(n_ex, 3, 224, 224, generator=g) for _ in range(K)]
    t = time.perf_counter()
    collect_statistics(visual, p, fts, ex, needs=("gram", "norm_sq"))
    return {"seconds": time.perf_counter() - t}


def solver_check(seed: int) -> dict:
    """Top-c solver vs torch.linalg.eigh on a near-isotropic ViT-B/32-shaped problem (relative objective error)."""
    from catlib.core.linalg import top_eigh
    from catlib.merge._solver import matvec

    g = torch.Generator().manual_seed(seed)
    n, c = 3072, 4
    A = torch.randn(n, 7 * 200, generator=g) / 40  # near-isotropic: relative eigen-gaps well below 1 %
    B = torch.randn(n, 7 * 200, generator=g) / 40
    mv = matvec(A, B, 1.0)  # CAT's operator A Aᵀ − λ B Bᵀ, as its solver applies it
    t = time.perf_counter()
    _, U = top_eigh(mv, n, c, dtype=torch.float32, tol=1e-5)
    krylov_s = time.perf_counter() - t
    M = A.double() @ A.double().T - B.double() @ B.double().T
    t = time.perf_counter()
    w = torch.linalg.eigvalsh(M)
    eigh_s = time.perf_counter() - t
    best = float(w[-c:].sum())
    got = float(torch.trace(U.double().T @ M @ U.double()))
    return {"rel_objective_error": abs(best - got) / abs(best), "krylov_seconds": krylov_s, "eigh_seconds": eigh_s}


def run_child(name: str, K: int, n_ex: int, seed: int, device: str, model: str = "ViT-B-32") -> dict:
    """:func:`child` (or ``"__stats__"``/``"__solver__"``) in a fresh process, so that its peak RSS is its own."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", name, "--tasks", str(K), "--exemplars", str(n_ex)]
    cmd += ["--seed", str(seed), "--device", device, "--model", model]
    return result_of(cmd, name)


def result_of(cmd, what: str):
    """Run ``cmd`` (a benchmark's child process) and return the JSON after its last ``RESULT `` line; a failure
    raises with the end of its standard error."""
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "CATLIB_PROGRESS": "0"})
    line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    if proc.returncode or not line:
        why = f"exit status {proc.returncode}" if proc.returncode >= 0 else f"killed by signal {-proc.returncode}"
        if proc.returncode == -9:
            why += " (most often the kernel's out-of-memory killer: see `dmesg`)"
        raise RuntimeError(f"{what} failed, {why}:\n{proc.stderr[-3000:]}")
    return json.loads(line[-1][7:])


def main(argv=None) -> None:
    import catlib

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="*", default=None)
    ap.add_argument("--tasks", type=int, default=8)
    ap.add_argument("--exemplars", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--model",
        default="ViT-B-32",
        choices=("ViT-B-32", "ViT-B-16", "ViT-L-14"),
        help="the open_clip visual tower whose size the state dicts have (default ViT-B-32)",
    )
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        res = {
            "__stats__": lambda: stats_child(a.tasks, a.exemplars, a.seed, a.model),
            "__solver__": lambda: solver_check(a.seed),
        }.get(a.child, lambda: child(a.child, a.tasks, a.exemplars, a.seed, a.device, a.model))()
        print("RESULT " + json.dumps(res))
        return
    names = a.methods or list(catlib.methods())
    if "task_arithmetic" not in names:
        names = ["task_arithmetic"] + names

    def run(name: str) -> dict:
        return run_child(name, a.tasks, a.exemplars, a.seed, a.device, a.model)

    print(
        f"{a.model} visual tower, {a.tasks} task vectors, {a.exemplars} exemplars/task, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads",
        flush=True,
    )
    results = {}
    for n in names:
        results[n] = run(n)
        print(f"  {n}: {results[n]['seconds']:.2f} s, peak {results[n]['peak_mb']:.0f} MB", flush=True)
    st = run("__stats__")
    sol = run("__solver__")
    ta = results["task_arithmetic"]["seconds"]
    inputs = results["task_arithmetic"]["inputs_mb"]
    print()
    print(
        f"{'method':<16} {'seconds':>9} {'× TA':>8} {'peak MB':>9} {'stats MB':>9} {'peak/inputs':>12} {'stats s':>8}"
    )
    for n, r in results.items():
        r.setdefault("stats_mb", 0.0)
        print(
            f"{n:<16} {r['seconds']:>9.2f} {r['seconds'] / ta:>8.1f} {r['peak_mb']:>9.0f} {r['stats_mb']:>9.0f} "
            f"{r['peak_mb'] / (inputs + r['stats_mb']):>12.2f} {r['stats_seconds']:>8.2f}"
        )
    print(
        f"inputs (θ0 + {a.tasks} models, fp32): {inputs:.0f} MB; a data-dependent method's inputs also include its "
        f"statistics (stats MB), and peak/inputs divides by both"
    )
    print(f"statistics for {a.tasks} experts (Gram + norm, {a.exemplars} images each): {st['seconds']:.2f} s")
    print(
        f"top-c solver on a near-isotropic 3072×3072 operator: relative objective error "
        f"{sol['rel_objective_error']:.2e} in {sol['krylov_seconds']:.2f} s (dense eigvalsh "
        f"{sol['eigh_seconds']:.2f} s)"
    )
    print(
        json.dumps(
            {n: {"seconds": round(r["seconds"], 3), "peak_mb": round(r["peak_mb"], 1)} for n, r in results.items()}
        )
    )


if __name__ == "__main__":
    main()
