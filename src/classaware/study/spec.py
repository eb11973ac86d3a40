"""Study files: shared train settings, a list of variants, and the study's own settings.

A study file is a train config (``[data]``, ``[model]``, ``[loss]``, ``[optim]``, ``[train]``,
``[eval]``; see docs/config.md) plus::

    [study]
    name = "important-class"          # default: the file's stem
    seeds = 3                         # an int n (seeds 0..n-1) or a list of ints
    baseline = "ce"                   # the variant every other one is compared with
    accuracy_tolerance = 0.5          # "accuracy kept": mean acc >= baseline mean - 0.5 points
    important = ["Shirt"]             # default: loss.important_classes of the shared config
    target_recalls = [0.6, 0.7, 0.8, 0.9]   # threshold moving on the important classes
    groups = [["T-shirt/top", "Shirt"], ["Sandal", "Sneaker"]]  # optional: group accuracy
    ordinal = false                   # true: report the mean absolute class error
    extends = "important-class"       # optional: start from another study file (preset or path)

    [[variants]]
    name = "ce"
    "loss.name" = "ce"                # dotted keys ...

    [[variants]]
    name = "camri-m0.2-s16"
    loss = {name = "camri", margin = 0.2, scale = 16.0}   # ... or tables merged into a section

Each variant's config is the shared config with the variant's overrides applied in order, then
``loss.important_classes = study.important`` (unless the variant sets it), ``seed`` = the seed of
the run, and ``model.head = "cosine"`` for a margin loss (``spec(name).input == "cosine"``)
unless the variant itself sets ``model.head``.

Example
-------
>>> from classaware.study.spec import load_study
>>> study = load_study("important-class")             # doctest: +SKIP
>>> [v.name for v in study.variants][:2]              # doctest: +SKIP
['ce', 'ce-weighted']
"""

from __future__ import annotations

import copy
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from classaware.errors import ConfigError
from classaware.trainer.config import SECTIONS, merge_config, parse_set

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PRESET_DIR = Path(__file__).resolve().parent.parent / "configs" / "studies"
_MARGIN_FALLBACK = {"camri", "arcface", "cosface", "ldam", "elm"}
_SENTENCE_END = re.compile(r"(?<!\be\.g)(?<!\bi\.e)(?<!\.\.)[.?!](?=\s+[A-Z`(]|\s*$)")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")

STUDY_DEFAULTS: dict[str, Any] = {
    "name": None,
    "seeds": 3,
    "baseline": None,  # default: "ce" if such a variant exists, else the first variant
    "accuracy_tolerance": 0.5,
    "important": None,
    "target_recalls": [0.6, 0.7, 0.8, 0.9],
    "groups": [],
    "ordinal": False,
    "extends": None,
    "description": "",
}


@dataclass
class Variant:
    """One row of the comparison: a name and the overrides applied to the shared config."""

    name: str
    overrides: list[tuple[str, Any]] = field(default_factory=list)


@dataclass
class Study:
    """A parsed study: ``base`` (shared train config), ``variants`` and the ``[study]`` settings."""

    name: str
    base: dict[str, Any]
    variants: list[Variant]
    seeds: list[int]
    baseline: str
    accuracy_tolerance: float
    important: list[Any]
    target_recalls: list[float]
    groups: list[list[Any]]
    ordinal: bool = False
    description: str = ""
    source: str = "<dict>"

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)

    def run_name(self, variant: str, seed: int) -> str:
        """The run directory name of ``(variant, seed)``: ``<variant>-seed<k>``."""
        return f"{variant}-seed{seed}"

    def run_config(self, variant: str, seed: int) -> dict[str, Any]:
        """The train config of one run (not yet validated by the trainer)."""
        v = self.variant(variant)
        cfg = copy.deepcopy(self.base)
        set_keys: set[str] = set()
        for key, value in v.overrides:
            apply_override(cfg, key, value)
            set_keys.update(_touched_keys(key, value))
        loss = cfg.setdefault("loss", {})
        if "loss.important_classes" not in set_keys and self.important:
            loss["important_classes"] = list(self.important)
        if "model.head" not in set_keys and is_margin_loss(str(loss.get("name", "ce"))):
            cfg.setdefault("model", {})["head"] = "cosine"
        cfg["seed"] = int(seed)
        return cfg

    def settings(self) -> dict[str, Any]:
        """The ``[study]`` settings as a plain dict (for the report)."""
        return {
            "name": self.name, "seeds": list(self.seeds), "baseline": self.baseline,
            "accuracy_tolerance": self.accuracy_tolerance, "important": list(self.important),
            "target_recalls": list(self.target_recalls), "groups": [list(g) for g in self.groups],
            "ordinal": self.ordinal,
        }


