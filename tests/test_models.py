"""classaware.models: shapes, architecture facts, memory formats and config errors."""

from __future__ import annotations

import math

import pytest
import tomli_w
import torch
from torch import nn

from classaware.errors import ConfigError
from classaware.models import (
    BACKBONES,
    BasicBlockA,
    Classifier,
    ModelConfig,
    OptionAShortcut,
    build_model,
)

# small inputs keep the suite fast; every backbone pools adaptively
SHAPES = {"small_cnn": (1, 28, 28), "resnet32": (3, 16, 16), "camri_cnn": (3, 12, 12),
          "mlp": (20,)}
FEATURE_DIM = {"small_cnn": 128, "resnet32": 64, "camri_cnn": 512, "mlp": 256}


def _n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("head", ["linear", "cosine"])
@pytest.mark.parametrize("name", list(BACKBONES))
def test_output_shapes_every_backbone_and_head(name, head):
    torch.manual_seed(0)
    model = build_model({"name": name, "head": head}, SHAPES[name], 7)
    assert isinstance(model, Classifier)
    assert (model.name, model.head_type, model.num_classes) == (name, head, 7)
    assert model.feature_dim == FEATURE_DIM[name]
    x = torch.randn(2, *SHAPES[name])
    feats = model.features(x)
    out = model(x)
    assert feats.shape == (2, FEATURE_DIM[name])
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    if head == "linear":
        assert isinstance(model.head, nn.Linear)
        torch.testing.assert_close(out, model.head(feats))
    else:
        assert out.abs().max() <= 1 + 1e-5  # cosines
        w = model.head.weight
        ref = nn.functional.normalize(feats, dim=1) @ nn.functional.normalize(w, dim=1).T
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_resnet32_parameter_count():
    model = build_model({"name": "resnet32"}, (3, 32, 32), 10)
    # conv1 + bn1; stage 1: 5 × (2 convs 16→16 + 2 BN); stage 2 and 3: the first block widens
    conv = 9  # 3×3 kernels, no bias
    bn = 2
    stem = 3 * 16 * conv + 16 * bn
    stage1 = 5 * (2 * 16 * 16 * conv + 2 * 16 * bn)
    stage2 = (16 * 32 + 32 * 32) * conv + 2 * 32 * bn + 4 * (2 * 32 * 32 * conv + 2 * 32 * bn)
    stage3 = (32 * 64 + 64 * 64) * conv + 2 * 64 * bn + 4 * (2 * 64 * 64 * conv + 2 * 64 * bn)
    assert _n_params(model.backbone) == stem + stage1 + stage2 + stage3 == 463_504
    assert _n_params(model) == 463_504 + 64 * 10 + 10 == 464_154  # "about 0.46M"
    blocks = [m for m in model.modules() if isinstance(m, BasicBlockA)]
    assert len(blocks) == 15
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 31  # + the linear layer: 32 weighted layers
    assert sum(isinstance(b.shortcut, OptionAShortcut) for b in blocks) == 2


def test_option_a_shortcut_has_no_parameters_and_pads_zeros():
    sc = OptionAShortcut(16, 32, stride=2)
    assert _n_params(sc) == 0 and len(list(sc.buffers())) == 0
    x = torch.randn(2, 16, 8, 8)
    y = sc(x)
    assert y.shape == (2, 32, 4, 4)
    torch.testing.assert_close(y[:, 8:24], x[:, :, ::2, ::2])
    assert (y[:, :8] == 0).all() and (y[:, 24:] == 0).all()
    model = build_model({"name": "resnet32"}, (3, 32, 32), 10)
    for block in model.modules():
        if isinstance(block, BasicBlockA):
            assert _n_params(block.shortcut) == 0


