"""classaware.losses.create / available / spec."""

from __future__ import annotations

import inspect

import pytest
import torch

from classaware import losses
from classaware.losses import LossSpec, available, create, spec
from classaware.similarity import ordinal

NAMES = ["ce", "camri", "arcface", "cosface", "ldam", "elm", "simloss", "cce", "focal",
         "logit_adjusted", "balanced_softmax"]
COUNTS = [50, 20, 5, 1]
KWARGS = {
    "camri": {"important_classes": [2]},
    "ldam": {"class_counts": COUNTS},
    "elm": {"class_counts": COUNTS},
    "simloss": {"similarity": ordinal(4, 0.5)},
    "logit_adjusted": {"class_counts": COUNTS},
    "balanced_softmax": {"class_counts": COUNTS},
}
CLASSES = {
    "ce": losses.CrossEntropyLoss, "camri": losses.CAMRILoss, "arcface": losses.ArcFaceLoss,
    "cosface": losses.CosFaceLoss, "ldam": losses.LDAMLoss, "elm": losses.ELMLoss,
    "simloss": losses.SimLoss, "cce": losses.ComplementCrossEntropy, "focal": losses.FocalLoss,
    "logit_adjusted": losses.LogitAdjustedLoss, "balanced_softmax": losses.LogitAdjustedLoss,
}
MARGIN = {"camri", "arcface", "cosface", "ldam", "elm"}


def test_available_lists_every_loss_of_the_issue():
    assert available() == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_create_builds_the_right_class_and_it_runs(name):
    loss = create(name, **KWARGS.get(name, {}))
    assert type(loss) is CLASSES[name]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 4, generator=g)
    if spec(name).input == "cosine":
        x = torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(
            torch.randn(4, 4, generator=g), dim=1).T
    v = loss(x, torch.tensor([0, 1, 2, 3, 0, 1]))
    assert v.dim() == 0 and torch.isfinite(v)


def test_create_is_case_insensitive():
    assert type(create("CE")) is losses.CrossEntropyLoss


@pytest.mark.parametrize("name", NAMES)
def test_spec_metadata_agrees_with_the_constructor(name):
    s = spec(name)
    assert isinstance(s, LossSpec) and s.cls is CLASSES[name]
    params = inspect.signature(s.cls.__init__).parameters
    assert s.input == ("cosine" if name in MARGIN else "logits")
    assert s.needs_counts == ("class_counts" in params)
    assert s.takes_weight == ("weight" in params)
    loss = create(name, **KWARGS.get(name, {}))
    if s.takes_weight:  # DRW switches the buffer by assignment
        assert "weight" in dict(loss.named_buffers()) or loss.weight is None
        loss.weight = torch.ones(4)
        assert "weight" in loss.state_dict()


def test_needs_counts_and_takes_weight_sets():
    assert {n for n in NAMES if spec(n).needs_counts} == {
        "ldam", "elm", "logit_adjusted", "balanced_softmax"}
    assert {n for n in NAMES if not spec(n).takes_weight} == {"simloss"}


def test_balanced_softmax_is_logit_adjusted_with_tau_one():
    bs = create("balanced_softmax", class_counts=COUNTS)
    la = create("logit_adjusted", class_counts=COUNTS, tau=1.0)
    assert bs.tau == 1.0
    x, t = torch.randn(8, 4), torch.randint(0, 4, (8,))
    torch.testing.assert_close(bs(x, t), la(x, t))
    log_pi = torch.log(torch.tensor(COUNTS, dtype=torch.float32) / sum(COUNTS))
    torch.testing.assert_close(bs(x, t), torch.nn.functional.cross_entropy(x + log_pi, t))
    with pytest.raises(ValueError, match="tau"):
        create("balanced_softmax", class_counts=COUNTS, tau=0.5)


def test_unknown_name_lists_the_known_names():
    with pytest.raises(ValueError, match="unknown loss 'softmax_margin'") as info:
        create("softmax_margin")
    for n in NAMES:
        assert n in str(info.value)
    with pytest.raises(ValueError, match="known losses"):
        spec("nope")
    with pytest.raises(TypeError, match="name"):
        spec(3)  # type: ignore[arg-type]


@pytest.mark.parametrize("name, kwargs, bad", [
    ("ce", {"gamma": 2.0}, "gamma"),
    ("focal", {"gama": 2.0}, "gama"),
    ("simloss", {"similarity": torch.eye(3), "weight": torch.ones(3)}, "weight"),
    ("camri", {"important_classes": [1], "tau": 1.0}, "tau"),
    ("logit_adjusted", {"class_counts": COUNTS, "margin": 0.1}, "margin"),
])
def test_unknown_kwarg_names_it_and_lists_the_accepted_ones(name, kwargs, bad):
    with pytest.raises(ValueError, match=f"does not take '{bad}'") as info:
        create(name, **kwargs)
    assert "reduction" in str(info.value)  # the list of what it takes


def test_constructor_validation_passes_through():
    with pytest.raises(ValueError, match="class_counts"):
        create("logit_adjusted", class_counts=[3, 0, 1])
    with pytest.raises(ValueError, match="gamma"):
        create("focal", gamma=-2.0)
    with pytest.raises(TypeError):
        create("ldam")  # class_counts is required
