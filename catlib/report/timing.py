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
