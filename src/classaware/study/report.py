"""Analyse a study directory and write its report: report.md, report.html, report.csv, PNG plots.

:func:`analyze` reads every finished run (final.json, metrics.jsonl, outputs.npz), aggregates
over seeds (:mod:`classaware.study.aggregate`) and runs the threshold-moving analysis
(:mod:`classaware.study.threshold`); :func:`write_report` renders it.  Percentages in the tables
are ``100 ×`` the fractions; ``a ± h`` is the mean and the half-width of its 95% t interval;
``Δ`` columns are paired differences to the baseline with the paired t-test's p-value (``n/a``
with fewer than 2 paired seeds).

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
from pathlib import Path
from typing import Any

import numpy as np

from classaware.study import threshold as thr
from classaware.study.aggregate import (
    RunRecord,
    aggregate,
    class_index,
    load_run,
    paired_difference,
    run_metrics,
    summarize,
)
from classaware.study.runner import plan_runs
from classaware.study.spec import Study

NOT_FRACTION = {"mean_abs_class_error"}
LABELS = {
    "accuracy": "accuracy", "balanced_accuracy": "bal. acc", "macro_f1": "macro-F1",
    "many_shot_accuracy": "many", "medium_shot_accuracy": "medium", "few_shot_accuracy": "few",
    "group_accuracy": "group acc", "group_accuracy_mistakes": "group acc (mistakes)",
    "mean_abs_class_error": "MAE (classes)",
}


# --------------------------------------------------------------------------------------------
# formatting


def _scale(metric: str) -> float:
    return 1.0 if metric in NOT_FRACTION else 100.0


def fmt_stat(s: dict[str, Any] | None, metric: str = "accuracy") -> str:
    """``mean ± half-width`` (×100 for fractions); just the mean when n < 2; ``–`` when empty."""
    if not s or s.get("mean") is None:
        return "–"
    k = _scale(metric)
    if s.get("half_width") is None:
        return f"{k * s['mean']:.2f}"
    return f"{k * s['mean']:.2f} ± {k * s['half_width']:.2f}"


def fmt_diff(d: dict[str, Any] | None, metric: str = "accuracy") -> str:
    """``+1.23 (p=0.041)``; ``(n/a)`` when there is no test."""
    if not d or d.get("mean") is None:
        return "–"
    k = _scale(metric)
    p = "n/a" if d.get("p") is None else f"p={d['p']:.3g}"
    return f"{k * d['mean']:+.2f} ({p})"


def _label(metric: str) -> str:
    if metric in LABELS:
        return LABELS[metric]
    if metric.startswith("recall["):
        return f"recall {metric[7:-1]}"
    if metric.startswith("precision["):
        return f"precision {metric[10:-1]}"
    return metric


# --------------------------------------------------------------------------------------------
# analysis


def _load_outputs(run_dir: Path) -> dict[str, np.ndarray] | None:
    p = run_dir / "outputs.npz"
    if not p.is_file():
        return None
    with np.load(p) as z:
        return {k: np.asarray(z[k]) for k in z.files}


def threshold_analysis(records: list[RunRecord], *, important: list[str], class_names: list[str],
                       targets: list[float], baseline: str, variants: list[str]) -> dict[str, Any]:
    """Threshold moving for each important class (see :mod:`classaware.study.threshold`).

    Per class: ``runs[run] = {"own": {recall, accuracy}, "ops": [...]}``, ``curves[seed]`` the
    baseline's test curve, and per variant ``summary[v]`` with the mean own point, the
    val-chosen target points, and ``vs_curve``: the paired difference (over seeds) between the
    variant's accuracy and the accuracy the baseline's test threshold curve of the same seed
    reaches at the variant's recall.
    """
    out: dict[str, Any] = {}
    outputs = {r.name: _load_outputs(r.run_dir) for r in records}
    for cname in important:
        k = class_index(class_names, cname)
        runs: dict[str, Any] = {}
        curves: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        notes: list[str] = []
        for r in records:
            o = outputs.get(r.name)
            if o is None or "test_outputs" not in o:
                notes.append(f"{r.name}: no outputs.npz")
                continue
            own = thr.apply_bias(o["test_outputs"], o["test_targets"], k, 0.0)
            ops: list[dict[str, Any]] = []
            val_n = int(o.get("val_targets", np.zeros(0)).shape[0])
            if val_n and int((o["val_targets"] == k).sum()):
                ops = thr.operating_points(o["val_outputs"], o["val_targets"], o["test_outputs"],
                                           o["test_targets"], k, targets)
            else:
                notes.append(f"{r.name}: no validation samples of {cname}; no bias chosen")
            runs[r.name] = {"variant": r.variant, "seed": r.seed, "own": own, "ops": ops}
            if r.variant == baseline:
                c = thr.curve(o["test_outputs"], o["test_targets"], k)
                curves[r.seed] = (c["recall"], c["accuracy"])
        summary: dict[str, Any] = {}
        for v in variants:
            mine = [x for x in runs.values() if x["variant"] == v]
            if not mine:
                continue
            rec = summarize([x["own"]["recall"] for x in mine])
            acc = summarize([x["own"]["accuracy"] for x in mine])
            tgt = []
            for i, t in enumerate(targets):
                pts = [x["ops"][i] for x in mine if x["ops"] and x["ops"][i]["bias"] is not None]
                tgt.append({
                    "target": t, "n": len(pts),
                    "test_recall": summarize([p["test_recall"] for p in pts]),
                    "test_accuracy": summarize([p["test_accuracy"] for p in pts]),
                    "bias": summarize([p["bias"] for p in pts]),
                })
            own_acc = {x["seed"]: x["own"]["accuracy"] for x in mine if x["seed"] in curves}
            at_curve = {x["seed"]: thr.accuracy_at_recall(*curves[x["seed"]], x["own"]["recall"])
                        for x in mine if x["seed"] in curves}
            summary[v] = {
                "recall": rec, "accuracy": acc, "targets": tgt,
                "curve_accuracy": summarize(list(at_curve.values())),
                "vs_curve": paired_difference(own_acc, at_curve),
            }
        out[cname] = {"index": k, "runs": runs, "curves": curves, "summary": summary,
                      "notes": notes}
    return out


def analyze(study: Study, out: str | Path) -> dict[str, Any]:
    """Read the finished runs of ``study`` in ``out`` and compute everything the report shows."""
    root = Path(out)
    planned = plan_runs(study, root)
    records: list[RunRecord] = []
    missing: list[str] = []
    for p in planned:
        rec = load_run(p.run_dir, variant=p.variant, seed=p.seed)
        if rec is None:
            missing.append(p.name)
        else:
            records.append(rec)
    variants = [v.name for v in study.variants]
    result: dict[str, Any] = {"study": study, "root": root, "planned": planned,
                              "records": records, "missing": missing, "variants": variants}
    if not records:
        result.update(class_names=[], important=[], groups=[], agg=None, threshold={})
        return result
    class_names = records[0].class_names
    important = [class_names[class_index(class_names, c)] for c in study.important]
    groups = [[class_names[class_index(class_names, c)] for c in g] for g in study.groups]
    agg = aggregate(records, variants=variants, baseline=study.baseline,
                    tolerance_points=study.accuracy_tolerance, important=important,
                    groups=groups, ordinal=study.ordinal)
    th = threshold_analysis(records, important=important, class_names=class_names,
                            targets=study.target_recalls, baseline=study.baseline,
                            variants=variants)
    result.update(class_names=class_names, important=important, groups=groups, agg=agg,
                  threshold=th)
    return result


# --------------------------------------------------------------------------------------------
# tables


def comparison_table(a: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the comparison table (one row per variant with finished runs)."""
    agg = a["agg"]
    study: Study = a["study"]
    metrics = list(agg["metrics"]) if agg else []
    diff_metrics = {"accuracy"} | {m for m in metrics if m.startswith("recall[")}
    if study.groups:
        diff_metrics.add("group_accuracy")
    if study.ordinal:
        diff_metrics.add("mean_abs_class_error")
    header = ["variant", "n"]
    cols: list[tuple[str, str]] = []
    for m in metrics:
        cols.append(("stat", m))
        header.append(_label(m) + (" (%)" if m not in NOT_FRACTION else ""))
        if m in diff_metrics:
            cols.append(("diff", m))
            header.append(f"Δ {_label(m)} vs {study.baseline}")
    header.append(f"acc kept (≥ {study.baseline} − {study.accuracy_tolerance:g} pt)")
    rows = []
    for v in a["variants"]:
        info = agg["variants"].get(v) if agg else None
        if not info or not info["n"]:
            continue
        row = [v, str(info["n"])]
        for kind, m in cols:
            if kind == "stat":
                row.append(fmt_stat(info["stats"].get(m), m))
            elif v == study.baseline:
                row.append("—")
            else:
                row.append(fmt_diff(info["diff"].get(m), m))
        kept = info["accuracy_kept"]
        row.append("baseline" if v == study.baseline else ("–" if kept is None else ("yes" if kept else "no")))
        rows.append(row)
    return header, rows


