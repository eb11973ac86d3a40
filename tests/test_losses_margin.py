"""Margin losses (CAMRI, ArcFace, CosFace, LDAM, ELM) against per-sample references.

The references below are written from the formulas of issue 2 with plain loops and arccos
(never by calling the implementation).  Every value / gradient test runs both as on the eager
CPU and as on CUDA / under torch.compile, where no check reads a value back to the host (forced
here by patching ``eager_cpu``).
"""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.nn.functional as F

import classaware.functional._checks as checks
from classaware.functional import (
    arcface_loss,
    camri_loss,
    cosface_loss,
    elm_loss,
    ldam_loss,
    set_value_checks,
)
from classaware.losses import ArcFaceLoss, CAMRILoss, CosFaceLoss, ELMLoss, LDAMLoss

C = 6
COUNTS = [200, 80, 30, 12, 5, 2]
IMPORTANT = [1, 4]
NAMES = ["camri", "arcface", "arcface_easy", "cosface", "ldam", "elm", "elm_released"]


# ------------------------------------------------------------------------------------------
# independent reference, one sample at a time
# ------------------------------------------------------------------------------------------


def ref_deltas(counts, max_margin):
    q = [n ** -0.25 for n in counts]
    return [max_margin * v / max(q) for v in q]


def ref_target_logit(name, row, y, p):
    """psi(cos_y) for one row (a 1-D float64 tensor that may require grad)."""
    c = row[y]
    if name == "camri":
        m = p["margins"][p["important"].index(y)] if y in p["important"] else 0.0
        return torch.cos(torch.acos(c) + m)
    if name in ("arcface", "arcface_easy"):
        m = p["margin"]
        theta = torch.acos(c)
        if p.get("easy_margin"):
            return torch.cos(theta + m) if c.item() > 0 else c
        if theta.item() + m > math.pi:
            return c - m * math.sin(m)
        return torch.cos(theta + m)
    if name == "cosface":
        return c - p["margin"]
    deltas = ref_deltas(p["counts"], p["max_margin"])
    if name == "ldam":
        return c - deltas[y]
    # ELM: the strongest wrong class, chosen without gradient
    values = [row[j].item() if j != y else -math.inf for j in range(len(row))]
    j_hat = max(range(len(values)), key=lambda j: (values[j], -j))
    return c - deltas[y] - p["lam"] * deltas[j_hat]


def ref_loss(name, cos, target, p, weight=None, reduction="mean", ignore_index=-100):
    s = p["scale"]
    per_sample, w_sum = [], 0.0
    total = cos.new_zeros(())
    for i in range(cos.shape[0]):
        y = int(target[i])
        if y == ignore_index:
            per_sample.append(cos.new_zeros(()))
            continue
        logits = [s * cos[i, j] for j in range(cos.shape[1])]
        logits[y] = s * ref_target_logit(name, cos[i], y, p)
        li = torch.logsumexp(torch.stack(logits), 0) - logits[y]
        wi = 1.0 if weight is None else float(weight[y])
        per_sample.append(wi * li)
        total = total + wi * li
        w_sum += wi
    if reduction == "none":
        return torch.stack(per_sample) if per_sample else cos.new_zeros(0)
    if reduction == "sum":
        return total
    return total / w_sum if w_sum else total * 0.0


