"""Study files: variants, overrides, presets and bad input."""

from __future__ import annotations

import pytest

from classaware.errors import ConfigError
from classaware.study.runner import plan_runs, validate_runs
from classaware.study.spec import apply_override, load_study, parse_set, parse_value, presets

BASE = {
    "study": {"name": "s", "seeds": 2, "important": ["Shirt"]},
    "data": {"name": "fashion-mnist", "max_train": 100},
    "model": {"name": "small_cnn"},
    "loss": {"class_weight": "none"},
    "variants": [
        {"name": "ce", "loss.name": "ce"},
        {"name": "camri", "loss": {"name": "camri", "margin": 0.2}},
        {"name": "arc-linear", "loss.name": "arcface", "model.head": "linear"},
        {"name": "ce-cos", "loss.name": "ce", "model": {"head": "cosine"}},
    ],
}


def test_variant_configs():
    s = load_study(BASE)
    assert s.seeds == [0, 1] and s.baseline == "ce" and s.name == "s"
    ce = s.run_config("ce", 1)
    assert ce["seed"] == 1 and ce["loss"]["name"] == "ce"
    assert ce["loss"]["important_classes"] == ["Shirt"]
    assert ce["model"] == {"name": "small_cnn"}  # logit loss: head untouched
    cam = s.run_config("camri", 0)
    assert cam["loss"] == {"class_weight": "none", "name": "camri", "margin": 0.2,
                           "important_classes": ["Shirt"]}
    assert cam["model"]["head"] == "cosine"  # a margin loss gets the cosine head
    assert s.run_config("arc-linear", 0)["model"]["head"] == "linear"  # unless it sets one
    assert s.run_config("ce-cos", 0)["model"]["head"] == "cosine"
    assert BASE["variants"][1]["loss"] == {"name": "camri", "margin": 0.2}  # input untouched
    names = [r.name for r in plan_runs(s, "/tmp/x")]
    assert names == ["ce-seed0", "ce-seed1", "camri-seed0", "camri-seed1", "arc-linear-seed0",
                     "arc-linear-seed1", "ce-cos-seed0", "ce-cos-seed1"]


def test_short_form_and_sets():
    s = load_study(None, losses=["ce", "camri"], seeds=3,
                   sets=[("data.name", "digits"), ("loss.important_classes", [3]),
                         ("study.baseline", "camri"), ("study.accuracy_tolerance", 1)])
    assert [v.name for v in s.variants] == ["ce", "camri"]
    assert s.name == "ce-camri"  # names the default output directory runs/ce-camri
    assert s.seeds == [0, 1, 2] and s.baseline == "camri" and s.accuracy_tolerance == 1.0
    assert s.important == [3]
    assert s.run_config("camri", 2)["model"]["head"] == "cosine"
    assert s.run_config("ce", 0)["data"] == {"name": "digits"}
    with pytest.raises(ConfigError, match="unknown loss"):
        load_study(None, losses=["nope"])
    # --losses on a study file picks variants
    s2 = load_study(BASE, losses=["camri"], seeds=[4, 7])
    assert [v.name for v in s2.variants] == ["camri"] and s2.seeds == [4, 7]
    assert s2.baseline == "camri"


def test_parse_helpers():
    assert parse_value("0.5") == 0.5 and parse_value("3") == 3 and parse_value("true") is True
    assert parse_value("['Shirt']") == ["Shirt"] and parse_value("{a = 1}") == {"a": 1}
    assert parse_value("camri") == "camri"
    assert parse_set("optim.lr=0.01") == ("optim.lr", 0.01)
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_set("optim.lr")
    # a variant that switches the loss drops the previous loss's parameters (the trainer's rule)
    # and keeps the harness keys such as important_classes
    cfg = {"loss": {"name": "camri", "margin": 0.2, "important_classes": ["Shirt"]}}
    apply_override(cfg, "loss", {"name": "ce"})
    assert cfg["loss"] == {"name": "ce", "important_classes": ["Shirt"]}
    apply_override(cfg, "loss.gamma", 2.0)
    assert cfg["loss"] == {"name": "ce", "important_classes": ["Shirt"], "gamma": 2.0}
    apply_override(cfg, "data.imbalance.ratio", 10)
    assert cfg["data"] == {"imbalance": {"ratio": 10}}
    with pytest.raises(ConfigError, match="not a table"):
        apply_override(cfg, "loss.name.x", 1)


