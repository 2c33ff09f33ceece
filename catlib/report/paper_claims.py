"""The paper's claims checked against the results files (:func:`claims`, :func:`claims_markdown`); the paper's side
of each row is read from ``data/paper/*.csv``, never retyped."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

from .names import DISPLAY, REFERENCE
from .results import load_results
from .notebook import PAPER_DIR


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


def claims(tolerance: float = 0.5) -> List[Dict[str, Any]]:
    """One row per claim of the paper: what the paper says, what our notebooks measured (read from the results
    files), and a verdict: "reproduced", "not reproduced", "partly" or "not run". ``tolerance`` (accuracy points)
    is what counts as "about equal" (robustness/stability claims)."""
    rows: List[Dict[str, Any]] = []
    P = _paper_text()

    def add(claim, source, paper, ours, verdict):
        rows.append({"claim": claim, "notebook": source, "paper": paper, "ours": ours, "verdict": verdict})

    def f1(x):
        return "n/a" if x is None else f"{x:.1f}"

    # 1. CAT best on average (Table 1, and each further table notebook present)
    for name in ("table1", "table1_subset", "table2", "table2_subset"):
        d = load_results(name)
        if d is None:
            if name == "table1":
                add("CAT has the best average accuracy among merging methods", name, P["best"], "n/a", "not run")
            continue
        avgs = _get(d, "averages") or {}
        merging = {m: v for m, v in avgs.items() if m not in REFERENCE}
        if not merging or "cat" not in merging:
            continue
        best = max(merging, key=merging.get)
        runner = max((m for m in merging if m != "cat"), key=merging.get)
        label = {
            "table1": "8 tasks",
            "table1_subset": "task subset",
            "table2": "Table 2 setting",
            "table2_subset": "Table 2 setting, task subset",
        }[name]
        add(
            f"CAT has the best average accuracy among merging methods ({label}, {d['parameters'].get('benchmark')})",
            name,
            P["best"],
            f"CAT {f1(merging['cat'])}; best other: {DISPLAY.get(runner, runner)} {f1(merging[runner])}; "
            f"best overall: {DISPLAY.get(best, best)}",
            "reproduced" if best == "cat" else "not reproduced",
        )
    # 1b. the larger encoder merges better (Table 2 against Table 1)
    d1, d2 = load_results("table1"), load_results("table2")
    a1, a2 = _get(d1, "averages") or {}, _get(d2, "averages") or {}
    both = [m for m in a1 if m in a2 and m not in REFERENCE]
    if both and "individual" in a1 and "individual" in a2:
        gap = lambda a, m: a["individual"] - a[m]  # noqa: E731
        closer = [m for m in both if gap(a2, m) < gap(a1, m)]
        higher = [m for m in both if a2[m] > a1[m]]
        shown = [m for m in ("task_arithmetic", "ties", "pcb", "cat") if m in both]
        add(
            f"The larger model merges better: every merging method is closer to Individual "
            f"({d1['parameters'].get('benchmark')} → {d2['parameters'].get('benchmark')})",
            "table2",
            P["larger"],
            "gap to Individual: "
            + ", ".join(f"{DISPLAY.get(m, m)} {gap(a1, m):.1f} → {gap(a2, m):.1f}" for m in shown)
            + f"; closer for {len(closer)} of {len(both)} "
            f"(average accuracy higher for {len(higher)} of {len(both)}, by {_span(a1, a2, higher)})",
            "reproduced" if len(closer) == len(both) else ("partly" if closer else "not reproduced"),
        )
    # 2. Table 10 balance
    d = load_results("table1")
    if d is not None and _get(d, "drop_std"):
        ds = _get(d, "drop_std")
        others = {m: v for m, v in ds.items() if m != "cat"}
        ok = "cat" in ds and all(ds["cat"] <= v for v in others.values())
        add(
            "CAT's accuracy drop from Individual is the most balanced across tasks (Table 10, lowest std)",
            "table1",
            P["balance"],
            ", ".join(f"{DISPLAY.get(m, m)} {v:.2f}" for m, v in _ordered(ds)),
            "reproduced" if ok else "not reproduced",
        )
    # 3. exemplars
    d = load_results("exemplars")
    if d is not None:
        curve = {int(k): v for k, v in (_get(d, "cat_mean") or {}).items()}
        if curve:
            top = max(curve.values())
            small = {n: v for n, v in curve.items() if n <= 4}
            best_small = max(small.values()) if small else None
            ok = best_small is not None and best_small >= top - max(tolerance, _get(d, "max_std", default=0) or 0)
            add(
                "A few exemplars (1-4 per task) suffice for CAT",
                "exemplars",
                P["exemplars"],
                "; ".join(f"{n}: {v:.1f}" for n, v in sorted(curve.items())) + f" (best of 1-4: {f1(best_small)}, "
                f"best overall: {f1(top)})",
                "reproduced" if ok else "not reproduced",
            )
    else:
        add("A few exemplars (1-4 per task) suffice for CAT", "exemplars", P["exemplars"], "n/a", "not run")
    # 4. alpha robustness (the paper's Fig. 2b compares CAT with task arithmetic)
    d = load_results("alpha")
    if d is not None and "cat" in (_get(d, "spread") or {}) and "task_arithmetic" in (_get(d, "spread") or {}):
        spread = _get(d, "spread")
        add(
            "CAT is more robust to α than task arithmetic",
            "alpha",
            "Fig. 2b (ViT-L/14): CAT's curve flatter than TA's (no numbers in the text)",
            f"accuracy range over the α sweep ({d['parameters'].get('split')} split): CAT {spread['cat']:.1f}, "
            f"TA {spread['task_arithmetic']:.1f}"
            + "".join(
                f", {DISPLAY.get(m, m)} {v:.1f}" for m, v in _ordered(spread) if m not in ("cat", "task_arithmetic")
            ),
            "reproduced" if spread["cat"] < spread["task_arithmetic"] else "not reproduced",
        )
    else:
        add("CAT is more robust to α than task arithmetic", "alpha", "Fig. 2b", "n/a", "not run")
    # 5. lambda and c
    d = load_results("lambda_c")
    if d is not None:
        lam = {float(k): v for k, v in (_get(d, "lam") or {}).items()}
        cc = {int(float(k)): v for k, v in (_get(d, "c") or {}).items()}
        if lam:
            pos = {k: v for k, v in lam.items() if k > 0}
            ok0 = 0.0 in lam and pos and lam[0.0] < min(pos.values()) - tolerance
            add(
                "λ = 0 hurts CAT (no intra-task deviation term)",
                "lambda_c",
                P["lambda0"],
                f"λ=0: {f1(lam.get(0.0))}; λ>0: {f1(min(pos.values()) if pos else None)}–"
                f"{f1(max(pos.values()) if pos else None)}",
                "reproduced" if ok0 else "not reproduced",
            )
            if pos:
                rng = max(pos.values()) - min(pos.values())
                add(
                    "CAT is stable for any λ > 0",
                    "lambda_c",
                    "Fig. 4a: flat for λ > 0",
                    f"range over λ ∈ {sorted(pos)}: {rng:.1f} points",
                    "reproduced" if rng <= 2.0 else ("partly" if rng <= 5.0 else "not reproduced"),
                )
        if cc:
            best_c = max(cc, key=cc.get)
            large = max(cc)
            ok = best_c <= 4 and cc[large] < cc[best_c] - tolerance
            add(
                "A small c is best; a large c hurts",
                "lambda_c",
                P["c"],
                f"best c = {best_c} ({f1(cc[best_c])}); c={large}: {f1(cc[large])}",
                "reproduced" if ok else ("partly" if best_c <= 8 else "not reproduced"),
            )
    else:
        add("λ = 0 hurts; λ > 0 stable; small c best", "lambda_c", "Fig. 4", "n/a", "not run")
    # 6. ablation
    d = load_results("ablation")
    if d is not None:
        rows_ab = _get(d, "rows") or {}
        full = rows_ab.get("all")
        if full is not None:
            parts = {k: v for k, v in rows_ab.items() if k.startswith("without")}
            helps = {k: full - v >= 0.05 for k, v in parts.items()}  # at least +0.1 once rounded for display
            ok = all(helps.values())
            partly = sum(helps.values())
            add(
                "Each CAT component (linear projection, norm-scale mask, shift mask) helps",
                "ablation",
                P["ablation"],
                ", ".join(f"{k} {v:.1f}" for k, v in parts.items()) + f", all {full:.1f}",
                "reproduced" if ok else ("partly" if partly else "not reproduced"),
            )
    else:
        add("Each CAT component helps", "ablation", "Table 5", "n/a", "not run")
    # 7. conflict
    d = load_results("conflict")
    if d is not None:
        ta, cat_ = _get(d, "mean_abs_conflict", "task_arithmetic"), _get(d, "mean_abs_conflict", "cat")
        if ta is not None and cat_ is not None:
            add(
                "CAT lowers pairwise knowledge conflict ΔL",
                "conflict",
                "Fig. 3/5: lower conflict at larger α",
                f"mean |ΔL_k|i| over pairs: TA {ta:.3f}, CAT {cat_:.3f}"
                + (
                    f"; pair grids (mean summed ΔL): TA {_get(d, 'grid_mean', 'task_arithmetic'):.3f}, "
                    f"CAT {_get(d, 'grid_mean', 'cat'):.3f}"
                    if _get(d, "grid_mean")
                    else ""
                ),
                "reproduced" if cat_ < ta else "not reproduced",
            )
        b = _get(d, "bound")
        if b:
            add(
                "Theorem 4.4's bound holds for every pair",
                "conflict",
                "|ΔL_{k|i}| ≤ β Σ_l Π γ_m ‖Δf̂^l‖",
                f"holds for {b['holds']} of {b['pairs']} pairs; median tightness {b['median_tightness']:.3f}",
                "reproduced" if b["holds"] == b["pairs"] else "not reproduced",
            )
    else:
        add("CAT lowers pairwise knowledge conflict", "conflict", "Fig. 3/5", "n/a", "not run")
    # 8. generalization
    d = load_results("generalization")
    if d is not None:
        seen, unseen = _get(d, "avg_seen") or {}, _get(d, "avg_unseen") or {}
        if "cat" in seen:
            bs = max((v for m, v in seen.items() if m != "cat" and m not in REFERENCE), default=None)
            bu = max((v for m, v in unseen.items() if m != "cat" and m not in REFERENCE), default=None)
            ok_s, ok_u = bs is not None and seen["cat"] > bs, bu is not None and unseen.get("cat", -1) > bu
            add(
                "CAT generalizes best to unseen tasks (Table 8)",
                "generalization",
                P["generalization"],
                f"seen: CAT {f1(seen['cat'])} vs best other method {f1(bs)}; unseen: CAT {f1(unseen.get('cat'))} "
                f"vs best other method {f1(bu)}"
                + (f" (θ0 on the unseen tasks: {f1(unseen['pretrained'])})" if "pretrained" in unseen else ""),
                "reproduced" if ok_s and ok_u else ("partly" if ok_s or ok_u else "not reproduced"),
            )
    else:
        add("CAT generalizes best to unseen tasks", "generalization", "Table 8", "n/a", "not run")
    # 9. AWD
    d = load_results("awd")
    if d is not None:
        gains = _get(d, "best_gain") or {}
        if gains:
            ok = all(v >= 0.05 for v in gains.values())  # at least +0.1 once rounded for display
            add(
                "AWD improves task arithmetic and TIES",
                "awd",
                "AWD paper: +several points on ViT-B/32",
                "test accuracy, AWD minus without, each at its validation-chosen α: "
                + ", ".join(f"{k} {v:+.1f}" for k, v in gains.items()),
                "reproduced" if ok else ("partly" if any(v >= 0.05 for v in gains.values()) else "not reproduced"),
            )
    else:
        add("AWD improves task arithmetic and TIES", "awd", "AWD paper", "n/a", "not run")
    # 10. cost
    d = load_results("cost")
    if d is not None:
        secs = _get(d, "seconds") or {}
        if "cat" in secs and "pcb" in secs:
            add(
                "CAT's merge costs about as much as PCB and far less than TATR (Table 9)",
                "cost",
                P["cost"],
                ", ".join(f"{DISPLAY.get(m, m)} {v:.2f} s" for m, v in _ordered(secs)),
                "reproduced"
                if secs["cat"] <= 3 * secs["pcb"] and secs["cat"] <= secs.get("tatr", float("inf"))
                else "not reproduced",
            )
    return rows


def claims_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The claims as a Markdown table (verdict in bold)."""

    def esc(s):
        return str(s).replace("|", "\\|").replace("\n", " ")

    lines = ["| claim | verdict | ours | paper | notebook |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {esc(r['claim'])} | **{esc(r['verdict'])}** | {esc(r['ours'])} | {esc(r['paper'])} | "
            f"{esc(r['notebook'])} |"
        )
    return "\n".join(lines)
