"""Seeds as replicates (catlib.protocol.seeds), the coordinate search, the one verdict rule
(catlib.report.verdicts) and the claims built on them."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from catlib import protocol as E
from catlib import report as R
from catlib.report import paper_claims as PC
from catlib.report.verdicts import Effect, against_best, effect, effect_between, verdict


# --- the verdict rule ------------------------------------------------------------------------------------------------
def test_verdict_needs_twice_the_standard_error():
    assert verdict(effect([1.0, 1.2, 0.9])) == "reproduced"
    assert verdict(effect([-1.0, -1.2, -0.9])) == "not reproduced"
    assert verdict(effect([1.0, -0.5, 0.4])) == "inconclusive"  # mean 0.3, SE 0.45
    e = effect([2.0, 4.0, 3.0])
    assert e.mean == pytest.approx(3.0) and e.se == pytest.approx(1.0 / math.sqrt(3))


def test_unmeasured_noise_is_never_a_verdict():
    assert verdict(effect([5.0])) == "inconclusive"  # one seed
    assert verdict(effect([5.0, 5.0, 5.0], independent=False)) == "inconclusive"  # one measurement repeated
    assert verdict(effect([5.0, 5.0, 5.0])) == "inconclusive"  # SE 0: nothing measured the noise
    assert verdict(None) == "inconclusive" and verdict(effect([])) == "inconclusive"
    assert "SE unknown" in effect([1.0], False).text()


def test_effect_between_two_groups():
    e = effect_between([3.0, 4.0, 5.0], [1.0, 1.5, 2.0])
    assert e.mean == pytest.approx(2.5)
    assert e.se == pytest.approx(math.sqrt(1 / 3 + 0.25 / 3))
    assert effect_between([1.0, 2.0], [0.0, 0.0], independent=False).se is None


def test_against_best_picks_the_runner_up_by_its_mean_and_pairs_the_seeds():
    per_seed = {"cat": {0: 50.0, 1: 52.0, 2: 51.0}, "ta": {0: 49.0, 1: 50.0, 2: 48.0}, "ties": {0: 47.0, 1: 58.0}}
    runner, e, independent = against_best(per_seed, lambda m: True)
    assert runner == "ties" and independent  # mean 52.5 beats task arithmetic's 49
    assert e.values == [3.0, -6.0] and e.n == 2  # only the seeds both have
    runner, e, independent = against_best({"cat": {0: 1.0, 1: 2.0}, "wa": {0: 0.0, 1: 0.0}}, lambda m: m != "wa")
    assert runner == "wa" and not independent and e.se is None and verdict(e) == "inconclusive"


def test_only_three_words():
    words = {verdict(Effect(m, s, n)) for m in (-3.0, 0.0, 3.0) for s in (None, 0.0, 1.0) for n in (1, 3)}
    assert words <= set(R.WORDS) and len(R.WORDS) == 3


# --- the coordinate search -------------------------------------------------------------------------------------------
def test_coordinate_search_one_knob_at_a_time_from_the_defaults():
    calls = []

    def score(hp):
        calls.append(dict(hp))
        return -((hp["a"] - 0.4) ** 2) - (hp["b"] - 2) ** 2

    grid = {"a": [0.1, 0.2, 0.3, 0.4, 0.5], "b": [1, 2, 3]}
    best, val, scored, widened = E.search(grid, score, start={"b": 3})
    assert best == {"a": 0.4, "b": 2} and val == pytest.approx(0.0) and widened == {}
    assert all(c["b"] == 3 for c in calls[:5])  # α first, the other knob at its default
    assert len(calls) == len(scored) == 7  # 5 + 3, the shared point scored once
    calls.clear()
    assert E.search(grid, score, strategy="product")[0] == best and len(calls) == 15


def test_coordinate_search_widens_each_knob_and_rejects_unknown_strategies():
    best, _, _, widened = E.search({"a": [0.1, 0.2, 0.3], "b": [1, 2, 3]}, lambda hp: hp["a"] - abs(hp["b"] - 5))
    assert best["b"] == 5 and widened["b"] == [4, 5, 6] and widened["a"] == [0.4, 0.5, 0.6]
    with pytest.raises(Exception, match="strategy"):
        E.search({"a": [1.0, 2.0]}, lambda hp: 0.0, strategy="random")


def test_every_method_declares_the_knobs_its_paper_tunes():
    g = {m: set(E.grids()[m]) for m in R.METHODS + R.NEWER_METHODS}
    assert {"alpha", "c", "lam"} <= g["cat"]
    assert {"alpha", "k"} <= g["ties"] and {"alpha", "remove_ratio"} <= g["tatr"]
    assert {"alpha", "ratio"} <= g["pcb"] and {"alpha", "k", "tall_lambda"} <= g["consensus"]
    assert {"alpha", "penalty"} <= g["awd_ta"] and {"reduce_nondiag"} <= g["regmean"] and {"eps"} <= g["fisher"]
    assert all(list(E.grids()[m])[0] == "alpha" for m in g if "alpha" in g[m])  # α first in the coordinate search


# --- seeds as replicates ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def replicated_zoo(small_zoo, tmp_path_factory):
    """The reduced zoo and a replicate of it (experts fine-tuned with another seed), side by side."""
    from catlib.benchmarks.tiny import zoo as Z

    from conftest import reduced_zoo_config

    base = tmp_path_factory.mktemp("replicated") / "default"
    shutil.copytree(small_zoo, base)
    cfg = reduced_zoo_config(60, alphas=(0.3,))
    cfg["finetune"]["seed"] = cfg["finetune"]["seed"] + 3
    Z.build("default", out=base.parent / "default-r1", cfg=cfg, use_cache=False, log=lambda s: None)
    return base


def test_seeds_run_on_replicates_and_report_spread(replicated_zoo, notebook_env):
    from catlib.benchmarks.tiny import replicate_roots

    assert replicate_roots("default", replicated_zoo) == [replicated_zoo, replicated_zoo.parent / "default-r1"]
    runs = R.seeds([0, 1], "tiny", checkpoint_root=str(replicated_zoo), device="cpu")
    assert runs.zoos == 2 and runs.seeds == [0, 1]
    r = runs.tune("task_arithmetic", {"alpha": [0.3]})
    assert r.replicated and set(r.per_seed) == {0, 1} and r.avg_std is not None
    assert r.per_seed[0] != r.per_seed[1]  # other experts, other numbers
    refs = runs.references()
    assert not refs["pretrained"].replicated and refs["pretrained"].avg_std is None  # θ0 is shared
    assert refs["individual"].replicated
    table = R.seeds_table({**refs, "task_arithmetic": r}, runs.bench.tasks)
    assert table.loc["Pretrained", "avg"].endswith("± –") and "± –" not in table.loc["Task Arithmetic", "avg"]
    with pytest.raises(ValueError, match="replicates"):
        R.seeds([0, 1, 2], "tiny", checkpoint_root=str(replicated_zoo), device="cpu")


def test_one_replicate_leaves_data_free_spread_unknown(small_zoo, notebook_env):
    runs = R.seeds([0, 1], "tiny", checkpoint_root=str(small_zoo), device="cpu")
    assert runs.zoos == 1
    ta = runs.run("task_arithmetic", {"alpha": 0.3})
    assert not ta.replicated and ta.std is None and ta.avg_std is None
    cat = runs.run("cat", {"alpha": 0.3}, n_exemplars=2)
    assert cat.replicated  # other exemplar draws
    assert R.verdict(R.effect([cat.averages[s] - ta.averages[s] for s in runs.seeds], ta.replicated)) == (
        "inconclusive"
    )


# --- claims from results files ---------------------------------------------------------------------------------------
def _write(folder, name, results, parameters):
    (folder / f"{name}.json").write_text(json.dumps({"name": name, "parameters": parameters, "results": results}))


def test_claims_use_per_seed_effects(tmp_path, monkeypatch):
    monkeypatch.setenv("CATLIB_RESULTS_DIR", str(tmp_path))
    seeds = {"0": 0, "1": 1, "2": 2}
    per = {
        "individual": {s: 90.0 + v for s, v in seeds.items()},
        "task_arithmetic": {s: 60.0 + v for s, v in seeds.items()},
        "cat": {s: 58.0 + v + 0.1 * v for s, v in seeds.items()},
    }
    avg = {m: sum(v.values()) / 3 for m, v in per.items()}
    rep = {m: True for m in per}
    _write(
        tmp_path,
        "table1",
        {"averages": avg, "per_seed_avg": per, "replicated": rep},
        {"benchmark": "tiny", "seeds": [0, 1, 2], "zoos": 3},
    )
    rows = {r["key"]: r for r in PC.claims()}
    best = rows["best"]
    assert best["verdict"] == "not reproduced" and best["benchmark"] == "tiny"  # CAT 1.9 ± 0.06 below TA
    assert "± " in best["ours"] and "n=3" in best["effect"]
    assert rows["exemplars_beat_ta"]["verdict"] == "inconclusive"  # not run
    bl = PC.bottom_line(PC.claims())
    assert bl.loc["CAT has the best average accuracy among merging methods", "verdict (tiny)"] == "not reproduced"
    assert (bl["verdict (tiny-large)"] == "–").all() and (bl["ours (tiny-large)"] == "–").all()
    md = PC.bottom_line_markdown(PC.claims(), pages="../notebooks/")
    assert "[Table 1](../notebooks/01_table1.ipynb)" in md and "**–**" not in md
    summary = PC.bottom_line_summary(PC.claims())
    assert "on `tiny`, " in summary and "is **not reproduced** on `tiny`" in summary
    text = f"intro\n{PC.INTRO_START}\nold\n{PC.INTRO_END}\nrest"
    new = PC.with_bottom_line(text, md)
    assert "old" not in new and "**not reproduced**" in new and new.endswith("rest")
    with pytest.raises(ValueError, match="block"):
        PC.with_bottom_line("no markers", md)


def test_the_intro_shows_the_bottom_line_of_the_committed_results():
    """The block in book/intro.md is what build_book writes from notebooks/results (it cannot go stale)."""
    from catlib.report.notebook import REPO

    text = (REPO / "book" / "intro.md").read_text()
    assert PC.with_bottom_line(text, PC.bottom_line_block(PC.claims())) == text


def test_balance_over_seeds_leaves_unmeasured_spread_empty():
    from catlib.protocol.seeds import SeedResult

    ind = SeedResult("individual", {}, {0: {"a": 90.0, "b": 80.0}, 1: {"a": 90.0, "b": 80.0}}, False)
    ta = SeedResult("task_arithmetic", {}, {0: {"a": 70.0, "b": 70.0}, 1: {"a": 70.0, "b": 70.0}}, False)
    cat = SeedResult("cat", {}, {0: {"a": 72.0, "b": 70.0}, 1: {"a": 75.0, "b": 70.0}}, True)
    df = R.balance_table(ind, {"task_arithmetic": ta, "cat": cat})
    assert df.loc["Task Arithmetic", "ours"] == pytest.approx(5.0) and math.isnan(df.loc["Task Arithmetic", "± std"])
    assert df.loc["CAT Merging", "± std"] > 0


def test_every_page_shows_the_verdicts_of_the_committed_results():
    """The "verdicts" cell at the top of each results page is what build_book writes from notebooks/results."""
    import json

    from catlib.report.notebook import REPO

    rows = PC.claims()
    for path in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        shown = ["".join(c["source"]) for c in cells if "verdicts" in c.get("metadata", {}).get("tags", [])]
        want = PC.page_verdicts(rows, path.stem)
        assert shown == ([want] if want else []), path.name
        if want:
            assert "verdicts" in cells[1].get("metadata", {}).get("tags", []), f"{path.name}: not at the top"


def test_claims_judge_table7_and_the_test_time_cost(tmp_path, monkeypatch):
    """Table 7's two claims (CAT against task-wise AdaMerging and ++) come from the Table 7 page's per-seed averages,
    and the cost claim against AdaMerging from the cost page's extrapolated full run and CAT's repeated timings."""
    monkeypatch.setenv("CATLIB_RESULTS_DIR", str(tmp_path))
    per = lambda base, step: {str(s): base + step * s for s in range(3)}  # noqa: E731
    _write(
        tmp_path,
        "table7_testtime",
        {
            "avg_per_seed": {
                "CAT Merging": per(60.0, 1.0),
                "TW AdaMerging": per(55.0, 1.1),
                "TW AdaMerging++": {"0": 60.5, "1": 60.6, "2": 61.5},
            }
        },
        {"benchmark": "tiny", "seeds": [0, 1, 2], "zoos": 3},
    )
    _write(
        tmp_path,
        "cost",
        {
            "seconds": {"cat": 2.0, "pcb": 1.0, "tatr": 10.0},
            "seconds_per_repeat": {"cat": [2.0, 2.2, 2.1], "pcb": [1.0, 1.1, 1.2], "tatr": [10.0, 11.0, 10.5]},
            "test_time_seconds": {"LW AdaMerging": 300.0},
        },
        {"benchmark": "tiny", "repeats": 3},
    )
    rows = {r["key"]: r for r in PC.claims()}
    assert rows["testtime_adamerging"]["verdict"] == "reproduced"  # +5.0 minus 0.1 per seed: SE tiny
    assert rows["testtime_adamergingpp"]["verdict"] == "inconclusive"  # −0.5, +0.4, +0.5
    assert (
        rows["testtime_adamerging"]["notebook"] == "table7_testtime" and "78.3" in rows["testtime_adamerging"]["paper"]
    )
    assert rows["cost_testtime"]["verdict"] == "reproduced" and "300 s" in rows["cost_testtime"]["ours"]
    bl = PC.bottom_line(PC.claims(), pages="")
    claim = "CAT beats TW AdaMerging, which adapts on the unlabelled test inputs (Table 7)"
    assert bl.loc[claim, "page"] == "[Table 7](13_testtime.ipynb)" and bl.loc[claim, "verdict (tiny)"] == "reproduced"
    assert not any("costs a small fraction" in c for c in bl.index)  # cost claims stay off the bottom line
