#!/usr/bin/env python
"""Execute the notebooks with papermill (kernel "catlib") into the committed notebooks/*.ipynb (outputs stored, so
nbval and the book use them), re-running a notebook only when its inputs changed, then build the Jupyter Book.

A notebook's inputs are hashed: its source cells (code, markdown, tags; outputs and injected parameters excluded),
the parameters it runs with, catlib's sources (catlib/**/*.py), the tiny zoos' manifests (data/tiny/*/manifest.json),
the paper tables (data/paper/*.csv) and, for the claims notebook (99_*), the other notebooks' results files. The hash
and the execution time are stored in notebooks/.exec-cache.json. Merge/evaluation results are shared between
notebooks through catlib.report's disk cache (.cache/report/), so a re-run after a text-only change is quick.

    python scripts/build_book.py                 # execute what changed, then `jupyter-book build .`
    python scripts/build_book.py --force 03_exemplars   # re-execute one notebook (name or prefix), or --force all
    python scripts/build_book.py --no-build      # notebooks only
    python scripts/build_book.py --no-execute    # book only, from the stored outputs

Run it through `bash scripts/book.sh`, which sets up .venv and the "catlib" kernel first.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NB_DIR = REPO / "notebooks"
EXEC_CACHE = NB_DIR / ".exec-cache.json"
KERNEL = "catlib"

# Notebooks executed from another notebook's source with other parameters (one source, two book pages). A variant
# runs only when its benchmark exists; otherwise a stub page says why (and shows the paper's table).
VARIANTS = {
    "02_table2": {
        "source": "01_table1",
        "parameters": {"benchmark": "tiny-large", "paper": "table2_vit_l14", "paper_balance_row": "ViT-L/14",
                       "results_name": "table2", "subset_tasks": []},
        "requires": "large",   # a tiny zoo size (data/tiny/<size>/manifest.json, or $CATLIB_TINY_ROOT/<size>)
        "title": "Table 2: eight tasks, the larger encoder",
        "stub": ("The paper's Table 2 repeats Table 1 with CLIP ViT-L/14. In this book it is the same notebook as "
                 "[Table 1](01_table1.ipynb), executed by papermill with `benchmark=\"tiny-large\"` (a wider and "
                 "deeper tiny encoder). **The tiny-large zoo (`data/tiny/large/`) is not built in this checkout, so "
                 "this page has no results yet.** Build it with `python -m catlib.benchmarks.tiny.zoo build --size "
                 "large`, then run `bash scripts/book.sh`; or run the real ViT-L/14 setting on a GPU "
                 "(see [Reproduce on a GPU](../book/reproduce_gpu.md)):\n\n"
                 "```bash\npapermill notebooks/01_table1.ipynb table2.ipynb -k catlib -p benchmark vit-l-14 \\\n"
                 "  -p checkpoint_root /path/to/ckpt -p data_root /path/to/data -p paper table2_vit_l14 \\\n"
                 "  -p paper_balance_row ViT-L/14 -p results_name table2\n```\n\nThe paper's table, as printed, and "
                 "the rows whose printed average is not the mean of their columns:"),
    },
}


def zoo_manifest(size: str) -> Path:
    """Where a tiny zoo's manifest is (the loader's own rule, which honours CATLIB_TINY_ROOT)."""
    from catlib.benchmarks.tiny.zoo import default_root
    return default_root(size) / "manifest.json"


def log(msg: str) -> None:
    print(f"[book] {msg}", flush=True)


def sha_files(paths) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def source_cells(path: Path) -> list:
    nb = json.loads(path.read_text())
    out = []
    for c in nb["cells"]:
        tags = c.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags:
            continue
        src = c["source"] if isinstance(c["source"], str) else "".join(c["source"])
        out.append([c["cell_type"], src, sorted(tags)])
    return out


def plan() -> list:
    """[(name, source path, parameters)] in execution order."""
    items = []
    for p in sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb")):
        if p.stem in VARIANTS:
            continue
        items.append((p.stem, p, {}))
    for name, v in VARIANTS.items():
        items.append((name, NB_DIR / f"{v['source']}.ipynb", dict(v["parameters"])))
    return sorted(items, key=lambda t: t[0])


def input_hash(name: str, src: Path, params: dict) -> str:
    parts = {
        "cells": source_cells(src),
        "parameters": params,
        "kernel": KERNEL,
        "catlib": sha_files((REPO / "catlib").rglob("*.py")),
        "manifests": sha_files([p for p in (zoo_manifest("default"), zoo_manifest("large")) if p.exists()]),
        "paper": sha_files((REPO / "data" / "paper").glob("*.csv")),
    }
    if name.startswith("99"):
        parts["results"] = sha_files((NB_DIR / "results").glob("*.json"))
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def has_outputs(path: Path) -> bool:
    if not path.exists():
        return False
    nb = json.loads(path.read_text())
    return any(c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")


def write_stub(name: str, v: dict) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
    nb = new_notebook(cells=[new_markdown_cell(f"# {v['title']}\n\n{v['stub']}"),
                             new_code_cell("from catlib import report as R\n\n"
                                           f"paper_df = R.paper_table({v['parameters']['paper']!r})\n"
                                           "display(paper_df)\nR.printed_average_check(paper_df)")])
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "catlib (.venv)", "language": "python"}
    nb.metadata["catlib_stub"] = True
    path = NB_DIR / f"{name}.ipynb"
    nbformat.write(nb, path)
    import papermill as pm
    pm.execute_notebook(str(path), str(path), kernel_name=KERNEL, cwd=str(NB_DIR), progress_bar=False)


def execute(name: str, src: Path, params: dict) -> float:
    import papermill as pm
    out = NB_DIR / f"{name}.ipynb"
    fd, tmp = tempfile.mkstemp(dir=NB_DIR, prefix=f".{name}.", suffix=".ipynb")
    os.close(fd)
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(str(src), tmp, parameters=params or None, kernel_name=KERNEL, cwd=str(NB_DIR),
                            progress_bar=False, log_output=False)
    except BaseException:
        failed = NB_DIR / "_executed" / f"{name}.failed.ipynb"
        failed.parent.mkdir(exist_ok=True)
        if Path(tmp).exists():
            shutil.move(tmp, failed)
            log(f"  the partly executed notebook is in {failed.relative_to(REPO)}")
        raise
    os.replace(tmp, out)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--force", nargs="*", default=None, metavar="NAME",
                    help="re-execute these notebooks (names or prefixes, or 'all') even if unchanged")
    ap.add_argument("--no-execute", action="store_true", help="do not execute notebooks")
    ap.add_argument("--no-build", action="store_true", help="do not build the book")
    ap.add_argument("--keep-going", action="store_true", help="continue after a notebook fails")
    ap.add_argument("--strict", action="store_true", help="jupyter-book build -W (warnings are errors)")
    args = ap.parse_args(argv)

    os.environ.pop("MPLBACKEND", None)  # Agg here would make the notebooks' figures vanish silently
    os.environ.setdefault("CATLIB_PROGRESS", "0")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cache = json.loads(EXEC_CACHE.read_text()) if EXEC_CACHE.exists() else {}
    failures = []
    T0 = time.perf_counter()
    if not args.no_execute:
        items = plan()
        forced = set(args.force or [])
        for j, (name, src, params) in enumerate(items, 1):
            tag = f"({j}/{len(items)}) {name}"
            v = VARIANTS.get(name)
            if v and not zoo_manifest(v["requires"]).exists():
                out = NB_DIR / f"{name}.ipynb"
                stub_hash = "stub:" + hashlib.sha256(json.dumps(v, sort_keys=True).encode()).hexdigest()
                stub_ok = out.exists() and json.loads(out.read_text())["metadata"].get("catlib_stub")
                if not stub_ok or cache.get(name, {}).get("hash") != stub_hash:
                    log(f"{tag}: no tiny '{v['requires']}' zoo: writing a stub page")
                    write_stub(name, v)
                    cache[name] = {"hash": stub_hash, "seconds": 0.0}
                else:
                    log(f"{tag}: no tiny '{v['requires']}' zoo: stub page up to date")
                continue
            h = input_hash(name, src, params)
            force = "all" in forced or any(name.startswith(f) for f in forced)
            if not force and cache.get(name, {}).get("hash") == h and has_outputs(NB_DIR / f"{name}.ipynb"):
                log(f"{tag}: up to date (last run {cache[name].get('seconds', 0):.0f} s)")
                continue
            log(f"{tag}: executing" + (f" {src.name} with {params}" if params else "") + " ...")
            try:
                secs = execute(name, src, params)
            except Exception as e:  # papermill raises PapermillExecutionError with the cell's traceback
                log(f"{tag}: FAILED: {type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}")
                failures.append(name)
                if not args.keep_going:
                    break
                continue
            # the claims notebook's hash includes the results files, which later notebooks may have rewritten
            cache[name] = {"hash": input_hash(name, src, params), "seconds": round(secs, 1),
                           "executed": time.strftime("%Y-%m-%dT%H:%M:%S")}
            EXEC_CACHE.write_text(json.dumps(cache, indent=1, sort_keys=True) + "\n")
            log(f"{tag}: done in {secs:.0f} s")
        EXEC_CACHE.write_text(json.dumps(cache, indent=1, sort_keys=True) + "\n")
        log(f"notebooks: {time.perf_counter() - T0:.0f} s" + (f"; FAILED: {', '.join(failures)}" if failures else ""))
    if failures and not args.keep_going:
        return 1
    if not args.no_build:
        t = time.perf_counter()
        jb = Path(sys.executable).with_name("jupyter-book")
        cmd = [str(jb if jb.exists() else "jupyter-book"), "build", "--all", str(REPO)] + (["-W", "-n", "--keep-going"]
                                                                                if args.strict else [])
        log("building the book: " + " ".join(cmd[:4]))
        r = subprocess.run(cmd, cwd=REPO)
        if r.returncode != 0:
            log(f"jupyter-book build failed (exit {r.returncode})")
            return r.returncode
        log(f"book built in {time.perf_counter() - t:.0f} s: open {REPO / '_build' / 'html' / 'index.html'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
