"""What a build measures and records in the manifest's ``results``: the accuracy of θ0, of each fine-tune, of the
MTL model, of weight averaging and of task arithmetic (α chosen on the validation split), and the acceptance checks.

The merges are ``catlib.merge``'s: on the fp16-rounded weights a build merges, the sums are exact in fp32, so they
give the same bits as the zoo's former private θ0 + α Σ (θ_k - θ0) and Σ θ_k / K (checked on both shipped zoos at
every α of the grid, and on the tests' reduced recipe).
"""

from __future__ import annotations

from typing import Dict, Sequence

import torch

from ....core.progress import progress
from ....merge import merge
from ...evaluate import average
from ..model import build_encoder
from ..zoo import task_data
from .train import features


@torch.no_grad()
def accuracies(cfg: dict, sd, heads, tasks: Sequence[str], split: str, enc=None) -> Dict[str, float]:
    """Top-1 accuracy (%) per task of ``sd`` on ``split``; per-task average: ``catlib.benchmarks.evaluate.average``.
    Private, not ``evaluate.accuracy``: that computes 100 * correct / total (not 100 * mean), other last bits."""
    enc = enc or build_encoder(cfg["model"])
    enc.load_state_dict(sd)
    enc.eval()
    out = {}
    for t in tasks:
        X, Y = task_data(t, split, cfg["data"])
        pred = heads[t](features(enc, X)).argmax(1).numpy()
        out[t] = float(100.0 * (pred == Y).mean())
    return out


def evaluate_zoo(cfg, theta0, finetuned, mtl, heads, tasks, log=print) -> dict:
    enc = build_encoder(cfg["model"])
    ev = lambda sd, split="test": accuracies(cfg, sd, heads, tasks, split, enc)  # noqa: E731
    res = {"pretrained": ev(theta0)}
    res["individual"] = {t: accuracies(cfg, finetuned[t], heads, [t], "test", enc)[t] for t in tasks}
    res["mtl"] = ev(mtl) if mtl is not None else None
    fts = [finetuned[t] for t in tasks]
    res["weight_averaging"] = ev(merge("weight_average", theta0, fts))
    val_curve = {}
    for a in progress(cfg["merge"]["alphas"], desc="task arithmetic alpha grid (val)"):
        val_curve[a] = average(ev(merge("task_arithmetic", theta0, fts, alpha=a), "val"))
    best = max(val_curve, key=lambda a: (val_curve[a], -a))
    res["task_arithmetic"] = dict(
        alpha=best,
        val_curve={str(k): v for k, v in val_curve.items()},
        test=ev(merge("task_arithmetic", theta0, fts, alpha=best)),
    )
    summ = {k: average(res[k]) for k in ("pretrained", "individual", "weight_averaging")}
    summ["mtl"] = average(res["mtl"]) if res["mtl"] else None
    summ["task_arithmetic"] = average(res["task_arithmetic"]["test"])
    res["average"] = summ
    log("test averages: " + ", ".join(f"{k} {v:.1f}" for k, v in summ.items() if v is not None) + f"; TA alpha {best}")
    res["acceptance"] = acceptance(res)
    return res


def acceptance(res: dict) -> dict:
    a = res["average"]
    ind, pre, ta, wa = a["individual"], a["pretrained"], a["task_arithmetic"], a["weight_averaging"]
    alpha = res["task_arithmetic"]["alpha"]
    checks = {
        "individual_avg_ge_85": dict(value=ind, target=">= 85", met=ind >= 85),
        "individual_each_ge_75": dict(
            value=min(res["individual"].values()), target="min >= 75", met=min(res["individual"].values()) >= 75
        ),
        "pretrained_le_individual_minus_20": dict(value=ind - pre, target="Ind - Pre >= 20", met=ind - pre >= 20),
        "ta_ge_pretrained_plus_10": dict(value=ta - pre, target="TA - Pre >= 10", met=ta - pre >= 10),
        "ta_le_individual_minus_10": dict(value=ind - ta, target="Ind - TA >= 10", met=ind - ta >= 10),
        "ta_alpha_in_0.2_0.6": dict(value=alpha, target="0.2 <= alpha <= 0.6", met=0.2 <= alpha <= 0.6),
        "wa_below_ta": dict(value=ta - wa, target="TA - WA > 0", met=ta > wa),
    }
    return checks
