"""The paper's claims checked against the results files (:func:`claims`, :func:`claims_markdown`,
:func:`bottom_line`), every verdict from :func:`catlib.report.verdicts.verdict`; the paper's side of each row is
read from ``data/paper/*.csv``, never retyped."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

from ..protocol.seeds import mean_std
from .names import DISPLAY, REFERENCE
from .results import load_results
from .notebook import PAPER_DIR
from .tables import pm
from .verdicts import WORDS, Effect, against_best, effect, effect_between, verdict


def _get(doc: Optional[Mapping[str, Any]], *path, default=None):
    cur: Any = doc["results"] if doc else None
    for p in path:
        if not isinstance(cur, Mapping) or p not in cur:
            return default
        cur = cur[p]
    return cur


def _ordered(d: Mapping[str, Any]) -> List[tuple]:
    """Items of a method → value mapping in the order of the paper's tables (results files sort their keys)."""
    order = list(DISPLAY)
    return sorted(d.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order))


def _span(a1: Mapping[str, float], a2: Mapping[str, float], methods: Sequence[str]) -> str:
    """The range of a2 − a1 over ``methods``, as "+0.1 to +3.1 points" (or "-" for none)."""
    d = sorted(a2[m] - a1[m] for m in methods)
    if not d:
        return "-"
    return f"{d[0]:+.1f} points" if len(d) == 1 else f"{d[0]:+.1f} to {d[-1]:+.1f} points"


def _paper_text() -> Dict[str, str]:
    """The paper's numbers quoted on the claims page, read from data/paper/*.csv (as printed, never retyped)."""
    import csv

    def rows(name):
        with open(PAPER_DIR / f"{name}.csv", newline="") as f:
            return list(csv.DictReader(f))

    def cell(name, col, **match):
        for r in rows(name):
            if all(r.get(k) == v for k, v in match.items()):
                return r[col]
        raise KeyError(f"data/paper/{name}.csv has no row {match}")

    t1 = {r["method"]: r["avg"] for r in rows("table1_vit_b32")}
    t2 = {r["method"]: r["avg"] for r in rows("table2_vit_l14")}
    sens = lambda setting, model, q="CAT accuracy": cell("sensitivity_text", model, quantity=q, setting=setting)
    abl = {(r["linear"], r["norm_scale"], r["shift"]): r["ViT-B/32"] for r in rows("table5_ablation")}
    cat_b32 = t1["CAT Merging"]
    bal = {r["model"]: r for r in rows("table10_balance")}["ViT-B/32"]
    gen = {r["method"]: r for r in rows("table8_generalization")}
    gap = lambda col: float(gen["CAT Merging"][col]) - max(float(r[col]) for m, r in gen.items() if m != "CAT Merging")
    cost = {r["model"]: r for r in rows("table9_cost")}["ViT-B/32"]
    t7 = {r["method"]: r["avg"] for r in rows("table7_testtime")}
    t3 = {r["method"]: r["avg"] for r in rows("table3_roberta_glue")}
    t3_runner = max((m for m in t3 if m != "CAT Merging"), key=lambda m: float(t3[m]))
    t4 = [r for r in rows("table4_blip") if r["method"] not in ("Pretrained", "Individual")]
    t4_cols = [c for c in t4[0] if c != "method"]
    t4_cat = sum(float({r["method"]: r for r in t4}["CAT Merging"][c]) == max(float(r[c]) for r in t4) for c in t4_cols)
    refs = ("Pretrained", "Individual", "Traditional MTL")
    drop = lambda t, m: float(t["Individual"]) - float(t[m])  # noqa: E731
    both = [m for m in t1 if m in t2 and m not in refs]
    closer = sum(drop(t2, m) < drop(t1, m) for m in both)
    return {
        "larger": f"gap to Individual, ViT-B/32 → ViT-L/14: TA {drop(t1, 'Task Arithmetic'):.1f} → "
        f"{drop(t2, 'Task Arithmetic'):.1f}, CAT {drop(t1, 'CAT Merging'):.1f} → "
        f"{drop(t2, 'CAT Merging'):.1f}; "
        f"closer for {closer} of {len(both)} merging methods",
        "balance": f"{bal['CAT Merging']} vs PCB {bal['PCB Merging']}, TA {bal['Task Arithmetic']} (ViT-B/32)",
        "generalization": f"{gap('avg_seen'):+.1f} seen, {gap('avg_unseen'):+.1f} unseen over the best baseline "
        f"(ViT-B/32)",
        "cost": f"B/32: PCB {cost['PCB Merging']} s, CAT {cost['CAT Merging']} s, TATR {cost['TATR']} s (RTX 3090)",
        "cost_testtime": f"B/32: AdaMerging {cost['AdaMerging']} s, CAT {cost['CAT Merging']} s (RTX 3090)",
        "testtime": f"CAT {t7['CAT Merging']} vs TW AdaMerging {t7['TW AdaMerging']}, TW AdaMerging++ "
        f"{t7['TW AdaMerging++']} (ViT-B/32; LW AdaMerging {t7['LW AdaMerging']} and Surgery "
        f"{t7['Surgery Merging']} are above CAT there)",
        "best_text": f"{t3['CAT Merging']} vs {t3_runner} {t3[t3_runner]} (RoBERTa-base, GLUE)",
        "best_vl": f"no average printed; CAT best on {t4_cat} of {len(t4_cols)} tasks (BLIP)",
        "best": f"{cat_b32} vs PCB {t1['PCB Merging']} (ViT-B/32); {t2['CAT Merging']} vs PCB {t2['PCB Merging']} "
        f"(ViT-L/14)",
        "exemplars": f"1 exemplar: {sens('1 exemplar per task', 'ViT-B/32')} (B/32) vs {cat_b32} with the default; "
        f"flat curve",
        "lambda0": f"λ=0: {sens('lambda = 0', 'ViT-B/32')} vs {cat_b32} (ViT-B/32)",
        "c": f"peak at c={sens('', 'ViT-B/32', 'best c')} (B/32), c={sens('', 'ViT-L/14', 'best c')} (L/14); "
        f"c=128: {sens('c = 128', 'ViT-B/32')}",
        "ablation": f"Table 5 (B/32): −linear {abl[('False', 'True', 'True')]}, "
        f"−norm {abl[('True', 'False', 'True')]}, −shift {abl[('True', 'True', 'False')]}, "
        f"all {abl[('True', 'True', 'True')]}",
    }


