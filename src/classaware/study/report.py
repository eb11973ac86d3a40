"""Render a study's analysis: report.md, report.html, report.csv and the PNG plots.

:func:`~classaware.study.analysis.analyze` computes everything as data (a
:class:`~classaware.study.analysis.StudyAnalysis`); this module only renders it.  The report opens
with the verdict (:mod:`classaware.study.verdict`).  Percentages in the tables are ``100 ×`` the
fractions; ``a ± h`` is the mean and the half-width of its 95% t interval; ``Δ`` columns are
paired differences to the baseline with the paired t-test's p-value (``n/a`` with fewer than 2
paired seeds).  Every file is written atomically (temporary file, then ``os.replace``).

Example
-------
>>> from classaware.study.spec import load_study
>>> from classaware.study.report import write_report
>>> study = load_study("important-class")          # doctest: +SKIP
>>> write_report(study, "runs/important-class")    # doctest: +SKIP
PosixPath('runs/important-class/report.html')
"""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import html
import io
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from classaware.classes import class_label
from classaware.study.aggregate import (
    NOT_FRACTION,
    Paired,
    Summary,
    metric_label,
    metric_scale,
    run_metrics,
)
from classaware.study.analysis import StudyAnalysis, analyze
from classaware.study.spec import PRESET_DIR, Study
from classaware.study.verdict import ALPHA, verdict_lines

Block = tuple[Any, ...]
PAST = "†"  # marks a 95% interval that runs past 0–100 %


# --------------------------------------------------------------------------------------------
# formatting


def past_bounds(s: Summary, metric: str = "accuracy") -> bool:
    """True when the interval of a fraction metric runs past [0, 1] (few seeds, large spread)."""
    if metric in NOT_FRACTION or s.ci_low is None or s.ci_high is None:
        return False
    return s.ci_low < 0.0 or s.ci_high > 1.0


def fmt_stat(s: Summary | None, metric: str = "accuracy") -> str:
    """``mean ± half-width`` (×100 for fractions, ``†`` when the interval runs past 0–100 %);
    just the mean when n < 2; ``–`` when empty."""
    if s is None or s.mean is None:
        return "–"
    k = metric_scale(metric)
    if s.half_width is None:
        return f"{k * s.mean:.2f}"
    return f"{k * s.mean:.2f} ± {k * s.half_width:.2f}{PAST if past_bounds(s, metric) else ''}"


def fmt_diff(d: Paired | None, metric: str = "accuracy") -> str:
    """``+1.23 (p=0.041)``; ``(n/a)`` when there is no test; ``–`` without a paired seed."""
    if d is None or d.mean is None:
        return "–"
    p = "n/a" if d.p is None else f"p={d.p:.3g}"
    return f"{metric_scale(metric) * d.mean:+.2f} ({p})"


def _shown_path(source: str) -> str:
    """A study file as the report names it: ``preset <name>`` or the file name (no machine path)."""
    if source.startswith("<"):
        return source
    p = Path(source)
    return f"preset {p.stem}" if p.parent == PRESET_DIR else p.name


# --------------------------------------------------------------------------------------------
# tables


def _diff_metrics(a: StudyAnalysis, metrics: list[str]) -> set[str]:
    out = {"accuracy"} | {m for m in metrics if m.startswith("recall[")}
    if a.study.groups:
        out.add("group_accuracy")
    if a.study.ordinal:
        out.add("mean_abs_class_error")
    return out


