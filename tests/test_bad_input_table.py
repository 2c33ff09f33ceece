"""Every bad input we know of, tried, and the table of what each gets (``docs/bad_inputs.md``, generated here).

Each case is run and classified: **clear error** (a specific exception, or a one-line CLI message with exit 1 or 2,
that names the problem), **correct result** (the input is read as meant, checked), or **open** (known not yet to
be right; the entry says what happens and where the fix belongs). An open case that starts to give a clear error,
or a clear case that stops, fails this test: update the case and the table. To regenerate the table after a
change: ``CATLIB_WRITE_DOCS=1 pytest tests/test_bad_input_table.py``.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, List, Optional

import pytest
import torch

import catlib
import catlib.report
import catlib.testtime
from catlib.__main__ import main
from conftest import perturbed

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "bad_inputs.md"

CLEAR, CORRECT, OPEN = "clear error", "correct result", "open"


@dataclass
class Case:
    area: str
    what: str  # the bad input, in words
    run: Callable[[Any], Any]  # (fixtures) -> result; raises for an error; CLI cases return (code, stderr)
    expect: str  # CLEAR, CORRECT or OPEN
    match: str = ""  # the message a clear error must match (for an open case: the message its fix should give)
    check: Optional[Callable[[Any], bool]] = None  # CORRECT: the result is right
    note: str = ""  # OPEN: where the fix belongs


def cli(*argv: str):
    def run(_):
        err, out = io.StringIO(), io.StringIO()
        with redirect_stderr(err), redirect_stdout(out):
            try:
                code = main(list(argv))
            except SystemExit as e:  # argparse's usage errors (code 2), or SystemExit("message") (printed, exit 1)
                code = e.code
                if isinstance(code, str):
                    err.write(code + "\n")
                    code = 1
        return ("cli", code, err.getvalue())

    return run


def pf():
    p = {"w": torch.zeros(2, 3), "b": torch.zeros(3), "ids": torch.arange(3)}
    f = [{"w": torch.ones(2, 3) * (i + 1), "b": torch.ones(3), "ids": torch.arange(3)} for i in range(2)]
    return p, f


def merge(method, p=None, f=None, **hp):
    def run(_):
        pp, ff = pf()
        return catlib.merge(method, pp if p is None else p(), ff if f is None else f(), **hp)

    return run


def _nan_finetuned():
    _, f = pf()
    f[1]["w"][0, 0] = float("nan")
    return f


def _grad_inputs():
    p = {"w": torch.zeros(2, 3, requires_grad=True)}
    return p


def _vit_cat(fx, k):
    s = fx["vit"]
    return catlib.merge("cat", s["pretrained"], s["finetuned"][:k], module=s["module"], exemplars=s["exemplars"][:k])


def _vit_ta(fx, k):
    s = fx["vit"]
    return catlib.merge("task_arithmetic", s["pretrained"], s["finetuned"][:k], alpha=0.3)


def _vit_cat_stats(fx, pretrained=None, finetuned=None):
    """CAT on the tiny ViT's models with statistics collected for ``pretrained`` / ``finetuned`` instead."""
    s = fx["vit"]
    stats = catlib.collect_statistics(
        s["module"], pretrained or s["pretrained"], finetuned or s["finetuned"], s["exemplars"]
    )
    return catlib.merge("cat", s["pretrained"], s["finetuned"], stats=stats)


def _testtime(fx, heads=None, unlabelled=None):
    from catlib.testtime import TestTimeInputs, adamerging

    s = fx["vit"]
    x = unlabelled or [e[:2] for e in s["exemplars"]]
    return adamerging(TestTimeInputs(s["module"], s["pretrained"], s["finetuned"], heads or s["heads"], x), steps=1)


def _vit_cat_exemplars(fx, exemplars):
    s = fx["vit"]
    return catlib.merge("cat", s["pretrained"], s["finetuned"], module=s["module"], exemplars=exemplars)


def _tiny_eval(batch_size):
    def run(fx):
        b = fx["control"]
        return catlib.evaluate(b, b.pretrained, "val", list(b.tasks)[:1], batch_size=batch_size)

    return run


def _zoo_verify_damaged(fx):
    from catlib.benchmarks.tiny import zoo

    d = fx["tmp"] / "damaged_zoo"
    d.mkdir(exist_ok=True)
    (d / "manifest.json").write_text((ROOT / "data" / "tiny" / "default" / "manifest.json").read_text())
    (d / "pretrained.safetensors").write_bytes(b"\0" * 10)
    err = io.StringIO()
    with redirect_stderr(err):
        code = zoo.main(["verify", "--root", str(d), "--size", "default"])
    return ("cli", code, err.getvalue())