def _seeds(d, *path) -> Dict[str, float]:
    """``{seed: value}`` stored under ``path`` in a results file (seeds as strings, sorted numerically)."""
    v = _get(d, *path) or {}
    return {k: float(v[k]) for k in sorted(v, key=lambda s: int(s))}


def _paired(a: Mapping[str, float], b: Mapping[str, float], independent: bool) -> Effect:
    """Per-seed a − b over the seeds both have."""
    return effect([a[s] - b[s] for s in a if s in b], independent)


def _pm(values: Mapping[str, float], independent: bool, decimals: int = 1) -> str:
    if not values:
        return "n/a"
    m, sd = mean_std(list(values.values()))
    return pm(m, sd if independent else None, decimals)


def _independent(d, *methods) -> bool:
    """Whether every one of ``methods`` ran as independent replicates in results file ``d``."""
    rep = _get(d, "replicated")
    if isinstance(rep, Mapping):
        return all(bool(rep.get(m)) for m in methods)
    return bool(rep)


def claims(tolerance: float = 2.0) -> List[Dict[str, Any]]:
    """One row per claim of the paper and benchmark: the paper's number, ours (mean ± std over seeds), the effect
    (signed so that positive is the paper's direction; mean ± SE over seeds) and the verdict of
    :func:`~catlib.report.verdicts.verdict`: "reproduced", "not reproduced" or "inconclusive". ``tolerance``
    (accuracy points) is what "flat" and "stable" allow (the paper's own one-exemplar drop on ViT-B/32 is 1.7).
    Rows carry ``key`` (the claim) and ``benchmark``, for :func:`bottom_line`."""
    rows: List[Dict[str, Any]] = []
    P = _paper_text()

    def add(key, claim, source, d, paper, ours, eff: Optional[Effect], note: str = "", unit: str = "points"):
        bench = (d or {}).get("parameters", {}).get("benchmark", "-") if d else "-"
        rows.append(
            {
                "key": key,
                "claim": claim,
                "notebook": source,
                "benchmark": bench,
                "paper": paper,
                "ours": ours,
                "effect": "n/a" if eff is None else eff.text(unit),
                "verdict": verdict(eff),
                "note": note,
            }
        )

    # 1. CAT has the best average (Tables 1 and 2, and their task subsets)
    label = {
        "table1": "8 tasks",
        "table2": "8 tasks",
        "table1_subset": "task subset",
        "table2_subset": "task subset",
        "table3": "GLUE, Table 3",
        "table4": "vision-language, Table 4",
    }
    key = {"table3": "best_text", "table4": "best_vl"}
    for name in ("table1", "table2", "table1_subset", "table2_subset", "table3", "table4"):
        d = load_results(name)
        avgs = {m: v for m, v in (_get(d, "averages") or {}).items() if m not in REFERENCE}
        per_seed = {m: v for m in avgs if (v := _seeds(d, "per_seed_avg", m))}
        if d is None or "cat" not in per_seed or len(per_seed) < 2:
            if name == "table1":
                add(
                    "best",
                    "CAT has the best average accuracy among merging methods",
                    name,
                    None,
                    P["best"],
                    "n/a",
                    None,
                )
            continue
        runner, e, ind = against_best(per_seed, lambda m: _independent(d, m))
        ps = per_seed.get
        add(
            key.get(name, "best" if not name.endswith("subset") else "best_subset"),
            f"CAT has the best average {'score' if name in key else 'accuracy'} among merging methods ({label[name]})",
            name,
            d,
            P[key.get(name, "best")],
            f"CAT {_pm(ps('cat'), ind)}; best other: {DISPLAY.get(runner, runner)} {_pm(ps(runner), ind)}",
            e,
            f"effect: CAT minus {DISPLAY.get(runner, runner)}",
        )
    # 2. the larger encoder merges better: the gap to Individual shrinks (Table 2 against Table 1)
    d1, d2 = load_results("table1"), load_results("table2")
    a1, a2 = _get(d1, "averages") or {}, _get(d2, "averages") or {}
    both = [m for m in a1 if m in a2 and m not in REFERENCE]
    if both and "individual" in a1 and "individual" in a2:

        def gaps(d):  # per seed: Individual minus the method, averaged over the methods of both tables
            ind = _seeds(d, "per_seed_avg", "individual")
            per = {m: _seeds(d, "per_seed_avg", m) for m in both}
            return [sum(ind[s] - per[m][s] for m in both) / len(both) for s in ind]

        ok = _independent(d1, *both, "individual") and _independent(d2, *both, "individual")
        g1, g2 = gaps(d1), gaps(d2)
        add(
            "larger",
            "The larger model merges better: merging methods are closer to Individual",
            "table2",
            d2,
            P["larger"],
            f"mean gap to Individual over {len(both)} methods: {d1['parameters'].get('benchmark')} "
            f"{_pm(dict(enumerate(g1)), ok)}, {d2['parameters'].get('benchmark')} {_pm(dict(enumerate(g2)), ok)}",
            effect_between(g1, g2, ok),
            "effect: gap (smaller model) minus gap (larger model)",
        )
    # 3. Table 10 balance
    d = load_results("table1")
    ds = {m: _seeds(d, "drop_std_per_seed", m) for m in (_get(d, "drop_std_per_seed") or {})}
    if ds.get("cat") and len(ds) > 1:
        means = {m: sum(v.values()) / len(v) for m, v in ds.items()}
        runner = min((m for m in ds if m != "cat"), key=means.get)
        ind = _independent(d, "cat", runner)
        add(
            "balance",
            "CAT's accuracy drop from Individual is the most balanced across tasks (Table 10, lowest std)",
            "table1",
            d,
            P["balance"],
            ", ".join(f"{DISPLAY.get(m, m)} {_pm(v, _independent(d, m), 2)}" for m, v in _ordered(ds)),
            _paired(ds[runner], ds["cat"], ind),
            f"effect: {DISPLAY.get(runner, runner)}'s std minus CAT's",
        )
    # 4. exemplars (Fig. 2a)
    d = load_results("exemplars")
    curve = {int(n): _seeds(d, "cat_per_seed", n) for n in (_get(d, "cat_per_seed") or {})}
    ta = _seeds(d, "task_arithmetic_per_seed")
    if curve and ta:
        ind, lo, hi = bool(_get(d, "replicated")), min(curve), max(curve)
        add(
            "exemplars_beat_ta",
            f"With {lo} exemplar per task CAT already beats task arithmetic (Fig. 2a)",
            "exemplars",
            d,
            P["exemplars"],
            f"CAT ({lo}) {_pm(curve[lo], ind)}; task arithmetic {_pm(ta, ind)}",
            _paired(curve[lo], ta, ind),
            f"effect: CAT with {lo} exemplar minus task arithmetic",
        )
        add(
            "exemplars_flat",
            f"More exemplars add little: the curve is flat ({lo} → {hi} exemplars gains under {tolerance:g} points)",
            "exemplars",
            d,
            P["exemplars"],
            f"CAT ({lo}) {_pm(curve[lo], ind)}; CAT ({hi}) {_pm(curve[hi], ind)}",
            effect([tolerance - (curve[hi][s] - curve[lo][s]) for s in curve[lo]], ind),
            f"effect: {tolerance:g} minus the gain from {lo} to {hi} exemplars",
        )
    else:
        add(
            "exemplars_beat_ta",
            "A few exemplars suffice for CAT (Fig. 2a)",
            "exemplars",
            d,
            P["exemplars"],
            "n/a",
            None,
        )
    # 5. α robustness (Fig. 2b)
    d = load_results("alpha")
    sp = {m: _seeds(d, "spread_per_seed", m) for m in (_get(d, "spread_per_seed") or {})}
    if sp.get("cat") and sp.get("task_arithmetic"):
        ind = (d["parameters"].get("zoos") or 1) > 1
        add(
            "alpha",
            "CAT is more robust to α than task arithmetic (Fig. 2b)",
            "alpha",
            d,
            "Fig. 2b (ViT-L/14): CAT's curve flatter than TA's (no numbers in the text)",
            f"accuracy range over the α sweep ({d['parameters'].get('split')}): CAT {_pm(sp['cat'], ind)}, "
            f"task arithmetic {_pm(sp['task_arithmetic'], ind)}",
            _paired(sp["task_arithmetic"], sp["cat"], ind),
            "effect: TA's range minus CAT's",
        )
    else:
        add("alpha", "CAT is more robust to α than task arithmetic (Fig. 2b)", "alpha", d, "Fig. 2b", "n/a", None)
    # 6. λ and c (Fig. 4)
    d = load_results("lambda_c")
    lam = {float(k): _seeds(d, "lam_per_seed", k) for k in (_get(d, "lam_per_seed") or {})}
    cc = {int(float(k)): _seeds(d, "c_per_seed", k) for k in (_get(d, "c_per_seed") or {})}
    ind = bool(_get(d, "replicated"))
    pos = {k: v for k, v in lam.items() if k > 0}
    if 0.0 in lam and pos:
        seeds = list(lam[0.0])
        mean_pos = {s: sum(v[s] for v in pos.values()) / len(pos) for s in seeds}
        add(
            "lambda0",
            "λ = 0 hurts CAT (no intra-task deviation term) (Fig. 4a)",
            "lambda_c",
            d,
            P["lambda0"],
            f"λ=0: {_pm(lam[0.0], ind)}; mean over λ ∈ {sorted(pos)}: {_pm(mean_pos, ind)}",
            _paired(mean_pos, lam[0.0], ind),
            "effect: mean over λ > 0 minus λ = 0",
        )
        rng = {s: max(v[s] for v in pos.values()) - min(v[s] for v in pos.values()) for s in seeds}
        add(
            "lambda_stable",
            f"CAT is stable for any λ > 0 (range under {tolerance:g} points) (Fig. 4a)",
            "lambda_c",
            d,
            "Fig. 4a: flat for λ > 0",
            f"range over λ ∈ {sorted(pos)}: {_pm(rng, ind)} points",
            effect([tolerance - r for r in rng.values()], ind),
            f"effect: {tolerance:g} minus the range",
        )
    else:
        add("lambda0", "λ = 0 hurts CAT (Fig. 4a)", "lambda_c", d, P["lambda0"], "n/a", None)
    if cc and max(cc) > 4 and any(c <= 4 for c in cc):
        seeds = list(cc[max(cc)])
        small = {s: max(v[s] for c, v in cc.items() if c <= 4) for s in seeds}
        add(
            "c",
            f"A small c is best; a large c (c = {max(cc)}) hurts (Fig. 4b)",
            "lambda_c",
            d,
            P["c"],
            f"best of c ≤ 4: {_pm(small, ind)}; c = {max(cc)}: {_pm(cc[max(cc)], ind)}",
            _paired(small, cc[max(cc)], ind),
            f"effect: best c ≤ 4 minus c = {max(cc)}",
        )
    # 7. ablation (Table 5): one row per component
    d = load_results("ablation")
    ab = {k: _seeds(d, "rows_per_seed", k) for k in (_get(d, "rows_per_seed") or {})}
    if ab.get("all"):
        ind = bool(_get(d, "replicated"))
        for part in ("linear", "norm scale", "shift"):
            without = ab.get(f"without {part}")
            if without:
                add(
                    f"ablation_{part.replace(' ', '_')}",
                    f"CAT's {part} component helps (Table 5)",
                    "ablation",
                    d,
                    P["ablation"],
                    f"all {_pm(ab['all'], ind)}; without {part} {_pm(without, ind)}",
                    _paired(ab["all"], without, ind),
                    f"effect: all minus without {part}",
                )
    else:
        add("ablation_linear", "Each CAT component helps (Table 5)", "ablation", d, "Table 5", "n/a", None)
    # 8. knowledge conflict and Theorem 4.4
    d = load_results("conflict")
    cf = {m: _seeds(d, "abs_conflict_per_seed", m) for m in (_get(d, "abs_conflict_per_seed") or {})}
    if cf.get("cat") and cf.get("task_arithmetic"):
        ind = bool(_get(d, "replicated"))
        add(
            "conflict",
            "CAT lowers pairwise knowledge conflict |ΔL| (Fig. 3/5)",
            "conflict",
            d,
            "Fig. 3/5: lower conflict at larger α",
            f"mean |ΔL_k|i| over pairs: TA {_pm(cf['task_arithmetic'], ind, 3)}, CAT {_pm(cf['cat'], ind, 3)}",
            _paired(cf["task_arithmetic"], cf["cat"], ind),
            "effect: TA's mean |ΔL| minus CAT's",
            unit="",
        )
    b = _get(d, "bound")
    if b and b.get("log10_margin_per_seed"):
        by_construction = b.get("lipschitz") == "path"
        margins = _seeds(d, "bound", "log10_margin_per_seed")
        add(
            "theorem44",
            "Theorem 4.4's bound holds for every pair",
            "conflict",
            d,
            "|ΔL_{k|i}| ≤ β Σ_l Π γ_m ‖Δf̂^l‖",
            f"constants from {'the perturbation itself' if by_construction else 'random probes'}: holds for "
            f"{b['holds']} of {b['pairs']} pair-seeds (raw vectors), {b.get('holds_cat', '?')} of "
            f"{b.get('pairs_cat', '?')} (CAT's); median |ΔL| / bound {b['median_tightness']:.3f}",
            None if by_construction else effect(list(margins.values()), len(margins) > 1),
            "by construction (constants measured along the bounded perturbation): not a check"
            if by_construction
            else "effect: log10(bound / |ΔL|) of the tightest pair (positive: holds for every pair)",
            unit="",
        )
    # 9. generalization (Table 8)
    d = load_results("generalization")
    for part, field_, label in (("seen", "seen_per_seed", "merged"), ("unseen", "unseen_per_seed", "unseen")):
        v = {m: _seeds(d, field_, m) for m in (_get(d, field_) or {})}
        others = {m: x for m, x in v.items() if m != "cat" and m not in REFERENCE}
        if v.get("cat") and others:
            runner = max(others, key=lambda m: sum(others[m].values()) / len(others[m]))
            ind = _independent(d, "cat", runner)
            add(
                f"generalization_{part}",
                f"CAT is best on the {label} tasks of Table 8",
                "generalization",
                d,
                P["generalization"],
                f"CAT {_pm(v['cat'], ind)}; best other: {DISPLAY.get(runner, runner)} {_pm(others[runner], ind)}"
                + (f"; θ0 {_pm(v['pretrained'], False)}" if part == "unseen" and "pretrained" in v else ""),
                _paired(v["cat"], others[runner], ind),
                f"effect: CAT minus {DISPLAY.get(runner, runner)}",
            )
    # 10. AWD
    d = load_results("awd")
    gains = {k: _seeds(d, "gain_per_seed", k) for k in (_get(d, "gain_per_seed") or {})}
    for k, g in gains.items():
        ind = bool(_get(d, "replicated"))
        add(
            f"awd_{k.replace(' ', '_')}",
            f"AWD improves {k}",
            "awd",
            d,
            "AWD paper: +several points on ViT-B/32",
            f"AWD minus without, test, each at its validation-chosen configuration: {_pm(g, ind)}",
            effect(list(g.values()), ind),
            "effect: AWD minus without",
        )
    # 11. the test-time methods (Table 7): CAT, training-free, against the task-wise AdaMerging variants, which
    # adapt on the unlabelled test inputs (the paper claims these two; it reports LW AdaMerging and Surgery above CAT)
    d = load_results("table7_testtime")
    cat_name = DISPLAY["cat"]
    cat_avg = _seeds(d, "avg_per_seed", cat_name)
    ind = ((d or {}).get("parameters", {}).get("zoos") or 1) > 1
    for other in ("TW AdaMerging", "TW AdaMerging++"):
        theirs = _seeds(d, "avg_per_seed", other)
        if not (cat_avg and theirs):
            continue
        add(
            "testtime_" + other.split()[1].replace("+", "p").lower(),
            f"CAT beats {other}, which adapts on the unlabelled test inputs (Table 7)",
            "table7_testtime",
            d,
            P["testtime"],
            f"CAT {_pm(cat_avg, ind)}; {other} {_pm(theirs, ind)}",
            _paired(cat_avg, theirs, ind),
            f"effect: CAT minus {other}",
        )
    # 12. cost (Table 9)
    d = load_results("cost")
    reps = {m: _get(d, "seconds_per_repeat", m) or [] for m in ("cat", "pcb", "tatr")}
    secs = _get(d, "seconds") or {}
    if "cat" in secs and "tatr" in secs:
        import math

        n = min(len(v) for v in reps.values())
        eff = (
            effect([math.log10(reps["tatr"][i] / reps["cat"][i]) for i in range(n)], True)
            if n >= 2
            else effect([math.log10(secs["tatr"] / secs["cat"])], False)
        )
        add(
            "cost",
            "CAT's merge is faster than TATR's (Table 9)",
            "cost",
            d,
            P["cost"],
            ", ".join(f"{DISPLAY.get(m, m)} {v:.2f} s" for m, v in _ordered(secs) if m in ("cat", "pcb", "tatr")),
            eff,
            "effect: log10(TATR's seconds / CAT's), over repeated timings",
            unit="",
        )
    ada = (_get(d, "test_time_seconds") or {}).get("LW AdaMerging")
    if ada and reps["cat"]:
        import math

        add(
            "cost_testtime",
            "CAT's merge costs a small fraction of AdaMerging's test-time adaptation (Table 9)",
            "cost",
            d,
            P["cost_testtime"],
            f"LW AdaMerging {ada:.0f} s (its 500 steps, extrapolated from short runs), CAT {secs['cat']:.2f} s",
            effect([math.log10(ada / r) for r in reps["cat"]], len(reps["cat"]) > 1),
            "effect: log10(AdaMerging's seconds / CAT's), over CAT's repeated timings",
            unit="",
        )
    return rows