# name -> (reference params, functional call, module)
def case(name):
    if name == "camri":
        p = {"important": IMPORTANT, "margins": [0.4, 0.25], "scale": 8.0}
        return p, lambda x, t, **kw: camri_loss(x, t, IMPORTANT, [0.4, 0.25], 8.0, **kw), \
            lambda **kw: CAMRILoss(IMPORTANT, [0.4, 0.25], 8.0, **kw)
    if name == "arcface":
        p = {"margin": 0.5, "scale": 6.0}
        return p, lambda x, t, **kw: arcface_loss(x, t, 0.5, 6.0, **kw), \
            lambda **kw: ArcFaceLoss(0.5, 6.0, **kw)
    if name == "arcface_easy":
        p = {"margin": 0.3, "scale": 6.0, "easy_margin": True}
        return p, lambda x, t, **kw: arcface_loss(x, t, 0.3, 6.0, easy_margin=True, **kw), \
            lambda **kw: ArcFaceLoss(0.3, 6.0, easy_margin=True, **kw)
    if name == "cosface":
        p = {"margin": 0.35, "scale": 7.0}
        return p, lambda x, t, **kw: cosface_loss(x, t, 0.35, 7.0, **kw), \
            lambda **kw: CosFaceLoss(0.35, 7.0, **kw)
    if name == "ldam":
        p = {"counts": COUNTS, "max_margin": 0.5, "scale": 5.0}
        return p, lambda x, t, **kw: ldam_loss(x, t, COUNTS, 0.5, 5.0, **kw), \
            lambda **kw: LDAMLoss(COUNTS, 0.5, 5.0, **kw)
    lam = 1.0 if name == "elm" else -1.0
    p = {"counts": COUNTS, "max_margin": 0.6, "scale": 5.0, "lam": lam}
    return p, lambda x, t, **kw: elm_loss(x, t, COUNTS, 0.6, lam, 5.0, **kw), \
        lambda **kw: ELMLoss(COUNTS, 0.6, lam, 5.0, **kw)


@pytest.fixture(params=["eager-cpu", "no-host-reads"])
def path(request, monkeypatch):
    """As on the eager CPU, and as on CUDA / under compile, where no check reads a value back
    to the host (so every batch is masked for ignore_index; forced here by patching)."""
    if request.param == "no-host-reads":
        monkeypatch.setattr(checks, "eager_cpu", lambda t: False)
    return request.param


def make_inputs(n=10, seed=0, dtype=torch.float64, ignore=True):
    g = torch.Generator().manual_seed(seed)
    cos = torch.rand(n, C, generator=g, dtype=torch.float64) * 1.8 - 0.9
    target = torch.arange(n) % C
    # a few rows exercise the branches: theta + m > pi (ArcFace rule / CAMRI as is),
    # cos_y < 0 (easy margin), a near-tie between wrong classes (ELM picks the larger)
    if n >= 6:
        cos[2, target[2]] = -0.97
        cos[4, target[4]] = -0.2
        cos[5, 0], cos[5, 3] = 0.61, 0.6
    if ignore and n >= 4:
        target[3] = -100
    return cos.to(dtype).requires_grad_(), target


# ------------------------------------------------------------------------------------------
# values and gradients against the reference
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_value_and_gradient_match_reference(name, reduction, path):
    p, fn, _ = case(name)
    cos, target = make_inputs()
    weight = torch.tensor([1.0, 2.0, 0.5, 1.5, 3.0, 0.25], dtype=torch.float64)
    for w in (None, weight):
        got = fn(cos, target, weight=w, reduction=reduction)
        want = ref_loss(name, cos, target, p, weight=w, reduction=reduction)
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-9)
        upstream = torch.linspace(0.5, 1.5, got.numel(), dtype=torch.float64).reshape(got.shape)
        (g_got,) = torch.autograd.grad(got, cos, upstream)
        (g_want,) = torch.autograd.grad(want, cos, upstream)
        torch.testing.assert_close(g_got, g_want, rtol=1e-6, atol=1e-9)
        assert g_got[3].abs().sum() == 0  # the ignored row