def test_resnet32_kaiming_init():
    torch.manual_seed(0)
    model = build_model({"name": "resnet32"}, (3, 32, 32), 10)
    big = model.backbone.layer3[1].conv1.weight  # 64·64·9 weights, fan-in 576
    assert big.std().item() == pytest.approx(math.sqrt(2 / 576), rel=0.03)
    assert big.mean().abs().item() < 0.01
    assert model.head.weight.std().item() == pytest.approx(math.sqrt(2 / 64), rel=0.2)


def test_camri_cnn_matches_the_release_layout():
    model = build_model({"name": "camri_cnn", "dropout": 0.25}, (3, 32, 32), 10)
    convs = [m for m in model.backbone.modules() if isinstance(m, nn.Conv2d)]
    widths = [c.out_channels for c in convs]
    assert widths == [64] * 3 + [128] * 3 + [256] * 5 + [512] * 2
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) and c.bias is not None
               for c in convs)
    bns = [m for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert [b.num_features for b in bns] == [64, 128, 256, 256]
    assert all(b.eps == 1e-3 and b.momentum == 0.01 for b in bns)
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.backbone.modules()) == 2
    drops = [m for m in model.backbone.modules() if isinstance(m, nn.Dropout)]
    assert [d.p for d in drops] == [0.25, 0.25]
    assert isinstance(model.backbone.bn, nn.BatchNorm1d) and model.backbone.bn.num_features == 512
    expected = sum(c.in_channels * c.out_channels * 9 + c.out_channels for c in convs)
    expected += sum(2 * b.num_features for b in bns) + 512 * 512 + 512 + 2 * 512
    assert _n_params(model.backbone) == expected
    assert build_model({"name": "camri_cnn", "embedding_dim": 64}, (1, 28, 28), 10).feature_dim == 64


@pytest.mark.parametrize("name", ["small_cnn", "resnet32", "camri_cnn"])
def test_channels_last_forward_equals_contiguous(name):
    torch.manual_seed(0)
    model = build_model({"name": name, "head": "cosine"}, SHAPES[name], 5)
    # non-trivial BN statistics, then compare in eval mode
    model.train()
    with torch.no_grad():
        model(torch.randn(4, *SHAPES[name]))
    model.eval()
    x = torch.randn(3, *SHAPES[name])
    with torch.no_grad():
        ref = model(x)
        model_cl = model.to(memory_format=torch.channels_last)
        out = model_cl(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)


def test_small_cnn_other_input_sizes_and_channels():
    for shape in [(1, 8, 8), (3, 32, 32), (1, 5, 7), (2, 28, 40)]:
        model = build_model({"name": "small_cnn"}, shape, 4)
        assert model(torch.randn(2, *shape)).shape == (2, 4)
    model = build_model({"name": "small_cnn", "embedding_dim": 32, "dropout": 0.5},
                        (1, 28, 28), 10)
    assert model.feature_dim == 32
    assert any(isinstance(m, nn.Dropout) and m.p == 0.5 for m in model.modules())


def test_mlp_options():
    model = build_model({"name": "mlp", "hidden": [64, 32, 16], "batch_norm": True,
                         "dropout": 0.1}, (10,), 3)
    lins = [m for m in model.backbone.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in lins] == [(10, 64), (64, 32), (32, 16)]
    assert sum(isinstance(m, nn.BatchNorm1d) for m in model.modules()) == 3
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == 3
    assert model.feature_dim == 16
    # input of any shape is flattened: 1×8×8 digits work with an MLP
    flat = build_model({"name": "mlp"}, (1, 8, 8), 10)
    assert flat(torch.randn(5, 1, 8, 8)).shape == (5, 10)
    # features after the ReLU are non-negative
    assert (flat.features(torch.randn(5, 1, 8, 8)) >= 0).all()


def test_small_cnn_learns_a_tiny_problem():
    torch.manual_seed(0)
    x = torch.randn(48, 1, 8, 8)
    y = (x[:, 0, :4].mean(dim=(1, 2)) > x[:, 0, 4:].mean(dim=(1, 2))).long()
    model = build_model({"name": "small_cnn"}, (1, 8, 8), 2)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    first = None
    for _ in range(30):
        loss = nn.functional.cross_entropy(model(x), y)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
    model.eval()
    assert (model(x).argmax(1) == y).float().mean() > 0.9


