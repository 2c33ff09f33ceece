"""catlib.report (the notebooks' helpers): the disk cache and its validation, tune = experiment.tune, AWD's reuse
path = catlib.merge, results files, claims. On a reduced tiny zoo built in a temporary folder."""
from __future__ import annotations

import json

import pytest
import torch

import catlib
from catlib import experiment as E
from catlib import report as R
from catlib.report import runs as report_runs


@pytest.fixture()
def bench(small_zoo):
    return R.load("tiny", checkpoint_root=str(small_zoo), device="cpu")


def test_run_matches_direct_evaluation_and_is_cached(bench, tmp_path):
    cache = R.ResultCache(tmp_path / "c")
    acc = R.run(bench, "task_arithmetic", {"alpha": 0.3}, cache=cache)
    direct = catlib.evaluate(bench, catlib.merge("task_arithmetic", bench.pretrained, bench.finetuned_list(),
                                                 alpha=0.3))
    assert acc == pytest.approx(direct)
    assert (cache.hits, cache.misses) == (0, 1)
    assert R.run(bench, "task_arithmetic", {"alpha": 0.3}, cache=cache) == acc
    assert cache.hits == 1
    # defaults filled in: the same configuration spelled differently shares the entry
    R.run(bench, "ties", {"alpha": 0.3}, cache=cache)
    R.run(bench, "ties", {"alpha": 0.3, "k": 0.2}, cache=cache)
    assert cache.hits == 2


def test_cache_rejects_corrupt_or_foreign_entries(bench, tmp_path):
    cache = R.ResultCache(tmp_path / "c")
    acc = R.run(bench, "task_arithmetic", {"alpha": 0.3}, cache=cache)
    (path,) = (tmp_path / "c" / "run").glob("*.json")
    entry = json.loads(path.read_text())
    # a value that is not an accuracy per task is recomputed
    entry["value"] = {t: 250.0 for t in entry["value"]}
    path.write_text(json.dumps(entry))
    assert R.run(bench, "task_arithmetic", {"alpha": 0.3}, cache=cache) == pytest.approx(acc)
    # an entry stored under another key (e.g. a hash collision or a copied file) is not used
    entry = json.loads(path.read_text())
    entry["key"]["method"] = "ties"
    entry["value"] = {t: 1.0 for t in entry["value"]}
    path.write_text(json.dumps(entry))
    assert R.run(bench, "task_arithmetic", {"alpha": 0.3}, cache=cache) == pytest.approx(acc)
    path.write_text("{not json")
    assert R.run(bench, "task_arithmetic", {"alpha": 0.3}, cache=cache) == pytest.approx(acc)


def test_key_depends_on_code_benchmark_and_seed_only_when_data_is_used(bench):
    k1 = R.run_key(bench, "task_arithmetic", {"alpha": 0.3}, seed=0, n_exemplars=2)
    k2 = R.run_key(bench, "task_arithmetic", {"alpha": 0.3}, seed=1, n_exemplars=4)
    assert k1 == k2  # data-free: seed and exemplars do not matter
    c1 = R.run_key(bench, "cat", {"alpha": 0.3}, seed=0)
    c2 = R.run_key(bench, "cat", {"alpha": 0.3}, seed=1)
    assert c1 != c2 and c1["bench"] == R.bench_fingerprint(bench) and c1["code"] == R.code_fingerprint()


def test_every_report_module_is_reachable_and_not_shadowed_by_a_function():
    import inspect
    import pkgutil
    mods = [m.name for m in pkgutil.iter_modules(R.__path__)]
    assert {"session", "cache", "runs", "tuning", "tables", "plots", "results", "paper_claims",
            "conflicts"} <= set(mods)
    for name in mods:
        assert inspect.ismodule(getattr(R, name)), f"catlib.report.{name} is shadowed by a re-exported name"


def test_code_fingerprint_covers_merging_code_not_the_report_layer():
    names = {str(p.relative_to(R.REPO / "catlib")) for p in R.fingerprinted_files()}
    assert {"statedict.py", "evaluate.py", "merge/cat.py", "merge/registry.py", "benchmarks/base.py"} <= names
    assert not any(n.startswith(("report/", "benchmarks/tiny/")) or n == "interference.py" for n in names)


@pytest.mark.parametrize("method,grid", [("ties", {"alpha": [0.2, 0.5], "k": [0.2, 0.5]}),
                                         ("cat", {"alpha": [0.2, 0.5], "c": [1, 2]})])
