"""PNG plots of a study (matplotlib, Agg backend). Each function writes one file and returns it.

A variant has one colour in every plot: :func:`variant_colors` of the study's variants, passed to
each function as ``colors``.  Legends sit outside the axes, so they cover no data.

Example
-------
>>> from classaware.study.plots import plot_recall_bars, variant_colors
>>> plot_recall_bars(["a", "b"], {"ce": [0.9, 0.7]}, {"ce": [0.01, 0.05]}, "recall.png",
...                  colors=variant_colors(["ce"]))                       # doctest: +SKIP
PosixPath('recall.png')
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> Path:
    """Render ``fig`` to PNG bytes and write them atomically to ``path``."""
    from classaware._io import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    _plt().close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def variant_colors(variants: Sequence[str]) -> dict[str, Any]:
    """One colour per variant, in study order (tab10, then tab20 beyond 10 variants)."""
    cmap = _plt().get_cmap("tab10" if len(variants) <= 10 else "tab20")
    return {v: cmap(i % cmap.N) for i, v in enumerate(variants)}


def _legend_outside(ax: Any, **kw: Any) -> None:
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, **kw)


def _class_ticks(ax: Any, class_names: Sequence[str], important: Sequence[str]) -> None:
    ax.set_xticks(np.arange(len(class_names)),
                  [f"{n}*" if n in important else n for n in class_names], rotation=30, ha="right")
    for t, n in zip(ax.get_xticklabels(), class_names):
        if n in important:
            t.set_fontweight("bold")


def plot_recall_bars(class_names: Sequence[str], means: dict[str, Sequence[float]],
                     sds: dict[str, Sequence[float]], path: str | Path, *,
                     important: Sequence[str] = (), colors: dict[str, Any] | None = None) -> Path:
    """Grouped bars: test recall of every class, one bar per variant (mean over seeds, sd whiskers)."""
    plt = _plt()
    colors = colors or variant_colors(list(means))
    c = len(class_names)
    w = 0.8 / max(len(means), 1)
    fig, ax = plt.subplots(figsize=(max(7.0, 0.9 * c + 2), 4.2))
    x = np.arange(c)
    for i, (v, m) in enumerate(means.items()):
        e = np.nan_to_num(np.asarray(sds.get(v, [0] * c), dtype=float) * 100)
        ax.bar(x - 0.4 + w * (i + 0.5), np.asarray(m, dtype=float) * 100, w, yerr=e, label=v,
               capsize=1.5, color=colors.get(v))
    _class_ticks(ax, class_names, important)
    ax.set_ylabel("test recall (%)")
    ax.set_ylim(0, 105)
    ax.set_title("Per-class test recall (mean ± sd over seeds; * = important)")
    _legend_outside(ax)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_confusions(matrices: dict[str, Any], class_names: Sequence[str], path: str | Path) -> Path:
    """Row-normalised test confusion matrices (summed over seeds), one panel per variant, two
    panels a row; full class names, and the percentages written in each cell up to 12 classes."""
    plt = _plt()
    n = max(len(matrices), 1)
    ncols = min(2, n)
    nrows = math.ceil(n / ncols)
    c = len(class_names)
    size = max(3.6, 0.42 * c + 1.6)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False,
                             layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    labels = list(class_names) if c <= 20 else [""] * c
    for ax, (name, cm) in zip(axes.flat, matrices.items()):
        ax.axis("on")
        m = np.asarray(cm, dtype=float)
        rows = m.sum(axis=1, keepdims=True)
        norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
        ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
        ax.set_title(name, fontsize=10)
        ax.set_xticks(np.arange(c), labels, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(np.arange(c), labels, fontsize=8)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("true", fontsize=8)
        if c > 12:
            continue
        for i, j in zip(*np.nonzero(norm >= 0.005)):
            ax.text(j, i, f"{norm[i, j] * 100:.0f}", ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    fig.suptitle("Test confusion matrices (row-normalised %, summed over seeds)", fontsize=11)
    return _save(fig, path)


def _epoch_series(runs: list[list[dict[str, Any]]], keys: list[str],
                  important: Sequence[str]) -> dict[str, dict[int, list[float]]]:
    """Per panel key and epoch: the values of every seed (train loss; val accuracy and the mean val
    recall of the important classes in %)."""
    series: dict[str, dict[int, list[float]]] = {k: {} for k in keys}
    for hist in runs:
        for h in hist:
            val = h.get("val") or {}
            rec = [r for r in ((val.get("important_recall") or {}).get(n) for n in important)
                   if r is not None]
            vals = {"train_loss": h.get("train_loss"),
                    "val_accuracy": None if val.get("accuracy") is None else 100 * val["accuracy"],
                    "val_important": 100 * float(np.mean(rec)) if rec else None}
            for k in keys:
                if vals[k] is not None:
                    series[k].setdefault(int(h.get("epoch", 0)), []).append(float(vals[k]))
    return series


def plot_training_curves(histories: dict[str, list[list[dict[str, Any]]]], path: str | Path, *,
                         important: Sequence[str] = (),
                         colors: dict[str, Any] | None = None) -> Path:
    """Train loss, validation accuracy and (with important classes) the mean validation recall of
    the important classes per epoch; one line per variant, the mean over its seeds."""
    from matplotlib.ticker import MaxNLocator

    plt = _plt()
    colors = colors or variant_colors(list(histories))
    panels = [("train_loss", "train loss"), ("val_accuracy", "val accuracy (%)")]
    if important:
        panels.append(("val_important", f"val recall of {', '.join(important)} (%)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
    for variant, runs in histories.items():
        series = _epoch_series(runs, [k for k, _ in panels], important)
        for ax, (k, _label) in zip(axes[0], panels):
            xs = sorted(series[k])
            if xs:
                ax.plot(xs, [np.mean(series[k][x]) for x in xs], marker="o", ms=3,
                        color=colors.get(variant), label=f"{variant} ({len(runs)} seeds)")
    for ax, (_k, label) in zip(axes[0], panels):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_title(f"{label}, mean over seeds", fontsize=10)
        ax.grid(alpha=0.3)
    _legend_outside(axes[0][-1])
    return _save(fig, path)


def plot_tradeoff(baseline_curves: Sequence[tuple[Sequence[float], Sequence[float]]],
                  points: dict[str, tuple[float, float, float, float]], path: str | Path, *,
                  class_name: str, baseline: str,
                  baseline_targets: Sequence[tuple[float, float]] = (),
                  colors: dict[str, Any] | None = None) -> Path:
    """Recall of ``class_name`` vs accuracy (test, %): the baseline's threshold curves (one per
    seed) and every variant's own operating point ``(recall, accuracy, sd_recall, sd_accuracy)``
    (mean over seeds). A variant above the curve beats threshold moving."""
    plt = _plt()
    colors = colors or variant_colors(list(points))
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for i, (rec, acc) in enumerate(baseline_curves):
        r = np.asarray(rec, dtype=float) * 100
        a = np.asarray(acc, dtype=float) * 100
        order = np.argsort(r, kind="stable")
        ax.plot(r[order], a[order], color="0.6", lw=1, alpha=0.8,
                label=f"{baseline} + threshold (per seed)" if i == 0 else None)
    if baseline_targets:
        bt = np.asarray(baseline_targets, dtype=float) * 100
        ax.scatter(bt[:, 0], bt[:, 1], marker="x", color="0.3", zorder=3,
                   label=f"{baseline} + bias chosen on val (targets)")
    for name, (r, a, sr, sa) in points.items():
        ax.errorbar(r * 100, a * 100, xerr=sr * 100, yerr=sa * 100, fmt="o", ms=6, capsize=2,
                    label=f"{name} (own, mean ± sd)", zorder=4, color=colors.get(name))
    ax.set_xlabel(f"test recall of {class_name} (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Recall of {class_name} vs accuracy: losses vs threshold moving", fontsize=10)
    ys = [a * 100 for (_r, a, _s, _t) in points.values()]
    if ys:
        ax.set_ylim(max(0.0, min(ys) - 6), min(100.0, max(ys) + 3))
    ax.grid(alpha=0.3)
    _legend_outside(ax)
    return _save(fig, path)


def plot_angles(class_names: Sequence[str], angles: dict[str, tuple[Sequence[float], Sequence[float]]],
                path: str | Path, *, important: Sequence[str] = (),
                colors: dict[str, Any] | None = None) -> Path:
    """Per class: mean ± sd of the angle (degrees) between a test feature and its class weight,
    one marker series per cosine-head variant (averaged over seeds)."""
    plt = _plt()
    colors = colors or variant_colors(list(angles))
    c = len(class_names)
    fig, ax = plt.subplots(figsize=(max(7.0, 0.8 * c + 2), 4.0))
    x = np.arange(c)
    k = max(len(angles), 1)
    for i, (name, (mean, sd)) in enumerate(angles.items()):
        ax.errorbar(x + (i - (k - 1) / 2) * (0.7 / k), np.asarray(mean, dtype=float),
                    yerr=np.asarray(sd, dtype=float), fmt="o", ms=4, capsize=2, label=name,
                    color=colors.get(name))
    _class_ticks(ax, class_names, important)
    ax.set_ylabel("angle to class weight (degrees)")
    ax.set_title("Per-class angle on test (mean ± sd over samples, averaged over seeds; "
                 "cosine heads)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    _legend_outside(ax)
    return _save(fig, path)
