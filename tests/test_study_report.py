"""The report (md, html, csv, png) built from hand-made run directories (no training)."""

from __future__ import annotations

import base64
import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from classaware.metrics import metrics_from_confusion
from classaware.study.report import analyze, comparison_table, write_report
from classaware.study.runner import plan_runs
from classaware.study.spec import load_study

NAMES = ["zero", "one", "two", "three"]
IMPORTANT = "two"


def _fake_outputs(rng, n, push_important):
    y = np.repeat(np.arange(len(NAMES)), n // len(NAMES))
    out = rng.normal(0.0, 1.0, (len(y), len(NAMES)))
    out[np.arange(len(y)), y] += 1.6
    out[:, NAMES.index(IMPORTANT)] += push_important
    return out.astype(np.float32), y.astype(np.int64)


def write_fake_run(run_dir: Path, *, seed: int, push: float, cosine: bool = False,
                   epochs: int = 3, n_val: int = 200) -> None:
    """A finished run directory as the trainer writes it (see docs/ARCHITECTURE.md)."""
    rng = np.random.default_rng(1000 + seed * 7 + int(push * 100))
    run_dir.mkdir(parents=True, exist_ok=True)
    vo, vy = _fake_outputs(rng, n_val, push)
    to, ty = _fake_outputs(rng, 400, push)
    np.savez(run_dir / "outputs.npz", val_outputs=vo, val_targets=vy, test_outputs=to,
             test_targets=ty)

    def metrics(o, y):
        cm = np.zeros((4, 4), dtype=np.int64)
        np.add.at(cm, (y, o.argmax(1)), 1)
        return metrics_from_confusion(cm, class_names=NAMES, important=[IMPORTANT],
                                      train_counts=[500, 500, 500, 500])

    with open(run_dir / "metrics.jsonl", "w") as fh:
        for e in range(epochs):
            fh.write(json.dumps({"epoch": e, "lr": 0.1, "train_loss": 1.0 / (e + 1),
                                 "train_accuracy": 0.5 + 0.1 * e, "val": metrics(vo, vy),
                                 "seconds": 1.5}) + "\n")
    final = {"class_names": NAMES, "train_class_counts": [500] * 4, "important_classes": [2],
             "important_class_names": [IMPORTANT], "best_epoch": epochs - 1,
             "head_type": "cosine" if cosine else "linear", "loss": "x",
             "val": metrics(vo, vy), "test": metrics(to, ty)}
    if cosine:
        final["angles"] = {k: {"mean_deg": [40.0 + i for i in range(4)], "std_deg": [5.0] * 4}
                           for k in ("val", "test")}
    (run_dir / "final.json").write_text(json.dumps(final))


def make_study(seeds=(0, 1, 2)):
    return load_study({
        "study": {"name": "fake", "seeds": list(seeds), "baseline": "ce", "important": [IMPORTANT],
                  "target_recalls": [0.7, 0.9], "accuracy_tolerance": 1.0,
                  "groups": [["zero", "one"]]},
        "data": {"name": "digits"},
        "variants": [{"name": "ce", "loss.name": "ce"},
                     {"name": "push", "loss": {"name": "camri", "margin": 0.2}}],
    })


def build_fake_study(root: Path, seeds=(0, 1, 2), skip=()):
    study = make_study(seeds)
    for p in plan_runs(study, root):
        if p.name in skip:
            continue
        write_fake_run(p.run_dir, seed=p.seed, push=0.0 if p.variant == "ce" else 0.8,
                       cosine=p.variant == "push")
    return study


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("fake-study")
    study = build_fake_study(root)
    return study, root, write_report(study, root)


def test_report_files_and_content(built):
    study, tmp_path, html_path = built
    assert html_path == tmp_path / "report.html"
    for name in ("per_class_recall", "confusion_matrices", "training_curves", "tradeoff_two",
                 "angles"):
        png = tmp_path / "plots" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    md = (tmp_path / "report.md").read_text()
    assert "| variant | head | n | accuracy (%)" in md
    assert not (tmp_path / "plots" / "comparison_table.png").exists()  # the table is shown once
    assert "Threshold moving on two" in md
    assert "![recall of two vs accuracy](plots/tradeoff_two.png)" in md
    html = (tmp_path / "report.html").read_text()
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(uris) == 5
    assert all(base64.b64decode(u)[:4] == b"\x89PNG" for u in uris)
    assert 'src="plots/' not in html and "http" not in html.split("<body>")[1]


def test_csv_one_row_per_run_matches_final_json(tmp_path):
    study = build_fake_study(tmp_path, skip=("push-seed2",))
    write_report(study, tmp_path)
    rows = list(csv.DictReader(open(tmp_path / "report.csv")))
    assert [r["run"] for r in rows] == ["ce-seed0", "ce-seed1", "ce-seed2", "push-seed0",
                                        "push-seed1", "push-seed2"]
    assert rows[-1]["status"] == "missing" and rows[-1]["test_accuracy"] == ""
    final = json.loads((tmp_path / "runs" / "push-seed1" / "final.json").read_text())
    r = rows[4]
    assert r["status"] == "done"
    assert float(r["test_accuracy"]) == pytest.approx(final["test"]["accuracy"], abs=1e-6)
    assert float(r["test_recall[two]"]) == pytest.approx(final["test"]["per_class_recall"][2],
                                                         abs=1e-6)
    assert float(r["test_precision[two]"]) == pytest.approx(
        final["test"]["per_class_precision"][2], abs=1e-6)
    cm = np.array(final["test"]["confusion_matrix"])
    same = cm[:2, :2].sum() + cm[2, 2] + cm[3, 3]
    assert float(r["test_group_accuracy"]) == pytest.approx(same / cm.sum(), abs=1e-6)
    assert float(r["train_seconds"]) == pytest.approx(4.5)
    # the bias chosen on val for target .7 reaches .7 on val (checked from outputs.npz)
    from classaware.study import threshold as thr

    z = np.load(tmp_path / "runs" / "push-seed1" / "outputs.npz")
    b = float(r["thr0.7_bias[two]"])
    assert thr.apply_bias(z["val_outputs"], z["val_targets"], 2, b).recall >= 0.7
    te = thr.apply_bias(z["test_outputs"], z["test_targets"], 2, b)
    assert float(r["thr0.7_test_accuracy[two]"]) == pytest.approx(te.accuracy, abs=1e-6)
    md = (tmp_path / "report.md").read_text()
    assert "Missing (unfinished or failed) runs: push-seed2" in md


def test_comparison_table_values(built):
    study, tmp_path, _ = built
    a = analyze(study, tmp_path)
    header, rows = comparison_table(a)
    assert [r[0] for r in rows] == ["ce", "push"]
    accs = [json.loads((tmp_path / "runs" / f"ce-seed{s}" / "final.json").read_text())["test"]
            ["accuracy"] for s in range(3)]
    col = header.index("accuracy (%)")
    mean = 100 * np.mean(accs)
    assert rows[0][col].startswith(f"{mean:.2f} ± ")
    # the fake "push" variant raises class two's recall: a positive paired difference
    dcol = header.index("Δ recall two vs ce")
    assert rows[1][dcol].startswith("+")
    assert rows[0][dcol] == "—"
    assert rows[0][-1] == "baseline" and rows[1][-1] in ("yes", "no")
    assert rows[0][1] == "linear" and rows[1][1] == "cosine"  # the head of each variant
    th = a.threshold["two"]
    assert sorted(th.curves) == [0, 1, 2]
    # the baseline's own point lies on its own threshold curve: Δ vs the curve is <= 0
    assert th.variants["ce"].vs_curve.mean <= 1e-12
    # "acc kept" is the data's rule, rendered
    info = a.agg.variants["push"]
    assert info.accuracy_kept == (info.diff["accuracy"].mean >= -0.01)
    assert rows[1][-1] == ("yes" if info.accuracy_kept else "no")


def test_report_with_one_seed_says_na(tmp_path):
    study = build_fake_study(tmp_path, seeds=(0,))
    write_report(study, tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "(n/a)" in md


def test_report_without_finished_runs(tmp_path):
    study = make_study()
    write_report(study, tmp_path)
    assert "0 of 6 runs finished" in (tmp_path / "report.md").read_text()
    rows = list(csv.DictReader(open(tmp_path / "report.csv")))
    assert {r["status"] for r in rows} == {"missing"}


def test_threshold_without_validation_set(tmp_path):
    from classaware.study.report import threshold_table

    study = make_study(seeds=(0,))
    for p in plan_runs(study, tmp_path):
        write_fake_run(p.run_dir, seed=0, push=0.5, n_val=0)
    a = analyze(study, tmp_path)
    assert any("no validation samples of two" in n for n in a.threshold["two"].notes)
    _, rows = threshold_table(a, "two")
    assert rows[0][-2:] == ["unreached", "unreached"]


def test_report_opens_with_the_verdict(built):
    study, root, html_path = built
    from classaware.study.verdict import verdict_lines

    lines = verdict_lines(analyze(study, root))
    md = (root / "report.md").read_text().splitlines()
    assert md[:3] == ["# classaware study: fake", "", "## Verdict"]
    assert md[4:4 + len(lines)] == [f"- {x}" for x in lines]
    page = html_path.read_text()
    body = page.split("<body>")[1]
    assert body.index("<h2>Verdict</h2>") < body.index("<h2>Comparison")
    assert body.index("<h2>Verdict</h2>") == body.index("<h2>")  # the first section
    import html as _html

    assert all(f"<li>{_html.escape(x)}</li>" in page for x in lines)


def test_report_names_heads_variants_and_no_machine_path(tmp_path):
    import tomli_w

    src = tmp_path / "studies" / "fake.toml"
    src.parent.mkdir()
    raw = {"study": {"name": "fake", "seeds": [0, 1, 2], "baseline": "ce",
                     "important": [IMPORTANT], "target_recalls": [0.7]},
           "data": {"name": "digits"},
           "variants": [{"name": "ce", "loss.name": "ce"},
                        {"name": "push", "loss": {"name": "camri", "margin": 0.2, "scale": 16.0},
                         "train.epochs": 5}]}
    src.write_text(tomli_w.dumps(raw))
    study = load_study(src)
    root = tmp_path / "out"
    for p in plan_runs(study, root):
        write_fake_run(p.run_dir, seed=p.seed, push=0.0 if p.variant == "ce" else 0.8,
                       cosine=p.variant == "push")
    write_report(study, root)
    md = (root / "report.md").read_text()
    variants = md.split("## Variants")[1]
    assert "| variant | loss | loss settings | head | other settings |" in variants
    assert "| push | camri | margin = 0.2; scale = 16 | cosine | train.epochs = 5 |" in variants
    assert "| ce | ce | – | linear | – |" in variants
    assert "{" not in variants and "'" not in variants
    assert "(ce: linear head; push: cosine head)" in md  # the confound, said in words
    assert "Study file: fake.toml." in md
    for text in (md, (root / "report.html").read_text()):
        assert str(tmp_path) not in text and str(Path.home()) + "/" not in text


def test_two_seed_intervals_past_100_carry_a_caveat(tmp_path):
    from classaware.study.report import PAST, past_bounds

    study = build_fake_study(tmp_path, seeds=(0, 1))
    a = analyze(study, tmp_path)
    wide = [(v, m) for v, info in a.agg.variants.items() for m, s in info.stats.items()
            if past_bounds(s, m)]
    assert wide, "fixture: with 2 seeds some interval (t = 12.7) should run past 0-100 %"
    header, rows = comparison_table(a)
    v, m = wide[0]
    row = rows[[r[0] for r in rows].index(v)]
    from classaware.study.aggregate import metric_label

    assert row[header.index(metric_label(m) + " (%)")].endswith(PAST)
    write_report(study, tmp_path, analysis=a)
    md = (tmp_path / "report.md").read_text()
    assert f"{PAST} The 95% interval runs past 0–100 %: with 2 seed(s)" in md
    # 3 seeds of the same fixture: no interval runs past, no caveat
    study3 = build_fake_study(tmp_path / "three")
    write_report(study3, tmp_path / "three")
    assert "runs past 0–100 %" not in (tmp_path / "three" / "report.md").read_text()
