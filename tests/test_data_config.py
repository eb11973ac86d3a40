"""``[data]`` validation: every bad value is one ConfigError line naming the key."""

from __future__ import annotations

import dataclasses

import pytest

from classaware.data import (
    DATASET_NAMES,
    DataConfig,
    ImbalanceConfig,
    available_datasets,
    load_data,
)
from classaware.errors import ConfigError


@pytest.mark.parametrize(("cfg", "message"), [
    ({"imbalance": {"profile": "foo"}},
     "data.imbalance.profile: expected one of 'none', 'exp', 'step', got 'foo' (str)"),
    ({"imbalance": {"ratio": 0.5}}, "data.imbalance.ratio: expected a number >= 1, got 0.5"),
    ({"imbalance": {"ratio": float("nan")}}, "data.imbalance.ratio: expected a number >= 1"),
    ({"imbalance": {"seed": -1}}, "data.imbalance.seed: expected an integer >= 0, got -1"),
    ({"imbalance": "exp"}, "data.imbalance: expected a table, got 'exp' (str)"),
    ({"imbalance": {"profil": "exp"}}, "data.imbalance.profil: unknown key; did you mean "
                                       "'data.imbalance.profile'?"),
    ({"nmae": "mnist"}, "data.nmae: unknown key; did you mean 'data.name'?"),
    ({"name": "imagenet"}, "data.name: expected one of 'fashion-mnist'"),
    ({"val_fraction": 1.0}, "data.val_fraction: expected a number in [0, 1), got 1.0 (float)"),
    ({"val_fraction": "0.1"}, "data.val_fraction: expected a number in [0, 1), got '0.1' (str)"),
    ({"test_fraction": 0}, "data.test_fraction: expected a number in (0, 1), got 0 (int)"),
    ({"max_train": 0}, "data.max_train: expected an integer >= 1, got 0 (int)"),
    ({"max_test": True}, "data.max_test: expected an integer >= 1, got True (bool)"),
    ({"download": "yes"}, "data.download: expected true or false, got 'yes' (str)"),
    ({"image_size": 2.5}, "data.image_size: expected an integer >= 1"),
    ({"channels": 2}, "data.channels: expected 1 or 3, got 2 (int)"),
    ({"label": "medium"}, "data.label: expected one of 'fine', 'coarse', got 'medium' (str)"),
    ({"class_order": ["a", "a"]}, "data.class_order: a class is listed twice in ['a', 'a']"),
    ({"class_order": [-1]}, "data.class_order: expected a list of class names or indices"),
    ({"class_order": []}, "data.class_order: expected a list of class names or indices"),
    ({"dir": 3}, "data.dir: expected a path (string), got 3 (int)"),
    ({"split_seed": 1.5}, "data.split_seed: expected an integer >= 0"),
    ({"name": "csv"}, "data.path: required for data.name = 'csv'"),
    ({"name": "arrays"}, "data.path: required for data.name = 'arrays'"),
    ({"name": "imagefolder"}, "data.path: required for data.name = 'imagefolder'"),
])
def test_bad_values_raise_one_line(cfg, message):
    with pytest.raises(ConfigError) as info:
        DataConfig.from_dict(cfg, "data")
    assert message in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith("data.")
    with pytest.raises(ConfigError):   # load_data validates before touching any file
        load_data(cfg)


def test_not_a_table():
    with pytest.raises(ConfigError, match=r"^data: expected a table, got \['digits'\]"):
        DataConfig.from_dict(["digits"], "data")


def test_defaults_are_the_documented_ones_and_frozen():
    d = DataConfig()
    assert d.imbalance == ImbalanceConfig() and d.imbalance.to_dict() == {
        "profile": "none", "ratio": 100, "seed": 0}
    assert (d.name, d.val_fraction, d.label_column, d.image_size) == (
        "fashion-mnist", 0.1, "label", 32)
    assert DataConfig.from_dict(None, "data") == d == DataConfig.from_dict({}, "data")
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.name = "mnist"  # type: ignore[misc]


def test_values_are_normalised():
    r = DataConfig.from_dict({"name": "MNIST", "imbalance": {"ratio": 10},
                              "class_order": ["cat", 2]}, "data")
    assert r.name == "mnist" and r.imbalance.to_dict() == {"profile": "none", "ratio": 10.0,
                                                           "seed": 0}
    assert isinstance(r.imbalance.ratio, float) and r.class_order == ("cat", 2)
    assert DataConfig.from_dict({"imbalance": None}, "data").imbalance.profile == "none"


def test_good_values_pass():
    DataConfig.from_dict({"name": "cifar100", "label": "coarse", "val_fraction": 0,
                          "imbalance": {"profile": "step", "ratio": 10.5, "seed": 3},
                          "class_order": ["cat", 2], "max_train": 100, "channels": 3}, "data")


def test_seed_must_be_int():
    with pytest.raises(TypeError, match="seed must be an int"):
        load_data({"name": "digits"}, seed="1")


def test_class_order_uses_the_one_class_name_rule():
    names = [str(i) for i in range(10)]
    b = load_data({"name": "digits", "imbalance": {"profile": "exp", "ratio": 10},
                   "class_order": [9, 8, 7, 6, 5, 4, 3, 2, 1, "0"]})
    assert b.meta["class_order"] == list(range(9, -1, -1))
    counts = b.train_class_counts
    assert counts[9] > counts[0]  # the first of class_order keeps the most
    with pytest.raises(ConfigError, match=r"^data.class_order: unknown class 'ten'; the classes "
                                          r"are: '0', '1'"):
        load_data({"name": "digits", "class_order": names[:9] + ["ten"]})
    with pytest.raises(ConfigError, match=r"^data.class_order: expected each of the 10 classes "
                                          r"exactly once; missing \['9'\]"):
        load_data({"name": "digits", "class_order": names[:9]})


def test_available_datasets_shape(tmp_path):
    rows = available_datasets()
    assert [r["name"] for r in rows] == [n for n in DATASET_NAMES if n != "python"]
    for r in rows:
        assert set(r) == {"name", "available", "location", "note"} and r["note"]
        assert (r["location"] is not None) == r["available"]
    npz = tmp_path / "x.npz"
    npz.write_bytes(b"")
    rows = {r["name"]: r for r in available_datasets({"name": "arrays", "path": str(npz)})}
    assert rows["arrays"]["available"] and rows["arrays"]["location"] == str(npz)
    assert not rows["csv"]["available"]
