"""``classaware train``, ``classaware evaluate`` and ``classaware datasets``.

::

    classaware train --config fmnist-camri --set optim.lr=0.01 --set "loss.important_classes=['Shirt']" --out runs/x
    classaware train --resume --out runs/x
    classaware evaluate runs/x [--data.dir DIR] [--set data.max_test=1000] [--split test|val]
    classaware datasets

Every user error (missing config file, invalid TOML, unknown key, wrong type, bad value, a run
directory without a checkpoint) is a :class:`~classaware.errors.ConfigError`: the dispatcher
prints one line and exits with code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from classaware.errors import ConfigError

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
                   help="continue the run in --out from checkpoints/last.pt")
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
    from classaware.trainer.config import dump_config, load_config

    if args.print_config:
        import tempfile

        cfg = load_config(_train_config_source(args), args.overrides)
        with tempfile.TemporaryDirectory() as tmp:
            print(dump_config(cfg, Path(tmp) / "config.toml").read_text(encoding="utf-8"), end="")
        return 0
    from classaware.trainer import train

    if args.resume and args.out is None:
        raise ConfigError("--resume needs --out RUN_DIR (the run to continue)")
    cfg = load_config(_train_config_source(args), args.overrides)
    result = train(cfg, out=args.out, resume=args.resume, quiet=args.quiet)  # prints the table
    code = 130 if result.interrupted else 0
    from classaware.trainer import distributed

    if distributed.env_world_size() > 1:  # a torchrun worker: see exit_worker (torch's DDP
        distributed.exit_worker(code)      # teardown can abort a finished run at exit)
    return code


def _train_config_source(args: argparse.Namespace) -> Any:
    if args.config is None and args.resume and args.out is not None:
        saved = Path(args.out) / "config.toml"
        if not saved.is_file():
            raise ConfigError(f"--resume: {str(saved)!r} not found; is {args.out!r} a run "
                              f"directory?")
        return saved
    return args.config


def _as_layer_dict(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``[(key, value), ...]`` -> an ordered dict; a repeated key keeps its last value, in the
    position of its last occurrence (the order in which --set options were given)."""
    out: dict[str, Any] = {}
    for k, v in pairs:
        out.pop(k, None)
        out[k] = v
    return out


# --------------------------------------------------------------------------------------------
def _run_dir_checks(run_dir: Path) -> None:
    if not run_dir.exists():
        raise ConfigError(f"RUN_DIR {str(run_dir)!r} does not exist")
    if not run_dir.is_dir():
        raise ConfigError(f"RUN_DIR {str(run_dir)!r} is not a directory")
    if not (run_dir / "config.toml").is_file():
        raise ConfigError(f"RUN_DIR {str(run_dir)!r} has no config.toml: not a classaware run")
    ck = run_dir / "checkpoints"
    if not ((ck / "best.pt").is_file() or (ck / "last.pt").is_file()):
        raise ConfigError(f"RUN_DIR {str(run_dir)!r} has no checkpoint (checkpoints/best.pt or "
                          f"last.pt): the run has not finished an epoch")


def _data_overrides(args: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    from classaware.trainer.config import load_config, parse_set

    pairs: list[tuple[str, Any]] = []
    if args.data_dir is not None:
        pairs.append(("data.dir", args.data_dir))
    if args.data_path is not None:
        pairs.append(("data.path", args.data_path))
    for item in args.overrides:
        key, value = parse_set(item)
        if key != "data" and not key.startswith("data."):
            raise ConfigError(f"--set {item!r}: evaluate only takes [data] keys (data.KEY=VALUE); "
                              f"the model, loss and training settings are the run's")
        pairs.append((key, value))
    # validate: the run's config with the data overrides applied must be a valid config
    resolved = load_config(run_dir / "config.toml", _as_layer_dict(pairs))
    out: dict[str, Any] = {}
    for key, _ in pairs:
        if key == "data":
            out.update(resolved["data"])
            continue
        parts = key.split(".")[1:]
        src: Any = resolved["data"]
        dst = out
        for p in parts[:-1]:
            src = src[p]
            dst = dst.setdefault(p, {})
        dst[parts[-1]] = src[parts[-1]]
    return out


def _cmd_evaluate(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    _run_dir_checks(run_dir)
    data_overrides = _data_overrides(args, run_dir)
    from classaware.trainer.loop import evaluate_run

    result = evaluate_run(run_dir, data_overrides or None, split=args.split)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    metrics = result.get(args.split, result) if isinstance(result.get(args.split), dict) else result
    names, important = _names_for(run_dir, result)
    from classaware.metrics import format_table

    n = result.get("num_samples")
    print(f"{run_dir} - {args.split}" + (f" ({n} images)" if n is not None else ""))
    print(format_table(metrics, names, important))
    return 0


def _names_for(run_dir: Path, result: dict[str, Any]) -> tuple[list[str], list[Any]]:
    names = result.get("class_names")
    important = result.get("important_classes")
    if names is None or important is None:
        final_path = run_dir / "final.json"
        final = {}
        if final_path.is_file():
            try:
                final = json.loads(final_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                final = {}
        names = names if names is not None else final.get("class_names")
        important = important if important is not None else final.get("important_classes", [])
    if names is None:
        metrics = result.get("per_class_recall") or []
        names = [str(i) for i in range(len(metrics))]
    return list(names), list(important or [])


# --------------------------------------------------------------------------------------------
def _cmd_datasets(args: argparse.Namespace) -> int:
    from classaware.data import DATA_DEFAULTS, available_datasets

    cfg = None
    if args.data_dir is not None:
        cfg = {**DATA_DEFAULTS, "dir": args.data_dir}
    rows = available_datasets(cfg)
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
