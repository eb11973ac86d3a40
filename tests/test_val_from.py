"""``data.val_from = "unused"``: the training counts are the LDAM-DRW release's, validation comes
from the images the imbalance leaves unused (balanced, disjoint from training).

The release's counts are computed here from the release's own formula
(``IMBALANCECIFAR10.get_img_num_per_cls``: ``img_max * imb_factor ** (i / (cls_num - 1))`` for
``exp``, ``img_max`` / ``img_max * imb_factor`` for the two halves for ``step``, with
``imb_factor = 1 / ratio`` and ``img_max`` = images per class), not with the library's code.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from classaware.cli import main
from classaware.data.registry import split_train_val
from classaware.errors import ConfigError
from classaware.trainer.config import load_config
from test_cli_train import assert_one_line_error


def release_counts(img_max: int, cls_num: int, profile: str, ratio: float) -> list[int]:
    imb_factor = 1 / ratio
    if profile == "exp":
        return [int(img_max * imb_factor ** (i / (cls_num - 1.0))) for i in range(cls_num)]
    half = cls_num // 2
    return [int(img_max)] * half + [int(img_max * imb_factor)] * (cls_num - half)


CIFAR = {"cifar10": (10, 5000), "cifar100": (100, 500)}


@pytest.mark.parametrize("dataset", list(CIFAR))
@pytest.mark.parametrize("profile", ["exp", "step"])
@pytest.mark.parametrize("ratio", [10, 50, 100])
def test_training_counts_are_the_releases(dataset, profile, ratio):
    cls_num, img_max = CIFAR[dataset]
    y = np.repeat(np.arange(cls_num), img_max)  # CIFAR's training labels: img_max per class
    np.random.default_rng(0).shuffle(y)
    cfg = {"val_from": "unused", "val_fraction": 0.1,
           "imbalance": {"profile": profile, "ratio": ratio, "seed": 0}}
    meta: dict = {}
    train, val = split_train_val(y, cls_num, cfg, seed=0, meta=meta)
    want = release_counts(img_max, cls_num, profile, ratio)
    assert np.bincount(y[train], minlength=cls_num).tolist() == want
    assert np.intersect1d(train, val).size == 0            # disjoint
    # balanced: round(0.1 * img_max) per class, except where fewer images are left unused
    per_class = round(0.1 * img_max)
    got = np.bincount(y[val], minlength=cls_num)
    assert got.tolist() == [min(per_class, img_max - w) for w in want]
    # the classes short of unused images (those that keep all theirs have none) are listed
    assert meta["val_short"] == {c: img_max - w for c, w in enumerate(want)
                                 if img_max - w < per_class}
    assert all(meta["val_short"][c] == 0 for c in range(cls_num) if want[c] == img_max)
    assert meta["val_per_class"] == per_class


def test_a_class_with_few_unused_images_gives_all_it_has():
    # ratio 1.25 on 10 images per class: 10, 9, 8 kept -> 0, 1, 2 unused, 3 wanted per class
    y = np.repeat(np.arange(3), 10)
    cfg = {"val_from": "unused", "val_fraction": 0.3, "imbalance": {"profile": "exp", "ratio": 1.25}}
    meta: dict = {}
    train, val = split_train_val(y, 3, cfg, seed=0, meta=meta)
    assert np.bincount(y[train]).tolist() == [10, 8, 8]
    assert np.bincount(y[val], minlength=3).tolist() == [0, 2, 2]
    assert meta["val_short"] == {0: 0, 1: 2, 2: 2}


def test_val_from_train_is_unchanged():
    # the default carves validation before the imbalance, exactly as before (same indices)
    y = np.repeat(np.arange(10), 600)
    cfg = {"imbalance": {"profile": "exp", "ratio": 100}}
    train, val = split_train_val(y, 10, cfg, seed=3)
    assert np.bincount(y[val]).tolist() == [60] * 10
    assert np.bincount(y[train]).tolist() == release_counts(540, 10, "exp", 100)


def test_val_from_unused_needs_an_imbalance():
    with pytest.raises(ConfigError, match=r"data.val_from: \"unused\" draws validation from the "
                                          r"images the imbalance leaves unused"):
        load_config(None, {"data.val_from": "unused"})
    with pytest.raises(ConfigError, match="data.val_from: expected one of 'train', 'unused'"):
        load_config(None, {"data.val_from": "test"})


@pytest.mark.parametrize("name", ["ldam-drw-cifar10-lt", "elm-drw-cifar10-lt"])
def test_paper_recipes_draw_validation_from_the_unused_images(name):
    cfg = load_config(name)
    assert cfg.data.val_from == "unused" and cfg.data.imbalance.profile == "exp"


def test_paper_scale_long_tail_studies_draw_validation_from_the_unused_images():
    from classaware.study.spec import load_study

    for name in ("long-tail-cifar10", "long-tail-cifar100"):
        study = load_study(name)
        for v in study.variants:
            assert load_config(study.run_config(v.name, 0)).data.val_from == "unused", (name, v)


def _cifar_like_npz(path: Path, cls_num: int, img_max: int) -> Path:
    """CIFAR's training label layout (img_max per class) with 1-feature samples, a small test set."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(cls_num), img_max)
    x = (y[:, None] + rng.normal(size=(len(y), 1))).astype(np.float32)
    yt = np.repeat(np.arange(cls_num), 2)
    xt = (yt[:, None] + rng.normal(size=(len(yt), 1))).astype(np.float32)
    np.savez(path, x_train=x, y_train=y, x_test=xt, y_test=yt)
    return path


@pytest.mark.parametrize("cls_num, img_max, profile", [(10, 5000, "exp"), (100, 500, "step")])
def test_train_trains_on_the_releases_counts(capsys, tmp_path, cls_num, img_max, profile):
    data = _cifar_like_npz(tmp_path / "d.npz", cls_num, img_max)
    out = tmp_path / "run"
    code = main(["train", "--set", "data.name=arrays", "--set", f"data.path='{data}'",
                 "--set", "data.val_from=unused",
                 "--set", f"data.imbalance={{profile='{profile}', ratio=100}}",
                 "--set", "model.name=mlp", "--set", "model.hidden=[4]",
                 "--set", "train.epochs=1", "--set", "train.batch_size=1024", "--out", str(out)])
    text, err = capsys.readouterr()
    assert code == 0, err
    final = json.loads((out / "final.json").read_text())
    want = release_counts(img_max, cls_num, profile, 100)
    assert final["train_class_counts"] == want
    per_class = round(0.1 * img_max)
    val_support = final["val"]["per_class_support"]
    assert val_support == [min(per_class, img_max - w) for w in want]
    # the run says which classes have fewer validation images
    line = next(s for s in text.splitlines() if s.startswith("classaware: validation:"))
    assert f"{per_class} images per class from those the imbalance leaves unused" in line
    assert "'0' 0" in line


def test_important_recall_selection_refuses_an_important_class_without_validation(capsys, tmp_path):
    data = _cifar_like_npz(tmp_path / "d.npz", 10, 100)
    code = main(["train", "--set", "data.name=arrays", "--set", f"data.path='{data}'",
                 "--set", "data.val_from=unused", "--set", "data.imbalance={profile='exp'}",
                 "--set", "model.name=mlp", "--set", "loss.important_classes=['0']",
                 "--set", "eval.select_metric=important_recall_mean", "--set", "train.epochs=1",
                 "--out", str(tmp_path / "run")])
    assert_one_line_error(code, capsys.readouterr().err,
                          "eval.select_metric: \"important_recall_mean\" needs validation images "
                          "of every important class, and '0' has none")