@pytest.mark.parametrize("study, sets, match", [
    ({"study": {"seeds": 0}}, {}, "study.seeds"),
    ({"study": {"seeds": [1, 1]}}, {}, "repeated"),
    ({"study": {"baseline": "zzz"}}, {}, "study.baseline"),
    ({"study": {"accuracy_tolerance": -1}}, {}, "accuracy_tolerance"),
    ({"study": {"target_recalls": [1.5]}}, {}, "target_recalls"),
    ({"study": {"groups": [[]]}}, {}, "groups"),
    ({"study": {"colour": 1}}, {}, "study.colour: unknown key"),
    ({"variants": [{"name": "a b", "loss.name": "ce"}]}, {}, "name"),
    ({"variants": [{"name": "a", "loss.name": "ce"}, {"name": "a"}]}, {}, "duplicate"),
    ({"variants": [{"name": "a", "lr": 0.1}]}, {}, "unknown key"),
    ({"variants": []}, {}, "no variants"),
    ({"stuff": 1}, {}, "unknown top-level key"),
])
def test_bad_studies(study, sets, match):
    raw = {"variants": [{"name": "ce", "loss.name": "ce"}]}
    raw.update(study)
    with pytest.raises(ConfigError, match=match):
        load_study(raw)


def test_file_extends_and_missing(tmp_path):
    parent = tmp_path / "p.toml"
    parent.write_text('[study]\nseeds = 5\n[data]\nname = "digits"\nmax_train = 50\n'
                      '[[variants]]\nname = "ce"\n"loss.name" = "ce"\n')
    child = tmp_path / "c.toml"
    child.write_text('[study]\nextends = "p.toml"\nseeds = 2\n[data]\nmax_train = 70\n')
    s = load_study(child)
    assert s.name == "c" and s.seeds == [0, 1] and [v.name for v in s.variants] == ["ce"]
    assert s.base["data"] == {"name": "digits", "max_train": 70}
    with pytest.raises(ConfigError, match="no such file and no such preset"):
        load_study(tmp_path / "missing.toml")
    (tmp_path / "broken.toml").write_text("[study\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_study(tmp_path / "broken.toml")


def test_presets_are_valid_train_configs():
    names = presets()
    for required in ("important-class", "important-class-demo", "important-class-cifar10",
                     "important-class-gtsrb", "long-tail", "long-tail-exp10", "long-tail-step10",
                     "long-tail-cifar10", "long-tail-cifar100", "similarity", "similarity-age"):
        assert required in names
    for name in names:
        sets = [("data.path", "/nonexistent")] if name == "similarity-age" else []
        s = load_study(name, sets=sets)
        validate_runs(plan_runs(s, "/tmp/unused"))  # the trainer's load_config accepts each run
    demo = load_study("important-class-demo")
    # issue 11: at least 3 seeds and the variants ce, weighted ce and CAMRI; an even run count
    assert [v.name for v in demo.variants] == ["ce", "ce-weighted", "camri-m0.2-s16"]
    assert demo.important == ["Shirt"] and demo.seeds == [0, 1, 2, 3]
    assert demo.base["train"]["epochs"] == 8 and demo.base["train"]["amp"] == "native"
    lt = load_study("long-tail-step10")
    assert lt.base["data"]["imbalance"] == {"profile": "step", "ratio": 10, "seed": 0}
    assert len(lt.variants) == 13  # with ce-drs and ldam-drs
    assert load_study("similarity").groups[1] == ["Sandal", "Sneaker", "Ankle boot"]
    assert load_study("similarity-age", sets=[("data.path", "x")]).ordinal is True
