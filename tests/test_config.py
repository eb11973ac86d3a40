"""Config resolution (defaults <- file <- overrides), ``--set`` parsing, validation, helpers."""

from __future__ import annotations

import dataclasses
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from classaware.classes import resolve_classes
from classaware.errors import ConfigError
from classaware.trainer.build import class_weight_values, loss_kwargs
from classaware.trainer.config import (
    EvalConfig,
    LossConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
    dump_config,
    load_config,
    loss_params,
    parse_set,
    shipped_configs,
)
from classaware.trainer.optim import lr_at

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

FIXTURES = Path(__file__).parent / "fixtures"
FMNIST = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
          "Bag", "Ankle boot"]


def write(tmp_path: Path, text: str, name: str = "run.toml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def fails(match: str, config=None, overrides=None) -> str:
    with pytest.raises(ConfigError, match=match) as info:
        load_config(config, overrides)
    msg = str(info.value)
    assert "\n" not in msg  # one line for the CLI
    return msg


# ------------------------------------------------------------------------------ --set parsing
@pytest.mark.parametrize("item, key, value", [
    ("optim.lr=0.01", "optim.lr", 0.01),
    ("optim.lr=1e-3", "optim.lr", 0.001),
    ("train.epochs=7", "train.epochs", 7),
    ("optim.nesterov=true", "optim.nesterov", True),
    ("loss.name=camri", "loss.name", "camri"),            # not TOML -> plain string
    ("loss.name='camri'", "loss.name", "camri"),          # quoted TOML string
    ("loss.important_classes=['Shirt', 3]", "loss.important_classes", ["Shirt", 3]),
    ("optim.milestones=[160, 180]", "optim.milestones", [160, 180]),
    ("data.imbalance={profile='exp', ratio=50}", "data.imbalance", {"profile": "exp", "ratio": 50}),
    ("data.dir=/tmp/a=b", "data.dir", "/tmp/a=b"),        # split at the first '='
    (" optim.lr = 0.5 ", "optim.lr", 0.5),
    ("data.dir=", "data.dir", ""),
    ("loss.name=Shirt Pants", "loss.name", "Shirt Pants"),
    ("optim.lr=.01", "optim.lr", 0.01),                    # numbers TOML itself rejects
    ("optim.lr=5.", "optim.lr", 5.0),
    ("data.dir=1.2.3", "data.dir", "1.2.3"),
    ("loss.name=1\nx = 2", "loss.name", "1\nx = 2"),       # one value, never a document
])
def test_parse_set(item, key, value):
    assert parse_set(item) == (key, value)


@pytest.mark.parametrize("item", ["optim.lr", "=0.1", "optim..lr=1", ".lr=1"])
def test_parse_set_rejects_malformed(item):
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_set(item)


# ------------------------------------------------------------------------------ merging
def test_defaults_resolve_to_quick_fashion_mnist_run():
    cfg = load_config()
    assert cfg == RunConfig()                              # the schema's defaults, nothing else
    assert cfg.data.name == "fashion-mnist"
    assert cfg.loss.name == "ce" and cfg.model.head == "linear"
    assert (cfg.optim, cfg.train, cfg.eval) == (OptimConfig(), TrainConfig(), EvalConfig())
    assert (cfg.optim.lr, cfg.optim.schedule, cfg.optim.weight_decay, cfg.train.epochs) == (
        0.05, "cosine", 5e-4, 3)
    assert list(cfg.to_dict()) == ["seed", "data", "model", "loss", "optim", "train", "eval"]


def test_config_is_frozen_hashable_and_picklable():
    import dataclasses
    import pickle

    cfg = load_config("fmnist-camri")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.optim.lr = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.loss.params["margin"] = 1.0  # type: ignore[index]
    assert pickle.loads(pickle.dumps(cfg)) == cfg and hash(cfg) == hash(load_config("fmnist-camri"))
    assert isinstance(cfg.model.hidden, tuple) and cfg.to_dict()["model"]["hidden"] == [256, 256]
    # a resolved config is accepted where a config source is, and comes back as it is
    assert load_config(cfg) is cfg
    assert load_config(cfg, ["optim.lr=0.5"]).optim.lr == 0.5


def test_merge_order_defaults_file_overrides(tmp_path):
    path = write(tmp_path, """
seed = 3
[optim]
lr = 0.2
momentum = 0.5
[data.imbalance]
profile = "exp"
""")
    cfg = load_config(path, ["optim.lr=0.3", "optim.lr=0.4", "data.imbalance.ratio=10"])
    assert cfg.seed == 3
    assert cfg.optim.lr == 0.4                             # the last override wins
    assert cfg.optim.momentum == 0.5                       # the file beats the default
    assert cfg.optim.weight_decay == OptimConfig().weight_decay
    # tables merge key by key at every depth
    assert cfg.data.imbalance.to_dict() == {"profile": "exp", "ratio": 10, "seed": 0}


def test_python_overrides_dotted_and_section_dicts():
    cfg = load_config({"optim": {"lr": 0.2}},
                      {"optim": {"name": "adam"}, "train.epochs": 2, "loss": {"name": "focal",
                                                                             "gamma": 1}})
    assert cfg.optim.lr == 0.2 and cfg.optim.name == "adam"
    assert cfg.train.epochs == 2
    assert cfg.loss.params["gamma"] == 1.0 and isinstance(cfg.loss.params["gamma"], float)


def test_int_is_accepted_where_float_expected():
    cfg = load_config(None, ["optim.lr=1", "train.drw_beta=0"])
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert isinstance(cfg.train.drw_beta, float)


def test_changing_loss_name_drops_previous_loss_parameters():
    cfg = load_config("fmnist-camri", ["loss.name=ce", "model.head=linear"])
    assert cfg.loss.name == "ce" and dict(cfg.loss.params) == {}
    assert cfg.loss.important_classes == ("Shirt",)          # harness keys stay


def test_loss_name_change_is_case_insensitive_and_none_resets_a_loss_parameter():
    cfg = load_config("fmnist-camri", ["loss.name=CAMRI"])
    assert cfg.loss.params["margin"] == pytest.approx(math.pi / 16)  # same loss: kept
    cfg = load_config("fmnist-camri", {"loss": {"margin": None}})
    assert dict(cfg.loss.params) == {"scale": 16.0}


def test_nullable_key_can_be_cleared_from_the_command_line():
    cfg = load_config("fmnist-lt-ldam-drw", ["train.drw_epoch=none"])
    assert cfg.train.drw_epoch is None
    cfg = load_config("fmnist-lt-ldam-drw", {"train.drw_epoch": None})
    assert cfg.train.drw_epoch is None
    # "none" stays a string where the default is not absent
    assert load_config(None, ["loss.class_weight=none"]).loss.class_weight == "none"


def test_input_dict_is_not_modified():
    given = {"optim": {"lr": 1}, "loss": {"name": "CE"}}
    load_config(given, {"optim.lr": 2})
    assert given == {"optim": {"lr": 1}, "loss": {"name": "CE"}}


def test_names_are_case_insensitive_and_normalised():
    cfg = load_config(None, ["loss.name=Focal", "optim.name=AdamW", "optim.schedule=STEP",
                             "model.name=MLP"])
    assert (cfg.loss.name, cfg.optim.name, cfg.optim.schedule, cfg.model.name) == (
        "focal", "adamw", "step", "mlp")


# ------------------------------------------------------------------------------ sources
def test_missing_file_lists_shipped_configs():
    msg = fails("no such file", "does-not-exist.toml")
    assert "fmnist-camri" in msg


def test_misspelt_shipped_name_gets_a_suggestion():
    fails("did you mean 'fmnist-camri'", "fmnist-camry")


def test_bad_toml_reports_line_and_column(tmp_path):
    path = write(tmp_path, "[optim]\nlr = 0.1\nname = sgd\n")
    msg = fails("invalid TOML", path)
    assert "line 3" in msg and "column" in msg and str(path) in msg


def test_config_must_be_path_name_or_dict():
    fails("expected a TOML file path", 42)


def test_directory_is_not_a_config(tmp_path):
    fails("is a directory", tmp_path)


# ------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("overrides, match", [
    (["lr=0.1"], r"^lr: unknown section or key; did you mean 'optim.lr'\?"),
    (["optim.learning_rate=0.1"], r"^optim.learning_rate: unknown key; did you mean 'optim.lr'"),
    (["optim.momentun=0.1"], r"did you mean 'optim.momentum'\?"),
    (["train.lr=0.1"], r"^train.lr: unknown key; did you mean 'optim.lr'\?"),
    (["trian.epochs=1"], r"^trian: unknown section or key; did you mean 'train'\?"),
    (["data.nmae=mnist"], r"data.nmae.*did you mean 'data.name'"),
    (["data.imbalance.ration=3"], r"data.imbalance.ration: unknown key; did you mean "
                                  r"'data.imbalance.ratio'"),
    (["model.heads=cosine"], r"model.heads.*did you mean 'model.head'"),
    (["loss=camri"], r"^loss: expected a table"),
])
def test_unknown_keys_fail_naming_the_key(overrides, match):
    fails(match, None, overrides)


