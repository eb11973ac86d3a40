"""``classaware compare`` and the main job (``classaware`` with no arguments)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``compare`` sub-command to ``subparsers``."""
    p = subparsers.add_parser("compare", help="compare losses over seeds (study + report)")
    p.add_argument("--config", help="study file (path or shipped preset name)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:  # pragma: no cover - placeholder
    print("classaware compare: not implemented yet")
    return 2


def run_default_study() -> int:
    """Run the demo-size important-class study (``classaware`` with no arguments)."""
    print("classaware: the default study is not implemented yet")
    return 2