# results file -> the notebook page that computes it
PAGES = {
    "table1": ("01_table1", "Table 1"),
    "table1_subset": ("01_table1", "Table 1"),
    "table2": ("02_table2", "Table 2"),
    "table2_subset": ("02_table2", "Table 2"),
    "exemplars": ("03_exemplars", "Fig. 2a"),
    "alpha": ("04_alpha", "Fig. 2b"),
    "lambda_c": ("05_lambda_c", "Fig. 4"),
    "ablation": ("06_ablation", "Table 5"),
    "conflict": ("07_conflict", "Fig. 3/5"),
    "generalization": ("08_generalization", "Table 8"),
    "awd": ("09_awd", "AWD"),
    "cost": ("10_cost", "Table 9"),
    "table7_testtime": ("13_testtime", "Table 7"),
    "table3": ("14_table3", "Table 3"),
    "table4": ("15_table4", "Table 4"),
}
NOT_RUN = "–"


def row_benchmarks(rows: Sequence[Mapping[str, Any]]) -> List[str]:
    """The bottom line's benchmark columns: the two tiny zoos (always, "–" where not run), then every other benchmark
    a claim row was measured on, in order of appearance (e.g. "glue-tiny" for Table 3)."""
    first = ["tiny", "tiny-large"]
    seen = [r["benchmark"] for r in rows if r["benchmark"] not in ("-", None)]
    return first + [b for b in dict.fromkeys(seen) if b not in first]