def comparison_table(a: StudyAnalysis) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the comparison table (one row per variant with finished runs)."""
    study = a.study
    metrics = list(a.agg.metrics) if a.agg else []
    diffs = _diff_metrics(a, metrics)
    header = ["variant", "head", "n"]
    for m in metrics:
        header.append(metric_label(m) + (" (%)" if m not in NOT_FRACTION else ""))
        if m in diffs:
            header.append(f"Δ {metric_label(m)} vs {study.baseline}")
    header.append(f"acc kept (Δ ≥ -{study.accuracy_tolerance:g} pt)")
    rows = []
    for v in a.variants:
        info = a.agg.variants.get(v) if a.agg else None
        if info is None or not info.n:
            continue
        row = [v, a.heads.get(v, "–"), str(info.n)]
        for m in metrics:
            row.append(fmt_stat(info.stats.get(m), m))
            if m in diffs:
                row.append("—" if v == study.baseline else fmt_diff(info.diff.get(m), m))
        kept = info.accuracy_kept
        row.append("baseline" if v == study.baseline else
                   "–" if kept is None else "yes" if kept else "no")
        rows.append(row)
    return header, rows


def threshold_table(a: StudyAnalysis, cname: str) -> tuple[list[str], list[list[str]]]:
    """Per variant: its own test point, the baseline curve's accuracy at the same recall, the
    difference, and the val-chosen bias points for each target recall."""
    study = a.study
    header = ["variant", f"recall {class_label(cname)} (%)", "accuracy (%)",
              f"{study.baseline}+threshold acc at same recall (%)", "Δ acc vs threshold"]
    header += [f"target {tr:g}: test recall / acc (%)" for tr in study.target_recalls]
    rows = []
    for v, s in a.threshold[cname].variants.items():
        row = [v, fmt_stat(s.recall), fmt_stat(s.accuracy), fmt_stat(s.curve_accuracy),
               fmt_diff(s.vs_curve) if s.vs_curve.n else "–"]
        for tp in s.targets:
            r, acc = tp.test_recall.mean, tp.test_accuracy.mean
            row.append("unreached" if r is None or acc is None
                       else f"{100 * r:.1f} / {100 * acc:.2f}")
        rows.append(row)
    return header, rows


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_value(x) for x in v)
    return str(v)


def _flat(overrides: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in overrides:
        if isinstance(value, dict):
            out.update(_flat((f"{key}.{k}", v) for k, v in value.items()))
        else:
            out[key] = value
    return out


def variants_table(a: StudyAnalysis) -> tuple[list[str], list[list[str]]]:
    """One row per variant: loss, its settings, the model head, and any other override."""
    rows = []
    for v in a.study.variants:
        flat = _flat(v.overrides)
        loss = flat.pop("loss.name", (a.study.base.get("loss") or {}).get("name", "–"))
        flat.pop("model.head", None)
        settings = [f"{k[5:]} = {_value(x)}" for k, x in flat.items() if k.startswith("loss.")]
        other = [f"{k} = {_value(x)}" for k, x in flat.items() if not k.startswith("loss.")]
        rows.append([v.name, str(loss), "; ".join(settings) or "–", a.heads.get(v.name, "–"),
                     "; ".join(other) or "–"])
    header = ["variant", "loss", "loss settings", "head", "other settings"]
    if all(r[-1] == "–" for r in rows):  # no variant changes anything but its loss
        header, rows = header[:-1], [r[:-1] for r in rows]
    return header, rows


def csv_rows(a: StudyAnalysis) -> tuple[list[str], list[list[str]]]:
    """One row per planned run: identification, status, final test metrics, threshold points,
    and ``train_seconds`` (the only timing column)."""
    study = a.study
    names, imp = a.class_names, a.important
    by_name = {r.name: r for r in a.records}
    metric_keys = list(a.agg.metrics) if a.agg else []
    thr_keys = [f"thr{tr:g}_{k}[{c}]" for c in imp for tr in study.target_recalls
                for k in ("bias", "test_recall", "test_accuracy")]
    header = (["run", "variant", "seed", "status", "best_epoch", "epochs"]
              + [f"test_{m}" for m in metric_keys] + ["val_accuracy", "val_balanced_accuracy"]
              + [f"test_recall[{c}]" for c in names] + thr_keys + ["train_seconds"])
    rows = []
    diverged = {r.name for r in a.diverged}
    for p in a.planned:
        r = by_name.get(p.name)
        if r is None:
            status = "diverged" if p.name in diverged else "missing"
            rows.append([p.name, p.variant, str(p.seed), status] + [""] * (len(header) - 4))
            continue
        m = run_metrics(r.final, important=imp, groups=a.groups, ordinal=study.ordinal)
        vm = run_metrics(r.final, split="val")
        rec = (r.final.get("test") or {}).get("per_class_recall") or []
        row = [p.name, p.variant, str(p.seed), "done", _cell(r.final.get("best_epoch")),
               str(len(r.history))]
        row += [_cell(m.get(k)) for k in metric_keys]
        row += [_cell(vm.get("accuracy")), _cell(vm.get("balanced_accuracy"))]
        row += [_cell(rec[i] if i < len(rec) else None) for i in range(len(names))]
        for c in imp:
            run = a.threshold[c].runs.get(p.name)
            ops = run.ops if run is not None else []
            for i in range(len(study.target_recalls)):
                te = ops[i].test if i < len(ops) else None
                row += [_cell(te.bias), _cell(te.recall), _cell(te.accuracy)] if te else [""] * 3
        row.append(f"{r.train_seconds:.1f}")
        rows.append(row)
    return header, rows


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    f = float(v)
    return "" if math.isnan(f) else f"{f:.6f}"


def format_text_table(header: list[str], rows: list[list[str]]) -> str:
    """A fixed-width text table (for the terminal)."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# plots