def is_margin_loss(name: str) -> bool:
    """True when the loss ``name`` works on cosines (needs ``model.head = "cosine"``)."""
    try:
        from classaware.losses import spec

        return spec(name).input == "cosine"
    except (ImportError, ValueError, AttributeError):
        return name.lower() in _MARGIN_FALLBACK


def _touched_keys(key: str, value: Any) -> set[str]:
    """Dotted keys set by an override (a section table sets each of its keys)."""
    out = {key}
    if isinstance(value, dict):
        for k, v in value.items():
            out |= _touched_keys(f"{key}.{k}", v)
    return out


def parse_value(text: str) -> Any:
    """Parse a ``--set`` value as the trainer does (a TOML value, else a string).

    Example
    -------
    >>> parse_value("0.5"), parse_value("['Shirt']"), parse_value("camri")
    (0.5, ['Shirt'], 'camri')
    """
    return parse_set(f"v={text}")[1]


def deep_merge(dst: dict[str, Any], src: dict[str, Any]) -> dict[str, Any]:
    """Merge ``src`` into ``dst`` with the trainer's rule (:func:`classaware.trainer.config.merge_config`):
    tables key by key, anything else replaces, and a new ``loss.name`` drops the old loss's parameters."""
    return merge_config(dst, src)


def apply_override(cfg: dict[str, Any], key: str, value: Any) -> None:
    """Set a dotted ``key`` in ``cfg``; a table value is merged into an existing table."""
    parts = key.split(".")
    if any(not p for p in parts):
        raise ConfigError(f"override {key!r}: a dotted key must not have empty parts")
    node: Any = cfg
    for p in parts[:-1]:
        node = node.get(p) if isinstance(node, dict) else None
        if node is None:
            break
        if not isinstance(node, dict):
            raise ConfigError(f"override {key!r}: {p!r} is not a table")
    layer: dict[str, Any] = {}
    leaf = layer
    for p in parts[:-1]:
        leaf = leaf.setdefault(p, {})
    leaf[parts[-1]] = value
    merge_config(cfg, layer)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read study file: {exc.strerror}") from None