def bottom_line(
    rows: Sequence[Mapping[str, Any]], benchmarks: Optional[Sequence[str]] = None, pages: Optional[str] = None
):
    """One row per claim: the paper's number, ours on each benchmark (mean ± std over seeds) and the verdict on
    each, as a DataFrame (the book's first table). A claim not run on a benchmark shows "–" in both columns.
    ``pages``: a link prefix (``"../notebooks/"`` from the intro, ``""`` beside the notebooks) adds a column
    linking each claim to the page that computes it."""
    import pandas as pd

    benchmarks = row_benchmarks(rows) if benchmarks is None else list(benchmarks)
    out: Dict[str, Dict[str, str]] = {}
    for r in rows:
        if r["notebook"] == "cost":
            continue
        row = out.setdefault(r["claim"].replace(" (8 tasks)", ""), {"paper": r["paper"]})
        if pages is not None and "page" not in row and r["notebook"] in PAGES:
            nb, label = PAGES[r["notebook"]]
            row["page"] = f"[{label}]({pages}{nb}.ipynb)"
        if r["benchmark"] in benchmarks:
            row[f"ours ({r['benchmark']})"] = r["ours"]
            row[f"verdict ({r['benchmark']})"] = r["verdict"]
    df = pd.DataFrame.from_dict(out, orient="index")
    for b in benchmarks:
        for col in (f"ours ({b})", f"verdict ({b})"):
            df[col] = df[col].fillna(NOT_RUN) if col in df else NOT_RUN
    front = ["page"] if pages is not None else []
    return df[front + ["paper"] + [f"{c} ({b})" for b in benchmarks for c in ("ours", "verdict")]]


