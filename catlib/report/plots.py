"""The pages' standard plots (matplotlib, seaborn): lines over a sweep, heat maps, average bars, categorical sweeps."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import torch

from .names import DISPLAY, REFERENCE


def line_plot(
    df,
    x: str,
    y: str,
    hue: Optional[str] = None,
    err: Optional[str] = None,
    ax=None,
    title: Optional[str] = None,
    xlabel: Optional[str] = None,
    ylabel: str = "average accuracy (%)",
    logx: bool = False,
    hlines: Optional[Mapping[str, float]] = None,
    markers: bool = True,
):
    """One line per ``hue`` value (with a ±``err`` band when given), optional horizontal reference lines."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots()
    groups = [(None, df)] if hue is None else list(df.groupby(hue, sort=False))
    for name, g in groups:
        g = g.sort_values(x)
        (line,) = ax.plot(g[x], g[y], marker="o" if markers else None, ms=4, label=None if name is None else str(name))
        if err is not None:
            ax.fill_between(g[x], g[y] - g[err], g[y] + g[err], alpha=0.2, color=line.get_color())
    for label, v in (hlines or {}).items():
        ax.axhline(v, ls="--", lw=1, color="gray")
        ax.annotate(
            label, (1.0, v), xycoords=("axes fraction", "data"), ha="right", va="bottom", fontsize=8, color="gray"
        )
    if logx:
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(df[x].unique()))
        ax.get_xaxis().set_major_formatter(__import__("matplotlib").ticker.ScalarFormatter())
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if hue is not None:
        ax.legend()
    return ax


def heatmap(
    matrix,
    xlabels: Sequence[str],
    ylabels: Sequence[str],
    ax=None,
    title: Optional[str] = None,
    fmt: str = ".2f",
    cmap: str = "RdBu_r",
    center: Optional[float] = 0.0,
    annot: bool = True,
    xlabel: Optional[str] = None,
    ylabel: Optional[str] = None,
    vmin=None,
    vmax=None,
    cbar: bool = True,
    ticksize: float = 8,
):
    """A seaborn heat map of a 2-D array (tensor, numpy or DataFrame values)."""
    import matplotlib.pyplot as plt
    import numpy as np
    import seaborn as sns

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    m = matrix.numpy() if isinstance(matrix, torch.Tensor) else np.asarray(matrix, dtype=float)
    sns.heatmap(
        m,
        ax=ax,
        annot=annot,
        fmt=fmt,
        cmap=cmap,
        center=center,
        xticklabels=list(xlabels),
        yticklabels=list(ylabels),
        annot_kws={"fontsize": 7},
        vmin=vmin,
        vmax=vmax,
        cbar=cbar,
        square=False,
    )
    ax.tick_params(labelsize=ticksize)
    ax.set_yticklabels(ax.get_yticklabels(), rotation=0)
    if title:
        ax.set_title(title)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    return ax


def average_bars(ours, paper_df=None, ours_title: str = "ours", paper_title: str = "paper"):
    """Horizontal bars of the average accuracy per method: ours, and the paper's beside it. Returns the figure."""
    import matplotlib.pyplot as plt

    n = 2 if paper_df is not None else 1
    fig, axes = plt.subplots(1, n, figsize=(9.5 if n == 2 else 5.5, 0.28 * len(ours) + 1.2), squeeze=False)
    ref = {DISPLAY[r] for r in REFERENCE}
    for ax, df, title in zip(axes[0], [ours, paper_df], [ours_title, paper_title]):
        if df is None:
            continue
        s = df["avg"].astype(float)[::-1]
        colors = ["#999999" if i in ref else ("#d62728" if i.startswith("CAT") else "#1f77b4") for i in s.index]
        ax.barh(range(len(s)), s.values, color=colors)
        ax.set_yticks(range(len(s)), s.index, fontsize=8)
        for j, v in enumerate(s.values):
            ax.annotate(f"{v:.1f}", (v, j), xytext=(2, 0), textcoords="offset points", va="center", fontsize=7)
        ax.set_xlim(max(0, s.min() - 10), s.max() + 6)
        ax.set_xlabel("average accuracy (%)")
        ax.set_title(title)
        ax.grid(axis="y", visible=False)
    fig.tight_layout()
    return fig


def category_plot(
    ax,
    labels: Sequence[Any],
    values: Sequence[float],
    xlabel: str,
    title: Optional[str] = None,
    ylabel: str = "average accuracy (%)",
    hlines: Optional[Mapping[str, float]] = None,
):
    """Values at evenly spaced categorical x positions (for sweeps such as λ ∈ {0, 0.1, 1, 10, 100})."""
    xs = list(range(len(values)))
    ax.plot(xs, list(values), marker="o", ms=4)
    ax.set_xticks(xs, [f"{v:g}" if isinstance(v, (int, float)) else str(v) for v in labels])
    for j, v in enumerate(values):
        ax.annotate(f"{v:.1f}", (j, v), xytext=(0, 4), textcoords="offset points", ha="center", fontsize=7)
    for label, v in (hlines or {}).items():
        ax.axhline(v, ls="--", lw=1, color="gray")
        ax.annotate(
            label, (1.0, v), xycoords=("axes fraction", "data"), ha="right", va="bottom", fontsize=8, color="gray"
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return ax