@pytest.mark.parametrize("overrides, match", [
    (["optim.lr=fast"], r"^optim.lr: expected a number > 0, got 'fast' \(str\)"),
    (["optim.lr=true"], r"^optim.lr: expected a number"),          # a bool is not a number
    (["train.epochs=2.5"], r"^train.epochs: expected an integer >= 1"),
    (["train.batch_size='64'"], r"^train.batch_size: expected an integer"),
    (["optim.nesterov=1"], r"^optim.nesterov: expected true or false"),
    (["train.augment=maybe"], r'^train.augment: expected true, false or "auto"'),
    (["optim.betas=[0.9]"], r"^optim.betas: expected two numbers"),
    (["optim.milestones=7"], r"^optim.milestones: expected a list"),
    (["eval.test=yes"], r"^eval.test: expected true or false"),
    (["seed=-1"], r"^seed: expected an integer >= 0"),
    (["seed=1.5"], r"^seed: expected an integer"),
    (["loss.important_classes=[1.5]"], r"^loss.important_classes: expected a list of class"),
    (["loss.name=focal", "loss.gamma=high"], r"^loss.gamma: expected a number"),
    (["loss.name=arcface", "model.head=cosine", "loss.easy_margin=1"],
     r"^loss.easy_margin: expected true or false"),
])
def test_wrong_types_fail_naming_the_key(overrides, match):
    fails(match, None, overrides)


