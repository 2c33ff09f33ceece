"""The cost page's views of the stored benchmark measurements (benchmarks/*.json): the FusionBench side-by-side
table, the growth plot and the log-log growth exponents."""

import json

import matplotlib

matplotlib.use("Agg")
import pytest  # noqa: E402

from catlib import report as R  # noqa: E402


def _scaling_doc():
    rows = []
    for K in (2, 4, 8):
        rows.append(
            {
                "sweep": "experts",
                "experts": K,
                "width": 64,
                "method": "ties",
                "seconds": 0.5 * K,
                "merge_alloc_mb": 10.0 * K,
            }
        )
        rows.append(
            {
                "sweep": "experts",
                "experts": K,
                "width": 64,
                "method": "task_arithmetic",
                "seconds": 0.01,
                "merge_alloc_mb": 0.0,
            }
        )
    for w in (64, 128, 256):
        rows.append(
            {
                "sweep": "width",
                "experts": 8,
                "width": w,
                "method": "ties",
                "seconds": 1e-4 * w * w,
                "merge_alloc_mb": 1e-3 * w * w,
            }
        )
        rows.append(
            {
                "sweep": "width",
                "experts": 8,
                "width": w,
                "method": "task_arithmetic",
                "seconds": 0.01,
                "merge_alloc_mb": 0.0,
            }
        )
    return {"setting": "synthetic", "rows": rows}


def test_growth_exponents_are_the_log_log_slopes():
    g = R.growth_table(_scaling_doc())
    assert g.loc["Ties-Merging", "time ~ experts^"] == pytest.approx(1.0)
    assert g.loc["Ties-Merging", "memory ~ experts^"] == pytest.approx(1.0)
    assert g.loc["Ties-Merging", "time ~ width^"] == pytest.approx(2.0)
    assert g.loc["Ties-Merging", "memory ~ width^"] == pytest.approx(2.0)
    # constant time and an allocation below the 1 MB floor: no growth, not a log of zero
    assert g.loc["Task Arithmetic", "time ~ experts^"] == pytest.approx(0.0)
    assert g.loc["Task Arithmetic", "memory ~ width^"] == pytest.approx(0.0)


def test_scaling_plot_draws_both_sweeps():
    import matplotlib.pyplot as plt

    fig = R.scaling_plot(_scaling_doc())
    axes = fig.axes
    assert len(axes) == 4 and all(len(ax.lines) == 2 for ax in axes)
    plt.close(fig)


def test_fusionbench_table_and_stored_json(tmp_path):
    doc = {
        "setting": "synthetic",
        "methods": {
            "ties": {
                "catlib": {"seconds": 2.0, "peak_mb": 100.0},
                "fusionbench": {"seconds": 3.0, "peak_mb": 250.0},
                "rel_weights": 0.0,
                "rel_task_vector": 1e-7,
                "worst_key": "w",
            },
        },
    }
    (tmp_path / "fb.json").write_text(json.dumps(doc))
    assert R.load_benchmark_json("fb", tmp_path) == doc
    assert R.load_benchmark_json("missing", tmp_path) is None
    t = R.fusionbench_table(doc)
    assert t.loc["ties", "FusionBench / catlib"] == 1.5 and t.loc["ties", "FusionBench peak MB"] == 250
    assert t.loc["ties", "max rel. diff. (merged Δ)"] == "1.0e-07"
