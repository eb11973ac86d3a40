"""Cross-loss contracts for all 11 losses of ``classaware.losses.available()``.

module == functional, torch.compile, neutral settings == cross entropy (on logits or on s*cos),
float64 gradcheck, the weight / reduction / ignore_index rule, DRW weight switching, half
precision.  Per-loss formula checks live in test_losses_logit.py / test_losses_margin.py.
"""

from __future__ import annotations

import os
import warnings

import pytest
import torch
import torch.nn.functional as F

from classaware import functional as CF
from classaware.losses import available, create, spec
from classaware.similarity import ordinal

C = 5
COUNTS = [60, 30, 12, 5, 2]
SIM = ordinal(C, 0.5)

# name -> (create kwargs, functional call taking (input, target, **common))
CASES = {
    "ce": ({}, lambda x, t, **kw: CF.cross_entropy(x, t, **kw)),
    "camri": (
        {"important_classes": [1, 3], "margin": 0.3, "scale": 16.0},
        lambda x, t, **kw: CF.camri_loss(x, t, [1, 3], 0.3, 16.0, **kw),
    ),
    "arcface": (
        {"margin": 0.3, "scale": 16.0},
        lambda x, t, **kw: CF.arcface_loss(x, t, 0.3, 16.0, **kw),
    ),
    "cosface": (
        {"margin": 0.2, "scale": 16.0},
        lambda x, t, **kw: CF.cosface_loss(x, t, 0.2, 16.0, **kw),
    ),
    "ldam": (
        {"class_counts": COUNTS, "max_margin": 0.5, "scale": 10.0},
        lambda x, t, **kw: CF.ldam_loss(x, t, COUNTS, 0.5, 10.0, **kw),
    ),
    "elm": (
        {"class_counts": COUNTS, "max_margin": 0.5, "lam": 1.0, "scale": 10.0},
        lambda x, t, **kw: CF.elm_loss(x, t, COUNTS, 0.5, 1.0, 10.0, **kw),
    ),
    "simloss": ({"similarity": SIM}, lambda x, t, **kw: CF.simloss(x, t, SIM, **kw)),
    "cce": ({"gamma": -1.0}, lambda x, t, **kw: CF.complement_cross_entropy(x, t, -1.0, **kw)),
    "focal": ({"gamma": 2.0}, lambda x, t, **kw: CF.focal_loss(x, t, 2.0, **kw)),
    "logit_adjusted": (
        {"class_counts": COUNTS, "tau": 0.7},
        lambda x, t, **kw: CF.logit_adjusted_loss(x, t, COUNTS, 0.7, **kw),
    ),
    "balanced_softmax": (
        {"class_counts": COUNTS},
        lambda x, t, **kw: CF.logit_adjusted_loss(x, t, COUNTS, 1.0, **kw),
    ),
}
NAMES = list(CASES)

# the setting at which each loss is plain cross entropy (margin losses: on scale * cosine)
NEUTRAL = {
    "ce": ({}, 1.0),
    "camri": ({"important_classes": [0, 2], "margin": 0.0, "scale": 16.0}, 16.0),
    "arcface": ({"margin": 0.0, "scale": 64.0}, 64.0),
    "cosface": ({"margin": 0.0, "scale": 30.0}, 30.0),
    "ldam": ({"class_counts": COUNTS, "max_margin": 0.0, "scale": 30.0}, 30.0),
    "elm": ({"class_counts": COUNTS, "max_margin": 0.0, "lam": 1.0, "scale": 30.0}, 30.0),
    "simloss": ({"similarity": torch.eye(C)}, 1.0),
    "cce": ({"gamma": 0.0}, 1.0),
    "focal": ({"gamma": 0.0}, 1.0),
    "logit_adjusted": ({"class_counts": COUNTS, "tau": 0.0}, 1.0),
    # a uniform prior shifts every logit by the same constant
    "balanced_softmax": ({"class_counts": [7] * C}, 1.0),
}


