"""Inputs a user or papermill can get wrong (issue 21, items 4, 6 and 8 outside the shared code): task lists,
batch sizes and notebook parameters are checked where they enter; the CLIP activation is a switch whose mismatch
with a file is refused."""

import json
import shutil

import pytest

import catlib
from catlib.__main__ import main
from catlib.benchmarks import check_batch_size, check_tasks
from catlib.benchmarks.clip import checkpoints as ck
from catlib.benchmarks.clip.zeroshot import head_cache_key
from catlib.report import notebook as N


# -- task lists and batch sizes (catlib.load_benchmark, every benchmark) ------------------------------------------
@pytest.mark.parametrize(
    "tasks,match",
    [
        ("scenes", r"got the string 'scenes'; pass \['scenes'\]"),
        ([], "empty list; pass None"),
        (["scenes", "scenes"], r"names \['scenes'\] more than once"),
        ([1, 2], "must hold task names"),
        (7, "must be a list of task names, got int"),
        ({"task0", "task1"}, "got a set"),
    ],
)
def test_bad_task_lists_are_refused(tasks, match):
    with pytest.raises(ValueError, match=match):
        check_tasks(tasks)
    with pytest.raises(ValueError, match=match):
        catlib.load_benchmark("control", tasks=tasks)


@pytest.mark.parametrize("bs", [0, -3, 2.5, True, "64", float("nan"), float("inf")])
def test_bad_batch_sizes_are_refused(bs):
    with pytest.raises(ValueError, match="batch_size must be a whole number ≥ 1"):
        check_batch_size(bs)
    with pytest.raises(ValueError, match="batch_size must be a whole number ≥ 1"):
        N.load("control", batch_size=bs)


def test_batch_size_reaches_an_embedded_benchmark():
    assert check_batch_size(None) is None and check_batch_size(64.0) == 64
    assert catlib.load_benchmark("control", batch_size=64).batch_size == 64
    assert N.load("tiny", tasks=["scenes"], batch_size=32).batch_size == 32


# -- notebook parameters -------------------------------------------------------------------------------------------
PARAMS_CELL = """benchmark: str = "tiny"   # a comment with = and (punctuation)
tasks: list = None
seeds: list = [0, 1, 2]
tolerance: float = 2.0
batch_size: int = None
full_grids: bool = False
untyped = 3
"""


def namespace(injected: str, **values):
    ns = {"In": ["", PARAMS_CELL, "# Parameters\n" + injected], "benchmark": "tiny", "tasks": None}
    ns.update(values)
    return ns


def test_declared_parameters_read_the_parameters_cell():
    got = N.declared_parameters(PARAMS_CELL)
    assert got == {
        "benchmark": str,
        "tasks": list,
        "seeds": list,
        "tolerance": float,
        "batch_size": int,
        "full_grids": bool,
        "untyped": None,
    }


def test_unknown_parameter_is_refused_with_the_known_ones():
    ns = namespace('seed = 3\nbenchmark = "tiny"\n', seed=3)
    with pytest.raises(ValueError, match=r"unknown notebook parameter\(s\) \['seed'\].*'seeds'"):
        N.check_parameters(ns)


def test_string_for_a_list_becomes_the_list():
    ns = namespace('tasks = "scenes, vehicles"\nseeds = "[0, 1]"\n', tasks="scenes, vehicles", seeds="[0, 1]")
    got = N.check_parameters(ns)
    assert ns["tasks"] == got["tasks"] == ["scenes", "vehicles"]
    assert ns["seeds"] == [0, 1]
    ns = namespace("seeds = 0\n", seeds=0)
    N.check_parameters(ns)
    assert ns["seeds"] == [0]


@pytest.mark.parametrize(
    "line,value,ok",
    [
        ("tolerance = 1", 1, True),  # an int where a float is meant
        ("tolerance = 'x'", "x", False),
        ("batch_size = True", True, False),  # a bool is not a count
        ("batch_size = 2.0", 2.0, False),
        ("full_grids = 1", 1, False),
        ("batch_size = None", None, True),
        ("untyped = 'anything'", "anything", True),
    ],
)
def test_parameter_types(line, value, ok):
    name = line.split(" = ")[0]
    ns = namespace(line + "\n", **{name: value})
    if ok:
        assert N.check_parameters(ns)[name] == value
    else:
        with pytest.raises(ValueError, match=f"notebook parameter {name} must be a"):
            N.check_parameters(ns)


