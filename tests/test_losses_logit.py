"""Logit losses (CE, SimLoss, complement CE, focal, logit adjustment) against per-sample
references written here from the formulas (loops over samples, float64), values and gradients.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from classaware import functional as CF
from classaware import similarity
from classaware.losses import (
    ComplementCrossEntropy,
    CrossEntropyLoss,
    FocalLoss,
    LogitAdjustedLoss,
    SimLoss,
)

# ---------------------------------------------------------------------------------------------
# per-sample references (the formulas of issue 2, point 3)
# ---------------------------------------------------------------------------------------------


def _softmax_row(row: torch.Tensor) -> torch.Tensor:
    m = row.max()
    e = torch.exp(row - m)
    return e / e.sum()


def ref_ce_row(row, y):
    m = row.max()
    return m + torch.log(torch.exp(row - m).sum()) - row[y]


def ref_sim_row(row, y, S):
    p = _softmax_row(row)
    return -torch.log((S[y] * p).sum())


def ref_cce_row(row, y, gamma):
    k = row.shape[0]
    p = _softmax_row(row)
    ce = -torch.log(p[y])
    h = 0.0
    for j in range(k):
        if j != y:
            q = p[j] / (1 - p[y])
            h = h - q * torch.log(q)
    return ce + gamma / (k - 1) * h


def ref_focal_row(row, y, gamma):
    p = _softmax_row(row)
    return -((1 - p[y]) ** gamma) * torch.log(p[y])


def ref_la_row(row, y, counts, tau):
    prior = torch.tensor(counts, dtype=row.dtype) / sum(counts)
    return ref_ce_row(row + tau * torch.log(prior), y)


def reference(row_fn, x, target, *, weight=None, reduction="mean", ignore_index=-100):
    """Loop over samples, then PyTorch's weight / reduction / ignore_index rule."""
    losses, ws = [], []
    for i in range(x.shape[0]):
        y = int(target[i])
        if y == ignore_index:
            losses.append(x.new_zeros(()))
            ws.append(0.0)
            continue
        w = 1.0 if weight is None else float(weight[y])
        losses.append(w * row_fn(x[i], y))
        ws.append(w)
    out = torch.stack(losses) if losses else x.new_zeros(0)
    if reduction == "none":
        return out
    if reduction == "sum":
        return out.sum()
    denom = sum(ws)
    return out.sum() / (denom if denom != 0 else 1.0)


COUNTS = [40.0, 20.0, 9.0, 5.0, 1.0]
SIM = torch.tensor(
    [
        [1.0, 0.5, 0.0, 0.0, 0.2],
        [0.5, 1.0, 0.3, 0.0, 0.0],
        [0.0, 0.3, 1.0, 0.9, 0.0],
        [0.0, 0.0, 0.9, 1.0, 0.0],
        [0.2, 0.0, 0.0, 0.0, 1.0],
    ],
    dtype=torch.float64,
)

# name -> (functional call, module factory, per-row reference)
CASES = {
    "ce": (
        lambda x, t, **kw: CF.cross_entropy(x, t, **kw),
        lambda **kw: CrossEntropyLoss(**kw),
        ref_ce_row,
    ),
    "simloss": (
        lambda x, t, **kw: CF.simloss(x, t, SIM.to(getattr(x, "dtype", torch.float64)), **kw),
        lambda **kw: SimLoss(SIM, **kw),
        lambda row, y: ref_sim_row(row, y, SIM.to(row.dtype)),
    ),
    "cce": (
        lambda x, t, **kw: CF.complement_cross_entropy(x, t, gamma=-1.0, **kw),
        lambda **kw: ComplementCrossEntropy(-1.0, **kw),
        lambda row, y: ref_cce_row(row, y, -1.0),
    ),
    "cce_pos": (
        lambda x, t, **kw: CF.complement_cross_entropy(x, t, gamma=2.5, **kw),
        lambda **kw: ComplementCrossEntropy(2.5, **kw),
        lambda row, y: ref_cce_row(row, y, 2.5),
    ),
    "focal": (
        lambda x, t, **kw: CF.focal_loss(x, t, gamma=2.0, **kw),
        lambda **kw: FocalLoss(2.0, **kw),
        lambda row, y: ref_focal_row(row, y, 2.0),
    ),
    "focal_half": (
        lambda x, t, **kw: CF.focal_loss(x, t, gamma=0.5, **kw),
        lambda **kw: FocalLoss(0.5, **kw),
        lambda row, y: ref_focal_row(row, y, 0.5),
    ),
    "logit_adjusted": (
        lambda x, t, **kw: CF.logit_adjusted_loss(x, t, COUNTS, tau=1.5, **kw),
        lambda **kw: LogitAdjustedLoss(COUNTS, tau=1.5, **kw),
        lambda row, y: ref_la_row(row, y, COUNTS, 1.5),
    ),
}
WEIGHTED = [k for k in CASES if k != "simloss"]