def _checkpoint(fx, damage: str, **kw):
    from catlib.benchmarks.clip import checkpoints as ck

    r = fx["roots"]
    root = fx["tmp"] / f"ckpt_{damage}"
    if not root.exists():
        shutil.copytree(r["checkpoint_root"], root)
        f = root / r["model_name"] / "MNIST" / "finetuned.pt"
        if damage == "empty":
            f.write_bytes(b"")
        elif damage == "truncated":
            f.write_bytes(f.read_bytes()[:100])
        elif damage == "nan":
            sd = torch.load(f, weights_only=True)
            k = next(k for k, v in sd.items() if "visual" in k and v.is_floating_point())
            sd[k].view(-1)[0] = float("nan")
            torch.save(sd, f)
    return ck.load_checkpoints(root, r["model_name"], ["MNIST"], **kw)


def _pickled(fx, **kw):
    from catlib.benchmarks.clip import checkpoints as ck

    r = fx["roots"]
    return ck.load_checkpoints(r["pickle_root"], r["model_name"], ["MNIST"], **kw)


def _convert_onto_itself(fx):
    from catlib.benchmarks.clip.checkpoints import convert_pickled_checkpoint

    f = Path(fx["roots"]["pickle_root"]) / fx["roots"]["model_name"] / "MNIST" / "finetuned.pt"
    return convert_pickled_checkpoint(f, f)


def _result_cache_non_object(fx):
    from catlib.protocol.cache import ResultCache

    c = ResultCache(fx["tmp"] / "rc")
    key = {"a": 1}
    c.put("x", key, 1.5)
    for f in (fx["tmp"] / "rc").rglob("*.json"):
        f.write_text("[1, 2]")
    return c.cached("x", key, lambda: 2.5)


def _notebook_params(injected: str, **values):
    from catlib.report import notebook as N

    ns = {"In": ["", "tasks: list = None\nseeds: list = [0]\nalpha: float = 0.3\n", "# Parameters\n" + injected]}
    ns.update(values)
    return lambda _: (N.check_parameters(ns), ns)[1]


def _session_spec(tasks):
    def run(fx):
        from catlib.protocol import Session

        S = Session(fx["control"], cache=None)
        return S.spec("task_arithmetic", {}, tasks, None, 0)

    return run


