"""Tables and sentences for the pages, each a DataFrame or Markdown: our rows, the paper's tables (``data/paper/*.csv``,
as printed), side-by-side averages and ranks, Table 10's balance, gains and α-robustness summaries."""

from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Sequence


from ..benchmarks.evaluate import average
from ..protocol.seeds import SeedResult, mean_std
from .names import ANALOGUE, DISPLAY, REFERENCE
from .notebook import PAPER_DIR
from .tuning import edge_choices


def results_table(rows: Mapping[str, Mapping[str, float]], tasks: Sequence[str]):
    """A pandas DataFrame: one row per method (display names), per-task columns, ``avg`` and ``#best`` (number of
    tasks where a merging method is best; reference rows excluded, ties count for each)."""
    import pandas as pd

    tasks = list(tasks)
    df = pd.DataFrame({DISPLAY.get(m, m): {t: r[t] for t in tasks} for m, r in rows.items()}).T[tasks]
    df["avg"] = df[tasks].mean(axis=1)
    merging = [DISPLAY.get(m, m) for m in rows if m not in REFERENCE]
    best = df.loc[merging, tasks].round(1).max(axis=0) if merging else None
    df["#best"] = [int((df.loc[n, tasks].round(1) == best).sum()) if n in merging else None for n in df.index]
    return df