def _per_variant(a: StudyAnalysis) -> dict[str, list[Any]]:
    return {v: [r for r in a.records if r.variant == v] for v in a.variants
            if any(r.variant == v for r in a.records)}


def _recall_stats(a: StudyAnalysis) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    c = len(a.class_names)
    means, sds = {}, {}
    for v, mine in _per_variant(a).items():
        pcr = np.array([(r.final.get("test") or {}).get("per_class_recall") or [np.nan] * c
                        for r in mine], dtype=float)
        means[v] = list(np.nanmean(pcr, axis=0))
        sds[v] = list(np.nanstd(pcr, axis=0, ddof=1)) if len(mine) > 1 else [0.0] * c
    return means, sds


def _confusions(a: StudyAnalysis) -> dict[str, np.ndarray]:
    out = {}
    for v, mine in _per_variant(a).items():
        cms = [np.asarray(r.final["test"]["confusion_matrix"], dtype=float) for r in mine
               if (r.final.get("test") or {}).get("confusion_matrix") is not None]
        if cms:
            out[v] = np.sum(cms, axis=0)
    return out


def _angles(a: StudyAnalysis) -> dict[str, tuple[list[float], list[float]]]:
    out = {}
    for v, mine in _per_variant(a).items():
        ang = [((r.final.get("angles") or {}).get("test") or {}) for r in mine]
        ang = [x for x in ang if x.get("mean_deg")]
        if ang:
            zeros = [0.0] * len(a.class_names)
            out[v] = (list(np.mean([x["mean_deg"] for x in ang], axis=0)),
                      list(np.mean([x.get("std_deg") or zeros for x in ang], axis=0)))
    return out


def _tradeoff(a: StudyAnalysis, cname: str, path: Path, colors: dict[str, Any]) -> Path | None:
    from classaware.study import plots

    t = a.threshold[cname]
    pts = {v: (s.recall.mean, s.accuracy.mean, s.recall.sd or 0.0, s.accuracy.sd or 0.0)
           for v, s in t.variants.items()
           if s.recall.mean is not None and s.accuracy.mean is not None}
    if not pts:
        return None
    base = t.variants.get(a.baseline)
    bt = [(tp.test_recall.mean, tp.test_accuracy.mean) for tp in (base.targets if base else [])
          if tp.n]
    return plots.plot_tradeoff([t.curves[s] for s in sorted(t.curves)], pts, path,
                               class_name=cname, baseline=a.baseline, baseline_targets=bt,
                               colors=colors)


def make_plots(a: StudyAnalysis, plot_dir: Path) -> dict[str, Path]:
    """Write every PNG of the report into ``plot_dir``; returns ``{key: path}``.  Every plot gives a
    variant the same colour (:func:`classaware.study.plots.variant_colors`)."""
    from classaware.study import plots

    names, imp = a.class_names, a.important
    colors = plots.variant_colors(a.variants)
    means, sds = _recall_stats(a)
    out = {"recall": plots.plot_recall_bars(names, means, sds, plot_dir / "per_class_recall.png",
                                            important=imp, colors=colors)}
    cms = _confusions(a)
    if cms:
        out["confusion"] = plots.plot_confusions(cms, names, plot_dir / "confusion_matrices.png")
    hists = {v: [r.history for r in mine] for v, mine in _per_variant(a).items()}
    if any(h for hs in hists.values() for h in hs):
        out["curves"] = plots.plot_training_curves(hists, plot_dir / "training_curves.png",
                                                   important=imp, colors=colors)
    for cname in a.threshold:
        p = _tradeoff(a, cname, plot_dir / f"tradeoff_{_slug(cname)}.png", colors)
        if p is not None:
            out[f"tradeoff[{cname}]"] = p
    angles = _angles(a)
    if angles:
        out["angles"] = plots.plot_angles(names, angles, plot_dir / "angles.png", important=imp,
                                          colors=colors)
    return out


def _slug(s: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in s).strip("_") or "class"


# --------------------------------------------------------------------------------------------
# documents


