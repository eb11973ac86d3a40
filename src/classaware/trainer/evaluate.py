"""Evaluation of a split (one confusion matrix → every metric) and re-evaluation of a saved run.

Predictions are the argmax of the raw head output (logits or cosines): no margin, no scale, no
prior.  Under DDP each rank predicts its shard of the split and the confusion matrices are
summed over ranks.

Example
-------
>>> from classaware.trainer.evaluate import evaluate_run       # doctest: +SKIP
>>> evaluate_run("runs/camri", split="val")["balanced_accuracy"]  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from classaware.data.lazy import iter_chunks
from classaware.trainer import distributed as dist_utils
from classaware.trainer.build import Normalizer, RunParts, build_parts, resolve_device
from classaware.trainer.checkpoint import load_checkpoint, saved_checkpoint, saved_config
from classaware.trainer.config import RunConfig

__all__ = ["evaluate_run", "evaluate_split", "jsonable", "select_value"]


def jsonable(obj: Any) -> Any:
    """Tensors/arrays → lists, numpy scalars → python, NaN/inf → None, paths → str."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (Tensor, np.ndarray)):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def autocast(parts: RunParts) -> contextlib.AbstractContextManager:
    """bf16 autocast when the run uses it, else a no-op context."""
    if parts.amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=parts.device.type, dtype=parts.amp_dtype)


def select_value(metrics: dict, name: str, important: list[int]) -> float:
    """The model-selection score ``name`` (``eval.select_metric``) read from a metrics dict.

    ``important_recall_mean`` is the mean recall of the important classes; any other name is a
    number in ``metrics`` (``accuracy``, ``balanced_accuracy``, ``macro_f1``).
    """
    if name == "important_recall_mean":
        vals = [float(v) for v in (metrics["per_class_recall"][i] for i in important)
                if v is not None]
        return float(np.mean(vals)) if vals else float("nan")
    return float(metrics[name])


@torch.no_grad()
def _predict(model: nn.Module, x: Any, norm: Normalizer, parts: RunParts, batch_size: int,
             want_features: bool) -> tuple[Tensor, Tensor | None]:
    """Raw head outputs (float32, [N, C]) and, for cosine heads, features [N, D]; ``x`` a
    tensor or a lazy split (read by ``data.workers`` processes)."""
    was_training = model.training
    model.eval()
    outs, feats = [], []
    chunks = iter_chunks(x, batch_size, workers=parts.cfg.data.workers,
                         pin_memory=parts.device.type == "cuda")
    try:
        for chunk in chunks:
            xb = norm(chunk.to(parts.device, non_blocking=True))
            if parts.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with autocast(parts):
                if want_features:
                    f = model.features(xb)
                    out = model.head(f)
                    feats.append(f.float())
                else:
                    out = model(xb)
            outs.append(out.float())
    finally:
        model.train(was_training)
    c = getattr(model, "num_classes", None) or len(parts.class_names)
    out = torch.cat(outs) if outs else torch.zeros(0, c, device=parts.device)
    feat = (torch.cat(feats) if feats else None) if want_features else None
    return out, feat


def metrics_of(cm: Tensor, parts: RunParts, cfg: RunConfig) -> dict:
    """:func:`classaware.metrics.metrics_from_confusion` with the run's classes and buckets."""
    from classaware.metrics import metrics_from_confusion

    return metrics_from_confusion(cm.cpu(), class_names=parts.class_names,
                                  important=parts.important, train_counts=parts.counts,
                                  shot_thresholds=cfg.eval.shot_thresholds)


def evaluate_split(model: nn.Module, split: str, norm: Normalizer, parts: RunParts,
                   cfg: RunConfig, info: dist_utils.DistInfo | None = None) -> dict:
    """``{"metrics", "outputs", "targets"}`` (+ ``"angles"`` for cosine heads) of ``split``."""
    from classaware.metrics import angle_stats, confusion_matrix

    x, y = parts.x[split], parts.y[split]
    c = len(parts.class_names)
    cosine = getattr(model, "head_type", "linear") == "cosine"
    info = info or dist_utils.DistInfo()
    lo, hi = dist_utils.shard_range(x.shape[0], info.rank, info.world_size)
    out, feat = _predict(model, x[lo:hi], norm, parts, cfg.train.eval_batch_size, cosine)
    targets = y[lo:hi].to(parts.device)
    cm = dist_utils.all_reduce_sum(confusion_matrix(targets, out.argmax(1), c), info)
    result = {"metrics": metrics_of(cm, parts, cfg), "outputs": out, "targets": targets}
    if cosine:
        feat_all = dist_utils.all_gather_rows(feat, info)
        tgt_all = dist_utils.all_gather_rows(targets, info)
        weight = model.head.weight.detach().float()
        result["angles"] = angle_stats(feat_all.cpu(), weight.cpu(), tgt_all.cpu(), c)
    return result


def evaluate_run(run_dir: str | Path, data_overrides: dict | None = None,
                 split: str = "test", *, data: Any = None, model: nn.Module | None = None) -> dict:
    """Re-evaluate the best model of ``run_dir`` on ``split`` of its (optionally overridden) data.

    Rebuilds the model from ``run_dir/config.toml`` and ``checkpoints/best.pt`` (else
    ``last.pt``; its stored normalisation included); ``data_overrides`` are merged into the
    ``[data]`` section (for example another ``dir`` or ``imbalance``).  A run trained on data or
    a backbone passed from Python (``"python"`` in its config) needs them again: ``data`` (a
    :class:`~classaware.data.lazy.DatasetSource` or DataBundle), ``model`` (a backbone of the
    same architecture; its weights are replaced by the checkpoint's).  Returns the metrics dict
    of :func:`classaware.metrics.metrics_from_confusion`, plus ``split``, ``num_samples`` and,
    for cosine heads, ``angles``.
    """
    from classaware.data import load_data
    from classaware.errors import ConfigError
    from classaware.trainer.config import load_config

    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    cfg_path, ckpt_path = saved_config(run_dir, "RUN_DIR"), saved_checkpoint(run_dir)
    cfg = load_config(cfg_path, {"data": dict(data_overrides)} if data_overrides else None)
    device = resolve_device(cfg.train.device)
    from classaware.data.lazy import DatasetSource

    if data is None or isinstance(data, DatasetSource):
        data = load_data(cfg.data, seed=cfg.seed, source=data)
    parts = build_parts(cfg, data, device, backbone=model, load_weights=False)
    state = load_checkpoint(ckpt_path)
    if list(state["class_names"]) != parts.class_names:
        raise ConfigError(f"the data's classes {parts.class_names} differ from the model's "
                          f"{list(state['class_names'])}")
    parts.model.load_state_dict(state["model"])
    norm = Normalizer.from_state(state["normalization"]).to(device, parts.x["train"].dim())
    res = evaluate_split(parts.model, split, norm, parts, cfg)
    out = dict(res["metrics"], split=split, num_samples=int(parts.x[split].shape[0]))
    if "angles" in res:
        out["angles"] = res["angles"]
    return jsonable(out)