def test_tune_matches_experiment_tune(bench, tmp_path, method, grid):
    cache = R.ResultCache(tmp_path / "c")
    ours = R.tune(bench, method, grid, n_exemplars=2, cache=cache)
    ref = E.tune(bench, method, grid, n_exemplars=2)
    assert ours.best == ref.best
    assert ours.val_average == pytest.approx(ref.val_average)
    assert ours.test == pytest.approx(ref.test)
    again = R.tune(bench, method, grid, n_exemplars=2, cache=cache)
    assert again.test == ours.test and cache.hits == len(ours.grid) + 1


def test_book_grids_are_valid_and_give_every_method_the_same_care():
    from catlib.merge.registry import get_method, validate_hparams
    for method, g in R.BOOK_GRIDS.items():
        for point in E.grid_points(g):  # every point is a valid configuration of a registered method
            validate_hparams(get_method(method), point)
    sizes = {m: len(g["alpha"]) for m, g in R.BOOK_GRIDS.items() if "alpha" in g}
    assert set(sizes.values()) == {6}, sizes
    assert set(R.grid("pcb")["alpha"]) == set(R.BOOK_SCALES) and R.grid("cat")["alpha"] == R.BOOK_ALPHAS
    assert R.grid("cat", grids={"cat": {"alpha": (0.2,)}}) == {"alpha": [0.2]}
    assert R.grid_size(R.METHODS + R.NEWER_METHODS) < R.grid_size(R.METHODS + R.NEWER_METHODS, full_grids=True)


def test_edge_choices_flags_a_choice_on_the_edge_of_its_grid():
    def result(best, points):
        return E.TuneResult("m", best, 0.0, {}, [{**p, "val_average": 0.0} for p in points])
    alphas = [{"alpha": a} for a in (0.1, 0.3, 0.5)]
    assert R.edge_choices(result({"alpha": 0.5}, alphas)) == {"alpha": "largest"}
    assert R.edge_choices(result({"alpha": 0.1}, alphas)) == {"alpha": "smallest"}
    assert R.edge_choices(result({"alpha": 0.3}, alphas)) == {}
    two = [{"alpha": a, "normalize": n, "mode": "x"} for a in (0.1, 0.5) for n in (True, False)]
    assert R.edge_choices(result({"alpha": 0.5, "normalize": True, "mode": "x"}, two)) == {}  # < 3 values: not judged
    bools = [{"flag": f} for f in (True, False)] + [{"flag": 2}]
    assert R.edge_choices(result({"flag": True}, bools)) == {}  # not all numbers
    lists = [{"layers": v} for v in ([0], [1], [2])]
    assert R.edge_choices(result({"layers": [2]}, lists)) == {}  # unhashable values are not judged either
    grid2 = [{"alpha": a, "k": k} for a in (0.1, 0.3, 0.5) for k in (0.1, 0.2, 0.4)]
    assert R.edge_choices(result({"alpha": 0.3, "k": 0.4}, grid2)) == {"k": "largest"}


@pytest.mark.parametrize("method", ["awd_ta", "awd_ties"])
def test_awd_reuse_path_equals_catlib_merge(bench, method):
    hp = {"alpha": 0.4, "steps": 5}
    fast = report_runs._merge_fast(bench, method, hp, None, 4, 0)
    ref = catlib.merge(method, bench.pretrained, bench.finetuned_list(), **hp)
    for k in ref:
        torch.testing.assert_close(fast[k], ref[k], rtol=1e-5, atol=1e-6)


def test_tune_over_seeds_reruns_only_data_dependent(bench, tmp_path):
    cache = R.ResultCache(tmp_path / "c")
    ta = R.tune_over_seeds(bench, "task_arithmetic", [0, 1, 2], grid={"alpha": [0.3]}, cache=cache)
    assert not ta["data_dependent"] and list(ta["per_seed"]) == [0] and ta["std_avg"] == 0.0
    cat = R.tune_over_seeds(bench, "cat", [0, 1], grid={"alpha": [0.3]}, n_exemplars=2, cache=cache)
    assert cat["data_dependent"] and list(cat["per_seed"]) == [0, 1]
    assert cat["mean"] == pytest.approx({t: (cat["per_seed"][0][t] + cat["per_seed"][1][t]) / 2
                                         for t in bench.tasks})