def _settings(a: StudyAnalysis) -> str:
    study = a.study
    data, model = study.base.get("data", {}), study.base.get("model", {})
    train = study.base.get("train", {})
    return (f"Data {data.get('name', '(default)')}"
            + (f" (max_train {data['max_train']})" if data.get("max_train") else "")
            + (f", imbalance {data['imbalance']}" if data.get("imbalance") else "")
            + f"; model {model.get('name', '(default)')}; epochs "
            f"{train.get('epochs', '(default)')}; seeds {study.seeds}; baseline {study.baseline};"
            f" important classes {', '.join(a.important) or 'none'}; {len(a.records)} of "
            f"{len(a.planned)} runs finished.")


def _caveats(a: StudyAnalysis) -> list[str]:
    """Sentences the reader must see next to the comparison: mixed heads, wide intervals."""
    out = []
    by_head: dict[str, list[str]] = {}
    for v in a.variants:
        by_head.setdefault(a.heads.get(v, "–"), []).append(v)
    if len(by_head) > 1:
        groups = "; ".join(f"{', '.join(vs)}: {h} head" for h, vs in by_head.items())
        out.append(f"The variants do not share one model head ({groups}). A difference between "
                   "them is the loss and the head together, not the loss alone.")
    stats = [(s, m) for info in (a.agg.variants.values() if a.agg else ())
             for m, s in info.stats.items()]
    stats += [(s, "accuracy") for t in a.threshold.values() for vt in t.variants.values()
              for s in (vt.recall, vt.accuracy, vt.curve_accuracy)]
    wide = [s.n for s, m in stats if past_bounds(s, m)]
    if wide:
        out.append(f"{PAST} The 95% interval runs past 0–100 %: with {min(wide)} seed(s) the t "
                   "interval is so wide that it bounds nothing; read it as \"the seeds disagree\" "
                   "and add seeds for a usable interval.")
    return out


def _verdict_blocks(a: StudyAnalysis) -> list[Block]:
    lines = verdict_lines(a)
    if not lines:
        return []
    rule = (f"The words follow the rule in docs/study.md: differences are paired over the seeds "
            f"both variants have; significant = two-sided paired t-test p < {ALPHA:g}; accuracy "
            f"kept = paired mean accuracy difference ≥ -{a.study.accuracy_tolerance:g} pt.")
    return [("h2", "Verdict"), ("list", lines), ("p", rule)]


def _comparison_blocks(a: StudyAnalysis) -> list[Block]:
    study = a.study
    header, rows = comparison_table(a)
    kept = [v for v, info in (a.agg.variants.items() if a.agg else ())
            if v != study.baseline and info.accuracy_kept]
    text = (f"Accuracy kept = the paired mean accuracy difference to {study.baseline} is ≥ "
            f"-{study.accuracy_tolerance:g} points. Variants that keep accuracy: "
            f"{', '.join(kept) if kept else 'none'}. Δ = paired difference to {study.baseline} "
            "over the common seeds (percentage points) with the two-sided paired t-test's p "
            "(n/a with fewer than 2 paired seeds).")
    return [("h2", "Comparison (test set, mean ± 95% CI over seeds)"), ("table", header, rows),
            ("p", text)] + [("p", c) for c in _caveats(a)]


def _threshold_blocks(a: StudyAnalysis, images: dict[str, Path]) -> list[Block]:
    base = a.baseline
    out: list[Block] = []
    for cname, t in a.threshold.items():
        h, r = threshold_table(a, cname)
        out += [("h2", f"Threshold moving on {cname}"), ("p", (
            f"The trivial competitor: add a bias b to {cname}'s output. Own = the model's argmax "
            f"(b = 0). The {base}+threshold column is the best accuracy {base}'s test threshold "
            "curve of the same seed reaches at (at least) the variant's recall — an optimistic "
            "envelope for the baseline; Δ > 0 means the loss beats threshold moving. Target "
            "columns: b chosen on the VALIDATION set as the smallest b whose val recall reaches "
            "the target, then applied to test (mean over seeds).")), ("table", h, r)]
        out += [("p", f"Note: {note}") for note in t.notes[:5]]
        if f"tradeoff[{cname}]" in images:
            out.append(("img", images[f"tradeoff[{cname}]"], f"recall of {cname} vs accuracy"))
    return out


FIGURES = (("recall", "Per-class recall", "per-class recall"),
           ("confusion", "Confusion matrices", "confusion matrices"),
           ("curves", "Training curves (mean over seeds)", "training curves"),
           ("angles", "Angles (cosine heads)", "per-class angle distributions"))