def _data(n=9, c=5, seed=0, dtype=torch.float64, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(n, c, generator=g, dtype=dtype) * scale).requires_grad_(True)
    t = torch.randint(0, c, (n,), generator=g)
    return x, t


# ---------------------------------------------------------------------------------------------
# values and gradients vs the reference, for every reduction, with weight and ignore_index
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_value_and_grad_match_reference(name, reduction):
    fn, _, row = CASES[name]
    x, t = _data(seed=list(CASES).index(name))
    got = fn(x, t, reduction=reduction)
    want = reference(row, x, t, reduction=reduction)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    g_out = torch.rand_like(want) if reduction == "none" else None
    (gx,) = torch.autograd.grad(got, x, g_out)
    (gx_ref,) = torch.autograd.grad(want, x, g_out)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", WEIGHTED)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_weight_and_ignore_index_match_reference(name, reduction):
    fn, _, row = CASES[name]
    x, t = _data(n=12, seed=3)
    t[[1, 6]] = -7
    w = torch.tensor([0.5, 2.0, 1.0, 3.0, 0.25], dtype=torch.float64)
    got = fn(x, t, weight=w, reduction=reduction, ignore_index=-7)
    want = reference(row, x, t, weight=w, reduction=reduction, ignore_index=-7)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    (gx,) = torch.autograd.grad(got.sum(), x)
    (gx_ref,) = torch.autograd.grad(want.sum(), x)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-9, atol=1e-10)
    assert torch.all(gx[[1, 6]] == 0)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_matches_torch_semantics(reduction):
    x, t = _data(n=16, c=7, seed=5, dtype=torch.float32)
    t[[0, 3]] = 255
    w = torch.rand(7) + 0.1
    got = CF.cross_entropy(x, t, weight=w, reduction=reduction, ignore_index=255)
    want = F.cross_entropy(x, t, weight=w, reduction=reduction, ignore_index=255)
    torch.testing.assert_close(got, want)
    (g1,) = torch.autograd.grad(got.sum(), x)
    (g2,) = torch.autograd.grad(want.sum(), x)
    torch.testing.assert_close(g1, g2)


# ---------------------------------------------------------------------------------------------
# gradcheck, modules, buffers
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_gradcheck_float64(name):
    fn, _, _ = CASES[name]
    x, t = _data(n=5, seed=2)
    t[2] = -100
    w = torch.tensor([1.0, 2.0, 0.5, 1.5, 1.0], dtype=torch.float64)
    kw = {} if name == "simloss" else {"weight": w}
    assert torch.autograd.gradcheck(lambda z: fn(z, t, **kw), (x,))
    assert torch.autograd.gradcheck(lambda z: fn(z, t, reduction="none"), (x,))


@pytest.mark.parametrize("name", list(CASES))
def test_module_equals_functional(name):
    fn, make, _ = CASES[name]
    x, t = _data(n=10, seed=4, dtype=torch.float32)
    t[3] = -1
    for reduction in ("mean", "none"):
        kw = {"reduction": reduction, "ignore_index": -1}
        torch.testing.assert_close(make(**kw)(x, t), fn(x, t, **kw))


