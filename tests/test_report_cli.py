"""``classaware compare``: what a user sees when the report cannot be built (real runs, real CLI)."""

from __future__ import annotations

import json

import pytest
import tomli_w

from classaware.cli import main

pytestmark = pytest.mark.slow

# a two-variant study on scikit-learn's digits, one seed, one epoch: seconds to train
STUDY = {
    "study": {"name": "tiny-report", "seeds": [0], "important": ["3"], "target_recalls": [0.9]},
    "data": {"name": "digits", "val_fraction": 0.2},
    "model": {"name": "mlp", "hidden": [16]},
    "optim": {"name": "adam", "lr": 0.01, "weight_decay": 0.0},
    "train": {"epochs": 1, "batch_size": 64},
    "variants": [{"name": "ce", "loss.name": "ce"},
                 {"name": "cosface", "loss": {"name": "cosface", "margin": 0.2, "scale": 16.0}}],
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished two-run study (trained once for the module)."""
    root = tmp_path_factory.mktemp("report-cli")
    f = root / "tiny.toml"
    f.write_text(tomli_w.dumps(STUDY))
    out = root / "out"
    assert main(["compare", "--config", str(f), "--out", str(out), "--jobs", "2"]) == 0
    return f, out


def _finals(out):
    return {p.parent.name: p.read_bytes() for p in sorted(out.glob("runs/*/final.json"))}


@pytest.mark.parametrize("target", ["classaware.study.plots.plot_confusions",
                                    "classaware.study.analysis.aggregate",
                                    "classaware.study.report.render_html"])
def test_a_failing_report_is_one_line_exit_1_and_report_only_rebuilds(trained, target, capsys,
                                                                      monkeypatch):
    f, out = trained
    finals = _finals(out)
    assert set(finals) == {"ce-seed0", "cosface-seed0"}
    for name in ("report.md", "report.html", "report.csv"):
        (out / name).unlink(missing_ok=True)

    def boom(*args, **kwargs):
        raise RuntimeError("injected fault")

    monkeypatch.setattr(target, boom)
    # the full command: both runs are reused, then the report fails
    assert main(["compare", "--config", str(f), "--out", str(out)]) == 1
    cap = capsys.readouterr()
    err = cap.err.strip().splitlines()
    assert len(err) == 1, cap.err
    assert "building the report failed (RuntimeError: injected fault)" in err[0]
    assert "--report-only" in err[0] and "Traceback" not in cap.err + cap.out
    assert "Traceback" in (out / "logs" / "report-error.log").read_text()
    assert _finals(out) == finals  # nothing a run produced is lost or retrained
    assert not any((out / n).exists() for n in ("report.md", "report.html", "report.csv"))
    monkeypatch.undo()
    assert main(["compare", "--config", str(f), "--out", str(out), "--report-only"]) == 0
    text = capsys.readouterr().out
    assert "Verdict" in text and "cosface" in text
    assert (out / "report.html").is_file()
    rows = (out / "report.csv").read_text().splitlines()
    assert len(rows) == 3 and all(",done," in r for r in rows[1:])
    assert not list(out.glob("*.tmp-*")) and not list(out.glob("plots/*.tmp-*"))
    assert _finals(out) == finals


def test_report_only_before_the_study_ran_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["compare", "--config", "important-class", "--report-only"]) == 2
    cap = capsys.readouterr()
    assert cap.err.count("\n") == 1 and cap.err.startswith("classaware: error: --report-only:")
    assert "no finished run of study 'important-class' in runs/important-class" in cap.err
    assert not (tmp_path / "runs" / "important-class" / "report.html").exists()


def test_terminal_prints_the_verdict_first_and_no_machine_path(trained, capsys, monkeypatch):
    f, out = trained
    monkeypatch.chdir(out.parent)
    assert main(["compare", "--config", str(f), "--out", "out", "--report-only"]) == 0
    text = capsys.readouterr().out
    assert text.lstrip().startswith("Verdict (paired over seeds vs ce;")
    assert text.index("Verdict") < text.index("Comparison on the test set")
    assert "\n  cosface (cosine head): 3 recall " in text
    assert "report: out/report.html\n" in text
    assert str(out.parent) not in text
    final = json.loads((out / "runs" / "ce-seed0" / "final.json").read_text())
    assert final["class_names"][3] == "3"