@pytest.mark.parametrize("overrides, match", [
    (["optim.lr=0"], r"^optim.lr: expected a number > 0, got 0"),
    (["optim.lr=-0.1"], r"^optim.lr: expected a number > 0"),
    (["train.epochs=0"], r"^train.epochs: expected an integer >= 1, got 0"),
    (["optim.name=rmsprop"], r"^optim.name: expected an optimizer among 'sgd', 'adam', 'adamw'"),
    (["optim.schedule=poly"], r"^optim.schedule: expected a schedule among 'constant'"),
    (["optim.schedule=step", "optim.milestones=[10, 5]"], r"^optim.milestones: expected strictly"),
    (["optim.milestones=[5, 5]"], r"^optim.milestones: expected strictly increasing"),
    (["optim.milestones=[0]"], r"^optim.milestones: expected a list of epoch indices"),
    (["optim.momentum=1.0"], r"^optim.momentum: expected a number in \[0, 1\)"),
    (["optim.nesterov=true", "optim.momentum=0"], r"^optim.nesterov: .*momentum > 0"),
    (["optim.factor=0"], r"^optim.factor: expected a number in \(0, 1\]"),
    (["optim.warmup_epochs=9", "train.epochs=5"], r"^optim.warmup_epochs: expected an integer in"),
    (["optim.min_lr=0.5", "optim.lr=0.1"], r"^optim.min_lr"),
    (["optim.weight_decay=-1"], r"^optim.weight_decay: expected a number >= 0"),
    (["train.drw_epoch=5", "train.epochs=5"], r"^train.drw_epoch: .*below train.epochs = 5"),
    (["train.drw_epoch=-1"], r"^train.drw_epoch: expected an integer >= 0"),
    (["train.drw_beta=1"], r"^train.drw_beta: expected a number in \[0, 1\)"),
    (["train.device=tpu"], r'^train.device: expected "auto", "cpu", "cuda"'),
    (["train.amp=fp16"], r"^train.amp: expected one of 'auto', 'native', 'bf16', 'none'"),
    (["train.crop_padding=-1"], r"^train.crop_padding"),
    (["train.log_interval=0"], r"^train.log_interval"),
    (["train.checkpoint_every=0"], r"^train.checkpoint_every"),
    (["eval.select_metric=loss"], r"^eval.select_metric: expected a metric among 'accuracy'"),
    (["eval.shot_thresholds=[20, 100]"], r"^eval.shot_thresholds: .*many >= few"),
    (["eval.select_metric=important_recall_mean"],
     r"^eval.select_metric: \"important_recall_mean\" needs loss.important_classes"),
    (["seed=18446744073709551616"], r"^seed: expected an integer >= 0 \(and < 2\*\*64\)"),
])
def test_bad_values_fail_naming_the_key(overrides, match):
    fails(match, None, overrides)