def test_results_files_and_claims(tmp_path, monkeypatch):
    monkeypatch.setenv("CATLIB_RESULTS_DIR", str(tmp_path))
    assert all(r["verdict"] == "not run" for r in R.claims())
    R.save_results("table1", {"averages": {"pretrained": 40.0, "task_arithmetic": 50.0, "cat": 55.123456,
                                           "pcb": 52.0}}, {"benchmark": "tiny"})
    doc = R.load_results("table1")
    assert doc["results"]["averages"]["cat"] == 55.1235 and doc["parameters"] == {"benchmark": "tiny"}
    assert not list(tmp_path.glob(".*tmp"))  # written atomically, no leftovers
    row = next(r for r in R.claims() if r["notebook"] == "table1")
    assert row["verdict"] == "reproduced" and "55.1" in row["ours"]
    R.save_results("table1", {"averages": {"task_arithmetic": 50.0, "cat": 45.0, "pcb": 52.0}}, {"benchmark": "tiny"})
    row = next(r for r in R.claims() if r["notebook"] == "table1")
    assert row["verdict"] == "not reproduced"


def test_larger_model_claim(tmp_path, monkeypatch):
    monkeypatch.setenv("CATLIB_RESULTS_DIR", str(tmp_path))
    R.save_results("table1", {"averages": {"individual": 86.0, "task_arithmetic": 64.0, "cat": 63.0}},
                   {"benchmark": "tiny"})
    assert not [r for r in R.claims() if r["notebook"] == "table2"]  # no Table 2 results: no row
    R.save_results("table2", {"averages": {"individual": 88.0, "task_arithmetic": 70.0, "cat": 64.0}},
                   {"benchmark": "tiny-large"})
    row = next(r for r in R.claims() if r["notebook"] == "table2" and "larger" in r["claim"])
    # TA: 22.0 -> 18.0 closer; CAT: 23.0 -> 24.0 not closer
    assert row["verdict"] == "partly" and "Task Arithmetic 22.0 → 18.0" in row["ours"] and "1 of 2" in row["ours"]
    assert "(average accuracy higher for 2 of 2, by +1.0 to +6.0 points)" in row["ours"]  # CAT 63 → 64, TA 64 → 70
    assert "ViT-B/32 → ViT-L/14: TA 21.4 → 9.7" in row["paper"]
    R.save_results("table2", {"averages": {"individual": 88.0, "task_arithmetic": 70.0, "cat": 70.0}},
                   {"benchmark": "tiny-large"})
    row = next(r for r in R.claims() if r["notebook"] == "table2" and "larger" in r["claim"])
    assert row["verdict"] == "reproduced"


def test_paper_tables_load():
    t1 = R.paper_table("table1_vit_b32")
    assert t1.loc["CAT Merging", "avg"] == 78.3 and len(t1) == 13
    t2 = R.paper_table("table2_vit_l14")
    bad = R.printed_average_check(t2)
    assert list(bad.index) == ["Traditional MTL"] and bad.iloc[0]["mean of the columns"] == pytest.approx(93.09)
    assert R.drop_std({"a": 90.0, "b": 80.0}, {"a": 80.0, "b": 80.0}) == pytest.approx(5.0)


def test_interference_matrices_match_direct_evaluation(bench, tmp_path):
    from catlib.interference import leave_one_out, transfer_matrix
    cache = R.ResultCache(tmp_path / "c")
    tasks, alpha = list(bench.tasks[:3]), 1.0
    T = transfer_matrix(bench, alpha, tasks=tasks, cache=cache)
    L = leave_one_out(bench, alpha, tasks=tasks, cache=cache)
    ta = lambda ks: catlib.evaluate(bench, catlib.merge(  # noqa: E731
        "task_arithmetic", bench.pretrained, [bench.finetuned[k] for k in ks], alpha=alpha), "val", tasks)
    base, full = catlib.evaluate(bench, bench.pretrained, "val", tasks), ta(tasks)
    assert list(T.index) == list(T.columns) == list(L.index) == list(L.columns) == tasks
    for j in tasks:
        alone, without = ta([j]), ta([t for t in tasks if t != j])
        assert T[j].to_dict() == pytest.approx({i: alone[i] - base[i] for i in tasks}), j
        assert L[j].to_dict() == pytest.approx({i: without[i] - full[i] for i in tasks}), j
    assert (T.abs().values.sum() > 0) and (L.abs().values.sum() > 0)  # the reduced experts do move accuracies
    for bad in (0.0, -0.5):
        with pytest.raises(ValueError, match="alpha must be > 0"):
            transfer_matrix(bench, bad, tasks=tasks, cache=cache)
    with pytest.raises(ValueError, match="at least 2 tasks"):
        leave_one_out(bench, alpha, tasks=tasks[:1], cache=cache)
