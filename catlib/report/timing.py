"""Merge cost (Table 9): wall-clock seconds of one merge and its peak RSS increase; a measurement, never cached."""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, Mapping, Optional, Sequence

from ..merge.registry import merge
from ..protocol.session import Session, as_session


class _PeakRSS:
    """Samples this process's resident set size every few ms (psutil), to report a merge's peak RSS increase."""

    def __init__(self, interval: float = 0.005):
        self.interval, self.peak, self.start = interval, 0, 0
        self._stop = threading.Event()
        try:
            import psutil

            self._proc = psutil.Process()
        except ImportError:  # pragma: no cover
            self._proc = None

    def _loop(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self):
        if self._proc is not None:
            self.start = self.peak = self._proc.memory_info().rss
            self._t = threading.Thread(target=self._loop, daemon=True)
            self._t.start()
        return self

    def __exit__(self, *exc):
        if self._proc is not None:
            self._stop.set()
            self._t.join()
            self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def delta_mb(self) -> float:
        return (self.peak - self.start) / 2**20 if self._proc is not None else float("nan")


def time_merge(
    session: Session,
    method: str,
    hparams: Optional[Mapping[str, Any]] = None,
    tasks: Optional[Sequence[str]] = None,
    n_exemplars: Optional[int] = None,
    seed: int = 0,
    repeats: int = 1,
) -> Dict[str, float]:
    """Wall-clock seconds of one merge (statistics collection and the merge itself, separately; best of
    ``repeats``), the peak RSS increase during it (MB, sampled) and ``repeats_total_s``, every repeat's total (the
    noise of the timing). Not cached: a timing is a measurement (each repeat collects its statistics afresh in a
    new Session without a disk cache)."""
    bench = as_session(session).bench
    best, totals = None, []
    for _ in range(max(1, repeats)):
        S = Session(bench, cache=None)
        spec = S.spec(method, hparams, tasks, n_exemplars, seed)
        with _PeakRSS() as mem:
            t0 = time.perf_counter()
            stats = S.statistics(spec)
            t1 = time.perf_counter()
            merge(method, bench.pretrained, bench.finetuned_list(spec.tasks), stats=stats, **spec.hp)
            t2 = time.perf_counter()
        r = {"stats_s": t1 - t0, "merge_s": t2 - t1, "total_s": t2 - t0, "peak_rss_mb": mem.delta_mb}
        totals.append(t2 - t0)
        if best is None or r["total_s"] < best["total_s"]:
            best = r
    return {**best, "repeats_total_s": totals}


def steps_tradeoff(
    session: Session,
    method: str,
    hparams: Mapping[str, Any],
    steps: Sequence[int],
    n_exemplars: Optional[int] = None,
    split: str = "test",
) -> "Any":
    """A method's step count (``steps``, WUDI's and AWD's Adam steps) against its merge time and accuracy: one row
    per step count with ``merge_s`` (one timing, :func:`time_merge`), the average ``split`` accuracy (a cached run)
    and its difference from the largest step count's. ``hparams``: the rest of the configuration (e.g. the one
    chosen on validation)."""
    import pandas as pd

    from ..benchmarks.evaluate import average

    S = as_session(session)
    rows = []
    for n in steps:
        hp = {**hparams, "steps": int(n)}
        t = time_merge(S, method, hp, n_exemplars=n_exemplars)
        rows.append({"steps": int(n), "merge_s": t["merge_s"], "accuracy": average(S.run(method, hp, split=split))})
    df = pd.DataFrame(rows).set_index("steps")
    df["minus the most steps"] = df["accuracy"] - df["accuracy"].loc[max(steps)]
    return df


def time_test_time(
    session: Session,
    method: str,
    hparams: Optional[Mapping[str, Any]] = None,
    steps: Sequence[int] = (5, 20),
    tasks: Optional[Sequence[str]] = None,
    split: str = "test",
    seed: int = 0,
) -> "Any":
    """A test-time method (:mod:`catlib.testtime`) run live with a few step counts: one row per count with the
    adaptation's ``seconds`` (as the method measures them: from its start to its result, no evaluation) and the
    peak RSS increase during it (``peak_rss_mb``, sampled; Adam's state and the activations do not grow with the
    step count, so a short run shows a full run's peak). :func:`per_step_cost` on the rows gives the fixed part
    and the cost per step, from which a full run's time follows. Not cached: a timing is a measurement.
    ``hparams``: the rest of the configuration (``steps`` is set per row)."""
    import pandas as pd

    from ..testtime import TEST_TIME, TestTimeInputs

    S = as_session(session)
    spec, tasks, bench = TEST_TIME.get(method), S.tasks(tasks), S.bench
    unlabelled = S.unlabelled(tasks, split)
    rows = []
    for n in steps:
        hp = spec.validate({**dict(hparams or {}), "steps": int(n)})
        inputs = TestTimeInputs(
            bench.build_module(),
            bench.pretrained,
            bench.finetuned_list(tasks),
            bench.head_list(tasks),
            unlabelled,
            seed,
        )
        with _PeakRSS() as mem:
            r = spec.fn(inputs, **hp)
        rows.append({"steps": int(n), "seconds": r.seconds, "peak_rss_mb": mem.delta_mb})
    return pd.DataFrame(rows).set_index("steps")


