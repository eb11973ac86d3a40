"""classaware.nn.CosineClassifier: the cosine head of the margin losses."""

from __future__ import annotations

import math

import pytest
import torch

from classaware.losses import CAMRILoss
from classaware.nn import CosineClassifier


def reference_cosines(x, w):
    """cos(x_i, w_j) one pair at a time."""
    out = torch.empty(x.shape[0], w.shape[0], dtype=torch.float64)
    for i in range(x.shape[0]):
        for j in range(w.shape[0]):
            xi, wj = x[i].double(), w[j].double()
            out[i, j] = (xi @ wj) / (xi.norm() * wj.norm())
    return out


def test_shape_values_and_range():
    torch.manual_seed(0)
    head = CosineClassifier(5, 4)
    x = torch.randn(7, 5)
    cos = head(x)
    assert cos.shape == (7, 4) and cos.dtype == torch.float32
    torch.testing.assert_close(cos.double(), reference_cosines(x, head.weight.detach()),
                               rtol=1e-5, atol=1e-6)
    # scale invariance of both sides, and exact +-1 for (anti)parallel vectors
    torch.testing.assert_close(head(3.0 * x), cos, rtol=1e-5, atol=1e-6)
    w0 = head.weight.detach()[0]
    edge = head(torch.stack([w0 * 2.5, -w0 * 0.1]))
    assert edge[0, 0].item() == pytest.approx(1.0, abs=1e-6)
    assert edge[1, 0].item() == pytest.approx(-1.0, abs=1e-6)
    big = head(torch.randn(100, 5) * 1e3)
    assert big.abs().max() <= 1.0


def test_weight_is_float32_xavier_uniform_and_no_bias():
    torch.manual_seed(1)
    d, c = 300, 200
    head = CosineClassifier(d, c)
    params = dict(head.named_parameters())
    assert list(params) == ["weight"]  # no bias
    assert head.weight.shape == (c, d) and head.weight.dtype == torch.float32
    bound = math.sqrt(6.0 / (d + c))  # Glorot & Bengio: U(-a, a), a = sqrt(6 / (fan_in + fan_out))
    w = head.weight.detach()
    assert w.abs().max() <= bound
    assert w.abs().max() > 0.99 * bound
    assert w.std().item() == pytest.approx(bound / math.sqrt(3.0), rel=0.02)  # U(-a, a) std
    assert abs(w.mean().item()) < 0.01 * bound
    assert "bias=False" in repr(head)


def test_gradcheck_float64():
    torch.manual_seed(2)
    head = CosineClassifier(4, 3).double()
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda inp: head(inp), (x,))
    w = head.weight
    assert torch.autograd.gradcheck(
        lambda weight: torch.func.functional_call(head, {"weight": weight}, (x.detach(),)), (w,)
    )


def test_half_input_and_autocast_give_float32_cosines():
    torch.manual_seed(3)
    head = CosineClassifier(8, 3)
    x = torch.randn(6, 8)
    full = head(x)
    half = head(x.to(torch.bfloat16))
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, full, rtol=0, atol=2e-2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = head(x)
    assert auto.dtype == torch.float32
    torch.testing.assert_close(auto, full)
    assert head(x.double()).dtype == torch.float64


def test_zero_feature_vector_gives_zero_cosines_and_finite_gradient():
    head = CosineClassifier(4, 3)
    x = torch.zeros(2, 4, requires_grad=True)
    cos = head(x)
    assert cos.abs().max() == 0
    cos.sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(head.weight.grad).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="in_features must be >= 1"):
        CosineClassifier(0, 3)
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        CosineClassifier(4, 0)
    with pytest.raises(TypeError, match="in_features must be a positive int"):
        CosineClassifier(4.0, 3)
    with pytest.raises(TypeError, match="num_classes must be a positive int"):
        CosineClassifier(4, "3")
    with pytest.raises(ValueError, match=r"input must be \[N, 4\] features"):
        CosineClassifier(4, 3)(torch.randn(2, 5))
    with pytest.raises(ValueError, match=r"input must be \[N, 4\] features"):
        CosineClassifier(4, 3)(torch.randn(4))


def test_trains_with_camri():
    """A tiny end-to-end check: cosine head + CAMRI separates three Gaussian blobs."""
    g = torch.Generator().manual_seed(4)
    centers = torch.tensor([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    y = torch.arange(150) % 3
    x = centers[y] + 0.6 * torch.randn(150, 2, generator=g)
    torch.manual_seed(4)
    model = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(), CosineClassifier(16, 3))
    loss_fn = CAMRILoss(important_classes=[2], margin=0.3, scale=8.0)
    params = list(model.parameters())
    first = loss_fn(model(x), y).item()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: thread hand-offs would cost more than the arithmetic
    try:
        for _ in range(60):  # plain gradient descent (keeps the test free of optimizer set-up)
            loss = loss_fn(model(x), y)
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                for p, g in zip(params, grads):
                    p -= 0.5 * g
    finally:
        torch.set_num_threads(threads)
    assert loss.item() < 0.5 * first
    pred = model(x).argmax(1)
    assert (pred == y).float().mean() > 0.9
