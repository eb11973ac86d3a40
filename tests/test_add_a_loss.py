"""docs/ARCHITECTURE.md's worked example ("Adding a loss") works as written.

The three code blocks of the page are executed in the modules they name (functional/margin.py,
losses/margin.py, the factory's registry), then the new loss is checked the way every loss is:
a per-sample reference written from the formula, float64 gradcheck, module == functional, its
neutral setting equals cross entropy on s·cos, a bad argument names itself, and it trains
through the real command line.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

import classaware.functional.margin as fmargin
import classaware.losses.factory as factory
import classaware.losses.margin as lmargin
from classaware.cli import main

DOC = Path(__file__).resolve().parents[1] / "docs" / "ARCHITECTURE.md"


def _blocks() -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## Adding a loss"):text.index("## Losses")]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


@pytest.fixture
def combined(monkeypatch):
    """The example's function, module and registry line, added for the test only."""
    func_src, module_src, registry_line = _blocks()
    func_ns: dict = {}
    exec(func_src, vars(fmargin) | {"__name__": fmargin.__name__}, func_ns)  # noqa: S102
    monkeypatch.setattr(fmargin, "combined_margin_loss", func_ns["combined_margin_loss"],
                        raising=False)
    module_ns: dict = {}
    exec(module_src, vars(lmargin) | {"__name__": lmargin.__name__}, module_ns)  # noqa: S102
    monkeypatch.setattr(lmargin, "CombinedMarginLoss", module_ns["CombinedMarginLoss"],
                        raising=False)
    name, spec = eval("{" + registry_line.strip().rstrip(",") + "}",  # noqa: S307
                      {"LossSpec": factory.LossSpec, "_margin": lmargin}).popitem()
    monkeypatch.setitem(factory._REGISTRY, name, spec)
    return name, func_ns["combined_margin_loss"], module_ns["CombinedMarginLoss"]


def _reference(cos: torch.Tensor, y: torch.Tensor, m1: float, m2: float, s: float) -> torch.Tensor:
    losses = []
    for i in range(cos.shape[0]):  # one sample at a time, straight from the formula
        z = [s * float(c) for c in cos[i]]
        theta = math.acos(float(cos[i, y[i]]))
        z[y[i]] = s * (math.cos(theta + m1) - m2)
        top = max(z)
        losses.append(-(z[y[i]] - top - math.log(sum(math.exp(v - top) for v in z))))
    return torch.tensor(losses, dtype=torch.float64).mean()


def test_the_example_loss_matches_its_formula_and_the_module(combined):
    name, fn, cls = combined
    g = torch.Generator().manual_seed(0)
    cos = torch.rand(16, 5, generator=g, dtype=torch.float64) * 1.8 - 0.9
    y = torch.randint(0, 5, (16,), generator=g)
    got = fn(cos, y, 0.3, 0.2, 16.0)
    assert got.item() == pytest.approx(_reference(cos, y, 0.3, 0.2, 16.0).item(), abs=1e-12)
    assert torch.equal(factory.create(name, m1=0.3, m2=0.2, scale=16.0)(cos, y), got)
    assert isinstance(factory.create(name), cls)
    assert torch.autograd.gradcheck(lambda c: fn(c, y, 0.3, 0.2, 16.0),
                                    (cos.clone().requires_grad_(True),))
    ce = torch.nn.functional.cross_entropy(16.0 * cos, y)
    assert fn(cos, y, 0.0, 0.0, 16.0).item() == pytest.approx(ce.item(), abs=1e-12)
    with pytest.raises(ValueError, match="margin"):
        fn(cos, y, -0.1, 0.2, 16.0)


def test_the_example_loss_trains_from_the_command_line(combined, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--set", 'data.name="digits"', "--set", "model.head=cosine",
                 "--set", f"loss.name={combined[0]}", "--set", "loss.m1=0.2",
                 "--set", "loss.scale=16.0", "--set", "train.epochs=1", "--out", str(out),
                 "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert (out / "final.json").is_file()