def per_step_cost(df, column: str = "merge_s") -> Dict[str, float]:
    """Least-squares ``column ≈ setup_s + per_step_s · steps`` over :func:`steps_tradeoff`'s rows (``column``
    ``"seconds"`` for :func:`time_test_time`'s)."""
    import numpy as np

    x, y = df.index.to_numpy(float), df[column].to_numpy(float)
    slope, intercept = np.polyfit(x, y, 1) if len(x) > 1 else (float("nan"), float(y[0]))
    return {"setup_s": float(intercept), "per_step_s": float(slope)}


# ------------------------------------------------------------------------------------------------------------------
# the benchmarks' stored measurements (benchmarks/*.json, written by benchmarks/fusionbench_compare.py and
# benchmarks/merge_scaling.py on the machine they name): views for the cost page
# ------------------------------------------------------------------------------------------------------------------
def load_benchmark_json(name: str, folder=None) -> Optional[Dict[str, Any]]:
    """A stored benchmark measurement, ``<folder>/<name>.json`` (default folder: the repository's ``benchmarks/``),
    or None when the file does not exist."""
    import json
    from pathlib import Path

    from ..protocol.cache import REPO

    p = Path(folder or REPO / "benchmarks") / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def fusionbench_table(doc: Mapping[str, Any]):
    """One row per method of ``benchmarks/fusionbench_compare.py``'s JSON: seconds and peak MB of both libraries,
    FusionBench's time over catlib's, and the two differences of the merged weights (max over keys)."""
    import pandas as pd

    rows = {}
    for m, r in doc["methods"].items():
        c, f = r["catlib"], r["fusionbench"]
        rows[m] = {
            "catlib s": round(c["seconds"], 2),
            "FusionBench s": round(f["seconds"], 2),
            "FusionBench / catlib": round(f["seconds"] / c["seconds"], 2),
            "catlib peak MB": round(c["peak_mb"]),
            "FusionBench peak MB": round(f["peak_mb"]),
            "max rel. diff. (weights)": f"{r['rel_weights']:.1e}",
            "max rel. diff. (merged Δ)": f"{r['rel_task_vector']:.1e}",
            "largest at": r["worst_key"] or "–",
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def scaling_frame(doc: Mapping[str, Any]):
    """``benchmarks/merge_scaling.py``'s rows as a DataFrame (sweep, experts, width, layers, method, hparams,
    seconds, merge_alloc_mb, inputs_mb)."""
    import pandas as pd

    return pd.DataFrame(doc["rows"])


FLOOR = {"seconds": 1e-3, "merge_alloc_mb": 1.0}  # below these a timing or an allocation is measurement noise


def scaling_plot(doc: Mapping[str, Any], methods: Optional[Sequence[str]] = None):
    """Seconds and the MB each merge allocates above its inputs, against the number of experts (left) and the width
    (right), log-log: the slope is the growth exponent (values below :data:`FLOOR` drawn at it). Returns the
    figure."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    from .names import DISPLAY

    df = scaling_frame(doc)
    methods = list(methods or dict.fromkeys(df["method"]))
    colors = plt.cm.tab20(range(20))
    style = {
        m: dict(color=colors[i % 20], marker="os^D"[i % 4], ls="-" if i < 10 else "--") for i, m in enumerate(methods)
    }
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex="col")
    for j, (sweep, x) in enumerate((("experts", "experts"), ("width", "width"))):
        part = df[df["sweep"] == sweep]
        for i, (col, label) in enumerate((("seconds", "merge seconds"), ("merge_alloc_mb", "MB the merge allocates"))):
            ax = axes[i][j]
            for m in methods:
                g = part[part["method"] == m].sort_values(x)
                ax.plot(g[x], g[col].clip(lower=FLOOR[col]), ms=3, label=DISPLAY.get(m, m), **style[m])
            ax.set(xscale="log", yscale="log", ylabel=label)
            ax.set_xticks(sorted(part[x].unique()), [str(v) for v in sorted(part[x].unique())])
            ax.xaxis.set_minor_locator(NullLocator())
            if i == 1:
                ax.set_xlabel("number of experts" if sweep == "experts" else "model width")
    axes[0][0].set_title("against the number of experts")
    axes[0][1].set_title("against the width")
    axes[0][1].legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    return fig


def growth_table(doc: Mapping[str, Any]):
    """Per method, the log-log slope of seconds and of the MB the merge allocates against the number of experts and
    against the width (least squares over the sweep's points): 1 is linear growth, 2 quadratic."""
    import numpy as np
    import pandas as pd

    from .names import DISPLAY

    df = scaling_frame(doc)
    rows = {}
    for m in dict.fromkeys(df["method"]):
        row = {}
        for sweep in ("experts", "width"):
            g = df[(df["sweep"] == sweep) & (df["method"] == m)]
            x = np.log(g[sweep].to_numpy(float))
            for col, name in (("seconds", "time"), ("merge_alloc_mb", "memory")):
                y = np.log(np.clip(g[col].to_numpy(float), FLOOR[col], None))
                row[f"{name} ~ {sweep}^"] = round(float(np.polyfit(x, y, 1)[0]), 2) if len(g) > 1 else float("nan")
        rows[DISPLAY.get(m, m)] = row
    return pd.DataFrame.from_dict(rows, orient="index")
