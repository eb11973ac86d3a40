"""Threshold moving on hand-made model outputs where the right bias is known."""

from __future__ import annotations

import numpy as np
import pytest

from classaware.study import threshold as thr

# 3 classes, important class k = 1.  Critical bias m_i = max_{j != 1} o_ij - o_i1.
# Validation samples of class 1 with m = 0.5, 1.0, 2.0, 3.0 (none predicted 1 at b = 0),
# plus two samples of class 0 and one of class 2, correctly predicted with margins.
VAL = np.array([
    [0.5, 0.0, 0.0],   # y=1, m = 0.5
    [0.0, 0.0, 1.0],   # y=1, m = 1.0
    [2.0, 0.0, 0.0],   # y=1, m = 2.0
    [0.0, 1.0, 4.0],   # y=1, m = 3.0
    [3.0, 0.0, 0.0],   # y=0, m = 3.0 (becomes 1 when b > 3)
    [2.0, 0.5, 0.0],   # y=0, m = 1.5 (becomes 1 when b > 1.5)
    [0.0, 0.0, 1.2],   # y=2, m = 1.2
])
VAL_Y = np.array([1, 1, 1, 1, 0, 0, 2])


def test_critical_bias():
    np.testing.assert_allclose(thr.critical_bias(VAL, 1), [0.5, 1.0, 2.0, 3.0, 3.0, 1.5, 1.2])


def test_sweep_counts_by_hand():
    s = thr.sweep(VAL, VAL_Y, 1, [0.0, 0.75, 1.3, 1.6, 2.5, 3.5])
    # recall = #(m_i < b among class 1) / 4
    np.testing.assert_allclose(s.recall, [0, 0.25, 0.5, 0.5, 0.75, 1.0])
    # correct: class-1 hits + class 0/2 not moved to 1
    #  b=0: 0 + 3 ; b=.75: 1 + 3 ; b=1.3: 2 + 2 (y=2 moved) ; b=1.6: 2 + 1 ; b=2.5: 3 + 1 ; b=3.5: 4 + 0
    np.testing.assert_allclose(s.accuracy, np.array([3, 4, 4, 3, 4, 4]) / 7)
    # precision: tp / predicted 1: b=1.3 -> 2/3 ; b=1.6 -> 2/4 ; b=0 -> nothing predicted -> nan
    assert np.isnan(s.precision[0])
    assert s.precision[2] == pytest.approx(2 / 3)
    assert s.precision[3] == pytest.approx(2 / 4)


def test_sweep_at_zero_is_the_argmax():
    rng = np.random.default_rng(0)
    o = rng.normal(size=(200, 4))
    y = rng.integers(0, 4, 200)
    s = thr.sweep(o, y, 2, [0.0])
    pred = o.argmax(1)
    assert s.accuracy[0] == pytest.approx((pred == y).mean())
    assert s.recall[0] == pytest.approx((pred[y == 2] == 2).mean())


@pytest.mark.parametrize("target, m_needed", [(0.25, 0.5), (0.5, 1.0), (0.6, 2.0), (0.75, 2.0),
                                              (1.0, 3.0)])
def test_choose_smallest_bias_reaching_target(target, m_needed):
    b = thr.choose_bias(VAL, VAL_Y, 1, target)
    # the smallest bias with recall >= target is just above the ceil(target*4)-th critical value
    assert m_needed < b < m_needed + 1e-3
    assert thr.apply_bias(VAL, VAL_Y, 1, b).recall >= target
    # and nothing smaller on the grid reaches it
    grid = thr.bias_grid(VAL, VAL_Y, 1)
    smaller = grid[grid < b]
    assert (thr.sweep(VAL, VAL_Y, 1, smaller).recall < target).all()


def test_choose_bias_can_be_negative_and_unreachable():
    # class 0 is already recalled fully at b = 0 (m = -1, -2): the smallest bias reaching 0.5 is < 0
    o = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    y = np.array([0, 0, 1])
    b = thr.choose_bias(o, y, 0, 0.5)
    assert -2.0 < b < -1.99
    assert thr.choose_bias(o, y, 0, 1.0, grid=[-5.0]) is None


def test_operating_points_apply_val_bias_to_test():
    test = np.array([
        [0.0, 0.0, 0.8],   # y=1, m = 0.8  -> recalled at b > .8
        [1.8, 0.0, 0.0],   # y=1, m = 1.8
        [0.0, 0.0, 1.1],   # y=2, m = 1.1  -> becomes 1 at b > 1.1 (wrong)
        [5.0, 0.0, 0.0],   # y=0, m = 5
    ])
    ty = np.array([1, 1, 2, 0])
    ops = thr.operating_points(VAL, VAL_Y, test, ty, 1, [0.5, 0.75])
    # target .5 -> b just above 1.0 -> test: recall 1/2, acc: 1 + (y=2 kept) + (y=0) = 3/4
    assert 1.0 < ops[0].test.bias < 1.001
    assert ops[0].val_recall == pytest.approx(0.5)
    assert ops[0].test.recall == pytest.approx(0.5)
    assert ops[0].test.accuracy == pytest.approx(0.75)
    # target .75 -> b just above 2.0 -> test: recall 1, y=2 moved to 1: acc 3/4
    assert 2.0 < ops[1].test.bias < 2.001
    assert ops[1].test.recall == pytest.approx(1.0)
    assert ops[1].test.accuracy == pytest.approx(0.75)


def test_accuracy_at_recall_on_curve():
    c = thr.curve(VAL, VAL_Y, 1)
    # best accuracy with recall >= .25: b in (1.0, 1.2) recalls 2 of 4 and keeps the 3 others: 5/7
    assert thr.accuracy_at_recall(c.recall, c.accuracy, 0.25) == pytest.approx(5 / 7)
    # recall 1 needs b > 3: every sample predicted 1 -> 4/7
    assert thr.accuracy_at_recall(c.recall, c.accuracy, 1.0) == pytest.approx(4 / 7)
    assert np.isnan(thr.accuracy_at_recall([0.1, 0.2], [0.9, 0.8], 0.5))  # unreachable


def test_bad_input():
    with pytest.raises(ValueError, match="outputs"):
        thr.sweep(np.zeros(3), np.zeros(3, dtype=int), 0, [0.0])
    with pytest.raises(ValueError, match="targets"):
        thr.sweep(np.zeros((3, 2)), np.zeros(4, dtype=int), 0, [0.0])
    with pytest.raises(TypeError, match="integer"):
        thr.sweep(np.zeros((3, 2)), np.zeros(3), 0, [0.0])
    with pytest.raises(ValueError, match="k"):
        thr.sweep(np.zeros((3, 2)), np.zeros(3, dtype=int), 2, [0.0])
    with pytest.raises(ValueError, match="target_recall"):
        thr.choose_bias(VAL, VAL_Y, 1, 1.5)