def chosen_table(results: Mapping[str, Mapping[str, Any]], decimals: int = 1):
    """One row per method: the hyperparameters chosen on validation, the values tried past the grid's edges
    (``TuneResult.widened``), whether the choice still lies on an edge of what was tried
    (:func:`~catlib.report.tuning.edge_choices`), the validation average, the number of configurations tried, and
    (over seeds) the test average ± std. ``results``: method → :func:`tune_over_seeds` output."""
    import pandas as pd

    rows = {}
    for m, r in results.items():
        tr = r["tune"]
        edges = edge_choices(tr)
        rows[DISPLAY.get(m, m)] = {
            "chosen": ", ".join(f"{k}={v}" for k, v in tr.best.items()) or "-",
            "added past edge": "; ".join(f"{k} {', '.join(f'{v:g}' for v in vals)}" for k, vals in tr.widened.items())
            or "-",
            "on grid edge": ", ".join(f"{k} ({e})" for k, e in edges.items()) or "-",
            "grid points": len(tr.grid),
            "val avg": round(tr.val_average, decimals),
            "test avg": round(average(r["mean"]), decimals),
            "± over seeds": _std_cell(r, decimals),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def _std_cell(r, decimals: int):
    """The std over seeds of a tune result (a SeedResult, or the dict of ``Session.tune_over_seeds``), or "-"
    when the seeds repeat one measurement."""
    if len(r["per_seed"]) < 2 or not (isinstance(r, SeedResult) or r["data_dependent"]):
        return "-"
    sd = r["std_avg"]
    return "-" if sd is None else round(sd, decimals)


def pm(mean: float, std: Optional[float], decimals: int = 1) -> str:
    """``"60.5 ± 1.2"``; ``"60.5 ± –"`` when the spread is unknown (the seeds repeat one measurement)."""
    return f"{mean:.{decimals}f} ± " + ("–" if std is None else f"{std:.{decimals}f}")


def seeds_table(results: Mapping[str, "SeedResult"], tasks: Sequence[str], decimals: int = 1):
    """Mean ± std over seeds, per task and of the average: one row per method (display names), and the number of
    seeds. "± –": the seeds repeat one measurement (a data-free method on a benchmark with one replicate)."""
    import pandas as pd

    out = {}
    for m, r in results.items():
        std = r.std
        row = {t: pm(r.mean[t], None if std is None else std[t], decimals) for t in tasks}
        row["avg"] = pm(r.avg_mean, r.avg_std, decimals)
        row["seeds"] = len(r.per_seed)
        out[DISPLAY.get(m, m)] = row
    return pd.DataFrame.from_dict(out, orient="index")


def seed_summary(results: Mapping[str, "SeedResult"]) -> Dict[str, Any]:
    """What a results file keeps of runs over seeds: mean per task and average, the average per seed, its std
    (``None``: not replicated) and whether the seeds were independent runs."""
    return {
        "averages": {m: r.avg_mean for m, r in results.items()},
        "per_task": {m: r.mean for m, r in results.items()},
        "per_seed_avg": {m: {str(s): v for s, v in r.averages.items()} for m, r in results.items()},
        "std_avg": {m: r.avg_std for m, r in results.items()},
        "replicated": {m: r.replicated for m, r in results.items()},
    }


def paper_table(name: str):
    """A paper table from ``data/paper/<name>.csv`` (e.g. ``"table1_vit_b32"``), indexed by method, as printed."""
    import pandas as pd

    path = PAPER_DIR / (name if name.endswith(".csv") else f"{name}.csv")
    df = pd.read_csv(path)
    return df.set_index(df.columns[0])


def paper_tables() -> List[str]:
    return sorted(p.stem for p in PAPER_DIR.glob("*.csv"))


def ours_table(rows: Mapping[str, Mapping[str, float]], tasks: Sequence[str], decimals: int = 1):
    """:func:`results_table` rounded for display (task names as columns; the tiny tasks'
    analogues are in :data:`ANALOGUE`)."""
    df = results_table(rows, tasks)
    df["avg"] = df["avg"].astype(float)
    out = df.round(decimals)
    out["#best"] = [("-" if v is None or (isinstance(v, float) and math.isnan(v)) else int(v)) for v in df["#best"]]
    return out


def side_by_side(
    ours, paper, ours_label: str = "ours", paper_label: str = "paper", col: str = "avg", decimals: int = 1
):
    """Averages and ranks side by side: one row per method present in both tables (paper order, then the rest of
    ours). Ranks are among merging methods (reference rows excluded); 1 = best."""
    import pandas as pd

    names = [n for n in paper.index if n in ours.index] + [n for n in ours.index if n not in paper.index]
    ref = {DISPLAY[r] for r in REFERENCE}
    df = pd.DataFrame(index=names)
    df[f"{ours_label} {col}"] = [float(ours.loc[n, col]) for n in names]
    df[f"{paper_label} {col}"] = [float(paper.loc[n, col]) if n in paper.index else float("nan") for n in names]
    for label in (ours_label, paper_label):
        merging = [n for n in names if n not in ref and not math.isnan(df.loc[n, f"{label} {col}"])]
        ranks = df.loc[merging, f"{label} {col}"].rank(ascending=False, method="min")
        df[f"{label} rank"] = ["-" if n not in merging else int(ranks[n]) for n in names]
    return df.round(decimals)


def per_task_side_by_side(ours, paper, decimals: int = 1, column_map: Optional[Mapping[str, str]] = None):
    """Per task, ours beside the paper: three rows per method present in both tables (paper order), ``ours``,
    ``paper`` and ``ours − paper``, under the paper's column names (a tiny task under the dataset it stands in for,
    :data:`ANALOGUE`, e.g. ``"SUN397 (scenes)"``), plus ``avg``. ``ours``: :func:`ours_table`; ``paper``:
    :func:`paper_table`; ``column_map``: more of our column names → the paper's (e.g. ``{"avg (seen)":
    "avg_seen"}``). Columns the paper has and ours lacks (a task subset) are left out."""
    import pandas as pd

    cols = [c for c in ours.columns if c not in ("#best",)]
    paper_col = {c: (column_map or {}).get(c, ANALOGUE.get(c, c)) for c in cols}
    cols = [c for c in cols if paper_col[c] in paper.columns]
    label = {c: c if paper_col[c] == c or c in (column_map or {}) else f"{paper_col[c]} ({c})" for c in cols}
    names = [n for n in paper.index if n in ours.index]
    rows = {}
    for n in names:
        o = [float(ours.loc[n, c]) for c in cols]
        p = [float(paper.loc[n, paper_col[c]]) for c in cols]
        rows[(n, "ours")] = o
        rows[(n, "paper")] = p
        rows[(n, "ours − paper")] = [a - b for a, b in zip(o, p)]
    df = pd.DataFrame.from_dict(rows, orient="index", columns=[label[c] for c in cols])
    df.index = pd.MultiIndex.from_tuples(df.index, names=["method", "row"])
    return df.round(decimals)


def drop_std(individual: Mapping[str, float], merged_acc: Mapping[str, float]) -> float:
    """Table 10's balance measure: the standard deviation over tasks of (individual − merged) accuracy (population
    std, ``numpy.std`` default; the paper does not say which)."""
    d = [individual[t] - merged_acc[t] for t in merged_acc]
    m = sum(d) / len(d)
    return math.sqrt(sum((x - m) ** 2 for x in d) / len(d))


def balance_per_seed(individual: "SeedResult", results: Mapping[str, "SeedResult"]) -> Dict[str, Dict[int, float]]:
    """Table 10's measure on each seed: ``{method: {seed: drop_std}}`` (each seed's merge against that seed's
    experts)."""
    return {m: {s: drop_std(individual.per_seed[s], r.per_seed[s]) for s in r.per_seed} for m, r in results.items()}


def md(text: str):
    """Markdown output for a computed sentence (numbers in prose come from the notebook, never typed)."""
    from IPython.display import Markdown

    return Markdown(text)


def printed_average_check(paper_df, col: str = "avg", tol: float = 0.15):
    """Rows of a paper table whose printed average differs from the mean of its task columns (e.g. Table 2's
    Traditional MTL prints 93.5, its columns average 93.09)."""
    import pandas as pd

    tasks = [c for c in paper_df.columns if c not in (col, "#best")]
    comp = paper_df[tasks].astype(float).mean(axis=1)
    bad = (paper_df[col].astype(float) - comp).abs() > tol
    return pd.DataFrame({"printed avg": paper_df.loc[bad, col], "mean of the columns": comp[bad].round(2)})


def ranking_summary(
    rows: Mapping[str, Mapping[str, float]], method: str = "cat", label: str = "", unit: str = "%"
) -> str:
    """A sentence on where ``method`` ranks by average among the merging methods, with the numbers (``unit`` after
    each average: "%" for accuracies, "" for scores in points such as GLUE's or CIDEr's)."""
    avgs = {m: average(r) for m, r in rows.items() if m not in REFERENCE}
    order = sorted(avgs, key=avgs.get, reverse=True)
    if method not in avgs:
        return f"{DISPLAY.get(method, method)} was not run."
    rank = order.index(method) + 1
    best_other = next(m for m in order if m != method)
    gap = avgs[method] - avgs[best_other]
    name = DISPLAY.get(method, method)
    head = f"**{label}** " if label else ""
    if rank == 1:
        return (
            f"{head}{name} has the best average, {avgs[method]:.1f}{unit}, {gap:+.1f} points over the runner-up "
            f"{DISPLAY.get(best_other, best_other)} ({avgs[best_other]:.1f}{unit})."
        )
    return (
        f"{head}{name} is **not** the best here: rank {rank} of {len(order)} with {avgs[method]:.1f}{unit}, "
        f"{-gap:.1f} points below {DISPLAY.get(best_other, best_other)} ({avgs[best_other]:.1f}{unit})."
    )


def gains_table(settings: Mapping[str, Mapping[str, Mapping[str, float]]], decimals: int = 1):
    """Per setting (e.g. "8 tasks", "4 tasks"): averages of Pretrained, Individual, TA and CAT and the gains that
    tell how much merging helps: TA − Pretrained, CAT − TA, and the share of the Pretrained→Individual gap closed."""
    import pandas as pd

    out = {}
    for name, rows in settings.items():
        a = {m: average(r) for m, r in rows.items()}
        r = {
            "Pretrained": a.get("pretrained"),
            "Individual": a.get("individual"),
            "Task Arithmetic": a.get("task_arithmetic"),
            "CAT Merging": a.get("cat"),
        }
        if a.get("task_arithmetic") is not None and a.get("pretrained") is not None:
            r["TA − Pretrained"] = a["task_arithmetic"] - a["pretrained"]
        if a.get("cat") is not None and a.get("task_arithmetic") is not None:
            r["CAT − TA"] = a["cat"] - a["task_arithmetic"]
        if None not in (a.get("cat"), a.get("pretrained"), a.get("individual")):
            gap = a["individual"] - a["pretrained"]
            r["gap closed by CAT (%)"] = 100 * (a["cat"] - a["pretrained"]) / gap if gap else float("nan")
        out[name] = r
    return pd.DataFrame(out).T.astype(float).round(decimals)


def balance_table(
    individual: Mapping[str, float],
    merged_rows: Mapping[str, Mapping[str, float]],
    paper_df=None,
    paper_row: Optional[str] = None,
    decimals: int = 2,
):
    """Table 10: std over tasks of (Individual − merged) per method, beside the paper's row ``paper_row`` (e.g.
    ``"ViT-B/32"``) when the paper has one (Table 10 has none for ViT-B/16: the column is then empty). With
    :class:`SeedResult` s (``individual`` and every row) the measure is taken on each seed: columns ``ours``
    (mean) and ``± std`` (empty where the seeds repeat one measurement: a data-free method on one zoo)."""
    import pandas as pd

    if isinstance(individual, SeedResult):
        per = balance_per_seed(individual, merged_rows)
        stats = {DISPLAY.get(m, m): mean_std(list(v.values())) for m, v in per.items()}
        replicated = [merged_rows[m].replicated or individual.replicated for m in per]
        df = pd.DataFrame({"ours": {n: s[0] for n, s in stats.items()}})
        df["± std"] = [float("nan") if s[1] is None or not r else s[1] for s, r in zip(stats.values(), replicated)]
    else:
        ours = {DISPLAY.get(m, m): drop_std(individual, r) for m, r in merged_rows.items()}
        df = pd.DataFrame({"ours": ours})
    if paper_df is not None and paper_row not in paper_df.index:
        df[f"paper ({paper_row}: not in the paper)"] = float("nan")
    elif paper_df is not None:
        row = paper_df.loc[paper_row]
        df["paper"] = [float(row[n]) if n in row.index else float("nan") for n in df.index]
    return df.round(decimals)


def alpha_robustness(
    df, method_col: str = "method", x: str = "alpha", y: str = "avg", within: float = 2.0, decimals: int = 2
):
    """Per method over its α sweep: peak accuracy and its α, minimum, range (max − min), and the fraction of swept
    α values within ``within`` points of the peak."""
    import pandas as pd

    rows = {}
    for m, g in df.groupby(method_col, sort=False):
        g = g.sort_values(x)
        peak = g[y].max()
        rows[m] = {
            "peak": peak,
            "α at peak": g.loc[g[y].idxmax(), x],
            "min": g[y].min(),
            "range": peak - g[y].min(),
            f"share of α within {within:g} of peak": float((g[y] >= peak - within).mean()),
        }
    return pd.DataFrame.from_dict(rows, orient="index").round(decimals)
