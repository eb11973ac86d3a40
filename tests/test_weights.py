"""classaware.weights: class-balanced / inverse-frequency weights and LDAM margins."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from classaware.weights import class_balanced, inverse_frequency, ldam_margins


def test_class_balanced_hand_computed():
    # beta = 0.9, n = [1, 10]: w = [(1-0.9)/(1-0.9), (1-0.9)/(1-0.9^10)] = [1, 0.15353...]
    w1, w2 = 1.0, 0.1 / (1.0 - 0.9**10)
    want = [2 * w1 / (w1 + w2), 2 * w2 / (w1 + w2)]  # normalised to sum to C = 2
    got = class_balanced([1, 10], beta=0.9)
    assert got.dtype == torch.float32
    assert got.tolist() == pytest.approx(want, rel=1e-6)
    assert got.tolist() == pytest.approx([1.733802, 0.266198], abs=1e-6)


def test_class_balanced_is_ldam_drw_recipe():
    """The DRW weights of Cao et al.'s release (train script), written with NumPy."""
    cls_num_list = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]  # CIFAR-10-LT, ratio 100
    beta = 0.9999
    effective_num = 1.0 - np.power(beta, cls_num_list)
    per_cls_weights = (1.0 - beta) / np.array(effective_num)
    per_cls_weights = per_cls_weights / np.sum(per_cls_weights) * len(cls_num_list)
    got = class_balanced(cls_num_list)  # default beta = 0.9999
    np.testing.assert_allclose(got.numpy(), per_cls_weights, rtol=1e-6)
    assert got.sum().item() == pytest.approx(10.0, rel=1e-6)
    assert (got[1:] > got[:-1]).all()  # rarer class, larger weight


def test_class_balanced_limits():
    assert class_balanced([3, 50, 7], beta=0.0).tolist() == [1.0, 1.0, 1.0]
    near_one = class_balanced([10, 40], beta=1 - 1e-9)
    assert near_one.tolist() == pytest.approx(inverse_frequency([10, 40]).tolist(), rel=1e-5)


def test_inverse_frequency_hand_computed():
    assert inverse_frequency([10, 30]).tolist() == pytest.approx([1.5, 0.5])
    # power 0.5: [1/sqrt(4), 1/sqrt(16), 1/sqrt(64)] = [0.5, 0.25, 0.125] -> * 3 / 0.875
    assert inverse_frequency([4, 16, 64], power=0.5).tolist() == pytest.approx(
        [0.5 * 3 / 0.875, 0.25 * 3 / 0.875, 0.125 * 3 / 0.875], rel=1e-6
    )
    assert inverse_frequency([4, 16, 64], power=0.0).tolist() == [1.0, 1.0, 1.0]


def test_ldam_margins_hand_computed_and_release_recipe():
    assert ldam_margins([1, 16], max_margin=0.5).tolist() == pytest.approx([0.5, 0.25])
    assert ldam_margins([81, 1, 16], max_margin=0.3).tolist() == pytest.approx(
        [0.3 / 3, 0.3, 0.3 / 2], rel=1e-6
    )
    # Cao et al.'s LDAMLoss.__init__
    cls_num_list = [500, 120, 37, 9]
    m_list = 1.0 / np.sqrt(np.sqrt(cls_num_list))
    m_list = m_list * (0.5 / np.max(m_list))
    np.testing.assert_allclose(ldam_margins(cls_num_list).numpy(), m_list, rtol=1e-6)
    assert ldam_margins([5, 7], max_margin=0.0).tolist() == [0.0, 0.0]


def test_dtype_float64_keeps_the_float64_values():
    counts = [500, 120, 37, 9]
    n = torch.tensor(counts, dtype=torch.float64)
    q = n ** -0.25
    m = ldam_margins(counts, 0.5, dtype=torch.float64)
    assert m.dtype == torch.float64
    torch.testing.assert_close(m, 0.5 * q / q.max(), rtol=1e-15, atol=0)
    w = class_balanced(counts, 0.99, dtype=torch.float64)
    want = (1 - 0.99) / (1 - 0.99 ** n)
    torch.testing.assert_close(w, want * 4 / want.sum(), rtol=1e-15, atol=0)
    assert inverse_frequency(counts, dtype=torch.float64).dtype == torch.float64


@pytest.mark.parametrize(
    "counts",
    [[3, 9, 27], (3, 9, 27), np.array([3, 9, 27]), np.array([3.0, 9.0, 27.0]),
     torch.tensor([3, 9, 27]), torch.tensor([3.0, 9.0, 27.0], dtype=torch.float64)],
)
def test_accepts_lists_arrays_and_tensors(counts):
    for fn in (class_balanced, inverse_frequency, ldam_margins):
        out = fn(counts)
        assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (3,)
    assert ldam_margins(counts)[0].item() == pytest.approx(0.5)
    assert ldam_margins(counts)[2].item() == pytest.approx(0.5 * (3 / 27) ** 0.25)
    assert inverse_frequency(counts).tolist() == pytest.approx(
        [3 * (1 / 3) / (1 / 3 + 1 / 9 + 1 / 27), 3 * (1 / 9) / (1 / 3 + 1 / 9 + 1 / 27),
         3 * (1 / 27) / (1 / 3 + 1 / 9 + 1 / 27)]
    )


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: class_balanced([5, 0]), ValueError, r"counts must be > 0.*class indices \[1\]"),
        (lambda: class_balanced([5, -3]), ValueError, "counts must be > 0"),
        (lambda: inverse_frequency([5, math.nan]), ValueError, "counts must be finite"),
        (lambda: ldam_margins([]), ValueError, "counts must have at least one class"),
        (lambda: ldam_margins([[1, 2], [3, 4]]), ValueError, "counts must be 1-D"),
        (lambda: ldam_margins("abc"), TypeError, "counts must be a sequence"),
        (lambda: ldam_margins(["a", "b"]), TypeError, "counts must hold real numbers"),
        (lambda: ldam_margins(torch.tensor([True, False])), TypeError, "counts must hold real numbers"),
        (lambda: ldam_margins(7), TypeError, "counts must be a sequence"),
        (lambda: class_balanced([5, 3], beta=1.0), ValueError, r"beta must be in \[0, 1\)"),
        (lambda: class_balanced([5, 3], beta=-0.1), ValueError, r"beta must be in \[0, 1\)"),
        (lambda: class_balanced([5, 3], beta="0.9"), TypeError, "beta must be a real number"),
        (lambda: inverse_frequency([5, 3], power=-1.0), ValueError, "power must be >= 0"),
        (lambda: ldam_margins([5, 3], max_margin=-0.5), ValueError, "max_margin must be >= 0"),
        (lambda: ldam_margins([5, 3], max_margin=math.inf), ValueError, "max_margin must be finite"),
    ],
)
def test_bad_input_names_the_argument(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
