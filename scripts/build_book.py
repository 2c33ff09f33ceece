#!/usr/bin/env python
"""Execute the notebooks with papermill (kernel "catlib") into the committed notebooks/*.ipynb (outputs stored, so
nbval and the book use them), re-running a notebook only when its inputs changed, then build the Jupyter Book.

A notebook's inputs are hashed: its source cells (code, markdown, tags; outputs and injected parameters excluded),
the parameters it runs with, catlib's sources (catlib/**/*.py), the manifest of the tiny zoo it runs on
(data/tiny/<size>/manifest.json; every zoo's for 00_* and 99_*), the paper tables (data/paper/*.csv), for the
claims notebook (99_*) the other notebooks' results files and, for the cost page (10_*), the benchmarks' stored
measurements (benchmarks/*.json). The hash and the execution time are stored in
notebooks/.exec-cache.json. Merge/evaluation results are shared between notebooks through catlib.report's disk cache
(.cache/report/), so a re-run after a text-only change is quick; after executing, the results computed by this code
are packed into notebooks/.result-cache.jsonl.xz (scripts/result_cache.py), which nbval on a fresh clone reads.

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
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Optional
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
        "parameters": {
            "benchmark": "tiny-large",
            "paper": "table2_vit_l14",
            "paper_balance_row": "ViT-L/14",
            "results_name": "table2",
        },
        "requires": "large",  # a tiny zoo size (data/tiny/<size>/manifest.json, or $CATLIB_TINY_ROOT/<size>)
        "title": "Table 2: eight tasks, the larger encoder",
        "lead": (
            "The paper's Table 2 repeats Table 1 with CLIP ViT-L/14: the same eight tasks and methods, a larger "
            "encoder, and every method closer to its experts. This page runs the same protocol on `tiny-large`, the "
            "wider and deeper tiny encoder that stands in for ViT-L/14 (its own three replicate zoos, its own "
            "grids and figures), beside the paper's Table 2. [Table 1](01_table1.ipynb) is the small encoder."
        ),
        "stub": (
            "The paper's Table 2 repeats Table 1 with CLIP ViT-L/14. In this book it is the same notebook as "
            '[Table 1](01_table1.ipynb), executed by papermill with `benchmark="tiny-large"` (a wider and '
            "deeper tiny encoder). **The tiny-large zoo (`data/tiny/large/`) is not built in this checkout, so "
            "this page has no results yet.** Build it with `python -m catlib.benchmarks.tiny.zoo build --size "
            "large`, then run `bash scripts/book.sh`; or run the real ViT-L/14 setting on a GPU "
            "(see [Reproduce on a GPU](../book/reproduce_gpu.md)):\n\n"
            "```bash\npapermill notebooks/01_table1.ipynb table2.ipynb -k catlib -p benchmark vit-l-14 \\\n"
            "  -p checkpoint_root /path/to/ckpt -p data_root /path/to/data -p paper table2_vit_l14 \\\n"
            "  -p paper_balance_row ViT-L/14 -p results_name table2\n```\n\nThe paper's table, as printed, and "
            "the rows whose printed average is not the mean of their columns:"
        ),
    },
}


def zoo_manifest(size: str) -> Path:
    """Where a tiny zoo's manifest is (the loader's own rule, which honours CATLIB_TINY_ROOT)."""
    from catlib.benchmarks.tiny.zoo import default_root

    return default_root(size) / "manifest.json"


def zoo_manifests(size: str) -> list:
    """The manifests of a zoo and of its replicates (``<size>-r1``, ...: the seeds of every table); ``size``: a tiny
    zoo size, or an embedded zoo's benchmark name ("glue-tiny")."""
    from catlib.benchmarks import ZOOS, zoo_replicates
    from catlib.benchmarks.tiny import replicate_roots

    roots = zoo_replicates(size) if size in ZOOS else replicate_roots(size)
    return [r / "manifest.json" for r in roots]


def log(msg: str) -> None:
    print(f"[book] {msg}", flush=True)


def sha_files(paths) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


VERDICTS_TAG = "verdicts"  # the markdown cell build_book writes at the top of a page from the claims (not an input)


def source_cells(path: Path) -> list:
    nb = json.loads(path.read_text())
    out = []
    for c in nb["cells"]:
        tags = c.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags or VERDICTS_TAG in tags:
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


def tiny_sizes() -> dict:
    """Benchmark name -> tiny zoo size (data/tiny/<size>), from the zoo's own recipes."""
    from catlib.benchmarks.tiny.build.recipes import CONFIGS

    return {cfg["benchmark"]: size for size, cfg in CONFIGS.items()}