def test_no_injected_cell_checks_nothing():
    assert N.check_parameters({"In": ["", PARAMS_CELL, "x = 1"]}) == {}
    assert N.check_parameters({}) == {}


def test_seeds_and_tasks_as_papermill_strings():
    assert N.as_list("0,1, 2", "seeds", int) == [0, 1, 2]
    assert N.as_list(["a"], "tasks") == ["a"]
    with pytest.raises(ValueError, match="seeds: cannot read 'a,b'"):
        N.as_list("a,b", "seeds", int)
    bench = N.load("tiny", tasks="scenes,vehicles")
    assert list(bench.tasks) == ["scenes", "vehicles"]
    with pytest.raises(ValueError, match="seeds must be distinct"):
        N.seeds("1,1", "tiny", ["scenes"])


def test_papermill_refuses_an_unknown_parameter(tmp_path):
    """End to end: papermill itself only warns; the notebook's R.setup() stops with the parameter's name."""
    import nbformat
    import papermill as pm

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "catlib", "language": "python", "display_name": "catlib"}
    nb.cells = [
        nbformat.v4.new_code_cell("seeds: list = [0]\n", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("from catlib import report as R\nR.setup()\nprint(seeds)"),
    ]
    src, out = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    nbformat.write(nb, src)
    pm.execute_notebook(str(src), str(out), parameters={"seeds": "3,4"}, kernel_name="catlib", progress_bar=False)
    assert "[3, 4]" in out.read_text()
    with pytest.raises(pm.PapermillExecutionError, match=r"unknown notebook parameter\(s\) \['seed'\]"):
        pm.execute_notebook(str(src), str(out), parameters={"seed": 3}, kernel_name="catlib", progress_bar=False)


# -- QuickGELU ----------------------------------------------------------------------------------------------------
def test_quick_gelu_follows_the_model_config():
    assert ck.resolve_quick_gelu(None, {"quick_gelu": True}) is True
    assert ck.resolve_quick_gelu(None, {}) is False
    assert ck.resolve_quick_gelu(False, {"quick_gelu": True}) is False


def test_head_cache_key_depends_on_the_activation():
    args = ("m", "h", ["a"], ["a photo of {}."])
    assert head_cache_key(*args, True) != head_cache_key(*args, False)


def test_pickled_module_activation_mismatch_is_refused(roots):
    with pytest.raises(ck.ArchitectureMismatchError, match="uses quick_gelu.*--no-quick-gelu") as e:
        ck.load_checkpoints(roots["pickle_root"], roots["model_name"], ["MNIST"], trust_pickle=True, quick_gelu=False)
    assert e.value.path.endswith(".pt")
    c = ck.load_checkpoints(roots["pickle_root"], roots["model_name"], ["MNIST"], trust_pickle=True)
    assert c.quick_gelu is True  # the stand-ins' config says QuickGELU, as open_clip's *-quickgelu configs do


def test_quick_gelu_switch_on_the_command_line(roots, tmp_path, capsys):
    root = tmp_path / "ckpt"
    shutil.copytree(roots["hf_root"], root)
    args = ["evaluate", "--benchmark", "openclip", "--model-name", roots["model_name"], "--checkpoint-root"]
    args += [str(root), "--data-root", roots["data_root"], "--cache-dir", str(tmp_path / "heads"), "--tasks"]
    args += ["MNIST", "--device", "cpu", "--batch-size", "16", "--method", "task_arithmetic", "--json"]
    assert main(args + ["--no-quick-gelu"]) == 2
    err = capsys.readouterr().err
    assert "hidden_act" in err and "--quick-gelu" in err and len(err.strip().splitlines()) == 1, err
    assert main(args + ["--quick-gelu"]) == 0
    assert set(json.loads(capsys.readouterr().out)["per_task"]) == {"MNIST"}
