"""``[data]`` validation: every bad value is one ConfigError line naming the key."""

from __future__ import annotations

import pytest

from classaware.data import (
    DATA_DEFAULTS,
    DATA_TYPES,
    DATASET_NAMES,
    available_datasets,
    load_data,
    resolve_data_config,
    validate_data_config,
)
from classaware.errors import ConfigError


@pytest.mark.parametrize(("cfg", "message"), [
    ({"imbalance": {"profile": "foo"}},
     "data.imbalance.profile must be 'exp', 'step' or 'none', got 'foo'"),
    ({"imbalance": {"ratio": 0.5}}, "data.imbalance.ratio must be a number >= 1, got 0.5"),
    ({"imbalance": {"ratio": float("nan")}}, "data.imbalance.ratio must be a number >= 1"),
    ({"imbalance": {"seed": -1}}, "data.imbalance.seed must be a non-negative integer"),
    ({"imbalance": "exp"}, "data.imbalance must be a table"),
    ({"imbalance": {"profil": "exp"}}, "unknown key data.imbalance.profil (did you mean "
                                       "data.imbalance.profile?)"),
    ({"nmae": "mnist"}, "unknown key data.nmae (did you mean data.name?)"),
    ({"name": "imagenet"}, "data.name must be one of 'fashion-mnist'"),
    ({"val_fraction": 1.0}, "data.val_fraction must be a number in [0, 1), got 1.0"),
    ({"val_fraction": "0.1"}, "data.val_fraction must be a number in [0, 1)"),
    ({"test_fraction": 0}, "data.test_fraction must be a number in (0, 1), got 0"),
    ({"max_train": 0}, "data.max_train must be a positive integer, got 0"),
    ({"max_test": True}, "data.max_test must be a positive integer, got True"),
    ({"download": "yes"}, "data.download must be true or false, got 'yes'"),
    ({"image_size": 2.5}, "data.image_size must be a positive integer"),
    ({"channels": 2}, "data.channels must be 1 or 3, got 2"),
    ({"label": "medium"}, "data.label must be 'fine' or 'coarse', got 'medium'"),
    ({"class_order": ["a", "a"]}, "data.class_order must be a list without repeats"),
    ({"class_order": [-1]}, "data.class_order must be a list of class names or non-negative"),
    ({"class_order": "Shirt"}, "data.class_order must be a non-empty list"),
    ({"dir": 3}, "data.dir must be a path (string), got 3"),
    ({"split_seed": 1.5}, "data.split_seed must be a non-negative integer"),
    ({"name": "csv"}, "data.path is required for data.name = 'csv'"),
    ({"name": "arrays"}, "data.path is required for data.name = 'arrays'"),
    ({"name": "imagefolder"}, "data.path is required for data.name = 'imagefolder'"),
])
def test_bad_values_raise_one_line(cfg, message):
    with pytest.raises(ConfigError) as info:
        validate_data_config(cfg)
    assert message in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ConfigError):   # load_data validates before touching any file
        load_data(cfg)


def test_not_a_table():
    with pytest.raises(ConfigError, match=r"\[data\] must be a table"):
        validate_data_config(["digits"])


def test_defaults_document_every_key_and_are_valid():
    validate_data_config(DATA_DEFAULTS)
    assert set(DATA_TYPES) == set(DATA_DEFAULTS)
    for key, value in DATA_DEFAULTS.items():
        assert value is None or isinstance(value, DATA_TYPES[key]), key
    assert DATA_DEFAULTS["imbalance"] == {"profile": "none", "ratio": 100, "seed": 0}
    assert DATA_DEFAULTS["val_fraction"] == 0.1 and DATA_DEFAULTS["label_column"] == "label"
    assert DATA_DEFAULTS["image_size"] == 32


def test_resolve_merges_nested_and_does_not_alias():
    r = resolve_data_config({"name": "MNIST", "imbalance": {"ratio": 10}})
    assert r["name"] == "mnist" and r["imbalance"] == {"profile": "none", "ratio": 10, "seed": 0}
    assert set(r) == set(DATA_DEFAULTS)
    r["imbalance"]["seed"] = 5
    assert DATA_DEFAULTS["imbalance"]["seed"] == 0
    assert resolve_data_config({"imbalance": None})["imbalance"]["profile"] == "none"


def test_good_values_pass():
    validate_data_config({"name": "cifar100", "label": "coarse", "val_fraction": 0,
                          "imbalance": {"profile": "step", "ratio": 10.5, "seed": 3},
                          "class_order": ["cat", 2], "max_train": 100, "channels": 3})


def test_seed_must_be_int():
    with pytest.raises(TypeError, match="seed must be an int"):
        load_data({"name": "digits"}, seed="1")


def test_available_datasets_shape(tmp_path):
    rows = available_datasets()
    assert [r["name"] for r in rows] == list(DATASET_NAMES)
    for r in rows:
        assert set(r) == {"name", "available", "location", "note"} and r["note"]
        assert (r["location"] is not None) == r["available"]
    npz = tmp_path / "x.npz"
    npz.write_bytes(b"")
    rows = {r["name"]: r for r in available_datasets({"name": "arrays", "path": str(npz)})}
    assert rows["arrays"]["available"] and rows["arrays"]["location"] == str(npz)
    assert not rows["csv"]["available"]
