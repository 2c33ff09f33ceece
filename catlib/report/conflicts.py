"""The knowledge-conflict pages (Fig. 3/5, Theorem 4.4), cached in a :class:`~catlib.protocol.Session`: ΔL
matrices, pair grids and bound tables for task arithmetic's τ_i and CAT's trimmed τ̃_i. Each function takes a
Session (or a benchmark, for which it opens one)."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch

from ..benchmarks.base import Benchmark
from ..core.statedict import task_vectors
from ..merge.cat import Trim, trim
from ..merge.registry import get_method
from ..protocol.session import Session, as_session
from .names import ANALOGUE, DISPLAY


def eval_batches(bench: Benchmark, tasks: Optional[Sequence[str]] = None, n: int = 64, split: str = "val"):
    """The first ``n`` labelled images of each task's ``split`` (deterministic), one ``(x, y)`` per task."""
    out = []
    for t in bench._check_tasks(tasks):
        x, y = next(iter(bench.loader(t, split, batch_size=n)))
        out.append((x.to(bench.device), y.to(bench.device)))
    return out


def trimmed_vectors(
    session: Session,
    hparams: Mapping[str, Any],
    tasks: Optional[Sequence[str]] = None,
    n_exemplars: Optional[int] = None,
    seed: int = 0,
):
    """CAT's trimmed task vectors τ̃_i (Algorithm 1, steps 1-3) for ``tasks``, with CAT hyperparameters
    ``hparams`` (α only matters with ``features="scaled"``)."""
    S = as_session(session)
    spec = S.spec("cat", hparams, tasks, n_exemplars, seed)
    hp, b = spec.hp, S.bench
    return trim(
        task_vectors(b.pretrained, b.finetuned_list(spec.tasks)),
        S.statistics(spec),
        **{f: hp[f] for f in Trim.__dataclass_fields__},
    )


def removed_energy_table(
    session: Session, hparams: Mapping[str, Any], n_exemplars: Optional[int] = None, seed: int = 0, decimals: int = 4
):
    """Where CAT's trimming acts at ``hparams``, per parameter kind (:func:`catlib.analysis.premise.removed_energy`):
    a DataFrame with the kind's share of the task vectors' energy, the share of it CAT removes, and the number of
    tensors."""
    import pandas as pd

    from ..analysis.premise import removed_energy

    S = as_session(session)
    spec = S.spec("cat", hparams, None, n_exemplars, seed)
    vectors = task_vectors(S.bench.pretrained, S.bench.finetuned_list(spec.tasks))
    out = removed_energy(vectors, trimmed_vectors(S, hparams, None, n_exemplars, seed), S.statistics(spec).layers)
    df = pd.DataFrame.from_dict(out, orient="index").rename(
        columns={"share": "share of ‖τ‖²", "removed": "share of it CAT removes", "keys": "tensors"}
    )
    df["tensors"] = df["tensors"].astype(int)
    return df.round(decimals)


def scaled(vectors: Sequence[Mapping[str, torch.Tensor]], alpha: float) -> List[Dict[str, torch.Tensor]]:
    return [{k: alpha * v[k] for k in v} for v in vectors]


def _compared(name: str, hp: Mapping[str, Any], n_exemplars: int, seed: int) -> Dict[str, Any]:
    """Cache-key parts of one side of a conflict comparison: CAT's depend on its hyperparameters and exemplars,
    task arithmetic's on nothing more."""
    cat = name == "cat"
    n = (get_method("cat").exemplars if n_exemplars is None else n_exemplars) if cat else None
    return dict(method=name, hp=hp if cat else {}, n_exemplars=n, seed=seed if cat else None)


def _compared_vectors(
    S: Session, name: str, hp: Mapping[str, Any], tasks: Optional[Sequence[str]], n_exemplars: int, seed: int
):
    """The vectors compared in the conflict pages: τ_i (``"task_arithmetic"``) or CAT's trimmed τ̃_i (``"cat"``)."""
    if name == "task_arithmetic":
        return task_vectors(S.bench.pretrained, S.bench.finetuned_list(tasks))
    return trimmed_vectors(S, hp, tasks, n_exemplars, seed)


def bound_rows(
    bench: Benchmark,
    vectors: Sequence[Mapping[str, torch.Tensor]],
    batches,
    tasks: Sequence[str],
    lipschitz: str = "ball",
) -> List[Dict[str, Any]]:
    """Theorem 4.4 for every ordered pair (k, i), k ≠ i: measured ΔL_{k|i}, the bound, tightness, and the stage
    terms (β Π γ ‖Δf̂^l‖) of the bound."""
    from ..analysis.conflict import theorem44

    module = bench.build_module()
    rows = []
    for k, tk in enumerate(tasks):
        for i, ti in enumerate(tasks):
            if i == k:
                continue
            rep = theorem44(module, bench.heads[tk], bench.finetuned[tk], vectors[i], *batches[k], lipschitz=lipschitz)
            rows.append(
                {
                    "k": tk,
                    "i": ti,
                    "delta_loss": rep.delta_loss,
                    "bound": rep.bound,
                    "holds": rep.holds,
                    "tightness": rep.tightness,
                    "beta": rep.beta,
                    "stage_fhat": dict(zip(rep.stage_names, rep.delta_f_hat)),
                }
            )
    return rows


def bench_tasks(bench: Benchmark, paper_names: Sequence[str]) -> List[str]:
    """Map the paper's dataset names to the benchmark's task names (tiny: via the analogues)."""
    inv = {v: k for k, v in ANALOGUE.items()}
    return [n if n in bench.all_tasks else inv[n] for n in paper_names]