def _blocks(a: StudyAnalysis, images: dict[str, Path]) -> list[Block]:
    """The report as blocks: ("h1"|"h2"|"p", text), ("list", lines), ("table", header, rows),
    ("img", path, caption)."""
    study = a.study
    b: list[Block] = [("h1", f"classaware study: {study.name}"), *_verdict_blocks(a)]
    if study.description:
        b.append(("p", study.description))
    b.append(("p", _settings(a)))
    if a.missing:
        b.append(("p", f"Missing (unfinished or failed) runs: {', '.join(a.missing)}."))
    if a.diverged:
        b += [("p", "Diverged runs (a non-finite training loss; left out of every result):"),
              ("list", [f"{r.name}: {r.diverged['message']}" for r in a.diverged])]
    if not a.records:
        return b
    b += _comparison_blocks(a) + _threshold_blocks(a, images)
    for key, title, caption in FIGURES:
        if key in images:
            b += [("h2", title), ("img", images[key], caption)]
    b += [("h2", "Variants"), ("table", *variants_table(a)),
          ("p", f"Per-run metrics: report.csv. Study file: {_shown_path(study.source)}.")]
    return b


def _md_escape(s: str) -> str:
    return str(s).replace("|", "\\|")


def render_markdown(blocks: list[Block], root: Path) -> str:
    """The blocks as Markdown (images linked relative to ``root``)."""
    lines: list[str] = []
    for kind, *rest in blocks:
        if kind in ("h1", "h2"):
            lines += [f"{'#' * int(kind[1])} {rest[0]}", ""]
        elif kind == "p":
            lines += [rest[0], ""]
        elif kind == "list":
            lines += [f"- {x}" for x in rest[0]] + [""]
        elif kind == "table":
            header, rows = rest
            lines.append("| " + " | ".join(_md_escape(h) for h in header) + " |")
            lines.append("|" + "|".join("---" for _ in header) + "|")
            lines += ["| " + " | ".join(_md_escape(c) for c in r) + " |" for r in rows]
            lines.append("")
        elif kind == "img":
            lines += [f"![{rest[1]}]({Path(rest[0]).relative_to(root).as_posix()})", ""]
    return "\n".join(lines)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;
padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.85em}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
td{white-space:nowrap}.scroll{overflow-x:auto}
th{background:#eef1f6}td:first-child,th:first-child{text-align:left}
img{max-width:100%;display:block;margin:1em 0}
p,li{line-height:1.45}
"""


def render_html(blocks: list[Block], *, title: str) -> str:
    """A self-contained HTML page: every image is embedded as a base64 PNG data URI."""
    e = html.escape
    parts = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
             f"<title>{e(title)}</title><style>{_CSS}</style></head><body>"]
    for kind, *rest in blocks:
        if kind in ("h1", "h2"):
            parts.append(f"<{kind}>{e(rest[0])}</{kind}>")
        elif kind == "p":
            parts.append(f"<p>{e(rest[0])}</p>")
        elif kind == "list":
            parts.append("<ul>" + "".join(f"<li>{e(x)}</li>" for x in rest[0]) + "</ul>")
        elif kind == "table":
            parts.append("<div class=\"scroll\"><table><thead><tr>"
                         + "".join(f"<th>{e(h)}</th>" for h in rest[0]) + "</tr></thead><tbody>")
            parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rest[1]]
            parts.append("</tbody></table></div>")
        elif kind == "img":
            data = base64.b64encode(Path(rest[0]).read_bytes()).decode("ascii")
            parts.append(f"<figure><img alt=\"{e(rest[1])}\" src=\"data:image/png;base64,{data}\">"
                         f"<figcaption>{e(rest[1])}</figcaption></figure>")
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(f"<p><small>generated by classaware {stamp}</small></p></body></html>")
    return "\n".join(parts)


def _csv_text(a: StudyAnalysis) -> str:
    header, rows = csv_rows(a)
    if not a.records:  # nothing finished: identification and status only
        header, rows = header[:4], [r[:4] for r in rows]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def write_report(study: Study, out: str | Path, *,
                 analysis: StudyAnalysis | None = None) -> Path:
    """Write report.md, report.html, report.csv and plots/*.png into ``out`` (each file
    atomically); returns the path of report.html."""
    from classaware._io import atomic_write_bytes

    root = Path(out)
    a = analysis if analysis is not None else analyze(study, root)
    images = make_plots(a, root / "plots") if a.records else {}
    blocks = _blocks(a, images)
    texts = {"report.csv": _csv_text(a), "report.md": render_markdown(blocks, root),
             "report.html": render_html(blocks, title=f"classaware study: {study.name}")}
    for name, text in texts.items():  # rendered first: a rendering error leaves no half report
        atomic_write_bytes(root / name, text.encode())
    return root / "report.html"
