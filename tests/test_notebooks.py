"""The notebooks run unchanged under papermill with other parameters (fewer seeds, another α grid), here on a
reduced tiny zoo, writing their results files where CATLIB_RESULTS_DIR says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import NOTEBOOKS, run_notebook


@pytest.fixture()
def nb_env(small_zoo, notebook_env):
    return small_zoo


def outputs_text(nb: dict) -> str:
    parts = []
    for c in nb["cells"]:
        for o in c.get("outputs", []):
            parts.append(o.get("text", "") if isinstance(o.get("text"), str) else "".join(o.get("text", [])))
            data = o.get("data", {})
            for k in ("text/plain", "text/markdown"):
                v = data.get(k, "")
                parts.append(v if isinstance(v, str) else "".join(v))
    return "\n".join(parts)


@pytest.mark.slow
def test_alpha_notebook_with_another_grid(nb_env, tmp_path):
    grids = {"task_arithmetic": {"alpha": [0.1, 0.5]}, "cat": {"alpha": [0.1, 0.5]}}
    nb = run_notebook(
        "04_alpha",
        tmp_path / "alpha.ipynb",
        {
            "checkpoint_root": str(nb_env),
            "device": "cpu",
            "methods": ["task_arithmetic", "cat"],
            "alphas": [0.2, 0.7, 0.9],
            "split": "test",
            "grids": grids,
            "n_exemplars": 2,
        },
    )
    assert any("injected-parameters" in c["metadata"].get("tags", []) for c in nb["cells"])
    assert not [o for c in nb["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
    res = json.loads((tmp_path / "results" / "alpha.json").read_text())
    assert res["parameters"]["alphas"] == [0.2, 0.7, 0.9] and res["parameters"]["split"] == "test"
    assert sorted(res["results"]["curves"]["cat"]) == ["0.2", "0.7", "0.9"]
    assert "Task Arithmetic" in outputs_text(nb)


@pytest.mark.slow
def test_exemplar_notebook_with_fewer_seeds(nb_env, tmp_path):
    nb = run_notebook(
        "03_exemplars",
        tmp_path / "ex.ipynb",
        {
            "checkpoint_root": str(nb_env),
            "device": "cpu",
            "seeds": [0],
            "exemplar_counts": [1, 2],
            "grids": {"cat": {"alpha": [0.3]}, "task_arithmetic": {"alpha": [0.3]}},
        },
    )
    res = json.loads((tmp_path / "results" / "exemplars.json").read_text())
    assert res["parameters"]["seeds"] == [0] and sorted(res["results"]["cat_mean"]) == ["1", "2"]
    assert "CAT configuration" in outputs_text(nb)


def test_every_notebook_has_an_annotated_parameters_cell():
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        nb = json.loads(path.read_text())
        if nb["metadata"].get("catlib_stub"):  # a page written by build_book.py when its benchmark is missing
            continue
        cells = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
        assert len(cells) == 1, path.name
        src = cells[0]["source"] if isinstance(cells[0]["source"], str) else "".join(cells[0]["source"])
        declared = []
        for line in src.splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                assert ":" in line.split("=")[0], f"{path.name}: parameter without a type annotation: {line}"
                declared.append(line.split(":")[0].strip())
        # papermill must parse every one (a "=" in a trailing comment made it skip the line silently: `papermill
        # --help-notebook` lost it and an injected value of it was reported as unknown)
        from papermill.translators import PythonTranslator

        assert [p.name for p in PythonTranslator.inspect({"source": src})] == declared, path.name


def _build_book():
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_book", NOTEBOOKS.parent / "scripts" / "build_book.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_book_lanes_one_per_zoo_and_alone_last():
    """build_book runs one lane per tiny zoo side by side; the cost, premise and claims pages run after, alone (the
    premise and claims pages read the others' results files); a notebook's input hash covers only the zoo it runs
    on (building the large zoo does not re-run the default pages; rebuilding glue-tiny re-runs Table 3 only,
    vl-tiny Table 4)."""
    B = _build_book()
    items = B.plan()
    side = [it for it in items if not B.alone(it[0])]
    groups = {tuple(B.zoo_sizes(n, params, src)): [it[0] for it in lane] for lane in B.lanes(side)
              for n, src, params in lane[:1]}  # fmt: skip
    assert groups[("large",)] == ["02_table2"]
    assert groups[("glue-tiny",)] == ["14_table3"]  # its own zoo, read from its parameters cell's default
    assert groups[("vl-tiny",)] == ["15_table4"]
    assert groups[("default",)][0] == "01_table1" and "10_cost" not in groups[("default",)]
    assert groups[("default", "large")] == ["00_benchmark"]  # its acceptance table reads every zoo
    assert groups[()] == ["12_control"]  # the control is generated at load time: no zoo, a lane of its own
    assert [n for n, _, _ in items if B.alone(n)] == ["10_cost", "11_premise", "99_claims"]
    assert B.zoo_sizes("99_claims", {}) == ["default", "large"] == B.zoo_sizes("11_premise", {})


def test_book_run_lanes_order_and_stop(monkeypatch):
    B = _build_book()
    calls = []
    monkeypatch.setattr(B, "execute", lambda name, src, params: calls.append(name) or (1.0 if name != "b" else 1 / 0))
    got = []
    lanes = [[("a", None, {}), ("b", None, {}), ("c", None, {})], [("d", None, {})]]
    B.run_lanes(lanes, 1, lambda it, secs, err: got.append((it[0], err)), stop=lambda: any(e for _, e in got))
    assert calls == ["a", "b"]  # b fails: nothing new starts
    assert got[0] == ("a", None) and got[1][0] == "b" and got[1][1].startswith("ZeroDivisionError")


def test_nothing_readers_get_cites_this_machine_or_the_developers_notes():
    """Stored notebooks (papermill's metadata included), the book, docs, README and the library name no absolute
    path of the machine that built them and never point to the developers' ../shared folder."""
    repo = Path(__file__).resolve().parents[1]
    files = [
        *(repo / "notebooks").glob("*.ipynb"),
        *(repo / "book").glob("*.md"),
        *(repo / "docs").glob("*.md"),
        repo / "README.md",
        repo / "_config.yml",
        *(repo / "catlib").rglob("*.py"),
    ]
    # this checkout's own path, and the roots of the machines that build the book (examples may write to /tmp)
    marks = [str(repo), "/work/", "/home/", "/root/", "/Users/", "../shared"]
    bad = [(str(f.relative_to(repo)), m) for f in files for m in marks if m in f.read_text()]
    assert not bad, bad


def test_code_is_folded_and_the_parameters_shown():
    """The book shows a page's parameters cell and folds every other code cell (Jupyter Book's ``hide-input``
    tag: the reader sees the outputs, the code one click away); every results notebook checks its papermill
    parameters through ``R.setup()``."""
    bad, unchecked = [], []
    for nb_path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = json.loads(nb_path.read_text())
        for i, c in enumerate(nb["cells"]):
            tags = c.get("metadata", {}).get("tags", [])
            if c["cell_type"] != "code" or {"parameters", "injected-parameters"} & set(tags):
                continue
            if "hide-input" not in tags:
                bad.append(f"{nb_path.name} cell {i}")
        if not any("R.setup(" in "".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"):
            unchecked.append(nb_path.name)
    assert not bad, f"code cells without the hide-input tag: {bad}"
    assert not unchecked, f"notebooks that never call R.setup(): {unchecked}"


def test_every_registered_method_has_a_reference():
    """book/references.md has a row naming each method of catlib's registry (and no name the registry lacks)."""
    import re

    import catlib

    repo = Path(__file__).resolve().parents[1]
    rows = [line for line in (repo / "book" / "references.md").read_text().splitlines() if line.startswith("| `")]
    named = {n for line in rows for n in re.findall(r"`(\w+)`", line.split("|")[1])}
    registry = set(catlib.methods())
    assert named == registry, (sorted(registry - named), sorted(named - registry))


@pytest.mark.slow
def test_testtime_notebook_with_few_steps(nb_env, tmp_path):
    """Table 7's page runs end to end (a few adaptation steps, one seed): every row, the test-time rows marked,
    verdicts from the one function (inconclusive with a single seed)."""
    one = {"alpha": [0.3]}
    nb = run_notebook(
        "13_testtime",
        tmp_path / "testtime.ipynb",
        {
            "checkpoint_root": str(nb_env),
            "device": "cpu",
            "seeds": [0],
            "adamerging_steps": 3,
            "surgery_steps": 3,
            "grids": {m: one for m in ("task_arithmetic", "ties", "cat")},
        },
    )
    assert not [o for c in nb["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
    res = json.loads((tmp_path / "results" / "table7_testtime.json").read_text())["results"]
    assert len(res["avg_per_seed"]) == 8 and set(res["verdicts"].values()) == {"inconclusive"}
    assert "test inputs" in outputs_text(nb) and "training-free" in outputs_text(nb)
