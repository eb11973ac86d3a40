"""``classaware compare`` command line (no training: report-only on hand-made runs)."""

from __future__ import annotations

import sys
from pathlib import Path

import tomli_w

sys.path.insert(0, str(Path(__file__).parent))
from classaware.cli import main  # noqa: E402
from test_study_report import IMPORTANT, write_fake_run  # noqa: E402


def test_list_presets(capsys):
    assert main(["compare", "--list"]) == 0
    out = capsys.readouterr().out
    for name in ("important-class ", "long-tail ", "similarity "):
        assert name in out


def test_errors_are_one_line_exit_2(capsys, tmp_path):
    assert main(["compare"]) == 2
    assert "give --config" in capsys.readouterr().err
    assert main(["compare", "--config", "no-such-study"]) == 2
    err = capsys.readouterr().err
    assert "no such file and no such preset" in err and err.count("\n") == 1
    assert main(["compare", "--losses", "ce,zzz"]) == 2
    assert "unknown loss 'zzz'" in capsys.readouterr().err
    assert main(["compare", "--losses", "ce", "--seeds", "x"]) == 2
    assert "--seeds" in capsys.readouterr().err
    assert main(["compare", "--losses", "ce", "--set", "optim.lr"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert main(["compare", "--losses", "ce", "--jobs", "0", "--out", str(tmp_path)]) == 2
    assert "--jobs" in capsys.readouterr().err


def write_fake_study(tmp_path: Path, important: str = IMPORTANT) -> tuple[Path, Path]:
    """A study file (variants ce and push, 2 seeds) and its hand-made finished runs: ``(study
    file, study directory)``."""
    study = {"study": {"name": "fake", "seeds": 2, "important": [important],
                       "target_recalls": [0.8]},
             "data": {"name": "digits"},
             "variants": [{"name": "ce", "loss.name": "ce"},
                          {"name": "push", "loss.name": "ce", "loss.class_weight": "important"}]}
    f = tmp_path / "fake.toml"
    f.write_text(tomli_w.dumps(study))
    out = tmp_path / "out"
    for v, push in (("ce", 0.0), ("push", 0.8)):
        for s in (0, 1):
            write_fake_run(out / "runs" / f"{v}-seed{s}", seed=s, push=push)
    return f, out


def test_report_only_prints_tables(capsys, tmp_path):
    f, out = write_fake_study(tmp_path)
    assert main(["compare", "--config", str(f), "--out", str(out), "--report-only"]) == 0
    text = capsys.readouterr().out
    assert "Comparison on the test set" in text
    assert "Threshold moving on two" in text
    assert f"report: {(out / 'report.html').resolve()}" in text
    assert (out / "report.csv").is_file()
    # a run missing -> exit code 1, and the report says so
    import shutil

    shutil.rmtree(out / "runs" / "push-seed1")
    assert main(["compare", "--config", str(f), "--out", str(out), "--report-only"]) == 1
    assert "3/4 runs finished" in capsys.readouterr().out


def test_no_arguments_runs_the_demo_study(monkeypatch):
    import classaware.cli.compare as compare

    seen = {}

    def fake(study, out, **kw):
        seen.update(study=study, out=out, **kw)
        return 0

    monkeypatch.setattr(compare, "run_and_report", fake)
    assert main([]) == 0
    study = seen["study"]
    assert study.name == "important-class-demo"
    assert seen["out"] == Path("runs") / "demo-important-class"
    assert study.important == ["Shirt"] and len(study.seeds) == 3
    names = [v.name for v in study.variants]
    assert {"ce", "ce-weighted"} <= set(names)
    assert any(n.startswith("arcface") for n in names)
    assert sum(n.startswith("camri") for n in names) == 2
    # CE's and CAMRI's per-class tables are printed
    assert set(seen["tables"]) == {"ce"} | {n for n in names if n.startswith("camri")}
    assert 1 <= seen["jobs"] <= 2