INTRO_START, INTRO_END = "<!-- bottom-line: start (generated by scripts/build_book.py) -->", "<!-- bottom-line: end -->"


def bottom_line_summary(rows: Sequence[Mapping[str, Any]], benchmarks: Optional[Sequence[str]] = None) -> str:
    """Three sentences above the bottom line, computed from ``rows``: the verdict counts per benchmark and the
    headline claim (CAT's best average) with its numbers."""
    benchmarks = row_benchmarks(rows) if benchmarks is None else list(benchmarks)
    acc = [r for r in rows if r["notebook"] != "cost"]
    parts = []
    for b in benchmarks:
        mine = [r for r in acc if r["benchmark"] == b]
        if not mine:
            continue
        n = {w: sum(r["verdict"] == w for r in mine) for w in WORDS}
        parts.append(
            f"on `{b}`, {n['reproduced']} of {len(mine)} claims are reproduced, {n['not reproduced']} not "
            f"reproduced and {n['inconclusive']} inconclusive"
        )
    counts = ("Over three seeds, " + "; ".join(parts) + ".") if parts else "No results yet."
    head = [r for r in acc if r["key"] == "best" and r["benchmark"] in benchmarks]
    headline = (
        "The headline claim, that CAT has the best average accuracy, is "
        + " and ".join(f"**{r['verdict']}** on `{r['benchmark']}` ({r['ours']})" for r in head)
        + "."
        if head
        else ""
    )
    closing = (
        "The embedded zoos are not CLIP (nor, for Table 3, RoBERTa): the premise pages measure how the tiny ones "
        "differ from CLIP, and a verdict here says what holds on them, not on the real models."
    )
    return " ".join(x for x in (counts, headline, closing) if x)


