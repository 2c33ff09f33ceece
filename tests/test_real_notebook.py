"""The Table 1 notebook end to end through the real loaders (issue 6): papermill runs notebooks/01_table1.ipynb on
the generated stand-in roots (a tiny open_clip CLIP saved in the task_vectors and the HF layouts, a task_vectors
data root) with benchmark="openclip", exactly as a user runs it with "vit-b-32" and real folders; its results file
must agree with catlib's API called directly on the same roots."""

from __future__ import annotations

import json

import pytest

from conftest import run_notebook

import catlib
from catlib import report as R


@pytest.mark.slow
@pytest.mark.parametrize("which,layout", [("checkpoint_root", "task_vectors"), ("hf_root", "hf")])
def test_table1_notebook_on_standin_roots(roots, which, layout, tmp_path, notebook_env):
    options = {"model_name": roots["model_name"], "layout": layout, "cache_dir": str(tmp_path / "heads")}
    methods = ["weight_average", "task_arithmetic", "ties", "regmean", "cat"]
    grids = {"task_arithmetic": {"alpha": [0.3, 0.6]}, "ties": {"alpha": [0.3]}, "cat": {"alpha": [0.3]}}
    params = dict(
        benchmark="openclip",
        benchmark_options=options,
        checkpoint_root=roots[which],
        tasks=roots["tasks"],
        data_root=roots["data_root"],
        device="cpu",
        batch_size=16,
        methods=methods,
        grids=grids,
        n_exemplars=2,
        seeds=[0],
        subset_tasks=[],
        newer_methods=["tsv_m"],
        results_name="standin_table1",
    )
    nb = run_notebook("01_table1", tmp_path / "table1.ipynb", params)
    assert not [o for c in nb["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
    res = json.loads((tmp_path / "results" / "standin_table1.json").read_text())["results"]
    assert set(res["per_task"]["task_arithmetic"]) == set(roots["tasks"])
    assert set(res["chosen"]) == set(methods) and res["chosen"]["task_arithmetic"]["alpha"] in (0.3, 0.6)
    assert res["averages"]["individual"] > res["averages"]["pretrained"]
    assert set(res["newer"]["averages"]) == {"tsv_m"}

    # the same numbers from the API, without the notebook or its cache
    bench = R.load("openclip", roots["tasks"], "cpu", roots[which], roots["data_root"], 16, options)
    alpha = res["chosen"]["task_arithmetic"]["alpha"]
    ta = catlib.evaluate(bench, catlib.merge("task_arithmetic", bench.pretrained, bench.finetuned_list(), alpha=alpha))
    assert res["per_task"]["task_arithmetic"] == pytest.approx(ta, abs=1e-3)
    pre = catlib.evaluate(bench)
    assert res["averages"]["pretrained"] == pytest.approx(catlib.average(pre), abs=1e-3)