@pytest.mark.parametrize("key", ["optim.lr", "optim.weight_decay", "optim.momentum",
                                 "optim.min_lr", "train.drw_beta", "loss.beta",
                                 "loss.important_weight", "model.dropout", "data.val_fraction",
                                 "data.imbalance.ratio"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_rejected_everywhere(key, value):
    fails(rf"^{re.escape(key)}: expected a number.*got {value!r}", None, {key: value})


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_loss_parameters_and_class_weights_are_rejected(value):
    fails(r"^loss.gamma: expected a number", None, {"loss.name": "focal", "loss.gamma": value})
    fails(r"^loss.class_weight: expected a list of non-negative", None,
          {"loss.class_weight": [1.0, value]})
    fails(r"^loss.margin: expected a number or a list", None,
          {"loss.name": "camri", "model.head": "cosine", "loss.important_classes": [0, 1],
           "loss.margin": [0.1, value]})


def test_unknown_loss_lists_the_available_losses():
    from classaware.losses import available

    msg = fails(r"^loss.name: expected one of", None, ["loss.name=camry"])
    assert all(name in msg for name in available())
    assert "did you mean 'camri'" in msg


@pytest.mark.parametrize("loss", ["camri", "arcface", "cosface", "ldam", "elm"])
def test_margin_loss_needs_the_cosine_head(loss):
    msg = fails(r"^model.head: ", None, [f"loss.name={loss}", "loss.important_classes=[0]"])
    assert 'set model.head = "cosine"' in msg


def test_loss_parameter_not_taken_lists_what_it_takes():
    msg = fails(r"^loss.margin: loss 'focal' does not take 'margin'; it takes: gamma",
                None, ["loss.name=focal", "loss.margin=0.1"])
    assert "weight" not in msg.split("it takes:")[1]   # trainer-filled, not user-settable
    msg = fails(r"^loss.gama: ", None, ["loss.name=focal", "loss.gama=1"])
    assert "did you mean 'loss.gamma'" in msg
    fails(r"^loss.margin: loss 'ce' does not take 'margin'; it takes: no parameters",
          None, ["loss.margin=0.1"])
    fails(r"^loss.reduction: .*the trainer sets it", None, ["loss.reduction=sum"])
    fails(r"^loss.weight: .*loss.class_weight", None, ["loss.weight=[1.0, 2.0]"])
    fails(r"^loss.tau: loss 'balanced_softmax' does not take 'tau'", None,
          ["loss.name=balanced_softmax", "loss.tau=0.5"])


def test_loss_parameters_match_the_loss_signature():
    assert set(loss_params("camri")) == {"margin", "scale"}
    assert set(loss_params("arcface")) == {"margin", "scale", "easy_margin"}
    assert set(loss_params("elm")) == {"max_margin", "lam", "scale"}
    assert set(loss_params("simloss")) == {"similarity"}
    assert set(loss_params("balanced_softmax")) == set()
    assert set(loss_params("logit_adjusted")) == {"tau"}


def test_loss_value_errors_surface_before_training():
    fails(r"^loss(\.scale)?: .*scale", None, ["loss.name=cosface", "model.head=cosine",
                                              "loss.scale=0"])
    fails(r"^loss(\.margin)?: .*margin", None, ["loss.name=camri", "model.head=cosine",
                                                "loss.important_classes=['Shirt']",
                                                "loss.margin=-0.1"])
    camri = ["loss.name=camri", "model.head=cosine"]
    fails(r"^loss(\.margin)?: .*margin", None, [*camri, "loss.important_classes=['Shirt']",
                                                "loss.margin=[0.1, 0.2]"])
    cfg = load_config(None, [*camri, "loss.important_classes=['Shirt', 'Coat']",
                             "loss.margin=[0.1, 0.2]"])                # one margin per class
    assert cfg.loss.params["margin"] == (0.1, 0.2)
    assert cfg.loss.to_dict()["margin"] == [0.1, 0.2]
    fails(r"^loss.margin: expected a number or a list of numbers", None,
          [*camri, "loss.important_classes=[1]", "loss.margin=['a']"])
    fails(r"^loss.margin: expected a number, got \[0.1\]", None,
          ["loss.name=cosface", "model.head=cosine", "loss.margin=[0.1]"])


@pytest.mark.parametrize("overrides, match", [
    (["loss.class_weight=balanced"], r"^loss.class_weight: expected a list of per-class numbers "
                                     r"or one of 'none', 'inverse_frequency'"),
    (["loss.class_weight=[1, -1]"], r"^loss.class_weight: expected a list of non-negative"),
    (["loss.class_weight=[0, 0]"], r"^loss.class_weight: .*not all zero"),
    (["loss.class_weight=important"], r'^loss.class_weight: "important" needs'),
    (["loss.important_weight=0"], r"^loss.important_weight: expected a number > 0"),
    (["loss.beta=1"], r"^loss.beta: expected a number in \[0, 1\)"),
    (["loss.important_classes=['Shirt', 'Shirt']"], r"^loss.important_classes: .*twice"),
    (["loss.name=camri", "model.head=cosine"], r"^loss.important_classes: CAMRI needs"),
    (["loss.name=simloss"], r"^loss.similarity: required for simloss"),
    (["loss.name=simloss", "loss.similarity={kind='ordinal', reduction_factor=0.5}",
      "loss.class_weight=inverse_frequency"], r"^loss.class_weight: loss 'simloss' takes no"),
    (["loss.name=simloss", "loss.similarity={kind='ordinal', reduction_factor=0.5}",
      "train.drw_epoch=1"], r"^train.drw_epoch: DRW re-weights the loss, but loss 'simloss'"),
    (["loss.name=simloss", "loss.similarity={kind='tree'}"], r"^loss.similarity.kind"),
    (["loss.name=simloss", "loss.similarity={kind='ordinal', reduction_factor=1}"],
     r"^loss.similarity.reduction_factor: expected a number in \[0, 1\)"),
    (["loss.name=simloss", "loss.similarity={kind='ordinal', within=0.5, reduction_factor=0.5}"],
     r"^loss.similarity.within: unknown key"),
    (["loss.name=simloss", "loss.similarity={kind='groups', groups=[['Shirt']]}"],
     r"^loss.similarity.groups: expected a list of groups"),
    (["loss.name=simloss", "loss.similarity={kind='matrix', matrix=[[1, 2], [0, 1]]}"],
     r"^loss.similarity.matrix"),
])
def test_loss_section_errors(overrides, match):
    fails(match, None, overrides)


def test_data_and_model_errors_have_the_same_format():
    fails(r"^data.val_fraction: expected a number in \[0, 1\), got 1.5 \(float\)$", None,
          ["data.val_fraction=1.5"])
    fails(r"^data.name: expected one of 'fashion-mnist', .*got 'imagenet' \(str\)", None,
          ["data.name=imagenet"])
    fails(r"^model.name: expected one of 'auto', 'small_cnn', .*got 'vgg' \(str\)", None,
          ["model.name=vgg"])
    fails(r"^data.imbalance.profile: expected one of 'none', 'exp', 'step'", None,
          ["data.imbalance.profile=linear"])
    fails(r"^model.hiden: unknown key; did you mean 'model.hidden'\?", None, ["model.hiden=[3]"])


# ------------------------------------------------------------------------------ shipped configs
def test_shipped_configs_are_the_documented_set():
    assert set(shipped_configs()) >= {"camri-cifar10", "ldam-drw-cifar10-lt",
                                      "elm-drw-cifar10-lt", "fmnist-ce", "fmnist-camri",
                                      "fmnist-lt-ldam-drw"}


@pytest.mark.parametrize("name", shipped_configs())
def test_every_shipped_config_loads_validates_and_round_trips(name, tmp_path):
    cfg = load_config(name)
    assert load_config(f"{name}.toml") == cfg
    path = dump_config(cfg, tmp_path / "config.toml")
    assert load_config(path) == cfg
    assert load_config(cfg.to_dict()) == cfg
    # the shipped file uses only known keys of its own (no silent defaults override a typo)
    assert tomllib.loads(path.read_text())["loss"]["name"] == cfg.loss.name


def restricted(new: dict, old: dict) -> dict:
    """``new`` with only the keys ``old`` has (tables recursively)."""
    return {k: restricted(new[k], v) if isinstance(v, dict) and isinstance(new.get(k), dict)
            else new.get(k) for k, v in old.items()}


@pytest.mark.parametrize("name", ["fmnist-camri", "ldam-drw-cifar10-lt", "digits-camri-run"])
def test_config_toml_saved_before_the_typed_schema_still_loads(name, tmp_path):
    """``fixtures/*.config.toml`` were written by ``dump_config`` of the dict-based config
    (before the typed schema; e.g. ``ratio = 100``, an int where a float is meant)."""
    old = FIXTURES / f"{name}.config.toml"
    cfg = load_config(old)
    written = tomllib.loads(dump_config(cfg, tmp_path / "c.toml").read_text())
    # every key of the old file keeps its value; keys added since take their defaults (the old
    # run keeps its behaviour)
    assert restricted(written, tomllib.loads(old.read_text())) == tomllib.loads(old.read_text())
    assert (written["data"]["val_from"], written["data"]["allow_empty_classes"]) == ("train", False)
    assert written["eval"]["select"] == "best"
    assert load_config(written) == cfg
    if name == "ldam-drw-cifar10-lt":  # the shipped recipe now builds the release's counts
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, val_from="unused"))
    if name != "digits-camri-run":
        assert cfg == load_config(name)