def consecutive_pairs(tasks: Sequence[str]) -> List[List[str]]:
    """Fig. 5's pairs: each task with the next one in the paper's order."""
    return [[tasks[j], tasks[j + 1]] for j in range(len(tasks) - 1)]


def conflict_matrices(
    session: Session,
    cat_hparams: Mapping[str, Any],
    alpha: float,
    n: int = 64,
    n_exemplars: Optional[int] = None,
    seed: int = 0,
    split: str = "val",
    cache=None,
) -> Dict[str, torch.Tensor]:
    """ΔL_{k|i} = L_k(θ_k + α v_i) − L_k(θ_k) for every ordered pair, with v_i = τ_i (task arithmetic) and
    v_i = τ̃_i (CAT's trimmed vector, ``cat_hparams``), on the first ``n`` images of each task's ``split``."""
    from ..analysis.conflict import conflict_matrix

    S = as_session(session, cache)
    bench, hp = S.bench, get_method("cat").validate(dict(cat_hparams))
    out = {}
    for name in ("task_arithmetic", "cat"):
        key = S.key(
            "matrix", alpha=alpha, n=n, split=split, tasks=list(bench.tasks), **_compared(name, hp, n_exemplars, seed)
        )

        def compute(name=name):
            vecs = _compared_vectors(S, name, hp, None, n_exemplars, seed)
            return conflict_matrix(
                bench.build_module(),
                bench.head_list(),
                bench.pretrained,
                bench.finetuned_list(),
                eval_batches(bench, None, n, split),
                scaled(vecs, alpha),
            )

        out[name] = torch.tensor(S.cached("conflict", key, compute), dtype=torch.float64)
    return out


def pair_grids(
    session: Session,
    pairs: Sequence[Sequence[str]],
    cat_hparams: Mapping[str, Any],
    alphas: Sequence[float],
    n: int = 64,
    n_exemplars: Optional[int] = None,
    seed: int = 0,
    split: str = "val",
    cache=None,
) -> Dict[tuple, Dict[str, torch.Tensor]]:
    """Fig. 3/5: for each pair (a, b), the summed conflict ΔL_{a|b} + ΔL_{b|a} of θ0 + α_a v_a + α_b v_b over the
    (α_a, α_b) grid, with v = τ (task arithmetic) and v = τ̃ (CAT, trimmed for the pair: a two-model merge)."""
    from ..analysis.conflict import pair_conflict_grid

    S = as_session(session, cache)
    bench, hp = S.bench, get_method("cat").validate(dict(cat_hparams))
    out: Dict[tuple, Dict[str, torch.Tensor]] = {}
    for a, b in pairs:
        out[(a, b)] = {}
        for name in ("task_arithmetic", "cat"):
            key = S.key(
                "pair", pair=[a, b], alphas=list(alphas), n=n, split=split, **_compared(name, hp, n_exemplars, seed)
            )

            def compute(name=name, a=a, b=b):
                vecs = _compared_vectors(S, name, hp, [a, b], n_exemplars, seed)
                return pair_conflict_grid(
                    bench.build_module(),
                    bench.head_list([a, b]),
                    bench.pretrained,
                    (vecs[0], vecs[1]),
                    eval_batches(bench, [a, b], n, split),
                    list(alphas),
                )

            out[(a, b)][name] = torch.tensor(S.cached("conflict", key, compute), dtype=torch.float64)
    return out


def bound_frames(
    session: Session,
    cat_hparams: Mapping[str, Any],
    alpha: float,
    n: int = 64,
    n_exemplars: Optional[int] = None,
    seed: int = 0,
    split: str = "val",
    lipschitz: str = "ball",
    cache=None,
):
    """Theorem 4.4 for every ordered pair, for v_i = α τ_i (task arithmetic) and α τ̃_i (CAT). Returns
    ``{method: DataFrame}`` with columns k, i, ΔL, bound, tightness, holds and one column per stage (‖Δf̂^l‖)."""
    import pandas as pd

    S = as_session(session, cache)
    bench, hp = S.bench, get_method("cat").validate(dict(cat_hparams))
    out = {}
    for name in ("task_arithmetic", "cat"):
        key = S.key(
            "bound",
            alpha=alpha,
            n=n,
            split=split,
            lipschitz=lipschitz,
            tasks=list(bench.tasks),
            **_compared(name, hp, n_exemplars, seed),
        )

        def compute(name=name):
            vecs = _compared_vectors(S, name, hp, None, n_exemplars, seed)
            return bound_rows(bench, scaled(vecs, alpha), eval_batches(bench, None, n, split), bench.tasks, lipschitz)

        rows = S.cached("conflict", key, compute)
        df = pd.DataFrame([{k: v for k, v in r.items() if k != "stage_fhat"} for r in rows])
        stages_df = pd.DataFrame([r["stage_fhat"] for r in rows])
        out[name] = pd.concat([df, stages_df.add_prefix("‖Δf̂‖ ")], axis=1)
    return out


def bound_summary(frames: Mapping[str, Any], decimals: int = 3):
    """Per method: pairs, how many satisfy the bound, tightness |ΔL|/bound (median, max), mean |ΔL| and bound."""
    import pandas as pd

    rows = {}
    for m, df in frames.items():
        rows[DISPLAY.get(m, m)] = {
            "pairs": len(df),
            "bound holds": int(df["holds"].sum()),
            "median tightness": df["tightness"].median(),
            "max tightness": df["tightness"].max(),
            "mean |ΔL|": df["delta_loss"].abs().mean(),
            "mean bound": df["bound"].mean(),
        }
    return pd.DataFrame.from_dict(rows, orient="index").round(decimals)