@pytest.mark.parametrize("cls", [CrossEntropyLoss, FocalLoss, ComplementCrossEntropy])
def test_weight_is_a_buffer_switchable_by_assignment(cls):
    x, t = _data(n=10, seed=6, dtype=torch.float32)
    w = torch.tensor([1.0, 3.0, 0.5, 2.0, 1.0])
    loss = cls()
    assert "weight" in dict(loss.named_buffers(remove_duplicate=False)) or loss.weight is None
    before = loss(x, t)
    loss.weight = w  # DRW switch
    assert "weight" in loss.state_dict()
    torch.testing.assert_close(loss(x, t), cls(weight=w)(x, t))
    assert not torch.allclose(before, loss(x, t))
    loss.weight = None
    torch.testing.assert_close(loss(x, t), before)


def test_logit_adjusted_module_buffers_and_state_dict():
    loss = LogitAdjustedLoss([3, 1], tau=1.0, weight=[1.0, 2.0])
    sd = loss.state_dict()
    assert set(sd) == {"weight", "log_prior"}
    torch.testing.assert_close(
        sd["log_prior"], torch.tensor([math.log(0.75), math.log(0.25)], dtype=torch.float64)
    )


def test_simloss_state_dict_roundtrip_updates_cached_log():
    a = SimLoss(torch.eye(3))
    s2 = torch.tensor([[1.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 1.0]])
    a.load_state_dict(SimLoss(s2).state_dict())
    x, t = _data(n=6, c=3, seed=8, dtype=torch.float32)
    torch.testing.assert_close(a(x, t), CF.simloss(x, t, s2))
    assert list(a.state_dict()) == ["similarity"]
    with pytest.raises(ValueError, match="similarity"):
        a.load_state_dict({"similarity": torch.full((3, 3), 2.0)})


# ---------------------------------------------------------------------------------------------
# numerical edge cases
# ---------------------------------------------------------------------------------------------


ALL_FNS = {k: v[0] for k, v in CASES.items()}


@pytest.mark.parametrize("name", list(CASES))
def test_huge_logits_stay_finite(name):
    fn = ALL_FNS[name]
    x = torch.tensor([[1e4, -1e4, 0.0, 5e3, -3.0], [-1e4, 1e4, 1e4, -1e4, 0.0]], requires_grad=True)
    t = torch.tensor([1, 0])
    v = fn(x, t, reduction="none")
    (g,) = torch.autograd.grad(v.sum(), x)
    assert torch.isfinite(v).all() and torch.isfinite(g).all()


def test_huge_logit_values_are_exact_where_known():
    x = torch.tensor([[1e4, -1e4, 0.0], [1e4, -1e4, 0.0]])
    t = torch.tensor([0, 1])
    torch.testing.assert_close(CF.cross_entropy(x, t, reduction="none"), torch.tensor([0.0, 2e4]))
    torch.testing.assert_close(CF.focal_loss(x, t, 2.0, reduction="none"), torch.tensor([0.0, 2e4]))


@pytest.mark.parametrize("gamma", [0.25, 0.5, 1.0, 2.0])
def test_focal_gradient_finite_at_certain_prediction(gamma):
    # p_y == 1 exactly in float32 (gap 200): (1 - p)^(gamma - 1) would be inf
    x = torch.tensor([[200.0, 0.0, 0.0], [0.0, 1.0, 2.0]], requires_grad=True)
    t = torch.tensor([0, 2])
    v = CF.focal_loss(x, t, gamma, reduction="none")
    (g,) = torch.autograd.grad(v.sum(), x)
    assert torch.isfinite(g).all()
    assert v[0].item() == 0.0 and torch.all(g[0] == 0)
    # and small-but-positive 1 - p (float64) agrees with the reference gradient
    x64 = torch.tensor([[9.0, 0.0, -1.0]], dtype=torch.float64, requires_grad=True)
    (g1,) = torch.autograd.grad(CF.focal_loss(x64, t[:1], gamma), x64)
    (g2,) = torch.autograd.grad(ref_focal_row(x64[0], 0, gamma), x64)
    torch.testing.assert_close(g1, g2, rtol=1e-9, atol=1e-15)