CASES: List[Case] = [
    # -- merge methods and their hyperparameters ------------------------------------------------------------------
    Case("merge", "unknown method name 'tiez'", merge("tiez"), CLEAR, r"unknown merge method 'tiez'.*available"),
    Case(
        "merge",
        "unknown hyperparameter 'lambda'",
        merge("task_arithmetic", **{"lambda": 0.3}),
        CLEAR,
        "unknown hyperparameter 'lambda'",
    ),
    Case("merge", "alpha = -0.1", merge("task_arithmetic", alpha=-0.1), CLEAR, r"alpha=-0.1 is outside"),
    Case("merge", "alpha = NaN", merge("ties", alpha=float("nan")), CLEAR, "alpha must be a finite number"),
    Case("merge", "alpha = +inf", merge("task_arithmetic", alpha=float("inf")), CLEAR, "alpha must be a finite number"),
    Case("merge", "alpha = -inf", merge("ties", alpha=float("-inf")), CLEAR, "alpha must be a finite number"),
    Case("merge", "TIES k = 20 (a fraction is meant)", merge("ties", k=20), CLEAR, r"k=20 is outside"),
    Case("merge", "merge_func = 'median'", merge("ties", merge_func="median"), CLEAR, "is not one of"),
    Case("merge", "CAT c = 2.5", merge("cat", c=2.5), CLEAR, "c must be an integer"),
    Case(
        "merge", "CAT c = 2.0 (a float where an integer is meant)", merge("cat", c=2.0), CLEAR, "c must be an integer"
    ),
    Case("merge", "CAT linear = 'yes'", merge("cat", linear="yes"), CLEAR, "linear must be True or False"),
    Case("merge", "alpha = '0.3' (a string)", merge("task_arithmetic", alpha="0.3"), CLEAR, "alpha must be"),
    Case("merge", "empty list of fine-tuned models", merge("task_arithmetic", f=lambda: []), CLEAR, "non-empty list"),
    Case(
        "merge",
        "a fine-tuned model lacks a key",
        merge("task_arithmetic", f=lambda: [{"w": torch.ones(2, 3)}] * 2),
        CLEAR,
        "missing",
    ),
    Case(
        "merge",
        "shapes differ",
        merge("task_arithmetic", f=lambda: [{**pf()[1][0], "w": torch.ones(3, 2)}] * 2),
        CLEAR,
        "shape",
    ),
    Case("merge", "NaN in a fine-tuned weight", merge("task_arithmetic", f=_nan_finetuned), CLEAR, "NaN|non-finite"),
    Case(
        "merge",
        "data-dependent method without statistics",
        merge("cat"),
        CLEAR,
        r"data-dependent .*module=\.\.\. and exemplars",
    ),
    Case("merge", "Fisher without heads", merge("fisher"), CLEAR, "heads"),
    Case(
        "merge", "AWD with one task vector", merge("awd_ta", f=lambda: pf()[1][:1]), CLEAR, "at least two task vectors"
    ),
    Case(
        "merge",
        "inputs with requires_grad=True",
        merge("task_arithmetic", p=_grad_inputs, f=lambda: [{"w": torch.ones(2, 3, requires_grad=True)}] * 2),
        CORRECT,
        check=lambda sd: (
            not sd["w"].requires_grad and sd["w"].grad_fn is None and torch.allclose(sd["w"], 0.6 * torch.ones(2, 3))
        ),
    ),
    Case(
        "merge",
        "complex tensors",
        merge(
            "task_arithmetic",
            p=lambda: {"w": torch.zeros(2, dtype=torch.complex64)},
            f=lambda: [{"w": torch.ones(2, dtype=torch.complex64)}] * 2,
        ),
        CLEAR,
        "complex .*merging is defined for real tensors",
    ),
    Case(
        "merge",
        "meta tensors",
        merge(
            "task_arithmetic",
            p=lambda: {"w": torch.zeros(2, device="meta")},
            f=lambda: [{"w": torch.zeros(2, device="meta")}] * 2,
        ),
        CLEAR,
        "meta tensor .*load the weights before merging",
    ),
    Case(
        "merge",
        "CAT with one task (K = 1)",
        lambda fx: (_vit_cat(fx, 1), _vit_ta(fx, 1)),
        CORRECT,
        check=lambda r: all(torch.equal(r[0][k], r[1][k]) for k in r[1]),  # nothing to remove: task arithmetic
    ),
    Case(
        "merge",
        "CAT exemplars that are not tensors",
        lambda fx: _vit_cat_exemplars(fx, ["a", "b", "c"]),
        CLEAR,
        "exemplar batch must be a Tensor",
    ),
    Case(
        "merge",
        "CAT with 2 exemplar batches for 3 models",
        lambda fx: _vit_cat_exemplars(fx, fx["vit"]["exemplars"][:2]),
        CLEAR,
        "got 2 exemplar batches for 3 fine-tuned models",
    ),
    Case(
        "merge",
        "CAT with an empty exemplar batch",
        lambda fx: _vit_cat_exemplars(fx, [torch.zeros(0, 3, 16, 16)] * 3),
        CLEAR,
        r"exemplars\[0\] is empty",
    ),
    Case(
        "merge",
        "CAT with NaN exemplars",
        lambda fx: _vit_cat_exemplars(fx, [torch.full((2, 3, 16, 16), float("nan"))] * 3),
        CLEAR,
        r"exemplars\[0\] contains NaN",
    ),
    Case(
        "merge",
        "CAT with statistics collected for another θ0",
        lambda fx: _vit_cat_stats(fx, pretrained=perturbed(fx["vit"]["pretrained"], 0.01, 99)),
        CLEAR,
        "collected with another pretrained model",
    ),
    Case(
        "merge",
        "CAT with statistics collected for the experts in another order",
        lambda fx: _vit_cat_stats(fx, finetuned=fx["vit"]["finetuned"][::-1]),
        CLEAR,
        r"other fine-tuned models at positions \[0, 2\]",
    ),
    Case(
        "test-time",
        "AdaMerging with fewer heads than models",
        lambda fx: _testtime(fx, heads=fx["vit"]["heads"][:2]),
        CLEAR,
        "one head and one batch of unlabelled inputs per fine-tuned model",
    ),
    Case(
        "test-time",
        "AdaMerging on NaN test inputs",
        lambda fx: _testtime(fx, unlabelled=[torch.full((4, 3, 16, 16), float("nan"))] * 3),
        CLEAR,
        r"unlabelled\[0\] contains NaN",
    ),
    Case(
        "test-time",
        "AdaMerging with granularity='block'",
        lambda fx: catlib.testtime.TEST_TIME.get("adamerging").validate({"granularity": "block"}),
        CLEAR,
        "granularity='block' is not one of",
    ),
    # -- benchmarks and evaluation --------------------------------------------------------------------------------
    Case(
        "benchmark",
        "unknown benchmark 'imagenet'",
        lambda _: catlib.load_benchmark("imagenet"),
        CLEAR,
        "unknown benchmark 'imagenet'",
    ),
    Case(
        "benchmark",
        "tasks='scenes' (a string)",
        lambda _: catlib.load_benchmark("tiny", tasks="scenes"),
        CLEAR,
        r"got the string 'scenes'; pass \['scenes'\]",
    ),
    Case("benchmark", "tasks=[]", lambda _: catlib.load_benchmark("tiny", tasks=[]), CLEAR, "empty list"),
    Case(
        "benchmark",
        "tasks with a repeated name",
        lambda _: catlib.load_benchmark("tiny", tasks=["scenes"] * 2),
        CLEAR,
        "more than once",
    ),
    Case(
        "benchmark",
        "tasks given as a set (no order)",
        lambda _: catlib.load_benchmark("control", tasks={"task0", "task1"}),
        CLEAR,
        "got a set",
    ),
    Case(
        "benchmark",
        "unknown task 'cifar'",
        lambda _: catlib.load_benchmark("tiny", tasks=["cifar"]),
        CLEAR,
        r"unknown task\(s\) \['cifar'\]",
    ),
    Case(
        "benchmark",
        "load_benchmark(batch_size=0)",
        lambda _: catlib.load_benchmark("control", batch_size=0),
        CLEAR,
        "batch_size must be a whole number ≥ 1",
    ),
    Case(
        "benchmark",
        "load_benchmark(batch_size=2.5)",
        lambda _: catlib.load_benchmark("control", batch_size=2.5),
        CLEAR,
        "batch_size must be a whole number ≥ 1",
    ),
    Case(
        "benchmark",
        "catlib.evaluate(batch_size=0)",
        _tiny_eval(0),
        CLEAR,
        "batch_size must be a whole number ≥ 1",
    ),
    Case("benchmark", "catlib.evaluate(batch_size=-1)", _tiny_eval(-1), CLEAR, "batch_size"),
    Case(
        "benchmark",
        "a Session run on an empty task list",
        _session_spec([]),
        CLEAR,
        "tasks is an empty list; pass None",
    ),
    # -- notebook parameters (papermill) --------------------------------------------------------------------------
    Case(
        "notebook",
        "unknown parameter -p seed 3 (the notebook has seeds)",
        _notebook_params("seed = 3\n", seed=3),
        CLEAR,
        r"unknown notebook parameter\(s\) \['seed'\].*'seeds'",
    ),
    Case(
        "notebook",
        "-p alpha high (a string for a float)",
        _notebook_params("alpha = 'high'\n", alpha="high"),
        CLEAR,
        "notebook parameter alpha must be a float",
    ),
    Case(
        "notebook",
        "-p tasks scenes,aerial (a string for a list)",
        _notebook_params("tasks = 'scenes,aerial'\n", tasks="scenes,aerial"),
        CORRECT,
        check=lambda ns: ns["tasks"] == ["scenes", "aerial"],
    ),
    Case(
        "notebook",
        "-p seeds 0,1 (numbers in a string)",
        _notebook_params("seeds = '0,1'\n", seeds="0,1"),
        CORRECT,
        check=lambda ns: ns["seeds"] == [0, 1],
    ),
    Case(
        "notebook",
        "batch_size=0 in a notebook",
        lambda _: catlib.report.load("tiny", batch_size=0),
        CLEAR,
        "batch_size must be a whole number ≥ 1",
    ),
    Case(
        "notebook",
        "seeds=[1, 1]",
        lambda _: catlib.report.seeds([1, 1], "tiny", ["scenes"]),
        CLEAR,
        "seeds must be distinct",
    ),
    Case(
        "notebook",
        "seed 7 on a zoo with three replicates",
        lambda _: catlib.report.seeds([7], "tiny", ["scenes"]),
        CLEAR,
        r"ships 3 replicates.*zoo build",
    ),
    # -- command line ---------------------------------------------------------------------------------------------
    Case(
        "cli",
        "--device bogus",
        cli("evaluate", "--method", "task_arithmetic", "--device", "bogus"),
        CLEAR,
        "is not a device",
    ),
    Case(
        "cli",
        "--device cuda:7 on a machine without it",
        cli("evaluate", "--method", "task_arithmetic", "--device", "cuda:7"),
        CLEAR,
        "CUDA is not available|not a device",
    ),
    Case(
        "cli",
        "--tasks with no names",
        cli("evaluate", "--method", "task_arithmetic", "--tasks"),
        CLEAR,
        "without task names",
    ),
    Case(
        "cli",
        "--tasks scenes scenes",
        cli("evaluate", "--method", "task_arithmetic", "--tasks", "scenes", "scenes"),
        CLEAR,
        "more than once",
    ),
    Case("cli", "--method tiez", cli("evaluate", "--method", "tiez"), CLEAR, "unknown merge method"),
    Case(
        "cli",
        "--k for task arithmetic",
        cli("evaluate", "--method", "task_arithmetic", "--k", "0.2"),
        CLEAR,
        "has no hyperparameter",
    ),
    Case(
        "cli",
        "--alpha inf",
        cli("evaluate", "--method", "task_arithmetic", "--alpha", "inf", "--json"),
        CLEAR,
        "finite",
    ),
    Case("cli", "--batch-size 0", cli("evaluate", "--method", "cat", "--batch-size", "0"), CLEAR, "whole number ≥ 1"),
    Case("cli", "--exemplars -3", cli("evaluate", "--method", "cat", "--exemplars", "-3"), CLEAR, "whole number ≥ 1"),
    Case(
        "cli",
        "--data-root on an embedded benchmark",
        cli("evaluate", "--benchmark", "control", "--method", "task_arithmetic", "--data-root", "/nonexistent"),
        CLEAR,
        "is embedded",
    ),
    Case(
        "cli",
        "vit-b-32 without roots",
        cli("evaluate", "--benchmark", "vit-b-32", "--method", "ties"),
        CLEAR,
        "needs --checkpoint-root and --data-root",
    ),
    Case(
        "cli",
        "openclip without --model-name",
        cli("evaluate", "--benchmark", "openclip", "--checkpoint-root", "x", "--data-root", "y", "--method", "ties"),
        CLEAR,
        "needs --model-name",
    ),
    Case(
        "cli",
        "--checkpoint-root that is a file",
        cli(
            "evaluate",
            "--benchmark",
            "tiny",
            "--method",
            "task_arithmetic",
            "--checkpoint-root",
            str(ROOT / "README.md"),
        ),
        CLEAR,
        "manifest|not|zoo",
    ),
    Case("cli", "zoo verify on a damaged zoo", _zoo_verify_damaged, CLEAR, "."),
    # -- checkpoints ----------------------------------------------------------------------------------------------
    Case("checkpoint", "a zero-byte finetuned.pt", lambda fx: _checkpoint(fx, "empty"), CLEAR, "empty file"),
    Case(
        "checkpoint", "a truncated finetuned.pt", lambda fx: _checkpoint(fx, "truncated"), CLEAR, "truncated|unreadable"
    ),
    Case("checkpoint", "NaN in a fine-tuned weight file", lambda fx: _checkpoint(fx, "nan"), CLEAR, "NaN|non-finite"),
    Case("checkpoint", "a pickled module without trust", lambda fx: _pickled(fx), CLEAR, "--trust-pickle"),
    Case(
        "checkpoint",
        "a pickled module with trust",
        lambda fx: _pickled(fx, trust_pickle=True),
        CORRECT,
        check=lambda c: "MNIST" in c.finetuned,
    ),
    Case(
        "checkpoint",
        "a QuickGELU module loaded as GELU",
        lambda fx: _pickled(fx, trust_pickle=True, quick_gelu=False),
        CLEAR,
        "--no-quick-gelu",
    ),
    Case("checkpoint", "convert a checkpoint onto itself", _convert_onto_itself, CLEAR, "input|same|overwrite"),
    Case(
        "checkpoint",
        "a checkpoint root that does not exist",
        lambda fx: _checkpoint_missing(fx),
        CLEAR,
        "checkpoint root not found",
    ),
    # -- caches ---------------------------------------------------------------------------------------------------
    Case(
        "cache", "a result-cache file holding a JSON list", _result_cache_non_object, CORRECT, check=lambda v: v == 2.5
    ),
]