def threshold_table(a: dict[str, Any], cname: str) -> tuple[list[str], list[list[str]]]:
    """Per variant: its own test point, the baseline curve's accuracy at the same recall, the
    difference, and the val-chosen bias points for each target recall."""
    study: Study = a["study"]
    t = a["threshold"][cname]
    header = ["variant", f"recall {cname} (%)", "accuracy (%)",
              f"{study.baseline}+threshold acc at same recall (%)", "Δ acc vs threshold"]
    for tr in study.target_recalls:
        header.append(f"target {tr:g}: test recall / acc (%)")
    rows = []
    for v in a["variants"]:
        s = t["summary"].get(v)
        if s is None:
            continue
        row = [v, fmt_stat(s["recall"]), fmt_stat(s["accuracy"]), fmt_stat(s["curve_accuracy"]),
               fmt_diff(s["vs_curve"]) if s["vs_curve"]["n"] else "–"]
        for tp in s["targets"]:
            if tp["n"] == 0:
                row.append("unreached")
            else:
                r, acc = tp["test_recall"]["mean"], tp["test_accuracy"]["mean"]
                row.append(f"{100 * r:.1f} / {100 * acc:.2f}")
        rows.append(row)
    return header, rows


def csv_rows(a: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """One row per planned run: identification, status, final test metrics, threshold points,
    and ``train_seconds`` (the only timing column)."""
    study: Study = a["study"]
    names = a["class_names"]
    imp = a["important"]
    by_name = {r.name: r for r in a["records"]}
    metric_keys = list(a["agg"]["metrics"]) if a["agg"] else []
    per_class = [f"test_recall[{c}]" for c in names]
    thr_keys = []
    for c in imp:
        for tr in study.target_recalls:
            thr_keys += [f"thr{tr:g}_bias[{c}]", f"thr{tr:g}_test_recall[{c}]",
                         f"thr{tr:g}_test_accuracy[{c}]"]
    header = (["run", "variant", "seed", "status", "best_epoch", "epochs"]
              + [f"test_{m}" for m in metric_keys] + [f"val_{m}" for m in ("accuracy",
                                                                         "balanced_accuracy")]
              + per_class + thr_keys + ["train_seconds"])
    rows = []
    for p in a["planned"]:
        r = by_name.get(p.name)
        if r is None:
            rows.append([p.name, p.variant, str(p.seed), "missing"] + [""] * (len(header) - 4))
            continue
        m = run_metrics(r.final, important=imp, groups=a["groups"], ordinal=study.ordinal)
        vm = run_metrics(r.final, split="val")
        rec = (r.final.get("test") or {}).get("per_class_recall") or []
        row = [p.name, p.variant, str(p.seed), "done", _cell(r.final.get("best_epoch")),
               str(len(r.history))]
        row += [_cell(m.get(k)) for k in metric_keys]
        row += [_cell(vm.get("accuracy")), _cell(vm.get("balanced_accuracy"))]
        row += [_cell(rec[i] if i < len(rec) else None) for i in range(len(names))]
        for c in imp:
            ops = a["threshold"].get(c, {}).get("runs", {}).get(p.name, {}).get("ops") or []
            for i in range(len(study.target_recalls)):
                op = ops[i] if i < len(ops) else {}
                row += [_cell(op.get("bias")), _cell(op.get("test_recall")),
                        _cell(op.get("test_accuracy"))]
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


def make_plots(a: dict[str, Any], plot_dir: Path) -> dict[str, Path]:
    """Write every PNG of the report into ``plot_dir``; returns ``{key: path}``."""
    from classaware.study import plots

    study: Study = a["study"]
    names = a["class_names"]
    imp = a["important"]
    recs: list[RunRecord] = a["records"]
    out: dict[str, Path] = {}
    header, rows = comparison_table(a)
    kept_rows = [i for i, r in enumerate(rows) if r[-1] == "yes"]
    out["table"] = plots.plot_table(header, rows, plot_dir / "comparison_table.png",
                                    title=f"{study.name}: test metrics over seeds",
                                    highlight_rows=kept_rows)
    means: dict[str, list[float]] = {}
    sds: dict[str, list[float]] = {}
    cms: dict[str, np.ndarray] = {}
    hists: dict[str, list[list[dict[str, Any]]]] = {}
    angles: dict[str, tuple[list[float], list[float]]] = {}
    for v in a["variants"]:
        mine = [r for r in recs if r.variant == v]
        if not mine:
            continue
        pcr = np.array([(r.final.get("test") or {}).get("per_class_recall") or [np.nan] * len(names)
                        for r in mine], dtype=float)
        means[v] = list(np.nanmean(pcr, axis=0))
        sds[v] = list(np.nanstd(pcr, axis=0, ddof=1)) if len(mine) > 1 else [0.0] * len(names)
        cm = [np.asarray(r.final["test"]["confusion_matrix"], dtype=float) for r in mine
              if (r.final.get("test") or {}).get("confusion_matrix") is not None]
        if cm:
            cms[v] = np.sum(cm, axis=0)
        hists[v] = [r.history for r in mine]
        ang = [((r.final.get("angles") or {}).get("test") or {}) for r in mine]
        ang = [x for x in ang if x.get("mean_deg")]
        if ang:
            angles[v] = (list(np.mean([x["mean_deg"] for x in ang], axis=0)),
                         list(np.mean([x.get("std_deg") or [0.0] * len(names) for x in ang], axis=0)))
    out["recall"] = plots.plot_recall_bars(names, means, sds, plot_dir / "per_class_recall.png",
                                           important=imp)
    if cms:
        out["confusion"] = plots.plot_confusions(cms, names, plot_dir / "confusion_matrices.png")
    if any(any(h) for hs in hists.values() for h in hs):
        out["curves"] = plots.plot_training_curves(hists, plot_dir / "training_curves.png",
                                                   important=imp)
    for cname, t in a["threshold"].items():
        pts = {}
        for v, s in t["summary"].items():
            if s["recall"]["mean"] is None:
                continue
            pts[v] = (s["recall"]["mean"], s["accuracy"]["mean"], s["recall"]["sd"] or 0.0,
                      s["accuracy"]["sd"] or 0.0)
        base = t["summary"].get(study.baseline)
        bt = []
        if base:
            bt = [(tp["test_recall"]["mean"], tp["test_accuracy"]["mean"]) for tp in base["targets"]
                  if tp["n"]]
        curves = [t["curves"][s] for s in sorted(t["curves"])]
        if pts:
            out[f"tradeoff[{cname}]"] = plots.plot_tradeoff(
                curves, pts, plot_dir / f"tradeoff_{_slug(cname)}.png", class_name=cname,
                baseline=study.baseline, baseline_targets=bt)
    if angles:
        out["angles"] = plots.plot_angles(names, angles, plot_dir / "angles.png", important=imp)
    return out


def _slug(s: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in s).strip("_") or "class"


# --------------------------------------------------------------------------------------------
# documents


def _blocks(a: dict[str, Any], images: dict[str, Path]) -> list[tuple[Any, ...]]:
    """The report as a list of blocks: ("h1"|"h2"|"p", text), ("table", header, rows),
    ("img", path, caption), ("pre", text)."""
    study: Study = a["study"]
    b: list[tuple[Any, ...]] = [("h1", f"classaware study: {study.name}")]
    if study.description:
        b.append(("p", study.description))
    base = study.base
    data = base.get("data", {})
    model = base.get("model", {})
    train = base.get("train", {})
    b.append(("p", (
        f"Data {data.get('name', '(default)')}"
        + (f" (max_train {data['max_train']})" if data.get("max_train") else "")
        + (f", imbalance {data['imbalance']}" if data.get("imbalance") else "")
        + f"; model {model.get('name', '(default)')}; epochs {train.get('epochs', '(default)')}; "
        f"seeds {study.seeds}; baseline {study.baseline}; important classes "
        f"{', '.join(a['important']) or 'none'}; {len(a['records'])} of {len(a['planned'])} runs "
        f"finished.")))
    if a["missing"]:
        b.append(("p", f"Missing (unfinished or failed) runs: {', '.join(a['missing'])}."))
    if not a["records"]:
        return b
    header, rows = comparison_table(a)
    b.append(("h2", "Comparison (test set, mean ± 95% CI over seeds)"))
    b.append(("table", header, rows))
    kept = [r[0] for r in rows if r[-1] == "yes"]
    b.append(("p", (
        f"Accuracy kept = mean test accuracy ≥ {study.baseline}'s mean − "
        f"{study.accuracy_tolerance:g} points. Variants that keep accuracy: "
        f"{', '.join(kept) if kept else 'none'}. Δ = paired difference to {study.baseline} over "
        "the common seeds (percentage points) with the two-sided paired t-test's p "
        "(n/a with fewer than 2 paired seeds).")))
    if "table" in images:
        b.append(("img", images["table"], "comparison table"))
    for cname in a["threshold"]:
        h, r = threshold_table(a, cname)
        b.append(("h2", f"Threshold moving on {cname}"))
        b.append(("p", (
            f"The trivial competitor: add a bias b to {cname}'s output. Own = the model's argmax "
            f"(b = 0). The {study.baseline}+threshold column is the best accuracy {study.baseline}'s "
            "test threshold curve of the same seed reaches at (at least) the variant's recall — an "
            "optimistic envelope for the baseline; Δ > 0 means the loss beats threshold moving. "
            "Target columns: b chosen on the VALIDATION set as the smallest b whose val recall "
            "reaches the target, then applied to test (mean over seeds).")))
        b.append(("table", h, r))
        for note in a["threshold"][cname]["notes"][:5]:
            b.append(("p", f"Note: {note}"))
        key = f"tradeoff[{cname}]"
        if key in images:
            b.append(("img", images[key], f"recall of {cname} vs accuracy"))
    b.append(("h2", "Per-class recall"))
    if "recall" in images:
        b.append(("img", images["recall"], "per-class recall"))
    if "confusion" in images:
        b.append(("h2", "Confusion matrices"))
        b.append(("img", images["confusion"], "confusion matrices"))
    if "curves" in images:
        b.append(("h2", "Training curves"))
        b.append(("img", images["curves"], "training curves"))
    if "angles" in images:
        b.append(("h2", "Angles (cosine heads)"))
        b.append(("img", images["angles"], "per-class angle distributions"))
    b.append(("h2", "Variants"))
    vrows = [[v.name, ", ".join(f"{k} = {val!r}" for k, val in v.overrides) or "(shared config)"]
             for v in study.variants]
    b.append(("table", ["variant", "overrides of the shared config"], vrows))
    b.append(("p", f"Per-run metrics: report.csv. Study file: {study.source}."))
    return b


def _md_escape(s: str) -> str:
    return str(s).replace("|", "\\|")


def render_markdown(blocks: list[tuple[Any, ...]], root: Path) -> str:
    lines: list[str] = []
    for blk in blocks:
        kind = blk[0]
        if kind == "h1":
            lines += [f"# {blk[1]}", ""]
        elif kind == "h2":
            lines += [f"## {blk[1]}", ""]
        elif kind == "p":
            lines += [blk[1], ""]
        elif kind == "pre":
            lines += ["```", blk[1], "```", ""]
        elif kind == "table":
            header, rows = blk[1], blk[2]
            lines.append("| " + " | ".join(_md_escape(h) for h in header) + " |")
            lines.append("|" + "|".join("---" for _ in header) + "|")
            lines += ["| " + " | ".join(_md_escape(c) for c in r) + " |" for r in rows]
            lines.append("")
        elif kind == "img":
            rel = Path(blk[1]).relative_to(root).as_posix()
            lines += [f"![{blk[2]}]({rel})", ""]
    return "\n".join(lines)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;
padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.85em}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
td{white-space:nowrap}.scroll{overflow-x:auto}
th{background:#eef1f6}td:first-child,th:first-child{text-align:left}
img{max-width:100%;display:block;margin:1em 0}
p{line-height:1.45}
"""


def render_html(blocks: list[tuple[Any, ...]], *, title: str) -> str:
    """A self-contained HTML page: every image is embedded as a base64 PNG data URI."""
    e = html.escape
    parts = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
             f"<title>{e(title)}</title><style>{_CSS}</style></head><body>"]
    for blk in blocks:
        kind = blk[0]
        if kind in ("h1", "h2"):
            parts.append(f"<{kind}>{e(blk[1])}</{kind}>")
        elif kind == "p":
            parts.append(f"<p>{e(blk[1])}</p>")
        elif kind == "pre":
            parts.append(f"<pre>{e(blk[1])}</pre>")
        elif kind == "table":
            parts.append("<div class=\"scroll\"><table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in blk[1])
                         + "</tr></thead><tbody>")
            for r in blk[2]:
                parts.append("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>")
            parts.append("</tbody></table></div>")
        elif kind == "img":
            data = base64.b64encode(Path(blk[1]).read_bytes()).decode("ascii")
            parts.append(f"<figure><img alt=\"{e(blk[2])}\" src=\"data:image/png;base64,{data}\">"
                         f"<figcaption>{e(blk[2])}</figcaption></figure>")
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(f"<p><small>generated by classaware {stamp}</small></p></body></html>")
    return "\n".join(parts)


def write_report(study: Study, out: str | Path, *, analysis: dict[str, Any] | None = None) -> Path:
    """Write report.md, report.html, report.csv and plots/*.png into ``out``; returns report.html."""
    root = Path(out)
    a = analysis if analysis is not None else analyze(study, root)
    images = make_plots(a, root / "plots") if a["records"] else {}
    blocks = _blocks(a, images)
    (root / "report.md").write_text(render_markdown(blocks, root))
    (root / "report.html").write_text(render_html(blocks, title=f"classaware study: {study.name}"))
    header, rows = csv_rows(a) if a["records"] else (["run", "variant", "seed", "status"], [
        [p.name, p.variant, str(p.seed), "missing"] for p in a["planned"]])
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    (root / "report.csv").write_text(buf.getvalue())
    return root / "report.html"