def test_complement_ce_is_stable_when_target_is_certain():
    # p_y -> 1 with equal wrong logits: q is uniform whatever x_y, so H = log(K - 1) exactly
    k = 6
    x = torch.zeros(3, k)
    x[0, 0], x[1, 1], x[2, 2] = 1e4, 80.0, 30.0
    x.requires_grad_(True)
    t = torch.tensor([0, 1, 2])
    v = CF.complement_cross_entropy(x, t, -1.0, reduction="none")
    (g,) = torch.autograd.grad(v.sum(), x)
    assert torch.isfinite(g).all()
    ce = torch.tensor([0.0, 0.0, (k - 1) * math.exp(-30.0)])
    want = ce - 1.0 / (k - 1) * math.log(k - 1)
    torch.testing.assert_close(v, want.float(), rtol=1e-6, atol=1e-6)


def test_complement_ce_entropy_sign_flattens_wrong_classes():
    # gamma = -1 (paper): a flat wrong-class distribution has lower loss than a peaked one
    flat = torch.tensor([[3.0, 0.0, 0.0, 0.0]])
    peaked = torch.tensor([[3.0, 0.0, -9.0, -9.0]])
    peaked[0, 1] = math.log(3.0)  # same p_y: logsumexp of the wrong logits is equal
    t = torch.tensor([0])
    ce_f, ce_p = CF.cross_entropy(flat, t), CF.cross_entropy(peaked, t)
    torch.testing.assert_close(ce_f, ce_p, rtol=1e-3, atol=1e-3)
    assert CF.complement_cross_entropy(flat, t, -1.0) < CF.complement_cross_entropy(peaked, t, -1.0)


def released_cce(y_hat, y):
    """The authors' released PyTorch CCE (balancing_factor = 1), re-typed from its formula."""
    n, k = y_hat.shape
    cross_entropy = F.nll_loss(F.log_softmax(y_hat, dim=1), y)
    p = F.softmax(y_hat, dim=1)
    yg = p.gather(1, y[:, None])
    px = p / ((1 - yg) + 1e-7)
    px_log = torch.log(px + 1e-10)
    zerohot = torch.ones(n, k, dtype=y_hat.dtype).scatter_(1, y[:, None], 0)
    complement_entropy = (px * px_log * zerohot).sum() / (float(n) * float(k))
    return cross_entropy - complement_entropy


@pytest.mark.parametrize("k", [3, 10])
def test_gamma_k_minus_1_over_k_reproduces_released_code(k):
    x, t = _data(n=20, c=k, seed=k)
    ours = CF.complement_cross_entropy(x, t, gamma=(k - 1) / k)
    released = released_cce(x, t)
    torch.testing.assert_close(ours, released, rtol=1e-5, atol=1e-5)
    # and the paper's gamma = -1 is not that
    assert not torch.allclose(CF.complement_cross_entropy(x, t), released, atol=1e-3)


def test_simloss_log_space_survives_underflowing_probabilities():
    # every class with credit (0 and 3) has p ~ e^-200: log of a sum of float32 probabilities is inf
    s = torch.eye(4)
    s[0, 3] = s[3, 0] = 0.5
    x = torch.tensor([[0.0, 200.0, 199.0, -1.0]], requires_grad=True)
    t = torch.tensor([0])
    v = CF.simloss(x, t, s)
    (g,) = torch.autograd.grad(v, x)
    assert torch.isfinite(v) and torch.isfinite(g).all()
    x64 = x.detach().double()
    want = ref_sim_row(x64[0], 0, s.double())
    torch.testing.assert_close(v.double(), want, rtol=1e-6, atol=1e-4)
    naive = -torch.log((s[0] * torch.softmax(x.detach(), 1)[0]).sum())
    assert not torch.isfinite(naive)  # the reason for log space