READS_EVERY_ZOO = ("00_", "11_", "99_")  # the benchmark page (every zoo's acceptance checks), the premise page
# (every benchmark's diagnostics) and the claims page
READS_RESULTS = ("11_", "99_")  # pages that read other notebooks' results files (so they run after them)
READS_BENCHMARKS = ("10_",)  # the cost page plots the stored measurements of benchmarks/*.py (benchmarks/*.json)
NO_ZOO = ("12_",)  # pages on benchmarks generated at load time (the positive control): a lane of their own


def notebook_benchmark(src: Path, params: dict) -> str:
    """The benchmark a notebook runs on: the executed parameter, else the default in its parameters cell."""
    if "benchmark" in params:
        return params["benchmark"]
    for kind, text, tags in source_cells(src):
        if "parameters" in tags:
            m = re.search(r"^benchmark\s*(?::[^=]*)?=\s*[\"']([^\"']+)[\"']", text, re.M)
            if m:
                return m.group(1)
    return "tiny"


def zoo_sizes(name: str, params: dict, src: Optional[Path] = None) -> list:
    """The zoos a notebook's results depend on: its benchmark's (a tiny zoo size, or "glue-tiny"); every zoo for
    the benchmark page (acceptance of each zoo) and the claims page (every results file). Building the large zoo
    re-runs only what uses it."""
    sizes = tiny_sizes()
    if name.startswith(READS_EVERY_ZOO):  # the tiny zoos (the claims page reads Table 3 through its results file)
        return list(sizes.values())
    if name.startswith(NO_ZOO):
        return []
    from catlib.benchmarks import ZOOS

    bench = notebook_benchmark(src, params) if src is not None else params.get("benchmark", "tiny")
    if bench in ZOOS and bench not in sizes:  # a built zoo other than the tiny ones (glue-tiny): its own lane
        return [bench]
    size = sizes.get(bench)
    return [size] if size else []


