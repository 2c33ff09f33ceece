"""What the embedded zoos' builds share (``tiny``, ``glue-tiny``, ``vl-tiny``): the CPU's name for the manifest,
writing a zoo folder so that a reader sees the old zoo or the new one and never half of one, and the build command.
A loaded zoo is identified by its manifest (sha256 of every file), not by this code."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional

import torch

from . import sha256_file


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


def write_zoo_folder(out: Path, files: Mapping[str, Mapping[str, torch.Tensor]], manifest: dict) -> dict:
    """Save ``files`` (``{file name: tensors}``, each a safetensors file, tensors stored as given) and
    ``manifest.json`` (``manifest`` plus ``"files"``: every file's sha256 and size) into ``.<name>.tmp-<pid>`` beside
    ``out``, then rename it to ``out`` (an existing ``out`` is moved aside first and removed after). Returns the
    manifest as written."""
    from safetensors.torch import save_file

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    for name, tensors in files.items():
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / name))
    manifest = dict(manifest)
    manifest["files"] = {
        p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in sorted(tmp.iterdir()) if p.is_file()
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    if old.exists():
        shutil.rmtree(old)
    return manifest


def half(sd: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """``sd`` in fp16 (how the zoos store models)."""
    return {k: v.to(torch.float16) for k, v in sd.items()}


def build_command(
    prog: str, description: str, build: Callable, reuse_help: str, argv: Optional[List[str]], refit: bool = False
) -> int:
    """The ``python -m catlib.benchmarks.<zoo>.build`` command: ``--out``, ``--threads``, ``--jobs``, ``--seed``,
    ``--reuse``, ``--replicate``, ``--smoke`` (and ``--refit TASK ...`` where ``refit``) passed to ``build(out,
    threads, smoke, seed, log=, jobs=, reuse=, replicate=[, refit=])``; a ValueError (a bad argument) is printed as
    one line, exit status 2."""
    ap = argparse.ArgumentParser(prog=prog, description=description)
    ap.add_argument("--out", type=Path, required=True, help="the zoo's folder (replaced when it exists)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--jobs", type=int, default=1, help="experts fine-tuned side by side, one process each (default 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reuse", type=Path, help=reuse_help)
    ap.add_argument("--replicate", type=int, default=0, help="with --reuse: replicate r, fine-tuning seeds + 100 r")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: the whole pipeline in seconds")
    if refit:
        ap.add_argument(
            "--refit", nargs="+", default=[], metavar="TASK",
            help="with --reuse: fine-tune only these tasks, keep the reused zoo's other experts",
        )  # fmt: skip
    args = ap.parse_args(argv)
    extra = {"refit": args.refit} if refit else {}
    try:
        build(
            args.out, args.threads, args.smoke, args.seed, log=lambda m: print(m, flush=True), jobs=args.jobs,
            reuse=args.reuse, replicate=args.replicate, **extra,
        )  # fmt: skip
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