@pytest.mark.parametrize("kind", ["groups", "ordinal", "embedding-like"])
def test_simloss_similarity_kinds_match_reference(kind):
    c = 9
    if kind == "groups":
        s = torch.eye(c, dtype=torch.float64)
        for a, b in [(0, 4), (4, 7), (0, 7), (2, 3)]:
            s[a, b] = s[b, a] = 0.6
    elif kind == "ordinal":
        idx = torch.arange(c, dtype=torch.float64)
        s = 0.3 ** (idx[:, None] - idx[None, :]).abs()
    else:
        g = torch.Generator().manual_seed(1)
        s = torch.rand(c, c, generator=g, dtype=torch.float64)
        s = (s + s.T) / 2
        s.fill_diagonal_(1.0)
    x, t = _data(n=11, c=c, seed=21)
    t[5] = -100
    for reduction in ("mean", "none"):
        got = CF.simloss(x, t, s, reduction=reduction)
        want = reference(lambda row, y: ref_sim_row(row, y, s), x, t, reduction=reduction)
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
        (g1,) = torch.autograd.grad(got.sum(), x)
        (g2,) = torch.autograd.grad(want.sum(), x)
        torch.testing.assert_close(g1, g2, rtol=1e-9, atol=1e-10)
    assert torch.autograd.gradcheck(lambda z: CF.simloss(z, t, s), (x,))
    torch.testing.assert_close(SimLoss(s)(x, t), CF.simloss(x, t, s), rtol=1e-12, atol=1e-12)


