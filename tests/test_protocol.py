"""catlib.protocol: the Session (runs, the content-keyed disk cache and its validation, tuning, the prepare-stage
memo), the declared grids; and the report views over it (results files, claims). On a reduced tiny zoo built in a
temporary folder."""

from __future__ import annotations

import json
import os

import pytest
import torch

import catlib
from catlib import protocol as P
from catlib import report as R
from catlib.protocol import Session


@pytest.fixture()
def bench(small_zoo):
    return R.load("tiny", checkpoint_root=str(small_zoo), device="cpu")


def test_run_matches_direct_evaluation_and_is_cached(bench, tmp_path):
    cache = R.ResultCache(tmp_path / "c")
    S = Session(bench, cache)
    acc = S.run("task_arithmetic", {"alpha": 0.3})
    direct = catlib.evaluate(
        bench, catlib.merge("task_arithmetic", bench.pretrained, bench.finetuned_list(), alpha=0.3)
    )
    assert acc == pytest.approx(direct)
    assert (cache.hits, cache.misses) == (0, 1)
    assert Session(bench, cache).run("task_arithmetic", {"alpha": 0.3}) == acc  # a new Session reads the disk
    assert cache.hits == 1
    # defaults filled in: the same configuration spelled differently shares the entry
    S.run("ties", {"alpha": 0.3})
    S.run("ties", {"alpha": 0.3, "k": 0.2})
    assert cache.hits == 2
    assert R.run(bench, "task_arithmetic", {"alpha": 0.3}, cache=cache) == acc  # the deprecated spelling


def test_cache_rejects_corrupt_or_foreign_entries(bench, tmp_path):
    S = Session(bench, R.ResultCache(tmp_path / "c"))
    acc = S.run("task_arithmetic", {"alpha": 0.3})
    (path,) = (tmp_path / "c" / "run").glob("*.json")
    entry = json.loads(path.read_text())
    # a value that is not an accuracy per task is recomputed
    entry["value"] = {t: 250.0 for t in entry["value"]}
    path.write_text(json.dumps(entry))
    assert S.run("task_arithmetic", {"alpha": 0.3}) == pytest.approx(acc)
    # an entry stored under another key (e.g. a hash collision or a copied file) is not used
    entry = json.loads(path.read_text())
    entry["key"]["method"] = "ties"
    entry["value"] = {t: 1.0 for t in entry["value"]}
    path.write_text(json.dumps(entry))
    assert S.run("task_arithmetic", {"alpha": 0.3}) == pytest.approx(acc)
    for bad in ("{not json", "[1, 2]", "3"):  # unreadable, or JSON that is not an object
        path.write_text(bad)
        assert S.run("task_arithmetic", {"alpha": 0.3}) == pytest.approx(acc)
    (path.parent / ".stray.json.123.tmp").write_text("{")  # a temporary file left by a killed writer is ignored
    assert S.run("task_arithmetic", {"alpha": 0.3}) == pytest.approx(acc)


