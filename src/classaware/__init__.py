"""classaware: losses that care which classes they get right, and a harness to show what they buy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from classaware.trainer import RunResult


def train(config: Any, **overrides: Any) -> RunResult:
    """Train one run; see :func:`classaware.trainer.train` (mirrors ``classaware train``)."""
    from classaware.trainer import train as _train

    return _train(config, **overrides)


def __getattr__(name: str) -> Any:  # lazy submodules: `import classaware` stays light
    import importlib

    if name in {"nn", "losses", "functional", "similarity", "weights", "data", "models",
                "metrics", "study", "cli", "trainer"}:
        return importlib.import_module(f"classaware.{name}")
    raise AttributeError(f"module 'classaware' has no attribute {name!r}")