def test_camri_cifar10_is_the_release_recipe():
    cfg = load_config("camri-cifar10")
    assert cfg.model.name == "camri_cnn" and cfg.model.head == "cosine"
    assert cfg.loss.important_classes == ("cat",)
    assert cfg.loss.params["margin"] == pytest.approx(math.pi / 16, abs=1e-15)
    assert cfg.loss.params["scale"] == 16.0
    assert (cfg.optim.name, cfg.optim.lr) == ("adam", 1e-3)
    assert (cfg.train.batch_size, cfg.train.epochs) == (64, 300)


@pytest.mark.parametrize("name, loss", [("ldam-drw-cifar10-lt", "ldam"),
                                        ("elm-drw-cifar10-lt", "elm")])
def test_drw_cifar10_lt_recipes(name, loss):
    cfg = load_config(name)
    assert cfg.loss.name == loss and (cfg.model.name, cfg.model.head) == ("resnet32", "cosine")
    assert cfg.data.imbalance.to_dict() == {"profile": "exp", "ratio": 100, "seed": 0}
    o, t = cfg.optim, cfg.train
    assert (o.name, o.lr, o.momentum, o.weight_decay) == ("sgd", 0.1, 0.9, 2e-4)
    assert (t.batch_size, t.epochs, t.drw_epoch, t.drw_beta) == (128, 200, 160, 0.9999)
    # lr: linear warm-up over 5 epochs, x0.01 from epoch 160 and x0.0001 from 180 (0-based)
    expected = [0.1 * (i + 1) / 5 if i < 5 else 0.1 * (0.01 if 160 <= i < 180 else
                                                       1e-4 if i >= 180 else 1.0)
                for i in range(200)]
    assert [lr_at(o, t.epochs, i) for i in range(200)] == pytest.approx(expected, rel=1e-12)