def test_cached_numbers_are_checked_against_each_tasks_metric_range():
    from catlib.benchmarks import metrics as M
    from catlib.benchmarks.vl import VL_METRIC

    assert M.points_range(M.accuracy) == (0.0, 100.0) and M.points_range(M.f1) == (0.0, 100.0)
    assert M.points_range(M.matthews) == (-100.0, 100.0)
    assert M.points_range(M.GLUE_METRIC["stsb"][1]) == (-100.0, 100.0)  # the mean of two correlations
    assert M.points_range(M.GLUE_METRIC["mrpc"][1]) == (0.0, 100.0)
    assert M.points_range(VL_METRIC["caption"][1]) == (0.0, 1000.0)
    check = P.cache.accuracy_check(["cola", "coco"], {"cola": (-100.0, 100.0), "coco": (0.0, 1000.0)})
    assert check({"cola": -12.5, "coco": 263.8})  # a negative correlation, a CIDEr above 100: both valid
    assert not check({"cola": -100.5, "coco": 263.8}) and not check({"cola": 1.0, "coco": 1000.5})
    assert not check({"cola": float("nan"), "coco": 1.0}) and not check({"cola": 1.0})
    assert not P.cache.accuracy_check(["a"])({"a": -1.0})  # without ranges: a percentage


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_cache_in_a_read_only_folder_computes_and_warns(bench, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        S = Session(bench, R.ResultCache(ro))
        with pytest.warns(UserWarning, match="not writable"):
            acc = S.run("task_arithmetic", {"alpha": 0.3})
        assert acc == pytest.approx(
            catlib.evaluate(bench, catlib.merge("task_arithmetic", bench.pretrained, bench.finetuned_list(), alpha=0.3))
        )
    finally:
        ro.chmod(0o700)


def test_cache_that_cannot_be_written_computes_and_warns(bench, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")  # the cache folder is a file: every write fails, as in a read-only folder
    S = Session(bench, R.ResultCache(blocker))
    with pytest.warns(UserWarning, match="not writable"):
        acc = S.run("task_arithmetic", {"alpha": 0.3})
    assert acc == pytest.approx(Session(bench, None).run("task_arithmetic", {"alpha": 0.3}))


def test_key_depends_on_code_benchmark_and_seed_only_when_data_is_used(bench):
    S = Session(bench, None)
    k1 = S.spec("task_arithmetic", {"alpha": 0.3}, seed=0, n_exemplars=2).key()
    k2 = S.spec("task_arithmetic", {"alpha": 0.3}, seed=1, n_exemplars=4).key()
    assert k1 == k2  # data-free: seed and exemplars do not matter
    c1 = S.spec("cat", {"alpha": 0.3}, seed=0).key()
    c2 = S.spec("cat", {"alpha": 0.3}, seed=1).key()
    assert c1 != c2
    full = S.key("run", **c1)
    assert full["bench"] == R.bench_fingerprint(bench) and full["code"] == R.code_fingerprint()


def test_statistics_are_kept_per_content_not_per_object(bench):
    S = Session(bench, None)
    spec = S.spec("cat", {"alpha": 0.3}, n_exemplars=2)
    assert S.statistics(spec) is S.statistics(S.spec("cat", {"alpha": 0.5}, n_exemplars=2))  # α does not matter
    assert S.statistics(spec) is not S.statistics(S.spec("cat", {"alpha": 0.3}, n_exemplars=2, seed=1))
    scaled = S.spec("cat", {"alpha": 0.5, "features": "scaled"}, n_exemplars=2)
    assert S.statistics(scaled).expert_scale == 0.5  # θ0 + ατ_k: collected apart
    assert Session(bench, None).fingerprint == S.fingerprint  # the same zoo, the same identity


def test_code_fingerprint_covers_merging_code_and_only_the_benchmarks_own_code():
    rel = lambda files: {str(p.relative_to(R.REPO / "catlib")) for p in files}  # noqa: E731
    shared = rel(R.fingerprinted_files())
    assert {
        "core/statedict.py",
        "benchmarks/evaluate.py",
        "merge/cat.py",
        "merge/registry.py",
        "benchmarks/base.py",
        "protocol/session.py",
        "analysis/conflict.py",
    } <= shared
    assert not any(n.startswith(("report/", "benchmarks/tiny/", "benchmarks/clip/")) for n in shared)
    assert not any(n.endswith("interference.py") for n in shared)
    clip = rel(R.fingerprinted_files(("clip",)))
    assert shared < clip and "benchmarks/clip/data/class_names.json" in clip and "benchmarks/clip/zeroshot.py" in clip
    assert R.code_fingerprint() != R.code_fingerprint(("clip",))


@pytest.mark.parametrize(
    "method,grid", [("ties", {"alpha": [0.2, 0.5], "k": [0.2, 0.5]}), ("cat", {"alpha": [0.2, 0.5], "c": [1, 2]})]
)
def test_tune_chooses_the_best_validation_point_and_reports_it_on_test(bench, tmp_path, method, grid):
    cache = R.ResultCache(tmp_path / "c")
    ours = Session(bench, cache).tune(method, grid, n_exemplars=2, widen=0)
    S = Session(bench, None)
    val = {tuple(p.items()): catlib.average(S.run(method, p, split="val", n_exemplars=2)) for p in P.grid_points(grid)}
    best = max(val, key=val.get)  # the first maximum in grid order
    assert list(val).index(best) == list(val).index(tuple(ours.best.items()))
    assert ours.val_average == pytest.approx(val[best])
    assert ours.test == pytest.approx(S.run(method, dict(best), n_exemplars=2))
    again = Session(bench, cache).tune(method, grid, n_exemplars=2, widen=0)
    assert again.test == ours.test and cache.hits == len(ours.grid) + 1


def test_declared_grids_are_the_books_and_give_every_method_the_same_care():
    for method, g in R.BOOK_GRIDS.items():
        for point in P.grid_points(g):  # every point is a valid configuration of a registered method
            catlib.get_method(method).validate(point)
    sizes = {m: len(g["alpha"]) for m, g in R.BOOK_GRIDS.items() if "alpha" in g}
    assert set(sizes.values()) == {6}, sizes
    assert R.grid("pcb")["alpha"] == list(R.BOOK_SCALES) and R.grid("cat")["alpha"] == list(R.BOOK_ALPHAS)
    assert R.grid("cat", grids={"cat": {"alpha": (0.2,)}}) == {"alpha": [0.2]}
    assert R.grid_size(R.METHODS + R.NEWER_METHODS) < R.grid_size(R.METHODS + R.NEWER_METHODS, full_grids=True)
    # knob order follows the signature, so a grid's points (and ties between them) come in a fixed order
    assert list(P.GRIDS["cat"]) == ["alpha", "c", "lam"] and list(P.GRIDS["awd_ties"]) == ["alpha", "penalty"]


def test_edge_choices_flags_a_choice_on_the_edge_of_its_grid():
    def result(best, points):
        return P.TuneResult("m", best, 0.0, {}, [{**p, "val_average": 0.0} for p in points])

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


def test_awd_disentangles_once_per_session_for_every_alpha(bench, monkeypatch):
    from catlib.merge import awd

    calls = []
    real = awd.disentangle
    monkeypatch.setattr(awd, "disentangle", lambda *a, **k: calls.append(1) or real(*a, **k))
    S = Session(bench, None)
    for method, alpha in [("awd_ta", 0.2), ("awd_ta", 0.4), ("awd_ties", 0.3)]:
        merged = S.merged(S.spec(method, {"alpha": alpha, "steps": 5}))
        ref = catlib.merge(method, bench.pretrained, bench.finetuned_list(), alpha=alpha, steps=5)
        for k in ref:
            torch.testing.assert_close(merged[k], ref[k], rtol=1e-5, atol=1e-6)
    assert len(calls) == 1 + 3  # the Session's three merges share one; each catlib.merge without a memo runs its own
    assert S.prepared("awd_ta", {"steps": 5}).delta_rel_norm >= 0 and len(calls) == 4


def test_tune_over_seeds_reruns_only_data_dependent(bench, tmp_path):
    S = Session(bench, R.ResultCache(tmp_path / "c"))
    ta = S.tune_over_seeds("task_arithmetic", [0, 1, 2], grid={"alpha": [0.3]})
    # one session: a data-free method repeats one measurement on every seed, so its spread is unknown (None), not 0
    assert not ta["data_dependent"] and ta["std_avg"] is None
    assert list(ta["per_seed"]) == [0, 1, 2] and ta["per_seed"][1] == ta["per_seed"][0] == ta["per_seed"][2]
    cat = S.tune_over_seeds("cat", [0, 1], grid={"alpha": [0.3]}, n_exemplars=2)
    assert cat["data_dependent"] and list(cat["per_seed"]) == [0, 1]
    assert cat["mean"] == pytest.approx({t: (cat["per_seed"][0][t] + cat["per_seed"][1][t]) / 2 for t in bench.tasks})


def test_report_modules_are_reachable_and_import_nothing_above_them():
    import ast
    import inspect
    import pkgutil

    mods = [m.name for m in pkgutil.iter_modules(R.__path__)]
    for name in mods:
        assert inspect.ismodule(getattr(R, name)), f"catlib.report.{name} is shadowed by a re-exported name"
    # imports point one way: core <- merge <- protocol <- report (benchmarks and analysis beside the protocol);
    # nothing below report imports it. The one upward edge allowed: analysis.interference composes protocol runs.
    root = R.REPO / "catlib"
    rank = {"core": 0, "merge": 1, "benchmarks": 2, "analysis": 2, "protocol": 3, "report": 4}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[0] not in rank:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                target = parts[: len(parts) - node.level] + tuple((node.module or "").split("."))
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("catlib."):
                target = tuple(node.module.split(".")[1:])
            else:
                continue
            top = target[0] if target else ""
            if top in rank and top != parts[0]:
                ok = rank[top] < rank[parts[0]] or (path.name, top) == ("interference.py", "protocol")
                assert ok, f"catlib/{'/'.join(parts)} imports catlib.{'.'.join(target)}"


def _per_seed(values):
    """A results file's per-seed averages (three replicates) from {method: [seed 0, seed 1, seed 2]}."""
    return {
        "averages": {m: sum(v) / len(v) for m, v in values.items()},
        "per_seed_avg": {m: {str(s): x for s, x in enumerate(v)} for m, v in values.items()},
        "replicated": {m: True for m in values},
    }


def test_results_files_and_claims(tmp_path, monkeypatch):
    monkeypatch.setenv("CATLIB_RESULTS_DIR", str(tmp_path))
    assert all(r["verdict"] == "inconclusive" for r in R.claims())  # nothing run: nothing decided
    R.save_results(
        "table1",
        _per_seed({"pretrained": [40.0] * 3, "task_arithmetic": [50.0, 51.0, 49.0], "cat": [55.123456, 56.0, 54.5]}),
        {"benchmark": "tiny", "zoos": 3},
    )
    doc = R.load_results("table1")
    assert doc["results"]["per_seed_avg"]["cat"]["0"] == 55.1235 and doc["parameters"]["benchmark"] == "tiny"
    assert not list(tmp_path.glob(".*tmp"))  # written atomically, no leftovers
    row = next(r for r in R.claims() if r["notebook"] == "table1")
    assert row["verdict"] == "reproduced" and "55.2 ± 0.8" in row["ours"] and "n=3" in row["effect"]
    R.save_results(
        "table1", _per_seed({"task_arithmetic": [50.0, 51.0, 49.0], "cat": [45.0, 46.0, 44.5]}), {"benchmark": "tiny"}
    )
    assert next(r for r in R.claims() if r["notebook"] == "table1")["verdict"] == "not reproduced"
    R.save_results(
        "table1", _per_seed({"task_arithmetic": [50.0, 51.0, 49.0], "cat": [52.0, 49.0, 50.0]}), {"benchmark": "tiny"}
    )
    assert next(r for r in R.claims() if r["notebook"] == "table1")["verdict"] == "inconclusive"  # within noise


def test_larger_model_claim(tmp_path, monkeypatch):
    monkeypatch.setenv("CATLIB_RESULTS_DIR", str(tmp_path))
    R.save_results(
        "table1",
        _per_seed({"individual": [86.0, 87.0, 85.0], "task_arithmetic": [64.0, 65.0, 63.0], "cat": [63.0] * 3}),
        {"benchmark": "tiny"},
    )
    assert not [r for r in R.claims() if r["key"] == "larger"]  # no Table 2 results: no row
    R.save_results(
        "table2",
        _per_seed({"individual": [88.0, 89.0, 87.0], "task_arithmetic": [78.0, 79.0, 77.5], "cat": [77.0, 78.0, 77.0]}),
        {"benchmark": "tiny-large"},
    )
    row = next(r for r in R.claims() if r["key"] == "larger")
    assert row["verdict"] == "reproduced" and "tiny" in row["ours"] and "tiny-large" in row["ours"]
    assert "ViT-B/32 → ViT-L/14: TA 21.4 → 9.7" in row["paper"]
    R.save_results(
        "table2",
        _per_seed({"individual": [88.0, 89.0, 87.0], "task_arithmetic": [60.0, 68.0, 64.0], "cat": [62.0, 66.0, 64.0]}),
        {"benchmark": "tiny-large"},
    )
    assert next(r for r in R.claims() if r["key"] == "larger")["verdict"] == "inconclusive"


def test_paper_tables_load():
    t1 = R.paper_table("table1_vit_b32")
    assert t1.loc["CAT Merging", "avg"] == 78.3 and len(t1) == 13
    t2 = R.paper_table("table2_vit_l14")
    bad = R.printed_average_check(t2)
    assert list(bad.index) == ["Traditional MTL"] and bad.iloc[0]["mean of the columns"] == pytest.approx(93.09)
    assert R.drop_std({"a": 90.0, "b": 80.0}, {"a": 80.0, "b": 80.0}) == pytest.approx(5.0)


def test_interference_matrices_match_direct_evaluation(bench, tmp_path):
    from catlib.analysis.interference import leave_one_out, transfer_matrix

    S = Session(bench, R.ResultCache(tmp_path / "c"))
    tasks, alpha = list(bench.tasks[:3]), 1.0
    T = transfer_matrix(S, alpha, tasks=tasks)
    L = leave_one_out(S, alpha, tasks=tasks)
    ta = lambda ks: catlib.evaluate(
        bench,
        catlib.merge(  # noqa: E731
            "task_arithmetic", bench.pretrained, [bench.finetuned[k] for k in ks], alpha=alpha
        ),
        "val",
        tasks,
    )
    base, full = catlib.evaluate(bench, bench.pretrained, "val", tasks), ta(tasks)
    assert list(T.index) == list(T.columns) == list(L.index) == list(L.columns) == tasks
    for j in tasks:
        alone, without = ta([j]), ta([t for t in tasks if t != j])
        assert T[j].to_dict() == pytest.approx({i: alone[i] - base[i] for i in tasks}), j
        assert L[j].to_dict() == pytest.approx({i: without[i] - full[i] for i in tasks}), j
    assert (T.abs().values.sum() > 0) and (L.abs().values.sum() > 0)  # the reduced experts do move accuracies
    for bad in (0.0, -0.5):
        with pytest.raises(ValueError, match="alpha must be > 0"):
            transfer_matrix(S, bad, tasks=tasks)
    with pytest.raises(ValueError, match="at least 2 tasks"):
        leave_one_out(S, alpha, tasks=tasks[:1])
