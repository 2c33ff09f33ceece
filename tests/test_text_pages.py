"""The Table 3 page's helpers: paper columns matched by name, metric labels, and the acceptance computed from runs
(each criterion flips exactly at its target)."""

import pandas as pd
import pytest

from catlib import report as R


def test_paper_columns_match_glue_names_without_case_or_punctuation():
    paper = R.paper_table("table3_roberta_glue")
    cols = R.paper_columns(["cola", "sst2", "stsb", "mnli", "unknown"], paper)
    assert cols == {"cola": "CoLA", "sst2": "SST2", "stsb": "STS-B", "mnli": "MNLI"}


def test_metric_labels_say_what_a_column_measures():
    labels = R.metric_labels({"cola": "Matthews correlation", "qqp": "mean of accuracy and F1", "x": "BLEU"})
    assert labels == {"cola": "cola (MCC)", "qqp": "qqp (acc/F1)", "x": "x (BLEU)"}


def _means(ind, ta, other):
    return {"pretrained": {"a": 10.0, "b": 10.0}, "individual": {"a": ind, "b": ind},
            "task_arithmetic": {"a": ta, "b": ta}, "cat": {"a": other, "b": other}}  # fmt: skip


@pytest.mark.parametrize(
    "ind,ta,other,met",
    [
        (80.0, 70.0, 65.0, ["yes", "yes", "yes"]),  # every target exactly met
        (79.9, 70.0, 65.0, ["no", "no", "yes"]),
        (90.0, 80.1, 76.0, ["yes", "no", "no"]),  # TA 9.9 below Individual; spread 4.1
    ],
)
def test_glue_acceptance_flips_at_each_target(ind, ta, other, met):
    df = R.glue_acceptance(_means(ind, ta, other))
    assert list(df["met"]) == met
    assert isinstance(df, pd.DataFrame) and list(df["target"]) == ["≥ 80", "≥ 10", "≥ 5"]
