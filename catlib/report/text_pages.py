"""The Table 3 and Table 4 pages (RoBERTa on GLUE; BLIP on vision-language tasks): which paper column each task is,
what each column measures, the paper's Table 4 in our units, task-wise wins, and each embedded benchmark's acceptance
(method-neutral figures computed from the page's own runs, against targets set before any merge was run)."""

from __future__ import annotations

import re
from typing import Dict, Mapping, Sequence

from .names import REFERENCE

# The embedded text benchmark's acceptance (its build issue): method-neutral, on test, tuned on validation.
GLUE_ACCEPTANCE = {
    "individual_min": 80.0,  # Individual, average over the tasks
    "ta_gap_min": 10.0,  # task arithmetic at least this far below Individual
    "spread_min": 5.0,  # best minus worst merging method (the paper's Table 3: about 15)
}

# The embedded vision-language benchmark's acceptance (its build issue): method-neutral, on test, tuned on validation.
VL_ACCEPTANCE = {
    "individual_gain_min": 10.0,  # Individual above Pretrained on every task ("clearly above"), points
    "ta_gap_min": 5.0,  # task arithmetic below Individual on average ("below"), points
    "spread_min": 5.0,  # best minus worst merging method ("a visible margin"), points
}

SHORT_METRIC = {
    "CIDEr-D (× 100)": "CIDEr×100",
    "VQA accuracy": "VQA acc",
    "Matthews correlation": "MCC",
    "accuracy": "acc",
    "mean of accuracy and F1": "acc/F1",
    "mean of Pearson and Spearman": "Pearson/Spearman",
}


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def paper_columns(tasks: Sequence[str], paper_df) -> Dict[str, str]:
    """Task → the paper table's column for it, matched by name without case and punctuation (``"sst2"`` →
    ``"SST2"``, ``"stsb"`` → ``"STS-B"``); tasks without a column are left out."""
    by_norm = {_norm(c): c for c in paper_df.columns}
    return {t: by_norm[_norm(t)] for t in tasks if _norm(t) in by_norm}


def metric_labels(metrics: Mapping[str, str]) -> Dict[str, str]:
    """Task → a column label that says what it measures, e.g. ``"cola (MCC)"`` (``metrics``: task → metric name, as
    :func:`catlib.benchmarks.evaluate.metric_names` gives)."""
    return {t: f"{t} ({SHORT_METRIC.get(m, m)})" for t, m in metrics.items()}


def _acceptance(rows) -> "pd.DataFrame":  # noqa: F821
    import pandas as pd

    df = pd.DataFrame(rows, columns=["criterion", "target", "measured", "met"]).set_index("criterion")
    df["measured"] = df["measured"].round(1)
    df["met"] = df["met"].map({True: "yes", False: "no"})
    return df


def _averages(means: Mapping[str, Mapping[str, float]]):
    avg = {m: sum(r.values()) / len(r) for m, r in means.items()}
    return avg, {m: a for m, a in avg.items() if m not in REFERENCE}


def glue_acceptance(means: Mapping[str, Mapping[str, float]], targets: Mapping[str, float] = GLUE_ACCEPTANCE):
    """The embedded text benchmark's acceptance from the page's runs: ``means`` is method → task → mean score over
    the seeds (``"individual"`` and ``"task_arithmetic"`` among them; every non-reference method counts for the
    spread). A DataFrame: criterion, target, measured, met."""
    avg, merging = _averages(means)
    spread = max(merging.values()) - min(merging.values())
    gap = avg["individual"] - avg["task_arithmetic"]
    return _acceptance([
        ("Individual, average", f"≥ {targets['individual_min']:g}", avg["individual"],
         avg["individual"] >= targets["individual_min"]),
        ("Individual − task arithmetic", f"≥ {targets['ta_gap_min']:g}", gap, gap >= targets["ta_gap_min"]),
        ("best − worst merging method", f"≥ {targets['spread_min']:g}", spread, spread >= targets["spread_min"]),
    ])  # fmt: skip


def vl_acceptance(means: Mapping[str, Mapping[str, float]], targets: Mapping[str, float] = VL_ACCEPTANCE):
    """The embedded vision-language benchmark's acceptance (as :func:`glue_acceptance`; ``"pretrained"`` too):
    Individual clearly above Pretrained on every task, task arithmetic below Individual on average, the merging
    methods apart by a visible margin."""
    avg, merging = _averages(means)
    gains = {t: means["individual"][t] - means["pretrained"][t] for t in means["individual"]}
    worst = min(gains, key=gains.get)
    spread = max(merging.values()) - min(merging.values())
    gap = avg["individual"] - avg["task_arithmetic"]
    return _acceptance([
        (f"Individual − Pretrained, every task (smallest: {worst})", f"≥ {targets['individual_gain_min']:g}",
         gains[worst], gains[worst] >= targets["individual_gain_min"]),
        ("Individual − task arithmetic, average", f"≥ {targets['ta_gap_min']:g}", gap, gap >= targets["ta_gap_min"]),
        ("best − worst merging method", f"≥ {targets['spread_min']:g}", spread, spread >= targets["spread_min"]),
    ])  # fmt: skip


def paper_in_points(paper_df):
    """A paper table with its CIDEr columns (fractions, e.g. 0.86) in points (86), the unit of our tables; the
    columns are renamed to say so."""
    out = paper_df.copy()
    for c in list(out.columns):
        if "CIDEr" in c:
            out[c] = (out[c].astype(float) * 100).round(2)
            out = out.rename(columns={c: c.replace("(CIDEr)", "(CIDEr × 100)")})
    return out


def vl_paper_columns(tasks: Sequence[str], paper_df) -> Dict[str, str]:
    """Task → the Table 4 column whose name starts with the task's analogue (``"okvqa"`` → ``"OKVQA (acc)"``)."""
    from ..benchmarks.vl import VL_TASKS

    out = {}
    for t in tasks:
        name = VL_TASKS[t].analogue if t in VL_TASKS else t
        match = [c for c in paper_df.columns if _norm(c).startswith(_norm(name))]
        if match:
            out[t] = match[0]
    return out


def wins(table, columns: Sequence[str]) -> Dict[str, int]:
    """Method → the number of ``columns`` where it is the best merging method of ``table`` (rows: display names;
    the reference rows Pretrained / Individual / MTL do not compete; ties count for each)."""
    from .names import DISPLAY

    refs = {DISPLAY[r] for r in REFERENCE} | set(REFERENCE)
    merging = [m for m in table.index if m not in refs]
    out = {m: 0 for m in merging}
    for c in columns:
        col = table.loc[merging, c].astype(float)
        for m in col.index[col == col.max()]:
            out[m] += 1
    return out


__all__ = [
    "GLUE_ACCEPTANCE",
    "VL_ACCEPTANCE",
    "paper_columns",
    "metric_labels",
    "glue_acceptance",
    "vl_acceptance",
    "paper_in_points",
    "vl_paper_columns",
    "wins",
]
