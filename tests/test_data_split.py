"""Caps, validation split and the LDAM-DRW imbalance, on synthetic .npz data with row ids."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from classaware.data import imbalance_counts, load_data
from classaware.data.split import allocate, stratified_split, stratified_subsample
from classaware.errors import ConfigError


def ldam_reference(n_max: int, num: int, ratio: float, profile: str) -> list[int]:
    """The recipe written out independently (rank i = class i)."""
    if profile == "exp":
        return [int(n_max * ratio ** (-i / (num - 1))) for i in range(num)]
    return [n_max if i < num // 2 else int(n_max / ratio) for i in range(num)]


def make_npz(path, per_class, *, n_test_per_class=5, dim=3):
    """Features whose first column is the row id (train ids < 1e6, test ids >= 1e6)."""
    y = np.repeat(np.arange(len(per_class)), per_class)
    x = np.zeros((len(y), dim))
    x[:, 0] = np.arange(len(y))
    yt = np.repeat(np.arange(len(per_class)), n_test_per_class)
    xt = np.zeros((len(yt), dim))
    xt[:, 0] = 1_000_000 + np.arange(len(yt))
    np.savez(path, x_train=x, y_train=y, x_test=xt, y_test=yt,
             class_names=np.array([f"c{i}" for i in range(len(per_class))]))
    return {"name": "arrays", "path": str(path)}


def ids(x: torch.Tensor) -> list[int]:
    return [int(v) for v in x[:, 0].tolist()]


@pytest.fixture
def fm_like(tmp_path):
    """10 classes × 6000 rows: the Fashion-MNIST training set's class counts."""
    return make_npz(tmp_path / "fm.npz", [6000] * 10, dim=1)


def test_exp_ratio_100_matches_the_issue_and_the_formula(fm_like):
    b = load_data({**fm_like, "val_fraction": 0, "imbalance": {"profile": "exp", "ratio": 100}})
    assert b.train_class_counts == [6000, 3596, 2156, 1292, 774, 464, 278, 166, 100, 60]
    assert b.train_class_counts == ldam_reference(6000, 10, 100, "exp")
    assert b.test_class_counts == [5] * 10                           # test untouched
    assert len(set(ids(b.x_train))) == len(b.y_train)                # no duplicates


@pytest.mark.parametrize("ratio", [10, 50.5])
def test_step_profile(fm_like, ratio):
    b = load_data({**fm_like, "val_fraction": 0, "imbalance": {"profile": "step", "ratio": ratio}})
    assert b.train_class_counts == ldam_reference(6000, 10, ratio, "step")
    assert b.train_class_counts == [6000] * 5 + [int(6000 / ratio)] * 5


def test_class_order_by_name_and_index(tmp_path):
    cfg = make_npz(tmp_path / "d.npz", [100] * 4)
    imb = {"profile": "exp", "ratio": 10}
    by_name = load_data({**cfg, "val_fraction": 0, "imbalance": imb,
                         "class_order": ["c2", "c0", "c3", "c1"]})
    ref = ldam_reference(100, 4, 10, "exp")                          # by rank
    want = [0] * 4
    for rank, c in enumerate([2, 0, 3, 1]):
        want[c] = ref[rank]
    assert by_name.train_class_counts == want
    by_index = load_data({**cfg, "val_fraction": 0, "imbalance": imb, "class_order": [2, 0, 3, 1]})
    assert by_index.train_class_counts == want
    with pytest.raises(ConfigError, match="unknown class 'c9'"):
        load_data({**cfg, "imbalance": imb, "class_order": ["c9", "c0", "c1", "c2"]})
    with pytest.raises(ConfigError, match="exactly once; missing"):
        load_data({**cfg, "imbalance": imb, "class_order": [0, 1, 2]})
    with pytest.raises(ConfigError, match="out of range"):
        load_data({**cfg, "imbalance": imb, "class_order": [0, 1, 2, 7]})


def test_n_max_is_taken_after_the_val_split_and_classes_never_vanish(tmp_path):
    cfg = make_npz(tmp_path / "d.npz", [200, 150, 40])
    b = load_data({**cfg, "val_fraction": 0.25, "imbalance": {"profile": "exp", "ratio": 1000}})
    before = b.meta["train_counts_before_imbalance"]
    assert b.val_class_counts == [50, 38, 10]       # round(0.25 * 390) = 98, largest remainder
    assert before == [200 - 50, 150 - 38, 40 - 10]
    n_max = max(before)
    want = [min(before[i], max(1, int(n_max * 1000 ** (-i / 2)))) for i in range(3)]
    assert b.train_class_counts == want and want[-1] == 1


def test_imbalance_counts_clip_and_validate():
    # a class smaller than its target keeps what it has
    assert imbalance_counts([100, 5, 100], "exp", 4) == [100, 5, 25]
    assert imbalance_counts([7, 9], "none", 100) == [7, 9]
    with pytest.raises(ValueError, match="permutation"):
        imbalance_counts([1, 2], "exp", 10, order=[0, 0])
    with pytest.raises(ValueError, match="ratio must be >= 1"):
        imbalance_counts([1, 2], "exp", 0.5)