def presets() -> list[str]:
    """Names of the shipped study files (``configs/studies/*.toml``)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def preset_summary(name: str) -> str:
    """The first sentence of a preset's leading comment (it may run over several lines).

    Example
    -------
    >>> preset_summary("long-tail-step10")
    'long-tail with the step profile at ratio 10 (5 classes keep 1800 images, 5 keep 180).'
    """
    words: list[str] = []
    for line in find_study_file(name).read_text(encoding="utf-8").splitlines():
        text = line.lstrip("#").strip() if line.startswith("#") else None
        if not text:  # the comment block ends at its first empty line or at the first key
            if words or text is None:
                break
            continue
        words.append(text)
    block = " ".join(words)
    # a sentence ends at . ? ! before a capital letter or the end ("e.g.", "...": not an end)
    m = _SENTENCE_END.search(block)
    return block[:m.start() + 1] if m else block[:m.start() + 1]
    return " ".join(words)


def find_study_file(ref: str | Path, *, relative_to: Path | None = None) -> Path:
    """A study file path from a path or a preset name (``.toml`` may be left off)."""
    p = Path(ref)
    candidates = []
    if relative_to is not None and not p.is_absolute():
        candidates += [relative_to / p, relative_to / f"{p}.toml"]
    candidates += [p, Path(f"{p}.toml"), PRESET_DIR / p.name, PRESET_DIR / f"{p.name}.toml"]
    for c in candidates:
        if c.is_file():
            return c
    raise ConfigError(
        f"study {str(ref)!r}: no such file and no such preset; presets: {', '.join(presets())}"
    )


def _load_raw(ref: str | Path, *, relative_to: Path | None = None,
              _seen: tuple[Path, ...] = ()) -> tuple[dict[str, Any], Path]:
    path = find_study_file(ref, relative_to=relative_to).resolve()
    if path in _seen:
        raise ConfigError(f"{path}: study.extends forms a cycle")
    raw = _read_toml(path)
    parent = (raw.get("study") or {}).get("extends")
    if parent is None:
        return raw, path
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: study.extends: expected a preset name or path, got {parent!r}")
    base, _ = _load_raw(parent, relative_to=path.parent, _seen=_seen + (path,))
    child_variants = raw.pop("variants", None)
    merged = deep_merge(base, raw)
    if child_variants is not None:
        merged["variants"] = child_variants
    merged.setdefault("study", {}).pop("extends", None)
    if "name" not in (raw.get("study") or {}):
        merged["study"]["name"] = path.stem
    return merged, path


def load_study(
    source: str | Path | dict[str, Any] | None,
    *,
    losses: list[str] | None = None,
    seeds: int | list[int] | None = None,
    sets: list[tuple[str, Any]] | tuple[tuple[str, Any], ...] = (),
) -> Study:
    """Parse a study from a file path, a preset name, a dict, or nothing (the short form).

    Parameters
    ----------
    source : a study file / preset name / dict; ``None`` = no variants yet, the train defaults.
    losses : variant names. Without ``source``: one variant per loss name (``loss.name = name``).
        With ``source``: keeps only these variants (an unknown name is a ConfigError); a name
        that is not a variant but a loss name is added as a plain variant of that loss.
    seeds : an int n (seeds ``0..n-1``) or a list; replaces ``study.seeds``.
    sets : ``(dotted key, value)`` overrides of the shared config; keys starting with ``study.``
        change the study settings instead, and ``VARIANT:key`` sets ``key`` in that variant
        only, after the variant's own overrides (so it can change a value the variant sets).
    """
    origin = "<command line>"
    if source is None:
        raw: dict[str, Any] = {}
    elif isinstance(source, dict):
        raw, origin = copy.deepcopy(source), "<dict>"
    else:
        raw, path = _load_raw(source)
        origin = str(path)
        raw.setdefault("study", {}).setdefault("name", path.stem)
    if not isinstance(raw, dict):
        raise ConfigError("a study must be a TOML table")
    study_raw = raw.pop("study", {}) or {}
    variants_raw = raw.pop("variants", []) or []
    if not isinstance(study_raw, dict):
        raise ConfigError("[study] must be a table")
    variant_sets: list[tuple[str, str, Any]] = []
    for key, value in sets:
        if ":" in key:
            vname, _, vkey = key.partition(":")
            variant_sets.append((vname, vkey, value))
        elif key.startswith("study."):
            apply_override(study_raw, key[len("study."):], value)
        else:
            apply_override(raw, key, value)
    unknown = [k for k in study_raw if k not in STUDY_DEFAULTS]
    if unknown:
        raise ConfigError(
            f"study.{unknown[0]}: unknown key; known: {', '.join(k for k in STUDY_DEFAULTS)}"
        )
    settings = {**STUDY_DEFAULTS, **study_raw}
    base = raw
    for k in base:
        if k not in SECTIONS and k != "seed":
            raise ConfigError(
                f"{k}: unknown top-level key in a study; expected [study], [[variants]] or one of "
                f"{', '.join(SECTIONS)}"
            )
    base.pop("seed", None)  # the study's seeds decide

    variants = _parse_variants(variants_raw)
    if losses is not None:
        variants = _select_variants(variants, losses, from_file=source is not None)
    if not variants:
        raise ConfigError("the study has no variants: add [[variants]] or use --losses ce,camri,...")
    _apply_variant_sets(variants, variant_sets)

    seed_list = _parse_seeds(seeds if seeds is not None else settings["seeds"])
    names = [v.name for v in variants]
    baseline = settings["baseline"]
    baseline_chosen = any(k == "study.baseline" for k, _ in sets)
    if baseline is None or (losses is not None and baseline not in names and not baseline_chosen):
        # the file's baseline was left out by --losses: compare with the first variant instead
        baseline = "ce" if "ce" in names else names[0]
    if baseline not in names:
        raise ConfigError(f"study.baseline: {baseline!r} is not a variant; variants: {', '.join(names)}")
    tol, important, targets, groups = _check_settings(settings, base)
    name = settings["name"] or ("-".join(names)[:60].rstrip("-.") if source is None else "study")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError(f"study.name: expected a file-name-safe string, got {name!r}")
    return Study(
        name=name, base=base, variants=variants, seeds=seed_list, baseline=baseline,
        accuracy_tolerance=float(tol), important=list(important),
        target_recalls=sorted(float(t) for t in targets), groups=[list(g) for g in groups],
        ordinal=settings["ordinal"], description=str(settings["description"] or ""), source=origin,
    )


def _check_settings(settings: dict[str, Any], base: dict[str, Any]
                    ) -> tuple[float, list[Any], list[float], list[list[Any]]]:
    """The checked ``accuracy_tolerance``, ``important``, ``target_recalls`` and ``groups``."""
    tol = settings["accuracy_tolerance"]
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not math.isfinite(tol) or tol < 0:
        raise ConfigError(f"study.accuracy_tolerance: expected a number >= 0 (points), got {tol!r}")
    important = settings["important"]
    if important is None:
        important = (base.get("loss") or {}).get("important_classes", [])
    if isinstance(important, (str, int)) and not isinstance(important, bool):
        important = [important]
    if not isinstance(important, list) or not all(
        isinstance(c, (str, int)) and not isinstance(c, bool) for c in important
    ):
        raise ConfigError(f"study.important: expected a list of class names or indices, got {important!r}")
    targets = settings["target_recalls"]
    if not isinstance(targets, list) or not all(
        isinstance(t, (int, float)) and not isinstance(t, bool) and 0 < t <= 1 for t in targets
    ):
        raise ConfigError(f"study.target_recalls: expected a list of numbers in (0, 1], got {targets!r}")
    groups = settings["groups"]
    if not isinstance(groups, list) or not all(isinstance(g, list) and g for g in groups):
        raise ConfigError(f"study.groups: expected a list of non-empty lists of classes, got {groups!r}")
    if not isinstance(settings["ordinal"], bool):
        raise ConfigError(f"study.ordinal: expected true or false, got {settings['ordinal']!r}")
    return tol, important, targets, groups


def _parse_seeds(seeds: Any) -> list[int]:
    if isinstance(seeds, bool):
        raise ConfigError(f"study.seeds: expected an int >= 1 or a list of ints, got {seeds!r}")
    if isinstance(seeds, int):
        if seeds < 1:
            raise ConfigError(f"study.seeds: expected an int >= 1 or a list of ints, got {seeds}")
        return list(range(seeds))
    if (isinstance(seeds, list) and seeds
            and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"study.seeds: repeated seed in {seeds}")
        return list(seeds)
    raise ConfigError(f"study.seeds: expected an int >= 1 or a non-empty list of ints >= 0, got {seeds!r}")


def _parse_variants(items: Any) -> list[Variant]:
    if not isinstance(items, list):
        raise ConfigError("variants: expected an array of tables [[variants]]")
    out: list[Variant] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ConfigError(f"variants[{i}]: expected a table with a name and overrides")
        name = item.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ConfigError(
                f"variants[{i}].name: expected a file-name-safe string (letters, digits, . _ + -), "
                f"got {name!r}"
            )
        if any(v.name == name for v in out):
            raise ConfigError(f"variants[{i}].name: duplicate variant name {name!r}")
        overrides: list[tuple[str, Any]] = []
        for key, value in item.items():
            if key in ("name", "description"):
                continue
            head = key.split(".")[0]
            if head not in SECTIONS:
                raise ConfigError(
                    f"variants[{i}] ({name}).{key}: unknown key; expected a dotted config key such "
                    f"as \"loss.margin\" or a section table ({', '.join(SECTIONS)})"
                )
            if "." not in key and not isinstance(value, dict):
                raise ConfigError(f"variants[{i}] ({name}).{key}: a section override must be a table")
            overrides.append((key, value))
        out.append(Variant(name=name, overrides=overrides))
    return out


def _apply_variant_sets(variants: list[Variant], sets: list[tuple[str, str, Any]]) -> None:
    """``--set VARIANT:key=value``: appended to that variant's overrides (applied last)."""
    by_name = {v.name: v for v in variants}
    for vname, key, value in sets:
        if vname not in by_name:
            raise ConfigError(f"--set {vname}:{key}: {vname!r} is not a variant of the study; "
                              f"variants: {', '.join(by_name)}")
        head = key.split(".")[0]
        if head not in SECTIONS or "." not in key:
            raise ConfigError(f"--set {vname}:{key}: expected a dotted config key of one of "
                              f"{', '.join(SECTIONS)} (e.g. {vname}:train.drw_epoch=1)")
        by_name[vname].overrides.append((key, value))


def _select_variants(variants: list[Variant], losses: list[str], *, from_file: bool) -> list[Variant]:
    by_name = {v.name: v for v in variants}
    out = []
    for name in losses:
        name = name.strip()
        if not name:
            continue
        if name in by_name:
            out.append(by_name[name])
            continue
        if not _NAME_RE.match(name):
            raise ConfigError(f"--losses: {name!r} is not a valid variant name")
        if from_file and variants and not _is_loss_name(name):
            raise ConfigError(
                f"--losses: {name!r} is neither a variant of the study ({', '.join(by_name)}) "
                "nor a loss name"
            )
        if not _is_loss_name(name):
            raise ConfigError(f"--losses: unknown loss {name!r}")
        out.append(Variant(name=name, overrides=[("loss.name", name)]))
    if len({v.name for v in out}) != len(out):
        raise ConfigError("--losses: a variant is listed twice")
    return out


def _is_loss_name(name: str) -> bool:
    try:
        from classaware.losses import available

        return name in available()
    except ImportError:  # pragma: no cover - the loss library is part of the package
        return name in _MARGIN_FALLBACK | {"ce", "simloss", "cce", "focal", "logit_adjusted",
                                           "balanced_softmax"}