def _checkpoint_missing(fx):
    from catlib.benchmarks.clip import checkpoints as ck

    return ck.load_checkpoints(fx["tmp"] / "nowhere", "ViT-B-32", ["MNIST"])


def classify(case: Case, fx) -> tuple:
    """(outcome, what happened in one line)."""
    try:
        result = case.run(fx)
    except Exception as e:  # every failure is classified below
        msg = " ".join(str(e).split())
        clear = (
            isinstance(e, (catlib.CatlibError, ValueError, KeyError, TypeError, FileNotFoundError))
            and bool(case.match)
            and bool(re.search(case.match, msg))
        )
        return (CLEAR if clear else OPEN), f"{type(e).__name__}: {msg}"
    if isinstance(result, tuple) and result and result[0] == "cli":
        _, code, err = result
        lines = err.strip().splitlines() or [""]
        last = lines[-1]
        one = len(lines) == 1 or lines[0].startswith("usage:")  # argparse: its usage line, then the error
        clear = code in (1, 2) and one and "Traceback" not in err and re.search(case.match or ".", last) is not None
        return (CLEAR if clear else OPEN), f"exit {code}: {' '.join(last.split())}"
    if case.check is not None and case.check(result):
        return CORRECT, "read as meant"
    return OPEN, f"accepted, returned {type(result).__name__}"


