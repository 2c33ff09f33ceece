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


def test_save_results_links_the_raw_json_in_a_kernel(monkeypatch, tmp_path):
    monkeypatch.setenv("CATLIB_RESULTS_DIR", str(tmp_path))
    out = []
    monkeypatch.setattr("IPython.display.display", lambda x: out.append(x))
    monkeypatch.setattr("IPython.get_ipython", lambda: object())  # as inside a notebook kernel
    path = R.save_results("demo", {"x": 1.0})
    assert path == tmp_path / "demo.json" and path.exists()
    assert "[demo.json](results/demo.json)" in out[-1].data
    monkeypatch.setattr("IPython.get_ipython", lambda: None)  # a plain script: nothing displayed
    out.clear()
    R.save_results("demo", {"x": 2.0})
    assert out == []


def test_per_task_side_by_side_puts_the_paper_under_its_dataset_names():
    ours = pd.DataFrame(
        {"scenes": [50.0, 60.0, 99.0], "vehicles": [40.0, 45.0, 1.0], "avg": [45.0, 52.5, 50.0], "#best": [0, 2, "-"]},
        index=["Task Arithmetic", "CAT Merging", "Only ours"],
    )
    paper = pd.DataFrame(
        {"SUN397": [55.2, 68.0], "Cars": [54.9, 62.5], "DTD": [50.0, 58.0], "avg": [69.1, 78.3]},
        index=["Task Arithmetic", "CAT Merging"],
    )
    df = R.per_task_side_by_side(ours, paper)
    assert list(df.columns) == ["SUN397 (scenes)", "Cars (vehicles)", "avg"]  # DTD: not among ours; #best dropped
    assert list(df.index.get_level_values("method").unique()) == ["Task Arithmetic", "CAT Merging"]
    assert df.loc[("CAT Merging", "paper"), "SUN397 (scenes)"] == 68.0
    assert df.loc[("CAT Merging", "ours − paper"), "avg"] == pytest.approx(52.5 - 78.3, abs=0.05)
    assert df.loc[("Task Arithmetic", "ours − paper"), "Cars (vehicles)"] == pytest.approx(40.0 - 54.9, abs=0.05)


def _outputs(cell):
    for o in cell.get("outputs", []):
        data = o.get("data", {})
        html = "".join(data.get("text/html", ""))
        text = "".join(data.get("text/markdown", "")) or "".join(data.get("text/plain", ""))
        yield ("table" if "<table" in html else "figure" if "image/png" in data else "text"), text


def test_every_table_and_figure_of_the_stored_pages_has_its_download():
    """Issue 22's downloads: in every executed notebook, each HTML table output is followed right away by a
    'Download: [<name>.csv]' line and each figure by its PNG and SVG links; the results JSON is linked too."""
    import json
    from pathlib import Path

    nb_dir = Path(__file__).resolve().parents[1] / "notebooks"
    missing = []
    for path in sorted(nb_dir.glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        for i, cell in enumerate(cells):
            outs = list(_outputs(cell))
            for j, (kind, _) in enumerate(outs):
                later = outs[j + 1][1] if j + 1 < len(outs) else ""  # the output right after it
                if kind == "table" and ".csv](" not in later:
                    missing.append(f"{path.name} cell {i}: table without a CSV link")
                if kind == "figure" and (".png](" not in later or ".svg](" not in later):
                    missing.append(f"{path.name} cell {i}: figure without PNG/SVG links")
        saves = [c for c in cells if "save_results(" in "".join(c.get("source", ""))]
        if saves and not any(".json](" in t for c in saves for _, t in _outputs(c)):
            missing.append(f"{path.name}: results JSON not linked")
    assert not missing, "\n".join(missing)