def test_val_split_stratified_disjoint_and_complete(tmp_path):
    cfg = make_npz(tmp_path / "d.npz", [300, 120, 50, 30])
    b = load_data({**cfg, "val_fraction": 0.1})
    tr, va, te = set(ids(b.x_train)), set(ids(b.x_val)), set(ids(b.x_test))
    assert not tr & va and not (tr | va) & te
    assert tr | va == set(range(500))                                 # nothing lost
    assert len(va) == 50 and b.val_class_counts == [30, 12, 5, 3]     # 10% of every class
    y_of = {i: int(y) for i, y in zip(ids(b.x_train) + ids(b.x_val),
                                      torch.cat([b.y_train, b.y_val]).tolist())}
    bounds = np.cumsum([0, 300, 120, 50, 30])
    assert all(bounds[y] <= i < bounds[y + 1] for i, y in y_of.items())  # labels follow rows


def test_val_fraction_zero_gives_empty_val(tmp_path):
    cfg = make_npz(tmp_path / "d.npz", [10, 10])
    b = load_data({**cfg, "val_fraction": 0})
    assert tuple(b.x_val.shape) == (0, 3) and b.y_val.dtype == torch.int64
    assert b.val_class_counts == [0, 0]


def test_seeds_reproducible(tmp_path):
    cfg = {**make_npz(tmp_path / "d.npz", [200, 100, 60]),
           "imbalance": {"profile": "exp", "ratio": 10}}
    a, b = load_data(cfg, seed=3), load_data(cfg, seed=3)
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(a, f"x_{split}"), getattr(b, f"x_{split}"))
    c = load_data(cfg, seed=4)
    assert ids(c.x_val) != ids(a.x_val)
    assert c.train_class_counts == a.train_class_counts              # counts: the recipe
    fixed = load_data({**cfg, "split_seed": 7}, seed=1)
    assert ids(fixed.x_val) == ids(load_data({**cfg, "split_seed": 7}, seed=2).x_val)
    other = load_data({**cfg, "imbalance": {"profile": "exp", "ratio": 10, "seed": 1}}, seed=3)
    assert ids(other.x_val) == ids(a.x_val) and ids(other.x_train) != ids(a.x_train)
    assert other.train_class_counts == a.train_class_counts


def test_caps_stratified_and_ordered(tmp_path):
    cfg = make_npz(tmp_path / "d.npz", [600, 300, 100], n_test_per_class=40)
    b = load_data({**cfg, "max_train": 100, "max_test": 30, "val_fraction": 0.2}, seed=1)
    assert len(b.y_train) + len(b.y_val) == 100
    assert [t + v for t, v in zip(b.train_class_counts, b.val_class_counts)] == [60, 30, 10]
    assert b.test_class_counts == [10, 10, 10]
    c = load_data({**cfg, "max_train": 100, "max_test": 30}, seed=2)
    assert ids(c.x_test) == ids(b.x_test)                            # test cap ignores the seed
    assert ids(c.x_train) != ids(b.x_train)
    big = load_data({**cfg, "max_train": 10_000, "val_fraction": 0})
    assert len(big.y_train) == 1000                                  # a cap above N is a no-op


def test_allocate_properties():
    rng = np.random.default_rng(0)
    for _ in range(200):
        counts = rng.integers(0, 50, rng.integers(1, 8))
        total = int(rng.integers(0, counts.sum() + 5))
        a = allocate(counts, total)
        assert a.sum() == min(total, counts.sum()) and (a <= counts).all() and (a >= 0).all()
        if total >= (counts > 0).sum():
            assert ((a > 0) | (counts == 0)).all()
        plain = allocate(counts, total, min_one=False)               # pure largest remainder
        exact = counts * min(total, counts.sum()) / max(counts.sum(), 1)
        assert plain.sum() == a.sum() and np.abs(plain - exact).max() < 1
    assert allocate([98, 1, 1], 10).tolist() == [8, 1, 1]
    assert allocate([98, 1, 1], 10, min_one=False).tolist() == [10, 0, 0]


def test_stratified_helpers_edge_cases():
    y = np.array([0] * 9 + [1])                                      # class 1 has one sample
    rest, held = stratified_split(y, 0.5, 2, np.random.default_rng(0))
    assert 9 in rest                                                 # a singleton stays in train
    assert sorted(np.concatenate([rest, held]).tolist()) == list(range(10))
    assert np.bincount(y[held], minlength=2).tolist() == [5, 0]
    idx = stratified_subsample(y, 3, 2, np.random.default_rng(0))
    assert np.bincount(y[idx], minlength=2).tolist() == [2, 1]       # every class kept
    draws = {tuple(stratified_subsample(y, 3, 2, np.random.default_rng(s)).tolist())
             for s in range(10)}
    assert len(draws) > 1                                            # the generator is used
    rest0, held0 = stratified_split(y, 0.0, 2, np.random.default_rng(0))
    assert rest0.tolist() == list(range(10)) and held0.size == 0


def test_mean_std_and_summary():
    img = load_data({"name": "digits", "as_images": True})
    x = img.x_train.numpy().astype(np.float64) / 255.0
    mean, std = img.mean_std()
    assert np.allclose(mean, [x.mean()]) and np.allclose(std, [x.std()])
    feats = load_data({"name": "digits"})
    mean, std = feats.mean_std()
    ref = feats.x_train.numpy().astype(np.float64)
    assert np.allclose(mean, ref.mean(0))
    ref_std = ref.std(0)
    assert np.allclose(std, np.where(ref_std > 0, ref_std, 1.0))   # constant pixels → 1
    assert feats.summary().startswith("digits: features [64], 10 classes, train ")
