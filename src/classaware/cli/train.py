"""``classaware train``, ``classaware evaluate`` and ``classaware datasets``.

::

    classaware train --config fmnist-camri --set optim.lr=0.01 --set "loss.important_classes=['Shirt']" --out runs/x
    classaware train --resume --out runs/x
    classaware evaluate runs/x [--data.dir DIR] [--set data.max_test=1000] [--split test|val]
    classaware datasets

Every user error (missing config file, invalid TOML, unknown key, wrong type, bad value, a run
directory without a checkpoint, an unusable ``--out``, a full disk) is a
:class:`~classaware.errors.ConfigError`: the dispatcher prints one line and exits with code 2.
A run that diverges (a non-finite training loss) prints one line and exits with code 3; an
interrupted one exits with 130.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from classaware.errors import ConfigError, TrainingDiverged

__all__ = ["register"]

_EPILOG = """\
--set KEY=VALUE: dotted key, value parsed as TOML (a string if it is not valid TOML):
  --set optim.lr=0.01  --set loss.name=camri  --set "loss.important_classes=['Shirt']"
  --set "data.imbalance={profile='exp', ratio=100}"  --set train.drw_epoch=none
shipped configs: {shipped}.  Keys and defaults: docs/config.md."""


def register(subparsers: Any) -> None:
    """Add the ``train``, ``evaluate`` and ``datasets`` sub-commands to ``subparsers``."""
    from classaware.trainer.config import shipped_configs

    p = subparsers.add_parser(
        "train", help="train one run from a config (+ --set overrides)",
        description="Train one model with one loss; writes a run directory (config.toml, "
                    "metrics.jsonl, checkpoints/, outputs.npz, final.json).",
        epilog=_EPILOG.replace("{shipped}", ", ".join(shipped_configs())),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", "-c", metavar="FILE|NAME",
                   help="TOML file or shipped config name (default: the built-in defaults; with "
                        "--resume: OUT/config.toml)")
    p.add_argument("--set", "-s", dest="overrides", action="append", default=[],
                   metavar="KEY=VALUE", help="override one key (repeatable, applied in order)")
    p.add_argument("--out", "-o", metavar="DIR",
                   help="run directory (default: runs/<date-time>-<loss>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its newest checkpoint (a finished run "
                        "is left as it is; with no checkpoint the run starts again)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar, no final table")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config as TOML and exit without training")
    p.set_defaults(func=_cmd_train)

    e = subparsers.add_parser(
        "evaluate", help="re-evaluate a saved run (best checkpoint) on test or val",
        description="Load RUN_DIR's best checkpoint and config, evaluate it on a split and print "
                    "the per-class table.  Data keys may be overridden (e.g. where the data "
                    "lives on this machine).")
    e.add_argument("run_dir", metavar="RUN_DIR")
    e.add_argument("--split", choices=("test", "val"), default="test")
    e.add_argument("--data.dir", dest="data_dir", metavar="DIR", help="same as --set data.dir=DIR")
    e.add_argument("--data.path", dest="data_path", metavar="PATH",
                   help="same as --set data.path=PATH")
    e.add_argument("--set", "-s", dest="overrides", action="append", default=[],
                   metavar="data.KEY=VALUE", help="override a [data] key (repeatable)")
    e.add_argument("--json", action="store_true", help="print the metrics as JSON")
    e.set_defaults(func=_cmd_evaluate)

    d = subparsers.add_parser("datasets", help="list the datasets and where they are found here")
    d.add_argument("--data.dir", dest="data_dir", metavar="DIR",
                   help="also look in DIR (as data.dir does)")
    d.set_defaults(func=_cmd_datasets)


# --------------------------------------------------------------------------------------------
def _cmd_train(args: argparse.Namespace) -> int:
    from classaware.trainer import config_source, dump_config, load_config

    cfg = load_config(config_source(args.config, args.out, args.resume), args.overrides)
    if args.print_config:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            print(dump_config(cfg, Path(tmp) / "config.toml").read_text(encoding="utf-8"), end="")
        return 0
    from classaware.trainer import train

    try:
        with _os_errors_in_one_line():
            result = train(cfg, out=args.out, resume=args.resume, quiet=args.quiet)
    except TrainingDiverged as exc:  # final.json records it; the checkpoints are finite
        print(f"classaware: error: {exc}", file=sys.stderr)
        return 3
    return 130 if result.interrupted else 0  # under torchrun, __main__ ends through exit_worker


@contextlib.contextmanager
def _os_errors_in_one_line() -> Iterator[None]:
    """A file-system failure (full disk, read-only or missing path, ...) as a one-line
    ConfigError naming the file (exit 2; a run keeps its last checkpoint)."""
    try:
        yield
    except OSError as exc:
        what = exc.strerror or str(exc)
        where = f"{str(exc.filename)!r}: " if exc.filename else ""
        hint = ("; free some space, then continue with --resume"
                if exc.errno == errno.ENOSPC else "")
        raise ConfigError(f"{where}{what[:1].lower()}{what[1:]}{hint}") from None


# --------------------------------------------------------------------------------------------
def _data_overrides(args: argparse.Namespace, config_path: Path) -> dict[str, Any]:
    """The ``[data]`` overrides of ``evaluate`` as a (nested) table, validated against the run's
    config; ``--data.dir``/``--data.path`` first, then each ``--set`` in order."""
    from classaware.trainer.config import load_config, merge_config, parse_set

    pairs: list[tuple[str, Any]] = [(k, v) for k, v in (("data.dir", args.data_dir),
                                                        ("data.path", args.data_path))
                                    if v is not None]
    for item in args.overrides:
        key, value = parse_set(item)
        if key != "data" and not key.startswith("data."):
            raise ConfigError(f"--set {item!r}: evaluate only takes [data] keys (data.KEY=VALUE); "
                              f"the model, loss and training settings are the run's")
        pairs.append((key, value))
    out: dict[str, Any] = {}
    for key, value in pairs:
        layer: dict[str, Any] = {}
        node = layer
        for p in key.split(".")[:-1]:
            node = node.setdefault(p, {})
        node[key.split(".")[-1]] = value
        merge_config(out, layer)
    load_config(config_path, out)  # the run's config with these overrides must be valid
    return out.get("data", {})


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from classaware.trainer.checkpoint import saved_checkpoint, saved_config

    run_dir = Path(args.run_dir)
    config_path = saved_config(run_dir, "RUN_DIR")
    saved_checkpoint(run_dir)
    data_overrides = _data_overrides(args, config_path)
    from classaware.trainer.evaluate import evaluate_run

    with _os_errors_in_one_line():
        result = evaluate_run(run_dir, data_overrides or None, split=args.split)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    names, important = _names_for(run_dir, result)
    from classaware.metrics import format_table

    n = result.get("num_samples")
    print(f"{run_dir} - {args.split}" + (f" ({n} images)" if n is not None else ""))
    print(format_table(result, names, important))
    return 0


def _names_for(run_dir: Path, result: dict[str, Any]) -> tuple[list[str], list[Any]]:
    """Class names and important classes of the run (its final.json), for the table."""
    final: dict[str, Any] = {}
    try:
        final = json.loads((run_dir / "final.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    names = final.get("class_names") or [str(i) for i in range(len(result["per_class_recall"]))]
    return list(names), list(final.get("important_classes") or [])


# --------------------------------------------------------------------------------------------
def _cmd_datasets(args: argparse.Namespace) -> int:
    from classaware.data import available_datasets

    rows = available_datasets({"dir": args.data_dir} if args.data_dir is not None else None)
    print(format_datasets(rows))
    return 0


def format_datasets(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of :func:`classaware.data.available_datasets`'s rows.

    Example
    -------
    >>> print(format_datasets([{"name": "digits", "available": True, "location": "scikit-learn",
    ...                         "note": "bundled"}]))
    name    available  location      note
    digits  yes        scikit-learn  bundled
    """
    header = ("name", "available", "location", "note")
    table = [header] + [(str(r.get("name", "")), "yes" if r.get("available") else "no",
                         str(r.get("location") or "-"), str(r.get("note") or ""))
                        for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths)) + "  " + row[3]
             for row in table]
    return "\n".join(line.rstrip() for line in lines)


if __name__ == "__main__":  # pragma: no cover
    from classaware.cli import main

    sys.exit(main(["train", *sys.argv[1:]]))