@pytest.mark.parametrize("name", NAMES)
def test_float64_input_is_computed_in_float64(name, path):
    """Every margin (LDAM/ELM's deltas from the counts, CAMRI's angles, ArcFace/CosFace's m) is
    used in float64: loss and gradient match the float64 reference to 1e-12, for the functional
    and the module (whose buffers are float64)."""
    p, fn, make = case(name)
    cos, target = make_inputs(n=12, seed=5)
    want = ref_loss(name, cos, target, p)
    (g_want,) = torch.autograd.grad(want, cos)
    for got in (fn(cos, target), make()(cos, target)):
        assert got.dtype == torch.float64
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
        (g_got,) = torch.autograd.grad(got, cos)
        torch.testing.assert_close(g_got, g_want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_float64(name):
    """The analytic backward against finite differences (the torch path is held to the
    reference's autograd in test_value_and_gradient_match_reference)."""
    _, fn, _ = case(name)
    cos, target = make_inputs(n=6, seed=1)
    weight = torch.tensor([1.0, 2.0, 0.5, 1.5, 3.0, 0.25], dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda x: fn(x, target, weight=weight, reduction="none"), (cos,), eps=1e-6, atol=1e-6
    )


def test_camri_margin_only_on_important_targets(path):
    cos, target = make_inputs(ignore=False)
    s = 8.0
    got = camri_loss(cos, target, IMPORTANT, 0.3, s, reduction="none")
    ce = F.cross_entropy(s * cos, target, reduction="none")
    important = torch.isin(target, torch.tensor(IMPORTANT))
    torch.testing.assert_close(got[~important], ce[~important])
    assert (got[important] > ce[important]).all()  # cos(theta + m) < cos(theta) for theta < pi - m


def test_elm_lam_zero_is_ldam_and_lam_negated_is_released_code(path):
    cos, target = make_inputs(ignore=False)
    assert torch.equal(
        elm_loss(cos, target, COUNTS, 0.5, 0.0, 5.0), ldam_loss(cos, target, COUNTS, 0.5, 5.0)
    )
    # the authors' release: target logit s * (cos_y - delta_y + delta_jhat)
    deltas = torch.tensor(ref_deltas(COUNTS, 0.5), dtype=torch.float64)
    with torch.no_grad():
        j_hat = cos.detach().scatter(1, target[:, None], -2.0).argmax(1)
    onehot = F.one_hot(target, C).bool()
    released = torch.where(onehot, cos - (deltas[target] - deltas[j_hat])[:, None], cos)
    torch.testing.assert_close(
        elm_loss(cos, target, COUNTS, 0.5, -1.0, 5.0), F.cross_entropy(5.0 * released, target)
    )


# ------------------------------------------------------------------------------------------
# neutral settings, module == functional, weight / reduction / ignore_index semantics
# ------------------------------------------------------------------------------------------

NEUTRAL = {
    "camri_m0": lambda x, t, **kw: camri_loss(x, t, IMPORTANT, 0.0, 16.0, **kw),
    "camri_none": lambda x, t, **kw: camri_loss(x, t, [], math.pi / 16, 16.0, **kw),
    "arcface": lambda x, t, **kw: arcface_loss(x, t, 0.0, 16.0, **kw),
    "arcface_easy": lambda x, t, **kw: arcface_loss(x, t, 0.0, 16.0, easy_margin=True, **kw),
    "cosface": lambda x, t, **kw: cosface_loss(x, t, 0.0, 16.0, **kw),
    "ldam": lambda x, t, **kw: ldam_loss(x, t, COUNTS, 0.0, 16.0, **kw),
    "elm": lambda x, t, **kw: elm_loss(x, t, COUNTS, 0.0, 1.0, 16.0, **kw),
}


@pytest.mark.parametrize("name", list(NEUTRAL))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_neutral_setting_is_cross_entropy_on_scaled_cosines(name, reduction, path):
    cos, target = make_inputs(dtype=torch.float32)
    cos.data[0, target[0]] = 1.0  # exact +-1 are fine in the neutral setting too
    cos.data[1, target[1]] = -1.0
    weight = torch.tensor([1.0, 2.0, 0.5, 1.5, 3.0, 0.25])
    for w in (None, weight):
        got = NEUTRAL[name](cos, target, weight=w, reduction=reduction)
        want = F.cross_entropy(16.0 * cos, target, weight=w, reduction=reduction)
        torch.testing.assert_close(got, want)
        (g_got,) = torch.autograd.grad(got.sum(), cos)
        (g_want,) = torch.autograd.grad(want.sum(), cos)
        torch.testing.assert_close(g_got, g_want)


@pytest.mark.parametrize("name", NAMES)
def test_module_equals_functional_and_drw_assignment(name):
    _, fn, make = case(name)
    cos, target = make_inputs()
    weight = torch.tensor([1.0, 2.0, 0.5, 1.5, 3.0, 0.25], dtype=torch.float64)
    for reduction in ("mean", "sum", "none"):
        module = make(reduction=reduction)
        a = module(cos, target)
        b = fn(cos, target, reduction=reduction)
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        module.weight = weight  # what the trainer does at the DRW epoch
        assert "weight" in module.state_dict()
        torch.testing.assert_close(module(cos, target), fn(cos, target, weight=weight, reduction=reduction))
        (ga,) = torch.autograd.grad(module(cos, target).sum(), cos)
        (gb,) = torch.autograd.grad(fn(cos, target, weight=weight, reduction=reduction).sum(), cos)
        torch.testing.assert_close(ga, gb, rtol=0, atol=0)


def test_modules_register_buffers():
    camri = CAMRILoss([3, 1], margin=[0.1, 0.2])
    assert camri.important_classes.tolist() == [3, 1]
    assert camri.margin.tolist() == pytest.approx([0.1, 0.2])
    ldam = LDAMLoss([16, 1], max_margin=0.4)
    assert ldam.margins.tolist() == pytest.approx([0.2, 0.4])
    for mod in (camri, ldam, ELMLoss([16, 1]), ArcFaceLoss(), CosFaceLoss()):
        assert "weight" in mod._buffers and mod.weight is None
    with_w = CosFaceLoss(weight=torch.tensor([1.0, 2.0]))
    assert with_w.state_dict()["weight"].tolist() == [1.0, 2.0]
    moved = ldam.to(torch.float64)
    assert moved.margins.dtype == torch.float64


def test_weighted_mean_divides_by_sum_of_target_weights(path):
    cos, target = make_inputs(ignore=True)
    weight = torch.tensor([1.0, 2.0, 0.5, 1.5, 3.0, 0.25], dtype=torch.float64)
    per = cosface_loss(cos, target, 0.3, 7.0, reduction="none")  # unweighted, 0 when ignored
    valid = target != -100
    w = torch.where(valid, weight[target.clamp_min(0)], 0.0)
    want = (per * w).sum() / w.sum()
    torch.testing.assert_close(cosface_loss(cos, target, 0.3, 7.0, weight=weight), want)
    # ignore_index may be a real class index, as in torch.nn.functional.cross_entropy
    got = cosface_loss(cos, target.clamp_min(0), 0.0, 7.0, ignore_index=2)
    torch.testing.assert_close(got, F.cross_entropy(7.0 * cos, target.clamp_min(0), ignore_index=2))


# ------------------------------------------------------------------------------------------
# numerical edge cases
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_finite_at_cos_plus_minus_one_and_theta_plus_m_beyond_pi(name, path):
    _, fn, _ = case(name)
    cos = torch.tensor(
        [[1.0, -1.0, 0.0, 0.5, -0.5, 0.2],   # target at cos = 1 exactly
         [-1.0, 1.0, 1.0, 0.0, 0.3, -1.0],   # target at cos = -1 (theta + m > pi)
         [-0.99, 0.9, 0.1, 0.2, 0.3, 0.4],   # theta + m > pi
         [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]],    # all equal (ELM tie)
        dtype=torch.float32, requires_grad=True,
    )
    target = torch.tensor([0, 0, 0, 3])
    loss = fn(cos, target)
    (grad,) = torch.autograd.grad(loss, cos)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    # also in float64, against the reference where it is defined (away from +-1)
    p, _, _ = case(name)
    c64 = cos.detach().double()
    torch.testing.assert_close(fn(c64, target), ref_loss(name, c64.clamp(-1, 1), target, p))


def test_arcface_beyond_pi_uses_insightface_rule(path):
    m, s = 0.5, 10.0
    cos = torch.tensor([[-0.95, 0.1, 0.2]], dtype=torch.float64, requires_grad=True)
    assert math.acos(-0.95) + m > math.pi
    target = torch.tensor([0])
    logits = torch.tensor([[s * (-0.95 - m * math.sin(m)), s * 0.1, s * 0.2]], dtype=torch.float64)
    torch.testing.assert_close(arcface_loss(cos, target, m, s), F.cross_entropy(logits, target))
    (g,) = torch.autograd.grad(arcface_loss(cos, target, m, s), cos)
    p = torch.softmax(logits, 1)[0]
    torch.testing.assert_close(g[0], s * (p - torch.tensor([1.0, 0, 0], dtype=torch.float64)))


@pytest.mark.parametrize("name", NAMES)
def test_ignored_rows_with_inf_and_nan(name, path):
    _, fn, _ = case(name)
    cos, target = make_inputs(ignore=False)
    bad = cos.detach().clone()
    bad[3] = torch.tensor([math.inf, -math.inf, math.nan, 0.5, 7.0, -3.0], dtype=torch.float64)
    bad[7, 2] = math.nan
    bad.requires_grad_()
    tgt = target.clone()
    tgt[[3, 7]] = -100
    keep = tgt != -100
    for reduction in ("mean", "sum", "none"):
        got = fn(bad, tgt, reduction=reduction)
        want = fn(cos.detach()[keep], target[keep], reduction=reduction)
        if reduction == "none":
            assert got[3] == 0 and got[7] == 0
            torch.testing.assert_close(got[keep], want)
        else:
            torch.testing.assert_close(got, want)
        (g,) = torch.autograd.grad(got.sum(), bad)
        assert torch.isfinite(g).all()
        assert g[3].abs().sum() == 0 and g[7].abs().sum() == 0


@pytest.mark.parametrize("name", NAMES)
def test_all_ignored_and_empty_batches(name, path):
    _, fn, _ = case(name)
    cos, _ = make_inputs(n=4)
    target = torch.full((4,), -100)
    for reduction, want in (("mean", 0.0), ("sum", 0.0)):
        loss = fn(cos, target, reduction=reduction)
        assert loss.item() == want
        (g,) = torch.autograd.grad(loss, cos)
        assert g.abs().sum() == 0
    assert fn(cos, target, reduction="none").tolist() == [0.0] * 4
    empty = torch.zeros(0, C, dtype=torch.float64, requires_grad=True)
    none = torch.zeros(0, dtype=torch.int64)
    assert fn(empty, none).item() == 0.0
    assert fn(empty, none, reduction="sum").item() == 0.0
    assert fn(empty, none, reduction="none").shape == (0,)
    (g,) = torch.autograd.grad(fn(empty, none), empty)
    assert g.shape == (0, C)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_with_scale_64_computed_in_float32(name, dtype, path):
    _, _, make = case(name)
    module = make()
    module.scale = 64.0
    g = torch.Generator().manual_seed(3)
    cos32 = torch.rand(16, C, generator=g) * 2 - 1
    cos32[:, 0] = 1.0  # logits of 64: exp overflows float16
    target = torch.arange(16) % C
    cos_h = cos32.to(dtype).requires_grad_()
    loss = module(cos_h, target)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    # the same as the float32 computation on the (rounded) half input
    ref_in = cos_h.detach().float().requires_grad_()
    ref = module(ref_in, target)
    torch.testing.assert_close(loss, ref)
    (gh,) = torch.autograd.grad(loss, cos_h)
    (gr,) = torch.autograd.grad(ref, ref_in)
    assert gh.dtype == dtype and torch.isfinite(gh.float()).all()
    torch.testing.assert_close(gh.float(), gr.to(dtype).float())


def test_float32_and_float64_outputs():
    cos, target = make_inputs(dtype=torch.float32)
    assert cosface_loss(cos, target).dtype == torch.float32
    assert cosface_loss(cos.double(), target).dtype == torch.float64


# ------------------------------------------------------------------------------------------
# value checks
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_cosine_range_check(name, path):
    _, fn, _ = case(name)
    cos, target = make_inputs(ignore=False)
    ok = cos.detach().clone()
    ok[0, 0] = 1.0009  # inside the tolerance
    ok[1, 1] = -1.0009
    assert torch.isfinite(fn(ok, target))
    for value in (1.002, -1.5, 30.0, math.nan, math.inf):
        bad = cos.detach().clone()
        bad[2, 4] = value
        with pytest.raises(ValueError, match="CosineClassifier"):
            fn(bad, target)
    set_value_checks(False)
    try:
        bad = cos.detach().clone()
        bad[2, 4] = 1.5
        fn(bad, target)  # no check, no error
    finally:
        set_value_checks(True)


@pytest.mark.parametrize("scale", [1.0, 16.0, 64.0])
def test_cosine_range_check_in_every_position(scale, path):
    """Target and non-target columns, rows whose softmax normaliser exceeds the bound."""
    base = torch.full((4, C), 0.2)
    base[1] = 1.0  # all ones: logsumexp = s + log C > s * 1.001, still in range
    base[2, :3] = 1.0009
    target = torch.tensor([0, 1, 2, 3])
    for fn in (lambda x: cosface_loss(x, target, 0.2, scale),
               lambda x: camri_loss(x, target, [2], 0.3, scale)):
        assert torch.isfinite(fn(base))
        for row in (1, 3):
            for col in (int(target[row]), (int(target[row]) + 1) % C):
                for value in (1.0011, -1.0011, math.nan):
                    bad = base.clone()
                    bad[row, col] = value
                    with pytest.raises(ValueError, match="CosineClassifier"):
                        fn(bad)


def test_bad_input_shapes_and_types():
    cos, target = make_inputs(ignore=False)
    with pytest.raises(ValueError, match="input must be 2-D"):
        cosface_loss(cos[0], target[:1])
    with pytest.raises(ValueError, match="target must be 1-D"):
        cosface_loss(cos, target[:, None])
    with pytest.raises(TypeError, match="target must be int64"):
        cosface_loss(cos, target.int())
    with pytest.raises(TypeError, match="input must be a floating-point"):
        cosface_loss(cos.long(), target)
    with pytest.raises(ValueError, match="target has batch size 9 but input has 10"):
        cosface_loss(cos, target[:9])
    for bad in (C, -1, -101):
        t = target.clone()
        t[0] = bad
        with pytest.raises(ValueError, match=r"target must hold class indices in \[0, 6\)"):
            cosface_loss(cos, t)
    with pytest.raises(ValueError, match="reduction must be one of"):
        cosface_loss(cos, target, reduction="avg")
    with pytest.raises(ValueError, match="weight must have 6 entries"):
        cosface_loss(cos, target, weight=torch.ones(5))
    with pytest.raises(TypeError, match="ignore_index must be an int"):
        cosface_loss(cos, target, ignore_index=1.5)


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda x, t: camri_loss(x, t, [6]), ValueError, r"important_classes .*\[0, 6\)"),
        (lambda x, t: camri_loss(x, t, [-1]), ValueError, "important_classes"),
        (lambda x, t: camri_loss(x, t, [1, 1]), ValueError, "important_classes must not repeat"),
        (lambda x, t: camri_loss(x, t, ["cat"]), TypeError, "important_classes"),
        (lambda x, t: camri_loss(x, t, torch.tensor([2, 2])), ValueError, "must not repeat"),
        (lambda x, t: camri_loss(x, t, torch.tensor([0, 9])), ValueError, "important_classes"),
        (lambda x, t: camri_loss(x, t, [1], margin=-0.1), ValueError, "margin must be >= 0"),
        (lambda x, t: camri_loss(x, t, [1, 2], margin=[0.1]), ValueError, "margin has 1 entries"),
        (lambda x, t: camri_loss(x, t, [1, 2], [0.1, -0.2]), ValueError, "margin must be >= 0"),
        (lambda x, t: camri_loss(x, t, [1], margin=4.0), ValueError, r"\[0, pi\]"),
        (lambda x, t: camri_loss(x, t, [1], scale=0.0), ValueError, "scale must be > 0"),
        (lambda x, t: arcface_loss(x, t, margin=-0.5), ValueError, "margin must be >= 0"),
        (lambda x, t: arcface_loss(x, t, scale=-1.0), ValueError, "scale must be > 0"),
        (lambda x, t: arcface_loss(x, t, scale="64"), TypeError, "scale"),
        (lambda x, t: arcface_loss(x, t, easy_margin=1), TypeError, "easy_margin"),
        (lambda x, t: cosface_loss(x, t, margin=-0.1), ValueError, "margin must be >= 0"),
        (lambda x, t: cosface_loss(x, t, scale=0), ValueError, "scale must be > 0"),
        (lambda x, t: ldam_loss(x, t, [5, 0, 1, 1, 1, 1]), ValueError, "class_counts must be > 0"),
        (lambda x, t: ldam_loss(x, t, [5, -2, 1, 1, 1, 1]), ValueError, "class_counts"),
        (lambda x, t: ldam_loss(x, t, [5, 2, 1]), ValueError, "class_counts / margins have 3 entries but the input has 6 classes"),
        (lambda x, t: ldam_loss(x, t, COUNTS, max_margin=-0.5), ValueError, "max_margin must be >= 0"),
        (lambda x, t: ldam_loss(x, t), ValueError, "class_counts or margins"),
        (lambda x, t: ldam_loss(x, t, margins=[0.1] * 5), ValueError, "margins have 5 entries but the input has 6"),
        (lambda x, t: ldam_loss(x, t, margins=[-0.1] * 6), ValueError, "margins must be >= 0"),
        (lambda x, t: elm_loss(x, t, [1] * 7), ValueError, "class_counts / margins have 7 entries"),
        (lambda x, t: elm_loss(x, t, COUNTS, lam=math.nan), ValueError, "lam must be finite"),
        (lambda x, t: elm_loss(x, t, COUNTS, scale=-3.0), ValueError, "scale must be > 0"),
    ],
)
def test_bad_arguments_name_the_argument(call, exc, match):
    cos, target = make_inputs(ignore=False)
    with pytest.raises(exc, match=match):
        call(cos, target)


