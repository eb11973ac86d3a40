"""Class names that could be misread are quoted where they sit inside a label or a sentence."""

from __future__ import annotations

import json

from classaware.classes import class_label
from classaware.cli import main
from test_study_cli import write_fake_study


def test_class_label():
    assert [class_label(n) for n in ("Shirt", "cat", "8", "T-shirt/top", "Speed limit (30km/h)")] \
        == ["Shirt", "cat", "'8'", "'T-shirt/top'", "'Speed limit (30km/h)'"]


def test_a_numeric_class_name_is_quoted_in_the_report(capsys, tmp_path):
    f, out = write_fake_study(tmp_path, important="8")
    for run in (out / "runs").iterdir():
        for name in ("final.json", "metrics.jsonl"):  # the important class "two" becomes "8"
            (run / name).write_text((run / name).read_text().replace('"two"', '"8"'))
        assert json.loads((run / "final.json").read_text())["class_names"][2] == "8"
    assert main(["compare", "--config", str(f), "--out", str(out), "--report-only"]) == 0
    md = (out / "report.md").read_text()
    assert "recall '8' (%)" in md and "recall 8 (%)" not in md
    assert "recall '8' (%)" in capsys.readouterr().out