def test_same_seed_same_weights():
    torch.manual_seed(3)
    a = build_model({"name": "resnet32"}, (3, 32, 32), 10).state_dict()
    torch.manual_seed(3)
    b = build_model({"name": "resnet32"}, (3, 32, 32), 10).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_defaults_are_complete_and_toml_serialisable():
    defaults = ModelConfig().to_dict()
    assert defaults == {"name": "auto", "head": "linear", "embedding_dim": 0,
                        "hidden": [256, 256], "dropout": 0.0, "batch_norm": False,
                        "kwargs": {}, "init": None, "init_strict": True}
    tomli_w.dumps({"model": {k: v for k, v in defaults.items() if v is not None}})
    assert ModelConfig.from_dict(defaults, "model") == ModelConfig()
    assert ModelConfig.from_dict({}, "model") == ModelConfig.from_dict(None, "model")
    m = build_model(None, (1, 28, 28), 10)
    assert (m.name, m.head_type) == ("small_cnn", "linear")
    m = build_model(ModelConfig(name="mlp", hidden=(8,)), (5,), 3)
    assert (m.name, m.feature_dim) == ("mlp", 8)


@pytest.mark.parametrize(("cfg", "key"), [
    ({"name": "vgg16"}, "model.name"),
    ({"name": 3}, "model.name"),
    ({"head": "arcface"}, "model.head"),
    ({"embedding_dim": -1}, "model.embedding_dim"),
    ({"embedding_dim": 12.5}, "model.embedding_dim"),
    ({"name": "resnet32", "embedding_dim": 128}, "model.embedding_dim"),
    ({"name": "mlp", "embedding_dim": 128}, "model.embedding_dim"),
    ({"hidden": []}, "model.hidden"),
    ({"hidden": [64, 0]}, "model.hidden"),
    ({"hidden": "256"}, "model.hidden"),
    ({"dropout": 1.0}, "model.dropout"),
    ({"dropout": "0.1"}, "model.dropout"),
    ({"name": "resnet32", "dropout": 0.2}, "model.dropout"),
    ({"batch_norm": "yes"}, "model.batch_norm"),
    ({"hiden": [64]}, "model.hiden"),
])
def test_bad_config_names_the_key(cfg, key):
    with pytest.raises(ConfigError, match=f"^{key}: ") as info:
        ModelConfig.from_dict(cfg, "model")
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=f"^{key}: "):
        build_model(cfg, (1, 28, 28), 10)


def test_unknown_key_suggests_the_close_one():
    with pytest.raises(ConfigError, match=r"^model.hiden: unknown key; did you mean "
                                          r"'model.hidden'"):
        ModelConfig.from_dict({"hiden": [64]}, "model")
    with pytest.raises(ConfigError, match=r"^model.dropout: expected a number in \[0, 1\), "
                                          r"got nan"):
        ModelConfig.from_dict({"dropout": math.nan}, "model")


def test_image_backbone_on_feature_vectors_is_a_config_error():
    with pytest.raises(ConfigError, match='model.name: small_cnn takes images.*"mlp"'):
        build_model({"name": "small_cnn"}, (64,), 10)


def test_bad_build_arguments():
    with pytest.raises(ValueError, match="num_classes"):
        build_model({}, (1, 28, 28), 0)
    with pytest.raises(ValueError, match="input_shape"):
        build_model({}, (1, 0, 28), 10)
    with pytest.raises(TypeError, match="input_shape"):
        build_model({}, "1x28x28", 10)
    with pytest.raises(ValueError, match="head_type"):
        Classifier(nn.Identity(), nn.Identity(), "arc", name="x", feature_dim=1, num_classes=1)
