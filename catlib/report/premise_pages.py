"""The premise page: CAT's premise diagnostics (:func:`catlib.analysis.premise.diagnose`) per benchmark, cached in
a :class:`~catlib.protocol.Session`, and the method-neutral statistics that say how CLIP-like a benchmark merges
(RegMean, Fisher and task arithmetic against weight averaging), ours beside the paper's."""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

from ..analysis.premise import diagnose
from ..core.statedict import task_vectors
from ..protocol.session import Session, as_session
from .names import DISPLAY
from .results import load_results
from .tables import paper_table

# The summary columns of the page: (key in diagnose()["summary"], its chance key or None, short label)
SUMMARY = (
    ("subspace_energy", "subspace_energy_chance", "input overlap"),
    ("gram_cosine", "gram_cosine_chance", "Gram cosine"),
    ("task_vector_cosine", None, "task-vector cosine"),
    ("interference_ratio", None, "interference ratio"),
    ("captured_interference", "captured_chance", "captured share"),
)
GAPS = (("regmean", "weight_average"), ("fisher", "weight_average"), ("task_arithmetic", "weight_average"))

# What makes a zoo merge like CLIP's, method-neutral (no criterion names CAT): (label, lower bound, upper bound,
# value from the averages ``a``, the per-task Individual row ``ind`` and the mean task-vector cosine ``cos``).
# The bounds bracket the paper's CLIP figures (RegMean − WA: +4.1 to +6.0 on ViT-B/32, B/16, L/14) with room.
CLIP_LIKE = (
    ("RegMean − Weight Averaging", 3.0, 9.0, lambda a, ind, cos: a["regmean"] - a["weight_average"]),
    ("Fisher Merging − Weight Averaging", 1.0, None, lambda a, ind, cos: a["fisher"] - a["weight_average"]),
    ("Task Arithmetic − Weight Averaging", 2.0, None, lambda a, ind, cos: a["task_arithmetic"] - a["weight_average"]),
    ("Individual − Pretrained", 25.0, None, lambda a, ind, cos: a["individual"] - a["pretrained"]),
    ("Task Arithmetic − Pretrained", 10.0, None, lambda a, ind, cos: a["task_arithmetic"] - a["pretrained"]),
    ("Individual − Task Arithmetic", 10.0, None, lambda a, ind, cos: a["individual"] - a["task_arithmetic"]),
    ("mean task-vector cosine (off-diagonal)", None, 0.1, lambda a, ind, cos: cos),
    ("Individual, average", 85.0, None, lambda a, ind, cos: a["individual"]),
    ("Individual, weakest task", 75.0, None, lambda a, ind, cos: min(ind.values())),
)


def diagnostics(
    session: Session,
    c: int = 2,
    lam: float = 1.0,
    n_exemplars: Optional[int] = None,
    seed: int = 0,
    energy: float = 0.9,
    cache=None,
) -> Dict[str, Any]:
    """:func:`~catlib.analysis.premise.diagnose` on the benchmark's task vectors, from the exemplars and statistics
    CAT's merge uses (cached)."""
    S = as_session(session, cache)
    spec = S.spec("cat", {"c": c, "lam": lam}, None, n_exemplars, seed)

    def compute():
        b = S.bench
        return diagnose(
            task_vectors(b.pretrained, b.finetuned_list(spec.tasks)),
            S.statistics(spec),
            c=c,
            lam=lam,
            tasks=list(spec.tasks),
            energy=energy,
        )

    return S.cached("premise", S.key("premise", **spec.key(), energy=energy), compute)


def first_layer_overlap(diag: Mapping[str, Any]) -> float:
    """Mean off-diagonal input overlap (subspace energy) at the first linear layer in the module's key order (the
    patch embedding of a ViT, the input layer of an MLP): where the tasks' raw inputs meet the network."""
    return float(per_layer_frame(diag)["subspace energy"].iloc[0])


def summary_table(diags: Mapping[str, Mapping[str, Any]], decimals: int = 3):
    """One row per diagnosed setting (e.g. ``"tiny, 4 exemplars"``), one column per quantity (means over layers and
    ordered task pairs; the input overlap also at the first layer), each chance level beside its quantity."""
    import pandas as pd

    rows = {}
    for name, d in diags.items():
        s = d["summary"]
        row = {}
        for key, chance, label in SUMMARY:
            row[label] = s[key]
            if chance:
                row[f"{label} (chance)"] = s[chance]
            if key == "subspace_energy":
                row["input overlap, first layer"] = first_layer_overlap(d)
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index").round(decimals)