def test_fmnist_lt_config_is_exp_100():
    cfg = load_config("fmnist-lt-ldam-drw")
    assert cfg.data.name == "fashion-mnist"
    assert (cfg.data.imbalance.profile, cfg.data.imbalance.ratio) == ("exp", 100)
    assert cfg.train.drw_epoch < cfg.train.epochs


# ------------------------------------------------------------------------------ dump / load
def test_dump_drops_none_and_round_trips(tmp_path):
    cfg = load_config(None, {"loss": {"name": "focal", "gamma": 0.5,
                                      "important_classes": ["Shirt", 2]},
                             "data.imbalance.profile": "step"})
    assert cfg.train.drw_epoch is None and cfg.data.dir is None
    path = dump_config(cfg, tmp_path / "config.toml")
    raw = tomllib.loads(path.read_text())
    assert "drw_epoch" not in raw["train"] and "dir" not in raw["data"]
    assert raw["seed"] == 0 and raw["loss"]["important_classes"] == ["Shirt", 2]
    assert load_config(path) == cfg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]  # no temporary left
    # a plain dict (a study's variant config) is dumped as it is
    raw = tomllib.loads(dump_config({"seed": 1, "loss": {"name": "ce", "x": None}},
                                    tmp_path / "d.toml").read_text())
    assert raw == {"seed": 1, "loss": {"name": "ce"}}
    # paths given from Python are written as strings
    cfg = load_config(None, {"data.dir": tmp_path})
    raw = tomllib.loads(dump_config(cfg, tmp_path / "c2.toml").read_text())
    assert raw["data"]["dir"] == str(tmp_path)


