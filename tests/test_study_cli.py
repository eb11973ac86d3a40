"""``classaware compare`` command line (no training: report-only on hand-made runs)."""

from __future__ import annotations

import re
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


def test_list_shows_each_description_whole(capsys):
    # each preset's first sentence, wrapped, never cut mid-sentence
    from classaware.study.spec import presets

    assert main(["compare", "--list"]) == 0
    entries = re.split(r"\n(?=\S)", capsys.readouterr().out.strip())
    assert [e.split()[0] for e in entries] == presets()
    for e in entries:
        text = " ".join(e.split()[1:])
        assert text.endswith((".", "?", "!")), text
    text = next(e for e in entries if e.startswith("important-class "))
    assert " ".join(text.split()).endswith("does it beat simply moving Shirt's decision threshold?")


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
    assert study.important == ["Shirt"] and len(study.seeds) == 4
    names = [v.name for v in study.variants]
    assert names == ["ce", "ce-weighted", "camri-m0.2-s16"]
    # CE's and CAMRI's per-class tables are printed
    assert set(seen["tables"]) == {"ce"} | {n for n in names if n.startswith("camri")}
    assert 1 <= seen["jobs"] <= 2


def _captured_study(monkeypatch, argv):
    import classaware.cli.compare as compare

    seen = {}

    def fake(study, out, **kw):
        seen.update(study=study, out=out, **kw)
        return 0

    monkeypatch.setattr(compare, "run_and_report", fake)
    assert main(argv) == 0
    return seen["study"]


def test_seeds_one_named_seed_and_help(monkeypatch, capsys):
    base = ["compare", "--losses", "ce", "--set", "data.name=digits"]
    assert _captured_study(monkeypatch, base + ["--seeds", "5,"]).seeds == [5]
    assert _captured_study(monkeypatch, base + ["--seeds", "5"]).seeds == [0, 1, 2, 3, 4]
    assert _captured_study(monkeypatch, base + ["--seeds", "0,3,7"]).seeds == [0, 3, 7]
    try:
        main(["compare", "--help"])
    except SystemExit:
        pass
    text = " ".join(capsys.readouterr().out.split())
    assert "one named seed is a one-element list: 5, (seed 5 alone)" in text
    assert "VARIANT:KEY=VALUE" in text


def test_losses_without_the_baseline_compare_with_the_first(monkeypatch, capsys):
    study = _captured_study(monkeypatch, ["compare", "--config", "important-class", "--losses",
                                          "camri-m0.2-s16,arcface-m0.2-s16"])
    assert study.baseline == "camri-m0.2-s16"  # the preset says ce, which --losses left out
    # a baseline asked for on the command line is still checked
    assert main(["compare", "--config", "important-class", "--losses", "camri-m0.2-s16",
                 "--set", "study.baseline=ce"]) == 2
    assert "study.baseline: 'ce' is not a variant" in capsys.readouterr().err


def test_set_reaches_a_variants_own_keys(tmp_path, capsys):
    from classaware.study.runner import plan_runs, validate_runs
    from classaware.study.spec import load_study

    # a shared key does not change what a variant sets itself; the error says how to
    out = tmp_path / "lt"
    assert main(["compare", "--config", "long-tail", "--set", "train.epochs=2", "--out",
                 str(out)]) == 2
    cap = capsys.readouterr()
    assert cap.err.count("\n") == 1 and "--set ldam-drw:train.drw_epoch=VALUE" in cap.err
    assert cap.out == "" and not (out / "runs").exists()  # nothing printed or trained before
    sets = [("train.epochs", 2)]
    for key in ("drw_epoch", "drs_epoch"):  # every variant that sets its own deferred epoch
        sets += [(f"{v.name}:train.{key}", 1) for v in load_study("long-tail").variants
                 if any(k.endswith(key) or (k == "train" and key in val)
                        for k, val in v.overrides)]
    study = load_study("long-tail", sets=sets)
    cfgs = validate_runs(plan_runs(study, tmp_path))
    ldam = [c for c, r in zip(cfgs, plan_runs(study, tmp_path)) if r.variant == "ldam-drw"][0]
    assert ldam.train.drw_epoch == 1 and ldam.train.epochs == 2
    ce = [c for c, r in zip(cfgs, plan_runs(study, tmp_path)) if r.variant == "ce"][0]
    assert ce.train.drw_epoch is None  # the other variants are untouched
    assert main(["compare", "--config", "long-tail", "--set", "nope:train.epochs=2"]) == 2
    assert "'nope' is not a variant" in capsys.readouterr().err


def test_preflight_checks_model_and_classes_before_training(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["compare", "--losses", "ce,camri", "--set", "data.name=digits", "--set",
                 "model.name=small_cnn", "--set", "loss.important_classes=[3]", "--out",
                 str(out)]) == 2
    cap = capsys.readouterr()
    assert "small_cnn takes images" in cap.err and cap.err.count("\n") == 1
    assert "training" not in cap.out and not (out / "runs").exists()
    assert main(["compare", "--losses", "ce", "--set", "data.name=digits", "--set",
                 "model.name=mlp", "--set", "loss.important_classes=['nope']", "--out",
                 str(out)]) == 2
    err = capsys.readouterr().err
    assert "unknown class 'nope'" in err and "'3'" in err
    assert not (out / "runs").exists() and not (out / "logs").exists()


def test_report_only_waits_for_no_running_study(tmp_path, capsys):
    import subprocess

    from classaware.study.runner import study_lock

    study = {"study": {"name": "fake", "seeds": 1}, "data": {"name": "digits"},
             "variants": [{"name": "ce", "loss.name": "ce"}]}
    f = tmp_path / "fake.toml"
    f.write_text(tomli_w.dumps(study))
    out = tmp_path / "out"
    write_fake_run(out / "runs" / "ce-seed0", seed=0, push=0.0)
    with study_lock(out), study_lock(out):  # re-entrant in one process
        p = subprocess.run([sys.executable, "-m", "classaware", "compare", "--config", str(f),
                            "--out", str(out), "--report-only"], capture_output=True, text=True,
                           timeout=120)
    assert p.returncode == 2 and "another study is running in this directory" in p.stderr
    assert not (out / "report.csv").exists()  # the report is written under the lock only
    assert main(["compare", "--config", str(f), "--out", str(out), "--report-only"]) == 0
    assert (out / "report.csv").is_file()