def test_simloss_float64_uses_similarity_in_float64():
    """S from the builders (float64) or from a list is used in float64 with float64 input."""
    c = 7
    idx = torch.arange(c, dtype=torch.float64)
    s = 0.3 ** (idx[:, None] - idx[None, :]).abs()  # the formula, in float64
    x, t = _data(n=10, c=c, seed=30)
    t[4] = -100
    want = reference(lambda row, y: ref_sim_row(row, y, s), x, t)
    (g_want,) = torch.autograd.grad(want, x)
    built = similarity.ordinal(c, 0.3)
    for got in (CF.simloss(x, t, built), CF.simloss(x, t, s.tolist()), SimLoss(built)(x, t),
                SimLoss(s.tolist())(x, t)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
        (g_got,) = torch.autograd.grad(got, x)
        torch.testing.assert_close(g_got, g_want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("gamma", [0.01, 0.5])
def test_focal_gradient_finite_for_every_logit_gap(gamma, dtype):
    """Plain autograd of u^gamma * n: finite as 1 - p_y goes from 1/2 to exactly 0."""
    gaps = torch.linspace(0.0, 120.0, 241, dtype=dtype)
    x = torch.stack([gaps, torch.zeros_like(gaps), torch.zeros_like(gaps)], 1).requires_grad_()
    t = torch.zeros(gaps.shape[0], dtype=torch.int64)
    v = CF.focal_loss(x, t, gamma, reduction="none")
    (g,) = torch.autograd.grad(v.sum(), x)
    assert torch.isfinite(v).all() and torch.isfinite(g).all()
    x64 = x.detach()[:40].double().requires_grad_()  # gaps < 20: 1 - p_y well above eps
    got = CF.focal_loss(x64, t[:40], gamma, reduction="sum")
    want = sum(ref_focal_row(x64[i], 0, gamma) for i in range(40))
    torch.testing.assert_close(torch.autograd.grad(got, x64)[0],
                               torch.autograd.grad(want, x64)[0], rtol=1e-9, atol=1e-12)


def test_simloss_zero_similarity_entries_give_no_nan_gradient():
    x, t = _data(n=8, seed=9)
    v = CF.simloss(x, t, SIM)  # SIM has zeros: log S = -inf
    (g,) = torch.autograd.grad(v, x)
    assert torch.isfinite(g).all()


def test_simloss_gives_credit_for_similar_classes():
    s = torch.tensor([[1.0, 0.8, 0.0], [0.8, 1.0, 0.0], [0.0, 0.0, 1.0]])
    t = torch.tensor([0])
    near = torch.tensor([[0.0, 4.0, 0.0]])  # predicts the similar class
    far = torch.tensor([[0.0, 0.0, 4.0]])  # predicts the dissimilar class
    assert CF.simloss(near, t, s) < CF.simloss(far, t, s)
    torch.testing.assert_close(CF.cross_entropy(near, t), CF.cross_entropy(far, t))


@pytest.mark.parametrize("name", list(CASES))
def test_all_ignored_and_empty_batches(name):
    fn = ALL_FNS[name]
    x = torch.randn(3, 5, requires_grad=True)
    t = torch.full((3,), -100)
    for reduction in ("mean", "sum"):
        v = fn(x, t, reduction=reduction)
        assert v.item() == 0.0
        (g,) = torch.autograd.grad(v, x)
        assert torch.all(g == 0)
    assert torch.equal(fn(x, t, reduction="none"), torch.zeros(3))
    empty = torch.zeros(0, 5, requires_grad=True)
    assert fn(empty, torch.zeros(0, dtype=torch.long)).item() == 0.0


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(name, dtype):
    fn = ALL_FNS[name]
    x, t = _data(n=8, seed=12, dtype=torch.float32, scale=30.0)
    xh = x.detach().to(dtype).requires_grad_(True)
    v = fn(xh, t)
    assert v.dtype == torch.float32
    torch.testing.assert_close(v, fn(xh.detach().float(), t))
    (g,) = torch.autograd.grad(v, xh)
    assert g.dtype == dtype and torch.isfinite(g.float()).all()


# ---------------------------------------------------------------------------------------------
# neutral settings and documented equivalences
# ---------------------------------------------------------------------------------------------


def test_neutral_settings_equal_cross_entropy():
    x, t = _data(n=12, seed=13)
    ce = F.cross_entropy(x, t)
    torch.testing.assert_close(CF.simloss(x, t, torch.eye(5, dtype=torch.float64)), ce)
    torch.testing.assert_close(CF.complement_cross_entropy(x, t, 0.0), ce)
    torch.testing.assert_close(CF.focal_loss(x, t, 0.0), ce)
    torch.testing.assert_close(CF.logit_adjusted_loss(x, t, COUNTS, tau=0.0), ce)


def test_logit_adjustment_only_shifts_by_log_prior():
    x, t = _data(n=12, seed=14)
    counts = [10, 30, 60, 1, 7]
    log_pi = torch.log(torch.tensor(counts, dtype=torch.float64) / sum(counts))
    torch.testing.assert_close(
        CF.logit_adjusted_loss(x, t, counts, 2.0), F.cross_entropy(x + 2.0 * log_pi, t)
    )
    # counts only matter through their ratios
    torch.testing.assert_close(
        CF.logit_adjusted_loss(x, t, [c * 3 for c in counts]), CF.logit_adjusted_loss(x, t, counts)
    )


# ---------------------------------------------------------------------------------------------
# bad input: ValueError / TypeError naming the argument
# ---------------------------------------------------------------------------------------------

X = torch.randn(4, 5)
T = torch.tensor([0, 1, 2, 4])


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize(
    "x, t, exc, match",
    [
        (torch.randn(4, 5, 1), T, ValueError, "input"),
        (torch.randn(5), T, ValueError, "input"),
        (torch.randint(0, 3, (4, 5)), T, TypeError, "input"),
        (X, T[:, None], ValueError, "target"),
        (X, T.float(), TypeError, "target"),
        (X, T.int(), TypeError, "target"),
        (X, T[:3], ValueError, "target"),
        (X, torch.tensor([0, 1, 5, 2]), ValueError, "target"),
        (X, torch.tensor([0, -1, 2, 2]), ValueError, "target"),
        ([[0.0] * 5] * 4, T, TypeError, "input"),
    ],
)
def test_bad_input_target(name, x, t, exc, match):
    with pytest.raises(exc, match=match):
        ALL_FNS[name](x, t)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_reduction_and_ignore_index(name):
    fn, make, _ = CASES[name]
    with pytest.raises(ValueError, match="reduction"):
        fn(X, T, reduction="avg")
    with pytest.raises(ValueError, match="reduction"):
        make(reduction="batchmean")
    with pytest.raises(TypeError, match="ignore_index"):
        fn(X, T, ignore_index=1.5)
    with pytest.raises(TypeError, match="ignore_index"):
        make(ignore_index="none")


@pytest.mark.parametrize("name", WEIGHTED)
def test_bad_weight(name):
    fn, make, _ = CASES[name]
    with pytest.raises(ValueError, match="weight"):
        fn(X, T, weight=torch.ones(4))
    with pytest.raises(ValueError, match="weight"):
        make(weight=torch.ones(5, 5))
    loss = make()
    loss.weight = torch.ones(3)  # a DRW switch with the wrong length is caught at forward
    with pytest.raises(ValueError, match="weight"):
        loss(X, T)


@pytest.mark.parametrize(
    "counts, exc",
    [
        ([4, 0, 1, 1, 1], ValueError),
        ([4, -2, 1, 1, 1], ValueError),
        ([4, 1, 1, 1], ValueError),
        ([4, 1, 1, 1, float("nan")], ValueError),
        ([[4, 1, 1, 1, 1]], ValueError),
        ([], ValueError),
        ("many", TypeError),
        ([True, True, True, True, True], TypeError),
    ],
)
def test_bad_class_counts(counts, exc):
    with pytest.raises(exc, match="class_counts"):
        CF.logit_adjusted_loss(X, T, counts)
    if len(counts) != 4 or exc is TypeError:  # a 4-long list is only wrong against the input
        with pytest.raises(exc, match="class_counts"):
            LogitAdjustedLoss(counts)
    else:
        with pytest.raises(exc, match="class_counts"):
            LogitAdjustedLoss(counts)(X, T)


def test_bad_tau_and_gamma():
    with pytest.raises(ValueError, match="tau"):
        LogitAdjustedLoss(COUNTS, tau=-0.5)
    with pytest.raises(TypeError, match="tau"):
        CF.logit_adjusted_loss(X, T, COUNTS, tau="1")
    with pytest.raises(ValueError, match="gamma"):
        FocalLoss(gamma=-1.0)
    with pytest.raises(ValueError, match="gamma"):
        CF.focal_loss(X, T, gamma=float("inf"))
    with pytest.raises(TypeError, match="gamma"):
        ComplementCrossEntropy(gamma=True)
    with pytest.raises(ValueError, match="gamma"):
        CF.complement_cross_entropy(X, T, gamma=float("nan"))


def test_complement_ce_needs_two_classes():
    with pytest.raises(ValueError, match="input"):
        CF.complement_cross_entropy(torch.randn(3, 1), torch.zeros(3, dtype=torch.long))


@pytest.mark.parametrize(
    "sim, match",
    [
        (torch.eye(4), "similarity"),  # not C x C for C = 5
        (torch.ones(5, 4), "similarity"),  # not square
        (torch.ones(5), "similarity"),
        (torch.eye(5) * 1.0 + 0.6 * (1 - torch.eye(5)) * 2, r"\[0, 1\]"),  # 1.2 off-diagonal
        (torch.eye(5) - 0.1 * (1 - torch.eye(5)), r"\[0, 1\]"),  # negative
        (torch.full((5, 5), 0.5), "diagonal"),
        (torch.eye(5).masked_fill(torch.eye(5) == 0, float("nan")), r"\[0, 1\]"),
    ],
)
def test_bad_similarity(sim, match):
    with pytest.raises(ValueError, match=match):
        CF.simloss(X, T, sim)
    if sim.dim() == 2 and sim.shape == (4, 4):
        with pytest.raises(ValueError, match="similarity"):
            SimLoss(sim)(X, T)
    else:
        with pytest.raises(ValueError, match="similarity" if match == "similarity" else match):
            SimLoss(sim)


def test_simloss_takes_no_weight():
    with pytest.raises(TypeError):
        SimLoss(torch.eye(5), weight=torch.ones(5))  # type: ignore[call-arg]
    assert not hasattr(SimLoss(torch.eye(5)), "weight")
