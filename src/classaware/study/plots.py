"""PNG plots of a study (matplotlib, Agg backend). Each function writes one file and returns it.

Example
-------
>>> from classaware.study.plots import plot_table
>>> plot_table(["variant", "acc"], [["ce", "90.1"]], "table.png")   # doctest: +SKIP
PosixPath('table.png')
"""

from __future__ import annotations

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
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=110, bbox_inches="tight", metadata={"Software": None})
    _plt().close(fig)
    return p


def plot_table(header: Sequence[str], rows: Sequence[Sequence[str]], path: str | Path,
               *, title: str = "", highlight_rows: Sequence[int] = ()) -> Path:
    """The comparison table as an image (``highlight_rows`` are shaded)."""
    plt = _plt()
    ncol = max(len(header), 1)
    width = min(28.0, max(6.0, 1.6 * ncol))
    import textwrap

    labels = ["\n".join(textwrap.wrap(str(h), 14)) or " " for h in header]
    lines = max(lab.count("\n") + 1 for lab in labels)
    units = lines + 1.5 * max(len(rows), 1)
    fig, ax = plt.subplots(figsize=(width, 0.2 * units + (0.45 if title else 0.1)))
    ax.axis("off")
    table = ax.table(cellText=[list(r) for r in rows] or [[""] * ncol], colLabels=labels,
                     loc="center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    table.auto_set_column_width(col=list(range(ncol)))
    for (r, _c), cell in table.get_celld().items():
        cell.set_height((lines + 0.3 if r == 0 else 1.5) / (units + 0.3))
    for (r, _c), cell in table.get_celld().items():
        if r == 0:
            cell.set_facecolor("#dde4ee")
            cell.set_text_props(weight="bold")
        elif (r - 1) in highlight_rows:
            cell.set_facecolor("#eef6ea")
    if title:
        ax.set_title(title, fontsize=11)
    return _save(fig, path)


def plot_recall_bars(class_names: Sequence[str], means: dict[str, Sequence[float]],
                     sds: dict[str, Sequence[float]], path: str | Path, *,
                     important: Sequence[str] = ()) -> Path:
    """Grouped bars: test recall of every class, one bar per variant (mean over seeds, sd whiskers)."""
    plt = _plt()
    variants = list(means)
    c = len(class_names)
    w = 0.8 / max(len(variants), 1)
    fig, ax = plt.subplots(figsize=(max(7.0, 0.9 * c + 2), 4.2))
    x = np.arange(c)
    for i, v in enumerate(variants):
        m = np.asarray(means[v], dtype=float) * 100
        e = np.nan_to_num(np.asarray(sds.get(v, [0] * c), dtype=float) * 100)
        ax.bar(x - 0.4 + w * (i + 0.5), m, w, yerr=e, label=v, capsize=1.5)
    labels = [f"{n}*" if n in important else n for n in class_names]
    ax.set_xticks(x, labels, rotation=30, ha="right")
    for t, n in zip(ax.get_xticklabels(), class_names):
        if n in important:
            t.set_fontweight("bold")
    ax.set_ylabel("test recall (%)")
    ax.set_ylim(0, 105)
    ax.set_title("Per-class test recall (mean over seeds; * = important)")
    ax.legend(fontsize=8, ncol=min(4, len(variants)), loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_confusions(matrices: dict[str, Any], class_names: Sequence[str], path: str | Path) -> Path:
    """Row-normalised test confusion matrices (summed over seeds), one panel per variant."""
    plt = _plt()
    n = max(len(matrices), 1)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    c = len(class_names)
    size = max(3.2, 0.38 * c + 1.2)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    show_text = c <= 12
    for ax, (name, cm) in zip(axes.flat, matrices.items()):
        ax.axis("on")
        m = np.asarray(cm, dtype=float)
        rows = m.sum(axis=1, keepdims=True)
        norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
        ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
        ax.set_title(name, fontsize=9)
        ticks = np.arange(c)
        short = [s[:8] for s in class_names] if c <= 20 else [""] * c
        ax.set_xticks(ticks, short, rotation=90, fontsize=6)
        ax.set_yticks(ticks, short, fontsize=6)
        ax.set_xlabel("predicted", fontsize=7)
        ax.set_ylabel("true", fontsize=7)
        if show_text:
            for i in range(c):
                for j in range(c):
                    if norm[i, j] >= 0.005:
                        ax.text(j, i, f"{norm[i, j] * 100:.0f}", ha="center", va="center",
                                fontsize=5, color="white" if norm[i, j] > 0.5 else "black")
    fig.suptitle("Test confusion matrices (row-normalised %, summed over seeds)", fontsize=10)
    return _save(fig, path)


def plot_training_curves(histories: dict[str, list[list[dict[str, Any]]]], path: str | Path, *,
                         important: Sequence[str] = ()) -> Path:
    """Train loss, validation accuracy and (with important classes) the mean validation recall of
    the important classes per epoch; one line per variant (mean over seeds)."""
    plt = _plt()
    panels = [("train_loss", "train loss"), ("val_accuracy", "val accuracy (%)")]
    if important:
        panels.append(("val_important", f"val recall of {', '.join(important)} (%)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
    for variant, runs in histories.items():
        series: dict[str, dict[int, list[float]]] = {k: {} for k, _ in panels}
        for hist in runs:
            for h in hist:
                e = int(h.get("epoch", 0))
                val = h.get("val") or {}
                vals = {"train_loss": h.get("train_loss"),
                        "val_accuracy": None if val.get("accuracy") is None else 100 * val["accuracy"]}
                if important:
                    rec = [val.get("important_recall", {}).get(n) for n in important]
                    rec = [r for r in rec if r is not None]
                    vals["val_important"] = 100 * float(np.mean(rec)) if rec else None
                for k, v in vals.items():
                    if v is not None and k in series:
                        series[k].setdefault(e, []).append(float(v))
        for ax, (k, _label) in zip(axes[0], panels):
            if series[k]:
                xs = sorted(series[k])
                ax.plot(xs, [np.mean(series[k][x]) for x in xs], marker="o",
                        ms=3, label=variant)
    from matplotlib.ticker import MaxNLocator

    for ax, (_k, label) in zip(axes[0], panels):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    return _save(fig, path)


def plot_tradeoff(baseline_curves: Sequence[tuple[Sequence[float], Sequence[float]]],
                  points: dict[str, tuple[float, float, float, float]], path: str | Path, *,
                  class_name: str, baseline: str,
                  baseline_targets: Sequence[tuple[float, float]] = ()) -> Path:
    """Recall of ``class_name`` vs accuracy (test, %): the baseline's threshold curves (one per
    seed) and every variant's own operating point ``(recall, accuracy, sd_recall, sd_accuracy)``
    (mean over seeds). A variant above the curve beats threshold moving."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for i, (rec, acc) in enumerate(baseline_curves):
        r = np.asarray(rec, dtype=float) * 100
        a = np.asarray(acc, dtype=float) * 100
        order = np.argsort(r, kind="stable")
        ax.plot(r[order], a[order], color="0.55", lw=1, alpha=0.8,
                label=f"{baseline} + threshold (per seed)" if i == 0 else None)
    if baseline_targets:
        bt = np.asarray(baseline_targets, dtype=float) * 100
        ax.scatter(bt[:, 0], bt[:, 1], marker="x", color="0.3", zorder=3,
                   label=f"{baseline} + bias chosen on val (targets)")
    for name, (r, a, sr, sa) in points.items():
        ax.errorbar(r * 100, a * 100, xerr=sr * 100, yerr=sa * 100, fmt="o", ms=6, capsize=2,
                    label=name, zorder=4)
    ax.set_xlabel(f"test recall of {class_name} (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Recall of {class_name} vs accuracy: losses vs threshold moving", fontsize=10)
    ys = [a * 100 for (_r, a, _s, _t) in points.values()]
    if ys:
        lo = min(ys) - 6
        ax.set_ylim(max(0.0, lo), min(100.0, max(ys) + 3))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    return _save(fig, path)


def plot_angles(class_names: Sequence[str], angles: dict[str, tuple[Sequence[float], Sequence[float]]],
                path: str | Path, *, important: Sequence[str] = ()) -> Path:
    """Per class: mean ± sd of the angle (degrees) between a test feature and its class weight,
    one marker series per cosine-head variant (averaged over seeds)."""
    plt = _plt()
    c = len(class_names)
    fig, ax = plt.subplots(figsize=(max(7.0, 0.8 * c + 2), 4.0))
    x = np.arange(c)
    k = max(len(angles), 1)
    for i, (name, (mean, sd)) in enumerate(angles.items()):
        off = (i - (k - 1) / 2) * (0.7 / k)
        ax.errorbar(x + off, np.asarray(mean, dtype=float), yerr=np.asarray(sd, dtype=float),
                    fmt="o", ms=4, capsize=2, label=name)
    labels = [f"{n}*" if n in important else n for n in class_names]
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_ylabel("angle to class weight (degrees)")
    ax.set_title("Per-class angle distribution on test (mean ± sd; cosine heads)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)