# ------------------------------------------------------------------------------ helpers
def test_resolve_classes_is_the_one_class_name_rule():
    key = "loss.important_classes"
    assert resolve_classes(["Shirt", 0, "coat"], FMNIST, key=key) == [6, 0, 4]  # case-insensitive
    assert resolve_classes((), FMNIST, key=key) == resolve_classes(None, FMNIST, key=key) == []
    with pytest.raises(ConfigError, match=r"^loss.important_classes: unknown class 'Shrt'; did you "
                                          r"mean 'Shirt'\?; the classes are: 'T-shirt/top'"):
        resolve_classes(["Shrt"], FMNIST, key=key)
    with pytest.raises(ConfigError, match=r"class index 10 out of range: .*10 classes"):
        resolve_classes([10], FMNIST, key=key)
    with pytest.raises(ConfigError, match=r"'Shirt' is listed twice"):
        resolve_classes(["Shirt", 6], FMNIST, key=key)
    with pytest.raises(ConfigError, match=r"ambiguous class 'CAT' \(matches 'Cat', 'cat'\); "
                                          r"the classes are"):
        resolve_classes(["CAT"], ["Cat", "cat"], key=key)
    assert resolve_classes(["cat"], ["Cat", "cat"], key=key) == [1]  # an exact match wins
    assert resolve_classes("cat", ["dog", "cat"], key=key) == [1]
    assert resolve_classes(np.int64(1), ["dog", "cat"], key=key) == [1]
    with pytest.raises(ConfigError, match=r"^k: expected class names or indices, got 1.5"):
        resolve_classes([1.5], ["dog", "cat"], key="k")


def _weights(cw: object, names: list[str], counts: list[int], **loss: object) -> object:
    cfg = load_config(None, {"loss.class_weight": cw, **{f"loss.{k}": v for k, v in loss.items()}})
    important = resolve_classes(cfg.loss.important_classes, names, key="loss.important_classes")
    return class_weight_values(cfg.loss, names, counts, important)