@pytest.mark.parametrize(
    "make, exc, match",
    [
        (lambda: CAMRILoss([1, 1]), ValueError, "important_classes must not repeat"),
        (lambda: CAMRILoss([-2]), ValueError, "important_classes"),
        (lambda: CAMRILoss(3), TypeError, "important_classes"),
        (lambda: CAMRILoss([1, 2], margin=[0.1, 0.2, 0.3]), ValueError, "margin has 3 entries"),
        (lambda: CAMRILoss([1], margin=-1.0), ValueError, "margin must be >= 0"),
        (lambda: CAMRILoss([1], scale=0.0), ValueError, "scale must be > 0"),
        (lambda: CAMRILoss([1], reduction="batchmean"), ValueError, "reduction must be one of"),
        (lambda: ArcFaceLoss(margin=-0.1), ValueError, "margin must be >= 0"),
        (lambda: ArcFaceLoss(scale=-64.0), ValueError, "scale must be > 0"),
        (lambda: CosFaceLoss(margin=-0.35), ValueError, "margin must be >= 0"),
        (lambda: LDAMLoss([10, 0]), ValueError, "class_counts must be > 0"),
        (lambda: LDAMLoss([10, -1]), ValueError, "class_counts"),
        (lambda: LDAMLoss([]), ValueError, "class_counts must have at least one class"),
        (lambda: LDAMLoss([10, 1], max_margin=-1.0), ValueError, "max_margin must be >= 0"),
        (lambda: LDAMLoss([10, 1], weight=torch.ones(3)), ValueError, "weight must have 2 entries"),
        (lambda: ELMLoss([10, 1], lam="big"), TypeError, "lam must be a real number"),
        (lambda: ELMLoss([10, 0]), ValueError, "class_counts must be > 0"),
    ],
)
def test_bad_module_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_module_checks_against_the_number_of_classes():
    cos, target = make_inputs(ignore=False)
    with pytest.raises(ValueError, match=r"important_classes must be class indices in \[0, 6\)"):
        CAMRILoss([7])(cos, target)
    with pytest.raises(ValueError, match="class_counts / margins have 3 entries but the input has 6"):
        LDAMLoss([5, 4, 3])(cos, target)
    with pytest.raises(ValueError, match="CosineClassifier"):
        ArcFaceLoss()(cos * 3, target)


# ------------------------------------------------------------------------------------------
# torch.compile
# ------------------------------------------------------------------------------------------


# torch.compile with its default backend, inductor (the C++ build of every loss costs about 35 s
# cold on 2 CPU cores for both compile test files together).  CLASSAWARE_COMPILE_BACKEND=aot_eager
# traces with dynamo + AOTAutograd only (where custom autograd.Functions and data-dependent
# checks would break), for a quick local run.
BACKEND = os.environ.get("CLASSAWARE_COMPILE_BACKEND", "inductor")


def test_every_margin_loss_under_torch_compile():
    """One graph (fullgraph=True: no graph break) with all five losses, forward and backward."""
    torch._dynamo.reset()
    cos, target = make_inputs(n=8, dtype=torch.float32)
    modules = [case(name)[2]() for name in NAMES]

    def total(x, t):
        return sum(m(x, t) for m in modules)

    compiled = torch.compile(total, backend=BACKEND, fullgraph=True)
    got = compiled(cos, target)
    (g_got,) = torch.autograd.grad(got, cos)
    want = total(cos, target)
    (g_want,) = torch.autograd.grad(want, cos)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(g_got, g_want)
