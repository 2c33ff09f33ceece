"""Every table and figure of a page can be downloaded: show_table writes CSV (missing values shown as "–" with the
footnote saying why), save_figure writes PNG and SVG, both atomically and the same bytes on a re-run."""

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from catlib import report as R  # noqa: E402


@pytest.fixture
def shown(monkeypatch, tmp_path):
    monkeypatch.setenv("CATLIB_RESULTS_DIR", str(tmp_path))
    out = []
    monkeypatch.setattr("IPython.display.display", lambda x: out.append(x))
    return out


def test_show_table_writes_csv_and_links_it(shown, tmp_path):
    df = pd.DataFrame({"ours": [1.0, 2.0], "paper": [3.0, math.nan]}, index=["a", "b"])
    R.show_table(df, "t1_side", note="not in the paper's table")
    assert (tmp_path / "tables" / "t1_side.csv").read_text() == df.to_csv()
    table, text = shown
    assert table.loc["b", "paper"] == R.DASH and table.loc["a", "paper"] == 3.0
    assert "– : not in the paper's table." in text.data and "(results/tables/t1_side.csv)" in text.data


def test_missing_values_need_a_reason(shown):
    with pytest.raises(ValueError, match="has missing values: say why"):
        R.show_table(pd.DataFrame({"x": [math.nan]}), "t2")


def test_a_complete_table_is_shown_as_it_is(shown):
    df = pd.DataFrame({"x": [1.5]})
    R.show_table(df, "t3")
    assert shown[0] is df and "–" not in shown[1].data


def test_save_figure_writes_png_and_svg_deterministically(shown, tmp_path):
    R.setup()
    paths = [tmp_path / "figures" / f"f.{e}" for e in ("png", "svg")]
    blobs = []
    for _ in range(2):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0], label="a")
        ax.legend()
        R.save_figure(fig, "f")
        plt.close(fig)
        blobs.append([p.read_bytes() for p in paths])
    assert blobs[0] == blobs[1] and all(len(b) > 100 for b in blobs[0])
    assert "(results/figures/f.png)" in shown[-1].data and "(results/figures/f.svg)" in shown[-1].data