def bottom_line_markdown(rows: Sequence[Mapping[str, Any]], pages: Optional[str] = "") -> str:
    """:func:`bottom_line` as a Markdown table (verdicts in bold, a link to each claim's page), for the book's first
    page and the claims page."""
    df = bottom_line(rows, pages=pages)

    def esc(s):
        return str(s).replace("|", "\\|").replace("\n", " ")

    def cell(c, v):
        if c.startswith("verdict") and v != NOT_RUN:
            return f"**{esc(v)}**"
        return str(v) if c == "page" else esc(v)

    cols = ["claim", *df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for claim, r in df.iterrows():
        lines.append("| " + " | ".join([esc(claim)] + [cell(c, v) for c, v in r.items()]) + " |")
    return "\n".join(lines)


def bottom_line_block(rows: Sequence[Mapping[str, Any]], pages: str = "../notebooks/") -> str:
    """What the book's first page shows between its markers: :func:`bottom_line_summary`, then the table."""
    return bottom_line_summary(rows) + "\n\n" + bottom_line_markdown(rows, pages=pages)


def page_verdicts(rows: Sequence[Mapping[str, Any]], page: str) -> Optional[str]:
    """The verdicts of the claims a notebook page computes (``page``: its name, e.g. ``"01_table1"``), as one
    Markdown paragraph for the top of that page (written there by ``scripts/build_book.py``), or None when the page
    computes no claim."""
    mine = [r for r in rows if PAGES.get(r["notebook"], ("",))[0] == page]
    if not mine:
        return None
    items = [
        f"* {r['claim']}: **{r['verdict']}** on `{r['benchmark']}` ({r['ours']})"
        if r["ours"] != "n/a"
        else f"* {r['claim']}: **{r['verdict']}** (not run)"
        for r in mine
    ]
    return (
        "**The verdicts this page computes** (the [claims page](99_claims.ipynb) has each effect with its error and "
        "the rule):\n\n" + "\n".join(items)
    )


def with_bottom_line(text: str, table: str) -> str:
    """``text`` (the intro page) with the block between :data:`INTRO_START` and :data:`INTRO_END` replaced by
    ``table``; ``ValueError`` when the markers are missing."""
    if INTRO_START not in text or INTRO_END not in text:
        raise ValueError(f"the intro page has no {INTRO_START} ... {INTRO_END} block")
    head, rest = text.split(INTRO_START, 1)
    return head + INTRO_START + "\n" + table + "\n" + INTRO_END + rest.split(INTRO_END, 1)[1]


def claims_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The claims as a Markdown table (verdict in bold)."""

    def esc(s):
        return str(s).replace("|", "\\|").replace("\n", " ")

    lines = ["| claim | benchmark | verdict | effect (mean ± SE) | ours (mean ± std) | paper | notebook |"]
    lines.append("|---|---|---|---|---|---|---|")
    for r in rows:
        eff = r.get("effect", "n/a") + (f"; {r['note']}" if r.get("note") else "")
        lines.append(
            f"| {esc(r['claim'])} | {esc(r.get('benchmark', '-'))} | **{esc(r['verdict'])}** | {esc(eff)} | "
            f"{esc(r['ours'])} | {esc(r['paper'])} | {esc(r['notebook'])} |"
        )
    return "\n".join(lines)