def per_layer_frame(diag: Mapping[str, Any]):
    """Per linear layer (in the module's sorted key order): mean off-diagonal subspace energy, Gram cosine, the mean
    interference ratio and the captured share."""
    import pandas as pd

    K = len(diag["tasks"])
    off = [(i, k) for i in range(K) for k in range(K) if i != k]
    rows = {}
    for key in diag["layers"]:
        L = diag["per_layer"][key]
        rows[key] = {
            "subspace energy": sum(L["subspace_energy"][i][k] for i, k in off) / len(off),
            "Gram cosine": sum(L["gram_cosine"][i][k] for i, k in off) / len(off),
            "interference ratio": sum(L["interference_ratio"]) / K,
            "captured share": sum(L["captured_interference"]) / K,
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def merging_gaps(results: Mapping[str, str], paper: Mapping[str, str], decimals: int = 1):
    """RegMean, Fisher and task arithmetic minus weight averaging (average accuracy, points): ours from the results
    files ``results`` ({label: results name}, e.g. {"tiny": "table1"}), the paper's from its tables ``paper``
    ({label: paper table}, e.g. {"ViT-B/32": "table1_vit_b32"}). Missing results give NaN."""
    import pandas as pd

    cols: Dict[str, Dict[str, float]] = {}
    for label, name in paper.items():
        df = paper_table(name)
        cols[f"paper, {label}"] = {
            f"{DISPLAY[a]} − {DISPLAY[b]}": float(df.loc[DISPLAY[a], "avg"]) - float(df.loc[DISPLAY[b], "avg"])
            for a, b in GAPS
        }
    for label, name in results.items():
        avgs = ((load_results(name) or {}).get("results") or {}).get("averages", {})
        cols[f"ours, {label}"] = {
            f"{DISPLAY[a]} − {DISPLAY[b]}": (avgs[a] - avgs[b]) if a in avgs and b in avgs else float("nan")
            for a, b in GAPS
        }
    return pd.DataFrame(cols).round(decimals)


def _target(lo, hi) -> str:
    return (
        f"{lo:g} to {hi:g}" if lo is not None and hi is not None else (f"≥ {lo:g}" if lo is not None else f"≤ {hi:g}")
    )


def clip_likeness(results: Mapping[str, str], cosines: Mapping[str, float], paper: Mapping[str, str]):
    """The acceptance of a CLIP-like zoo (:data:`CLIP_LIKE`): per criterion its target, the paper's CLIP figure
    (``paper``: {label: paper table}; the task-vector cosine is in no table of the paper) and, per zoo of
    ``results`` ({label: results name of its Table 1 page}), our value and whether it is met (test averages,
    hyperparameters chosen on validation; ``cosines``: {label: mean off-diagonal task-vector cosine})."""
    import pandas as pd

    cols: Dict[str, Dict[str, Any]] = {"target": {c[0]: _target(c[1], c[2]) for c in CLIP_LIKE}}
    by_display = {v: k for k, v in DISPLAY.items()}
    for label, name in paper.items():
        df = paper_table(name)
        a = {by_display.get(m, m): float(df.loc[m, "avg"]) for m in df.index}
        ind = {t: float(df.loc[DISPLAY["individual"], t]) for t in df.columns if t != "avg"}
        cols[f"paper, {label}"] = {c[0]: c[3](a, ind, float("nan")) for c in CLIP_LIKE}
    for label, name in results.items():
        r = (load_results(name) or {}).get("results") or {}
        a, ind = r.get("averages", {}), r.get("per_task", {}).get("individual", {})
        vals = {}
        for lab, lo, hi, f in CLIP_LIKE:
            try:
                vals[lab] = float(f(a, ind, cosines.get(label, float("nan"))))
            except (KeyError, ValueError):
                vals[lab] = float("nan")
        cols[f"ours, {label}"] = vals
        cols[f"met, {label}"] = {
            lab: (
                "—"
                if vals[lab] != vals[lab]
                else ("yes" if (lo is None or vals[lab] >= lo) and (hi is None or vals[lab] <= hi) else "no")
            )
            for lab, lo, hi, _ in CLIP_LIKE
        }
    out = pd.DataFrame(cols)
    num = [c for c in out.columns if c.startswith(("paper", "ours"))]
    out[num] = out[num].astype(float).round(2)
    return out


def premise_lines(diags: Mapping[str, Mapping[str, Any]]) -> Dict[str, str]:
    """Per setting, a sentence with the numbers that decide CAT's premise: how much of a task's input energy lies in
    the other tasks' top input subspaces (mean over layers, first layer, chance; the task's own subspace for scale),
    how large the interference is relative to a task's own change, and how much of it CAT's c directions hold."""
    out = {}
    for name, d in diags.items():
        s = d["summary"]
        out[name] = (
            f"the other tasks' top input subspaces hold {s['subspace_energy']:.2f} of a task's input energy "
            f"(first layer {first_layer_overlap(d):.2f}; chance {s['subspace_energy_chance']:.2f}, its own "
            f"{s['subspace_energy_own']:.2f}); the other task vectors move its layer outputs "
            f"{s['interference_ratio']:.1f}× as much as its own, and CAT's top-{d['settings']['c']} directions hold "
            f"{s['captured_interference']:.2f} of that (chance {s['captured_chance']:.3f})"
        )
    return out


__all__ = [
    "diagnostics",
    "summary_table",
    "first_layer_overlap",
    "per_layer_frame",
    "merging_gaps",
    "clip_likeness",
    "CLIP_LIKE",
    "premise_lines",
    "SUMMARY",
]
