"""``classaware`` command line: the sub-commands and the main job.

Every sub-command module exposes ``register(subparsers)`` which adds its parser and sets
``func=callable(args) -> int`` as the parser default.  Errors the user can fix (``ConfigError``)
become one line on stderr and exit code 2.  ``classaware`` with no arguments runs the demo study
(:func:`classaware.cli.compare.run_default_study`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from classaware.errors import ConfigError

_DESCRIPTION = """\
Train classifiers with class-aware losses (CAMRI, LDAM-DRW, ELM, SimLoss, focal, ...), evaluate
them per class, and compare losses over seeds with confidence intervals and a report.

A bare `classaware` runs the demo study, the {study} preset: cross entropy, weighted
cross entropy and CAMRI on a Fashion-MNIST subset, 4 seeds each, in about 3 minutes on
2 CPU cores. It prints the verdict and the tables and writes {out}/report.html."""

_EPILOG = """\
examples:
  classaware                                           the demo study
  classaware train --config fmnist-camri --out runs/camri
  classaware evaluate runs/camri
  classaware compare --config important-class --jobs 2
  classaware compare --list                            the shipped studies
  classaware COMMAND --help                            a command's options"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse's default prints usage too)
        self.exit(2, f"classaware: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``classaware`` parser with every sub-command registered."""
    from classaware import __version__
    from classaware.cli import compare as _compare
    from classaware.cli import train as _train

    parser = _Parser(
        prog="classaware",
        description=_DESCRIPTION.format(study=_compare.DEFAULT_STUDY, out=_compare.DEFAULT_OUT),
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"classaware {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, title="commands",
                                metavar="COMMAND")
    _train.register(sub)
    _compare.register(sub)
    return parser


def guarded(call: Callable[[], int | None]) -> int:
    """``call()``'s exit code; a ConfigError is one line on stderr and exit code 2, Ctrl-C 130.

    Used by :func:`main` and by the study workers (a run trained in a worker ends with the same
    message and code as ``classaware train``).
    """
    try:
        return int(call() or 0)
    except ConfigError as exc:
        print(f"classaware: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("classaware: interrupted", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()

    def dispatch() -> int:
        if not argv:  # the main job: the demo-size important-class study
            from classaware.cli.compare import run_default_study

            return run_default_study()
        args = parser.parse_args(argv)
        if getattr(args, "func", None) is None:
            parser.print_help()
            return 2
        return int(args.func(args) or 0)

    return guarded(dispatch)