@pytest.fixture(scope="module")
def fx(roots, vit_setup, tmp_path_factory):
    return {
        "roots": roots,
        "vit": vit_setup,
        "control": catlib.load_benchmark("control"),
        "tmp": tmp_path_factory.mktemp("bad_inputs"),
    }


def render(rows) -> str:
    counts = {k: sum(1 for r in rows if r[3] == k) for k in (CLEAR, CORRECT, OPEN)}
    out = [
        "# Bad inputs and what they get",
        "",
        "Generated by `tests/test_bad_input_table.py` (which runs every case below and fails when an outcome",
        "changes); regenerate with `CATLIB_WRITE_DOCS=1 pytest tests/test_bad_input_table.py`. Outcomes:",
        "**clear error** (a specific exception, or one CLI line with exit 1 or 2 after argparse's usage line, naming",
        "the problem), **correct result** (the input is read as meant), **open** (not yet right; the note says where",
        "the fix belongs).",
        "",
        f"{len(rows)} cases: {counts[CLEAR]} clear errors, {counts[CORRECT]} correct results, {counts[OPEN]} open.",
        "",
        "| area | bad input | outcome | what the user sees |",
        "|---|---|---|---|",
    ]
    for area, what, got, outcome, note in rows:
        shown = got.replace("|", "\\|")
        shown = re.sub(r"/[\w./-]*/(bad_inputs|standins)\d*/", "<tmp>/", shown)
        shown = shown.replace(str(ROOT) + "/", "")
        if len(shown) > 180:
            shown = shown[:177] + "..."
        extra = f" *Open: {note}*" if outcome == OPEN and note else ""
        out.append(f"| {area} | {what} | {outcome} | {shown}{extra} |")
    return "\n".join(out) + "\n"


def test_every_bad_input_gets_its_expected_outcome_and_the_table_is_current(fx):
    rows, wrong = [], []
    for case in CASES:
        outcome, got = classify(case, fx)
        rows.append((case.area, case.what, got, outcome, case.note))
        if outcome != case.expect:
            wrong.append(f"{case.area}: {case.what}: expected {case.expect}, got {outcome} ({got})")
    assert not wrong, "\n".join(wrong)
    text = render(rows)
    if os.environ.get("CATLIB_WRITE_DOCS"):
        DOC.write_text(text)
    assert DOC.is_file() and DOC.read_text() == text, (
        "docs/bad_inputs.md is out of date: CATLIB_WRITE_DOCS=1 pytest tests/test_bad_input_table.py"
    )


def test_the_table_is_valid_json_free_markdown():
    """The generated table has one row per case (a guard against a case silently dropped from the file)."""
    rows = [line for line in DOC.read_text().splitlines() if line.startswith("| ") and not line.startswith("| area")]
    assert len(rows) == len(CASES)
    json.dumps([c.what for c in CASES])  # every description is plain text
