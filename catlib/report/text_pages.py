"""The Table 3 page (RoBERTa on GLUE): which paper column each task is, what each column measures, and the embedded
benchmark's acceptance (method-neutral figures computed from the page's own runs)."""

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

SHORT_METRIC = {
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


def glue_acceptance(means: Mapping[str, Mapping[str, float]], targets: Mapping[str, float] = GLUE_ACCEPTANCE):
    """The embedded benchmark's acceptance from the page's runs: ``means`` is method → task → mean score over the
    seeds (``"individual"`` and ``"task_arithmetic"`` among them; every non-reference method counts for the spread).
    A DataFrame: criterion, target, measured, met."""
    import pandas as pd

    avg = {m: sum(r.values()) / len(r) for m, r in means.items()}
    merging = {m: a for m, a in avg.items() if m not in REFERENCE}
    rows = [
        ("Individual, average", f"≥ {targets['individual_min']:g}", avg["individual"],
         avg["individual"] >= targets["individual_min"]),
        ("Individual − task arithmetic", f"≥ {targets['ta_gap_min']:g}", avg["individual"] - avg["task_arithmetic"],
         avg["individual"] - avg["task_arithmetic"] >= targets["ta_gap_min"]),
        ("best − worst merging method", f"≥ {targets['spread_min']:g}", max(merging.values()) - min(merging.values()),
         max(merging.values()) - min(merging.values()) >= targets["spread_min"]),
    ]  # fmt: skip
    df = pd.DataFrame(rows, columns=["criterion", "target", "measured", "met"]).set_index("criterion")
    df["measured"] = df["measured"].round(1)
    df["met"] = df["met"].map({True: "yes", False: "no"})
    return df


__all__ = ["GLUE_ACCEPTANCE", "paper_columns", "metric_labels", "glue_acceptance"]
