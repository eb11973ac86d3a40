"""classaware.metrics against scikit-learn and hand-computed numbers."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from classaware.errors import ConfigError
from classaware.metrics import (
    METRIC_KEYS,
    angle_stats,
    angles_deg,
    confusion_matrix,
    format_table,
    group_accuracy,
    mean_abs_class_error,
    metrics_from_confusion,
    shot_buckets,
)


def _random_predictions(seed: int, c: int = 8, n: int = 300):
    """Class c-1 never occurs in y_true; class 2 is never predicted; class c-2 occurs only as a
    prediction; every other class occurs in both."""
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, c - 2, size=n)
    # mostly right, otherwise a random wrong class
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, c - 1, size=n))
    y_pred[y_pred == 2] = 3
    return y_true, y_pred, c


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_sklearn_with_missing_classes(seed):
    y_true, y_pred, c = _random_predictions(seed)
    names = [f"k{i}" for i in range(c)]
    cm = confusion_matrix(torch.from_numpy(y_true), torch.from_numpy(y_pred), c)
    assert cm.dtype == torch.int64 and cm.shape == (c, c)
    np.testing.assert_array_equal(cm.numpy(),
                                  skm.confusion_matrix(y_true, y_pred, labels=range(c)))
    m = metrics_from_confusion(cm, class_names=names)
    assert tuple(m) == METRIC_KEYS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns about classes predicted but absent
        bal = skm.balanced_accuracy_score(y_true, y_pred)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred), abs=1e-12)
    assert m["balanced_accuracy"] == pytest.approx(bal, abs=1e-12)
    assert m["macro_f1"] == pytest.approx(
        skm.f1_score(y_true, y_pred, average="macro", zero_division=0), abs=1e-12)
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=range(c),
                                                     zero_division=0)
    np.testing.assert_allclose(m["per_class_precision"], p, atol=1e-12)
    np.testing.assert_allclose(m["per_class_recall"], r, atol=1e-12)
    np.testing.assert_allclose(m["per_class_f1"], f, atol=1e-12)
    assert m["per_class_support"] == s.tolist()
    # the classes the data was built to lack
    assert m["per_class_precision"][2] == 0.0 and m["per_class_support"][c - 1] == 0
    assert m["per_class_recall"][c - 1] == 0.0 and m["per_class_f1"][c - 1] == 0.0


def test_class_neither_present_nor_predicted_is_left_out_of_macro_f1():
    y_true = np.array([0, 0, 1, 1, 1, 2])
    y_pred = np.array([0, 1, 1, 1, 0, 2])
    cm = confusion_matrix(y_true, y_pred, 5)  # classes 3 and 4 never appear
    m = metrics_from_confusion(cm, class_names=list("abcde"))
    assert m["macro_f1"] == pytest.approx(
        skm.f1_score(y_true, y_pred, average="macro", zero_division=0))
    # by hand: F1 = 2TP / (support + predicted): a 2/4, b 4/6, c 2/2
    assert m["macro_f1"] == pytest.approx((2 / 4 + 4 / 6 + 2 / 2) / 3)
    assert m["balanced_accuracy"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert m["per_class_f1"][3:] == [0.0, 0.0]


def test_confusion_matrix_inputs_and_errors():
    cm = confusion_matrix([2, 0, 1, 1], np.array([2, 1, 1, 0]), 3)
    assert cm.tolist() == [[0, 1, 0], [1, 1, 0], [0, 0, 1]]
    assert confusion_matrix(torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long),
                            2).tolist() == [[0, 0], [0, 0]]
    assert confusion_matrix(torch.tensor([1], dtype=torch.int32),
                            torch.tensor([0], dtype=torch.uint8), 2).dtype == torch.int64
    with pytest.raises(ValueError, match="y_pred holds labels outside"):
        confusion_matrix([0, 1], [0, 3], 3)
    with pytest.raises(ValueError, match="y_true holds labels outside"):
        confusion_matrix([-1, 1], [0, 1], 3)
    with pytest.raises(ValueError, match="same length"):
        confusion_matrix([0, 1], [0], 3)
    with pytest.raises(TypeError, match="integer"):
        confusion_matrix(torch.tensor([0.0, 1.0]), torch.tensor([0, 1]), 2)
    with pytest.raises(ValueError, match="1-D"):
        confusion_matrix(torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 2, dtype=torch.long),
                         2)
    with pytest.raises(ValueError, match="num_classes"):
        confusion_matrix([0], [0], 0)


def test_confusion_matrices_add_up_like_an_all_reduce():
    y_true, y_pred, c = _random_predictions(5)
    t, p = torch.from_numpy(y_true), torch.from_numpy(y_pred)
    parts = confusion_matrix(t[:100], p[:100], c) + confusion_matrix(t[100:], p[100:], c)
    assert torch.equal(parts, confusion_matrix(t, p, c))


def test_shot_buckets_by_hand():
    counts = [500, 101, 100, 50, 20, 19, 5]
    assert shot_buckets(counts) == {"many": [0, 1], "medium": [2, 3, 4], "few": [5, 6]}
    assert shot_buckets(counts, (50, 10)) == {"many": [0, 1, 2], "medium": [3, 4, 5],
                                              "few": [6]}
    # diagonal (correct) / support per class
    correct = [90, 40, 30, 20, 10, 3, 1]
    support = [100, 50, 40, 30, 20, 10, 10]
    cm = np.zeros((7, 7), dtype=np.int64)
    for i, (k, n) in enumerate(zip(correct, support)):
        cm[i, i] = k
        cm[i, (i + 1) % 7] = n - k
    m = metrics_from_confusion(cm, class_names=list("abcdefg"), train_counts=counts)
    assert m["many_shot_accuracy"] == pytest.approx((90 + 40) / (100 + 50))
    assert m["medium_shot_accuracy"] == pytest.approx((30 + 20 + 10) / (40 + 30 + 20))
    assert m["few_shot_accuracy"] == pytest.approx((3 + 1) / (10 + 10))
    m2 = metrics_from_confusion(cm, class_names=list("abcdefg"), train_counts=counts,
                                shot_thresholds=(1000, 0))
    assert m2["many_shot_accuracy"] is None and m2["few_shot_accuracy"] is None
    assert m2["medium_shot_accuracy"] == pytest.approx(m2["accuracy"])
    m3 = metrics_from_confusion(cm, class_names=list("abcdefg"))
    assert (m3["many_shot_accuracy"], m3["medium_shot_accuracy"], m3["few_shot_accuracy"]) == (
        None, None, None)
    with pytest.raises(ValueError, match="many >= few"):
        shot_buckets(counts, (10, 20))
    with pytest.raises(ValueError, match="train_counts must have 7"):
        metrics_from_confusion(cm, class_names=list("abcdefg"), train_counts=[1, 2])


def test_important_classes_and_json():
    y_true, y_pred, c = _random_predictions(3)
    names = [f"k{i}" for i in range(c)]
    cm = confusion_matrix(y_true, y_pred, c)
    m = metrics_from_confusion(cm, class_names=names, important=["k1", 4],
                               train_counts=[200, 50, 10, 30, 150, 5, 80, 1])
    assert list(m["important_recall"]) == ["k1", "k4"]
    assert metrics_from_confusion(cm, class_names=names, important=["K1", "k4"]) == \
        metrics_from_confusion(cm, class_names=names, important=[1, 4])  # the one name rule
    p, r, _, _ = skm.precision_recall_fscore_support(y_true, y_pred, labels=range(c),
                                                     zero_division=0)
    assert m["important_recall"]["k4"] == pytest.approx(r[4])
    assert m["important_precision"]["k1"] == pytest.approx(p[1])
    assert metrics_from_confusion(cm, class_names=names, important="k3")["important_recall"] == {
        "k3": pytest.approx(r[3])}
    back = json.loads(json.dumps(m))
    assert back == m
    assert all(type(v) is float for v in m["per_class_f1"])
    assert all(type(v) is int for row in m["confusion_matrix"] for v in row)
    with pytest.raises(ConfigError, match="^important: unknown class 'cat'; the classes are: 'k0'"):
        metrics_from_confusion(cm, class_names=names, important=["cat"])
    with pytest.raises(ConfigError, match="class index 8 out of range"):
        metrics_from_confusion(cm, class_names=names, important=[8])
    with pytest.raises(ConfigError, match="listed twice"):
        metrics_from_confusion(cm, class_names=names, important=["k1", 1])


def test_bad_confusion_matrix():
    with pytest.raises(ValueError, match="square"):
        metrics_from_confusion([[1, 2, 3]], class_names=["a"])
    with pytest.raises(ValueError, match="non-negative"):
        metrics_from_confusion([[1, -1], [0, 1]], class_names=["a", "b"])
    with pytest.raises(ValueError, match="class_names must be a list of 2"):
        metrics_from_confusion([[1, 0], [0, 1]], class_names=["a"])
    with pytest.raises(ValueError, match="whole-number"):
        metrics_from_confusion([[1.5, 0], [0, 1]], class_names=["a", "b"])
    empty = metrics_from_confusion(np.zeros((3, 3), dtype=int), class_names=list("abc"))
    assert (empty["accuracy"], empty["balanced_accuracy"], empty["macro_f1"]) == (0.0, 0.0, 0.0)


def test_group_accuracy_by_hand():
    # classes: 0 T-shirt, 1 Shirt, 2 Sneaker, 3 Boot, 4 Bag (ungrouped)
    cm = np.array([
        [50, 10, 0, 0, 5],
        [20, 30, 0, 1, 0],
        [0, 0, 40, 6, 2],
        [0, 3, 4, 60, 0],
        [1, 0, 0, 0, 70],
    ])
    groups = [[0, 1], [2, 3]]
    total = cm.sum()
    same = 50 + 10 + 20 + 30 + 40 + 6 + 4 + 60 + 70
    mistakes = total - np.trace(cm)
    same_mistakes = 10 + 20 + 6 + 4
    acc, among = group_accuracy(cm, groups)
    assert acc == pytest.approx(same / total)
    assert among == pytest.approx(same_mistakes / mistakes)
    names = ["T-shirt", "Shirt", "Sneaker", "Boot", "Bag"]
    assert group_accuracy(cm, [["T-shirt", "Shirt"], ["Sneaker", "Boot"]],
                          class_names=names) == (acc, among)
    # singleton groups == plain accuracy; no mistakes -> None
    assert group_accuracy(cm, [])[0] == pytest.approx(np.trace(cm) / total)
    assert group_accuracy(cm, [])[1] == 0.0
    assert group_accuracy(np.diag([3, 4, 5]), [[0, 1]]) == (1.0, None)
    with pytest.raises(ValueError, match="more than one group"):
        group_accuracy(cm, [[0, 1], [1, 2]])
    with pytest.raises(ValueError, match="^groups: unknown class 'Cat'"):
        group_accuracy(cm, [["Cat"]], class_names=names)
    assert group_accuracy(cm, [["t-shirt", "shirt"], ["sneaker", "boot"]],
                          class_names=names) == (acc, among)


def test_mean_abs_class_error_matches_per_sample_definition():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 6, size=200)
    y_pred = np.clip(y_true + rng.integers(-2, 3, size=200), 0, 5)
    cm = confusion_matrix(y_true, y_pred, 6)
    assert mean_abs_class_error(cm) == pytest.approx(np.abs(y_pred - y_true).mean())
    assert mean_abs_class_error(np.eye(4, dtype=int)) == 0.0


def _unit(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def test_angle_stats_by_hand():
    # class 0 weight along x, class 1 along y, class 2 has no sample
    w = torch.tensor([[2.0, 0.0], [0.0, 0.5], [1.0, 1.0]])
    feats = torch.tensor([_unit(30), _unit(-60), _unit(90), [3 * v for v in _unit(10)],
                          _unit(50), _unit(100)])
    targets = torch.tensor([0, 0, 0, 0, 1, 1])
    ang0 = [30.0, 60.0, 90.0, 10.0]
    ang1 = [40.0, 10.0]
    np.testing.assert_allclose(angles_deg(feats, w, targets).numpy(), ang0 + ang1, atol=1e-9)
    s = angle_stats(feats, w, targets, 3)
    assert s["mean_deg"][0] == pytest.approx(np.mean(ang0))
    assert s["std_deg"][0] == pytest.approx(np.std(ang0))  # population std
    assert s["mean_deg"][1] == pytest.approx(25.0) and s["std_deg"][1] == pytest.approx(15.0)
    assert s["mean_deg"][2] is None and s["std_deg"][2] is None
    assert s["count"] == [4, 2, 0]
    json.dumps(s)


def test_angle_stats_equals_arccos_of_cosine_outputs():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(50, 8, generator=g)
    w = torch.randn(4, 8, generator=g)
    t = torch.randint(0, 4, (50,), generator=g)
    cos = torch.nn.functional.normalize(feats, dim=1) @ torch.nn.functional.normalize(w, dim=1).T
    ref = torch.rad2deg(torch.arccos(cos[torch.arange(50), t].double()))
    s = angle_stats(feats, w, t, 4)
    for c in range(4):
        sel = ref[t == c]
        assert s["mean_deg"][c] == pytest.approx(sel.mean().item(), abs=1e-4)
        assert s["std_deg"][c] == pytest.approx(sel.std(unbiased=False).item(), abs=1e-4)


def test_angle_stats_bad_input():
    f, w, t = torch.randn(4, 3), torch.randn(2, 3), torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match="class_weight must be"):
        angle_stats(f, torch.randn(2, 5), t, 2)
    with pytest.raises(ValueError, match="num_classes = 3"):
        angle_stats(f, w, t, 3)
    with pytest.raises(ValueError, match="targets must have 4"):
        angle_stats(f, w, t[:3], 2)
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 2\)"):
        angle_stats(f, w, torch.tensor([0, 1, 2, 0]), 2)
    with pytest.raises(ValueError, match="features must be"):
        angle_stats(torch.randn(4), w, t, 2)


def test_format_table():
    cm = np.array([[8, 2, 0], [1, 1, 0], [0, 0, 5]])
    names = ["cat", "dog", "airplane"]
    m = metrics_from_confusion(cm, class_names=names, important=["dog"])
    text = format_table(m, names, important=[2])
    lines = text.splitlines()
    assert len(lines) == 1 + 3 + 1
    assert lines[1].startswith("  cat") and lines[2].startswith("* dog")
    assert lines[3].startswith("* airplane")
    # dog: precision 1/3, recall 1/2, f1 2/5, support 2
    assert lines[2].split()[2:] == ["33.3", "50.0", "40.0", "2"]
    assert f"accuracy {100 * 14 / 17:.2f}%" in lines[-1]
    assert f"macro-F1 {100 * m['macro_f1']:.2f}%" in lines[-1]
    m2 = metrics_from_confusion(cm, class_names=names, train_counts=[500, 50, 5])
    assert format_table(m2, names).splitlines()[-1] == (
        "many-shot 80.00%  medium-shot 50.00%  few-shot 100.00%")
    with pytest.raises(ValueError, match="class_names has 2"):
        format_table(m, names[:2])