def test_class_weight_values_follow_their_formulas():
    counts = [100, 10, 1]
    names = ["a", "b", "c"]
    assert _weights("none", names, counts) is None
    ref = [1 / n for n in counts]
    assert _weights("inverse_frequency", names, counts) == pytest.approx(
        [3 * r / sum(ref) for r in ref])
    beta = 0.99
    ref = [(1 - beta) / (1 - beta ** n) for n in counts]
    assert _weights("class_balanced", names, counts, beta=beta) == pytest.approx(
        [3 * r / sum(ref) for r in ref])
    assert _weights("important", names, counts, important_classes=["c"],
                    important_weight=5) == [1.0, 1.0, 5.0]
    with pytest.raises(ConfigError, match=r"loss.class_weight: expected 3 weights"):
        _weights([1, 2], names, counts)
    assert _weights([1, 2], names[:2], counts[:2]) == [1.0, 2.0]


def test_loss_kwargs_build_the_loss():
    import torch

    from classaware.losses import create

    cfg = load_config("fmnist-camri")
    kw = loss_kwargs(cfg.loss, FMNIST, [6000] * 10, [6])
    assert kw == {"important_classes": [6], "margin": cfg.loss.params["margin"], "scale": 16.0}
    create("camri", **kw)
    kw = loss_kwargs(load_config("fmnist-lt-ldam-drw").loss, FMNIST, list(range(10, 0, -1)), [])
    assert kw == {"class_counts": list(range(10, 0, -1)), "max_margin": 0.5, "scale": 30.0}
    cfg = load_config(None, ["loss.name=simloss", "loss.similarity={kind='groups', "
                             "groups=[['shirt', 'T-shirt/top', 4]], within=0.25}"])
    kw = loss_kwargs(cfg.loss, FMNIST, [1] * 10, [])
    expected = torch.eye(10)
    for i in (6, 0, 4):
        for j in (6, 0, 4):
            if i != j:
                expected[i, j] = 0.25
    assert torch.allclose(kw["similarity"].float(), expected)
    cfg = load_config(None, ["loss.name=simloss",
                             "loss.similarity={kind='ordinal', reduction_factor=0.5}"])
    s = loss_kwargs(cfg.loss, ["a", "b", "c"], [1, 1, 1], [])["similarity"].float()
    assert torch.allclose(s, torch.tensor([[1, .5, .25], [.5, 1, .5], [.25, .5, 1]]))
    cfg = load_config(None, ["loss.name=simloss",
                             "loss.similarity={kind='matrix', matrix=[[1, 0.5], [0.5, 1]]}"])
    with pytest.raises(ConfigError, match=r"expected 3×3"):
        loss_kwargs(cfg.loss, ["a", "b", "c"], [1, 1, 1], [])


def test_lr_at_constant_and_cosine():
    cfg = load_config(None, ["optim.schedule=constant", "optim.warmup_epochs=2", "optim.lr=0.4"])
    assert [lr_at(cfg.optim, 3, i) for i in range(4)] == pytest.approx([0.2, 0.4, 0.4, 0.4])
    cfg = load_config(None, ["optim.schedule=cosine", "optim.lr=1", "optim.min_lr=0.1",
                             "train.epochs=5", "optim.warmup_epochs=1"])
    ref = [1.0] + [0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (i - 1) / 4)) for i in range(1, 5)]
    assert [lr_at(cfg.optim, 5, i) for i in range(5)] == pytest.approx(ref)
    assert lr_at(cfg.optim, 5, 9) == pytest.approx(0.1)  # past the end: min_lr


def test_loss_section_is_typed_with_open_ended_parameters():
    loss = load_config("fmnist-camri").loss
    assert isinstance(loss, LossConfig) and loss.spec.input == "cosine"
    assert loss.to_dict() == {"name": "camri", "important_classes": ["Shirt"],
                              "class_weight": "none", "important_weight": 2.0, "beta": 0.9999,
                              "margin": loss.params["margin"], "scale": 16.0}