def input_hash(name: str, src: Path, params: dict) -> str:
    parts = {
        "cells": source_cells(src),
        "parameters": params,
        "kernel": KERNEL,
        "catlib": sha_files([*(REPO / "catlib").rglob("*.py"), *(REPO / "catlib").rglob("*.json")]),
        "manifests": sha_files([p for s in zoo_sizes(name, params, src) for p in zoo_manifests(s) if p.exists()]),
        "paper": sha_files((REPO / "data" / "paper").glob("*.csv")),
    }
    if name.startswith(READS_RESULTS):
        parts["results"] = sha_files((NB_DIR / "results").glob("*.json"))
    if name.startswith(READS_BENCHMARKS):
        parts["benchmarks"] = sha_files((REPO / "benchmarks").glob("*.json"))
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def has_outputs(path: Path) -> bool:
    if not path.exists():
        return False
    nb = json.loads(path.read_text())
    return any(c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")


def write_stub(name: str, v: dict) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    nb = new_notebook(
        cells=[
            new_markdown_cell(f"# {v['title']}\n\n{v['stub']}"),
            new_code_cell(
                "from catlib import report as R\n\n"
                f"paper_df = R.paper_table({v['parameters']['paper']!r})\n"
                "display(paper_df)\nR.printed_average_check(paper_df)"
            ),
        ]
    )
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
        pm.execute_notebook(
            str(src),
            tmp,
            parameters=params or None,
            kernel_name=KERNEL,
            cwd=str(NB_DIR),
            progress_bar=False,
            log_output=False,
        )
    except BaseException:
        failed = NB_DIR / "_executed" / f"{name}.failed.ipynb"
        failed.parent.mkdir(exist_ok=True)
        if Path(tmp).exists():
            shutil.move(tmp, failed)
            log(f"  the partly executed notebook is in {failed.relative_to(REPO)}")
        raise
    if name in VARIANTS:
        retitle(Path(tmp), VARIANTS[name])
    relative_papermill_paths(Path(tmp), src, out)
    os.replace(tmp, out)
    return time.perf_counter() - t0


def relative_papermill_paths(path: Path, src: Path, out: Path) -> None:
    """Store papermill's input/output paths relative to the repository (they were this machine's absolute paths,
    and the temporary name): readers' machines have neither."""
    nb = json.loads(path.read_text())
    pm = nb.get("metadata", {}).get("papermill")
    if pm is not None:
        pm["input_path"] = str(src.relative_to(REPO))
        pm["output_path"] = str(out.relative_to(REPO))
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def retitle(path: Path, v: dict) -> None:
    """Give an executed variant its own page title (the source notebook's first heading would repeat the source's
    title in the book) and say which notebook and parameters it is."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "markdown")
    lines = first.source.splitlines()
    params = ", ".join(f"`{k}={v['parameters'][k]!r}`" for k in v["parameters"])
    note = (
        f"*This page is the notebook `{v['source']}.ipynb` ([its page]({v['source']}.ipynb)) executed by "
        f"papermill with {params}; the text below is that notebook's.*"
    )
    rest = lines[1:] if lines and lines[0].startswith("# ") else lines
    while rest and not rest[0].strip():
        rest.pop(0)
    head = [f"# {v['title']}", ""]
    if v.get("lead"):  # the variant's own first paragraph in place of the source's
        end = next((i for i, line in enumerate(rest) if not line.strip()), len(rest))
        rest = rest[end:]
        head += [v["lead"], ""]
    while rest and not rest[0].strip():
        rest.pop(0)
    first.source = "\n".join(head + [note, ""] + rest)
    nbformat.write(nb, path)


# Notebooks that run after all the others, one at a time: the premise and claims pages read other notebooks' results
# files, and the cost page measures merge time and memory (a notebook running beside it would slow it down).
RUN_ALONE = ("10_cost", "11_", "99_")


def alone(name: str) -> bool:
    return name.startswith(RUN_ALONE)


def lanes(items: list) -> list:
    """Group notebooks into lanes that may run side by side: one lane per tiny zoo, in book order (notebooks on
    one zoo share merges through the report cache, so they run one after another)."""
    out: dict = {}
    for it in items:
        name, src, params = it
        out.setdefault(tuple(zoo_sizes(name, params, src)), []).append(it)
    return list(out.values())


def _execute_job(name, src, params):
    """(seconds, None) or (0, "error message"): returned, not raised, so the parent logs it and decides to go on."""
    log(f"{name}: executing ...")
    try:
        return execute(name, src, params), None
    except Exception as e:  # papermill raises PapermillExecutionError with the cell's traceback
        last = str(e).strip().splitlines()[-1] if str(e).strip() else ""
        return 0.0, f"{type(e).__name__}: {last}"


def run_lanes(lanes_: list, jobs: int, finished, stop) -> None:
    """Execute each lane's notebooks in order, up to ``jobs`` lanes at once (one process per running notebook; the
    notebooks' kernels use one torch thread each). ``finished(item, seconds, error)`` is called as each one ends;
    no new notebook starts once ``stop()`` is true."""
    lanes_ = [list(lane) for lane in lanes_ if lane]
    if jobs <= 1 or len(lanes_) <= 1:
        for lane in lanes_:
            for it in lane:
                if stop():
                    return
                secs, err = _execute_job(*it)
                finished(it, secs, err)
        return
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    with ProcessPoolExecutor(max_workers=min(jobs, len(lanes_)), mp_context=mp.get_context("spawn")) as ex:
        running = {ex.submit(_execute_job, *lane[0]): (lane, 0) for lane in lanes_}
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                lane, k = running.pop(fut)
                secs, err = fut.result()
                finished(lane[k], secs, err)
                if k + 1 < len(lane) and not stop():
                    running[ex.submit(_execute_job, *lane[k + 1])] = (lane, k + 1)


def update_intro() -> None:
    """Write the claims' bottom line (computed from notebooks/results, as the claims page does) into the block of
    book/intro.md reserved for it (atomically)."""
    from catlib.core.io import atomic_write_text
    from catlib.report.paper_claims import bottom_line_block, claims, with_bottom_line

    intro = REPO / "book" / "intro.md"
    text = intro.read_text()
    new = with_bottom_line(text, bottom_line_block(claims()))
    if new != text:
        atomic_write_text(intro, new)
        log("book/intro.md: bottom line updated from notebooks/results")


def update_page_verdicts() -> None:
    """Write each results page's verdicts (computed from notebooks/results, as the claims page does) into a
    markdown cell tagged "verdicts" after the page's first cell; the cell is not one of the notebook's inputs, so
    writing it never makes the notebook due again."""
    import nbformat

    from catlib.core.io import atomic_write_text
    from catlib.report.paper_claims import claims, page_verdicts

    rows = claims()
    for path in sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb")):
        text = page_verdicts(rows, path.stem)
        nb = nbformat.read(path, as_version=4)
        at = [i for i, c in enumerate(nb.cells) if VERDICTS_TAG in c.get("metadata", {}).get("tags", [])]
        old = nb.cells[at[0]].source if at else None
        if text == old:
            continue
        for i in reversed(at):
            del nb.cells[i]
        if text is not None:
            cell = nbformat.v4.new_markdown_cell(text, metadata={"tags": [VERDICTS_TAG]})
            nb.cells.insert(1, cell)
        atomic_write_text(path, nbformat.writes(nb) + "\n")
        log(f"{path.name}: verdicts updated from notebooks/results")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--force",
        nargs="*",
        default=None,
        metavar="NAME",
        help="re-execute these notebooks (names or prefixes, or 'all') even if unchanged",
    )
    ap.add_argument(
        "--only",
        nargs="*",
        default=None,
        metavar="NAME",
        help="execute only these notebooks (names or prefixes) when due; the others wait for a later run",
    )
    ap.add_argument("--no-execute", action="store_true", help="do not execute notebooks")
    ap.add_argument("--no-build", action="store_true", help="do not build the book")
    ap.add_argument("--keep-going", action="store_true", help="continue after a notebook fails")
    ap.add_argument("--strict", action="store_true", help="jupyter-book build -W (warnings are errors)")
    ap.add_argument(
        "--jobs",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="notebooks executed side by side, one per tiny zoo (default: 2, or 1 on one core)",
    )
    args = ap.parse_args(argv)

    os.environ.pop("MPLBACKEND", None)  # Agg here would make the notebooks' figures vanish silently
    os.environ.setdefault("CATLIB_PROGRESS", "0")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cache = json.loads(EXEC_CACHE.read_text()) if EXEC_CACHE.exists() else {}
    failures, executed = [], []
    T0 = time.perf_counter()
    if not args.no_execute:
        items = plan()
        sys.path.insert(0, str(REPO / "scripts"))
        import result_cache

        # a fresh clone's result cache is empty: start from the bundle's results of this code (never replacing a
        # file already there), so that a notebook due after a change re-executes warm instead of from nothing
        _, mine, written = result_cache.unpack(result_cache.ResultCache().dir)
        if written:
            log(f"{written} of the bundle's {mine} results of this code put into the result cache")
        forced = set(args.force or [])
        tags = {name: f"({j}/{len(items)}) {name}" for j, (name, _, _) in enumerate(items, 1)}

        def save_cache():  # atomically: a unique temporary file beside it, then rename
            from catlib.core.io import atomic_write_text

            atomic_write_text(EXEC_CACHE, json.dumps(cache, indent=1, sort_keys=True) + "\n")

        def due(name, src, params) -> bool:
            """Whether the notebook must be executed (writing or keeping the stub page of a missing benchmark)."""
            tag, v = tags[name], VARIANTS.get(name)
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
                return False
            if args.only is not None and not any(name.startswith(o) for o in args.only):
                return False
            h = input_hash(name, src, params)
            force = "all" in forced or any(name.startswith(f) for f in forced)
            if not force and cache.get(name, {}).get("hash") == h and has_outputs(NB_DIR / f"{name}.ipynb"):
                log(f"{tag}: up to date (last run {cache[name].get('seconds', 0):.0f} s)")
                return False
            log(f"{tag}: inputs changed, to execute" + (f" ({src.name} with {params})" if params else ""))
            return True

        def finished(item, secs, error) -> None:
            name, src, params = item
            if error is not None:
                log(f"{tags[name]}: FAILED: {error}")
                failures.append(name)
                return
            # the claims notebook's hash includes the results files, which other notebooks may have rewritten
            cache[name] = {
                "hash": input_hash(name, src, params),
                "seconds": round(secs, 1),
                "executed": time.strftime("%Y-%m-%dT%H:%M:%S"),
            }
            save_cache()
            executed.append(name)
            log(f"{tags[name]}: done in {secs:.0f} s")

        def stop() -> bool:
            return bool(failures) and not args.keep_going

        side_by_side = [it for it in items if not alone(it[0])]
        run_lanes(lanes([it for it in side_by_side if due(*it)]), args.jobs, finished, stop)
        for it in [it for it in items if alone(it[0])]:  # after the others: they read results / measure time
            if not stop() and due(*it):
                run_lanes([[it]], 1, finished, stop)
        save_cache()
        log(f"notebooks: {time.perf_counter() - T0:.0f} s" + (f"; FAILED: {', '.join(failures)}" if failures else ""))
        if executed and not failures:  # the results they were executed with, for nbval on a fresh clone
            n = result_cache.pack(result_cache.ResultCache().dir)
            log(f"{n} results of this code packed into {result_cache.BUNDLE.relative_to(REPO)}")
        update_intro()
        update_page_verdicts()
    if failures and not args.keep_going:
        return 1
    if not args.no_build:
        t = time.perf_counter()
        jb = Path(sys.executable).with_name("jupyter-book")
        cmd = [str(jb if jb.exists() else "jupyter-book"), "build", "--all", str(REPO)] + (
            ["-W", "-n", "--keep-going"] if args.strict else []
        )
        log("building the book: " + " ".join(cmd[:4]))
        r = subprocess.run(cmd, cwd=REPO)
        if r.returncode != 0:
            log(f"jupyter-book build failed (exit {r.returncode})")
            return r.returncode
        log(f"book built in {time.perf_counter() - t:.0f} s: open {REPO / '_build' / 'html' / 'index.html'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