def _inputs(name, n=12, dtype=torch.float32, seed=0, bound=0.95):
    g = torch.Generator().manual_seed(seed)
    if spec(name).input == "cosine":
        feats = F.normalize(torch.randn(n, 8, generator=g, dtype=torch.float64), dim=1)
        w = F.normalize(torch.randn(C, 8, generator=g, dtype=torch.float64), dim=1)
        x = (feats @ w.T).clamp(-bound, bound)
    else:
        x = torch.randn(n, C, generator=g, dtype=torch.float64) * 3
    t = torch.randint(0, C, (n,), generator=g)
    return x.to(dtype).requires_grad_(True), t


def test_cases_cover_every_available_loss():
    assert sorted(NAMES) == sorted(available()) and sorted(NEUTRAL) == sorted(available())


@pytest.mark.parametrize("name", NAMES)
def test_module_equals_functional(name):
    kwargs, fn = CASES[name]
    x, t = _inputs(name, seed=1)
    t[4] = -1
    w = torch.tensor([1.0, 0.5, 2.0, 3.0, 1.5])
    for reduction in ("mean", "sum", "none"):
        common = {"reduction": reduction, "ignore_index": -1}
        if spec(name).takes_weight:
            common["weight"] = w
        module = create(name, **kwargs, **common)
        torch.testing.assert_close(module(x, t), fn(x, t, **common), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_neutral_setting_is_cross_entropy(name):
    kwargs, s = NEUTRAL[name]
    x, t = _inputs(name, seed=2, dtype=torch.float64)
    t[0] = -100
    got = create(name, **kwargs)(x, t)
    want = F.cross_entropy(s * x, t)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
    (g1,) = torch.autograd.grad(got, x)
    (g2,) = torch.autograd.grad(want, x)
    torch.testing.assert_close(g1, g2, rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_float64(name):
    kwargs, _ = CASES[name]
    x, t = _inputs(name, n=4, dtype=torch.float64, seed=3, bound=0.9)
    t[1] = -100
    common = {"weight": torch.tensor([1.0, 2.0, 0.5, 1.0, 3.0])} if spec(name).takes_weight else {}
    module = create(name, **kwargs, **common).double()
    assert torch.autograd.gradcheck(lambda z: module(z, t), (x,))
    none = create(name, **kwargs, reduction="none").double()
    assert torch.autograd.gradcheck(lambda z: none(z, t), (x,))


@pytest.mark.parametrize("name", NAMES)
def test_weight_reduction_ignore_rule(name):
    """Weighted mean divides by sum(weight[target]) over non-ignored rows (torch's rule)."""
    kwargs, _ = CASES[name]
    x, t = _inputs(name, seed=4)
    t[[2, 7]] = -100
    per_row = create(name, **kwargs, reduction="none")(x, t)
    assert torch.all(per_row[[2, 7]] == 0)
    valid = t != -100
    if spec(name).takes_weight:
        w = torch.tensor([0.5, 2.0, 1.0, 4.0, 0.25])
        weighted = create(name, **kwargs, weight=w, reduction="none")(x, t)
        wt = torch.where(valid, w[t.clamp(min=0)], torch.zeros(()))
        torch.testing.assert_close(weighted, per_row * wt)
        torch.testing.assert_close(
            create(name, **kwargs, weight=w)(x, t), (per_row * wt).sum() / wt.sum()
        )
        torch.testing.assert_close(
            create(name, **kwargs, weight=w, reduction="sum")(x, t), (per_row * wt).sum()
        )
    torch.testing.assert_close(create(name, **kwargs)(x, t), per_row.sum() / valid.sum())
    torch.testing.assert_close(create(name, **kwargs, reduction="sum")(x, t), per_row.sum())


@pytest.mark.parametrize("name", NAMES)
def test_ignored_rows_with_inf_nan_and_all_ignored(name):
    kwargs, _ = CASES[name]
    loss = create(name, **kwargs)
    x, t = _inputs(name, n=6, seed=5)
    keep = [0, 2, 3, 5]
    clean = loss(x[keep], t[keep])
    x2 = x.detach().clone()
    x2[1] = float("nan")
    x2[4, 1] = float("inf")
    x2.requires_grad_(True)
    t2 = t.clone()
    t2[[1, 4]] = -100
    v = loss(x2, t2)
    torch.testing.assert_close(v, clean)
    (g,) = torch.autograd.grad(v, x2)
    assert torch.isfinite(g).all() and torch.all(g[[1, 4]] == 0)
    t_all = torch.full((6,), -100)
    v0 = loss(x2, t_all)
    assert v0.item() == 0.0
    (g0,) = torch.autograd.grad(v0, x2)
    assert torch.all(g0 == 0)


@pytest.mark.parametrize("name", [n for n in NAMES if spec(n).takes_weight])
def test_drw_weight_switch_by_assignment(name):
    kwargs, _ = CASES[name]
    x, t = _inputs(name, seed=6)
    w = torch.tensor([1.0, 2.0, 3.0, 0.5, 4.0])
    loss = create(name, **kwargs)
    assert loss.weight is None
    loss.weight = w
    assert "weight" in loss.state_dict()
    torch.testing.assert_close(loss(x, t), create(name, **kwargs, weight=w)(x, t))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_large_scale_computed_in_float32(name, dtype):
    kwargs = dict(CASES[name][0])
    if "scale" in kwargs:
        kwargs["scale"] = 64.0
    x, t = _inputs(name, seed=7, bound=1.0)
    if spec(name).input == "logits":
        x = (x.detach() * 1000).requires_grad_(True)  # beyond fp16's exp range
    xh = x.detach().to(dtype).requires_grad_(True)
    v = create(name, **kwargs)(xh, t)
    assert v.dtype == torch.float32 and torch.isfinite(v)
    (g,) = torch.autograd.grad(v, xh)
    assert g.dtype == dtype and torch.isfinite(g.float()).all()


# torch.compile with its default backend, inductor (the C++ build of every loss costs about 35 s
# cold on 2 CPU cores for both compile test files together).  CLASSAWARE_COMPILE_BACKEND=aot_eager
# traces with dynamo + AOTAutograd only (where custom autograd.Functions and data-dependent
# checks would break), for a quick local run.
BACKEND = os.environ.get("CLASSAWARE_COMPILE_BACKEND", "inductor")


@pytest.mark.parametrize("name", NAMES)
def test_torch_compile(name):
    torch._dynamo.reset()
    kwargs, _ = CASES[name]
    x, t = _inputs(name, n=8, seed=8)
    t[3] = -100
    loss = create(name, **kwargs)
    compiled = torch.compile(loss, backend=BACKEND, fullgraph=False)
    v = compiled(x, t)
    (g,) = torch.autograd.grad(v, x)
    v_ref = loss(x, t)
    (g_ref,) = torch.autograd.grad(v_ref, x)
    torch.testing.assert_close(v, v_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g, g_ref, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------
# one rule for every loss: bad class weights, one class, non-tensor input, no warnings
# ------------------------------------------------------------------------------------------

WEIGHTED = [n for n in NAMES if spec(n).takes_weight]
BAD_WEIGHTS = {
    "negative": [1.0, -0.5, 1.0, 1.0, 1.0],
    "nan": [1.0, float("nan"), 1.0, 1.0, 1.0],
    "inf": [1.0, float("inf"), 1.0, 1.0, 1.0],
    "all_zero": [0.0] * C,
}


@pytest.mark.parametrize("bad", list(BAD_WEIGHTS))
@pytest.mark.parametrize("name", WEIGHTED)
def test_bad_weight_values_are_rejected_naming_weight(name, bad):
    kwargs, fn = CASES[name]
    x, t = _inputs(name)
    w = torch.tensor(BAD_WEIGHTS[bad])
    with pytest.raises(ValueError, match="weight must be finite and >= 0"):
        create(name, **kwargs, weight=w)
    with pytest.raises(ValueError, match="weight must be finite and >= 0"):
        fn(x, t, weight=w)
    with pytest.raises(ValueError, match="weight must be finite and >= 0"):
        fn(x, t, weight=BAD_WEIGHTS[bad])  # a list is checked the same way
    loss = create(name, **kwargs)
    loss.weight = w  # a DRW switch is checked at the next forward
    with pytest.raises(ValueError, match="weight must be finite and >= 0"):
        loss(x, t)
    CF.set_value_checks(False)
    try:
        loss(x, t)  # value checks off: no check, no error
    finally:
        CF.set_value_checks(True)


@pytest.mark.parametrize("name", WEIGHTED)
def test_targets_whose_weights_are_all_zero_give_zero_not_nan(name):
    """As an all-ignored batch: the weighted mean over nothing is 0, with zero gradient."""
    kwargs, fn = CASES[name]
    x, _ = _inputs(name, n=6)
    t = torch.tensor([0, 2, 0, 2, 2, 0])
    w = torch.tensor([0.0, 1.0, 0.0, 1.0, 1.0])
    for v in (create(name, **kwargs, weight=w)(x, t), fn(x, t, weight=w)):
        assert v.item() == 0.0
        (g,) = torch.autograd.grad(v, x)
        assert torch.all(g == 0)


def _one_class_kwargs(name):
    kwargs = dict(CASES[name][0])
    if "class_counts" in kwargs:
        kwargs["class_counts"] = [10]
    if "important_classes" in kwargs:
        kwargs["important_classes"] = [0]
    if "similarity" in kwargs:
        kwargs["similarity"] = torch.eye(1)
    return kwargs


@pytest.mark.parametrize("name", NAMES)
def test_one_class_is_a_value_error_for_every_loss(name):
    x = torch.full((4, 1), 0.5, requires_grad=True)
    t = torch.zeros(4, dtype=torch.int64)
    with pytest.raises(ValueError, match="at least 2 classes"):
        create(name, **_one_class_kwargs(name))(x, t)
    with pytest.raises(ValueError, match="at least 2 classes"):
        CASES[name][1](x, t)


@pytest.mark.parametrize("name", NAMES)
def test_lists_for_input_or_target_are_a_type_error(name):
    """As torch's own losses: input and target must be tensors (constructor arguments such as
    weight, class_counts, similarity or important_classes may be lists)."""
    kwargs, fn = CASES[name]
    x, t = _inputs(name, n=3)
    loss = create(name, **kwargs)
    for call in (loss, fn):
        with pytest.raises(TypeError, match="input must be a torch.Tensor"):
            call(x.tolist(), t)
        with pytest.raises(TypeError, match="target must be a torch.Tensor"):
            call(x, t.tolist())


@pytest.mark.parametrize("name", NAMES)
def test_no_warning_at_extreme_values(name):
    """cos = +-1, huge logits, ignored rows holding inf/NaN, all ignored, half precision."""
    kwargs, fn = CASES[name]
    x, t = _inputs(name, n=6, bound=1.0)
    edge = x.detach().clone()
    if spec(name).input == "cosine":
        edge[0], edge[1] = 1.0, -1.0
    else:
        edge[0], edge[1] = 1e4, -1e4
    edge[2] = float("nan")
    edge[3, 0] = float("inf")
    t = t.clone()
    t[[2, 3]] = -100
    loss = create(name, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for inp, tgt in ((edge, t), (edge, torch.full_like(t, -100)), (edge.half(), t)):
            inp = inp.detach().requires_grad_(True)
            for v in (loss(inp, tgt), fn(inp, tgt)):
                (g,) = torch.autograd.grad(v, inp)
                assert torch.isfinite(v) and torch.isfinite(g.float()).all()
