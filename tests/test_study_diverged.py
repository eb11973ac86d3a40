"""A run that diverges in a study is listed as diverged, apart from the results (real runs)."""

from __future__ import annotations

import csv
import json

import pytest
import tomli_w

from classaware.cli import main

pytestmark = pytest.mark.slow


def test_a_diverged_run_is_listed_apart_from_the_results(capsys, tmp_path):
    study = {"study": {"name": "div", "seeds": [0], "baseline": "ce", "target_recalls": []},
             "data": {"name": "digits"}, "model": {"name": "mlp", "hidden": [16]},
             "train": {"epochs": 1, "progress": False},
             "variants": [{"name": "ce", "loss.name": "ce"},
                          {"name": "ce-lr1e4", "loss.name": "ce", "optim.lr": 1e4}]}
    f = tmp_path / "div.toml"
    f.write_text(tomli_w.dumps(study))
    out = tmp_path / "out"
    code = main(["compare", "--config", str(f), "--out", str(out), "--jobs", "1"])
    text = capsys.readouterr().out
    assert code == 1  # not every run gave a result
    final = json.loads((out / "runs" / "ce-lr1e4-seed0" / "final.json").read_text())
    assert final["diverged"]["epoch"] == 1 and final["test"] is None
    md = (out / "report.md").read_text()
    assert "Diverged runs (a non-finite training loss; left out of every result):" in md
    assert "ce-lr1e4-seed0: training diverged in epoch 1 of 1" in md
    rows = {r["run"]: r for r in csv.DictReader(open(out / "report.csv"))}
    assert rows["ce-lr1e4-seed0"]["status"] == "diverged"
    assert rows["ce-lr1e4-seed0"]["test_accuracy"] == ""
    assert rows["ce-seed0"]["status"] == "done"
    # the comparison table holds the finished run only
    table = md[md.index("| variant |"):].split("\n\n")[0]
    assert "| ce |" in table and "ce-lr1e4" not in table
    assert "ce-lr1e4-seed0" in text
