"""classaware: losses that care which classes they get right, and a harness to show what they buy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from classaware.trainer import RunResult


def train(config: Any, **overrides: Any) -> RunResult:
    """Train one run; see :func:`classaware.trainer.train` (mirrors ``classaware train``)."""
    from classaware.trainer import train as _train

    return _train(config, **overrides)


def _version() -> str:
    """The installed distribution's version (pyproject.toml's ``project.version``, its one home).

    Run from a source tree without installing (``PYTHONPATH=src``), it is read from that tree's
    pyproject.toml; ``"unknown"`` when neither is there.
    """
    from importlib.metadata import PackageNotFoundError, version
    from pathlib import Path

    try:
        return version("classaware")
    except PackageNotFoundError:
        pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
        try:
            import tomllib
        except ModuleNotFoundError:  # pragma: no cover - Python < 3.11
            import tomli as tomllib
        try:
            return str(tomllib.loads(pyproject.read_text())["project"]["version"])
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "unknown"


def __getattr__(name: str) -> Any:  # lazy submodules: `import classaware` stays light
    import importlib

    if name == "__version__":
        return _version()
    if name in {"nn", "losses", "functional", "similarity", "weights", "data", "models",
                "metrics", "study", "cli", "trainer"}:
        return importlib.import_module(f"classaware.{name}")
    raise AttributeError(f"module 'classaware' has no attribute {name!r}")
