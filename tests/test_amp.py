"""``train.amp``: which runs get bf16 autocast ("native": only where the hardware has bf16)."""

from __future__ import annotations

import sys

import pytest
import torch

from classaware.cli import main
from classaware.trainer import build
from classaware.trainer.build import amp_dtype, cpu_has_native_bf16

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CPU = torch.device("cpu")


@pytest.mark.parametrize("text, native", [
    ("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n", True),   # Zen 4, Cooper Lake
    ("processor\t: 0\nflags\t\t: fpu sse2 avx2 amx_bf16 amx_tile\n", True),     # Sapphire Rapids
    ("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n", False),     # AVX-512, no bf16
    ("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n", False),                   # AVX2 only
    ("processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n", True),              # Arm v8.6+
    ("processor\t: 0\nFeatures\t: fp asimd crc32\n", False),
    ("", False),
])
def test_native_bf16_is_read_from_the_cpu_flags(tmp_path, text, native):
    info = tmp_path / "cpuinfo"
    info.write_text(text)
    assert cpu_has_native_bf16(str(info)) is native


def test_without_cpu_flags_native_is_off(tmp_path):
    assert cpu_has_native_bf16(str(tmp_path / "missing")) is False


@pytest.mark.parametrize("native", [True, False])
def test_each_mode_on_a_cpu(monkeypatch, native):
    monkeypatch.setattr(build, "cpu_has_native_bf16", lambda: native)
    assert amp_dtype("bf16", CPU) is torch.bfloat16
    assert amp_dtype("none", CPU) is None
    assert amp_dtype("auto", CPU) is None  # CPU runs stay float32 unless asked
    assert amp_dtype("native", CPU) is (torch.bfloat16 if native else None)


@pytest.mark.parametrize("native", [True, False])
def test_train_native_through_the_command_line(tmp_path, monkeypatch, capsys, native):
    monkeypatch.setattr(build, "cpu_has_native_bf16", lambda: native)
    out = tmp_path / "run"
    code = main(["train", "--set", 'data.name="digits"', "--set", 'train.amp="native"',
                 "--set", "train.epochs=1", "--out", str(out)])
    assert code == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert header.endswith(", bf16 autocast") is native, header
    saved = tomllib.loads((out / "config.toml").read_text())
    assert saved["train"]["amp"] == "native"  # the setting is recorded, its resolution printed
    assert (out / "final.json").is_file()
