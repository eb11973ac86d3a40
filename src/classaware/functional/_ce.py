"""The front and the tail every loss shares: prepare the input, and reduce with CE's rules.

``torch.nn.CrossEntropyLoss``'s rule for ``weight`` / ``reduction`` / ``ignore_index`` (the
weighted mean divides by ``sum(weight[target])`` over the rows that are not ignored), with two
differences: a mean over nothing (an all-ignored batch, or targets whose weights are all 0) is 0,
not NaN, and ignored rows give zero loss and zero gradient even when they hold inf/NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from classaware.functional._checks import check_input_target, check_reduction, check_weight


class Prepared(NamedTuple):
    x: Tensor  # [N, C] in the compute dtype (float32 for half input), ignored rows zeroed
    target: Tensor  # [N], ignored entries replaced by 0 (a valid index)
    valid: Tensor | None  # [N] bool, None when no row is ignored (known for free on the eager CPU)
    weight: Tensor | None  # [C] in x's dtype and device
    reduction: str


def prepare(
    input: Tensor,
    target: Tensor,
    weight: Tensor | Sequence[float] | None,
    reduction: str,
    ignore_index: int,
) -> Prepared:
    """Validate; compute float16/bfloat16 in float32; replace ignored rows by zeros."""
    check_reduction(reduction)
    none_ignored = check_input_target(input, target, ignore_index)
    x = input.float() if input.dtype in (torch.float16, torch.bfloat16) else input
    w = check_weight(weight, x.shape[1])
    if w is not None:
        w = w.to(device=x.device, dtype=x.dtype)
    if none_ignored:
        return Prepared(x, target, None, w, reduction)
    valid = target != ignore_index
    x = torch.where(valid[:, None], x, 0.0)  # inf/NaN in an ignored row reaches nothing
    return Prepared(x, torch.where(valid, target, 0), valid, w, reduction)


def reduce_rows(rows: Tensor, prep: Prepared) -> Tensor:
    """Per-row losses [N] -> ``weight[y]``, the ignore mask and the reduction."""
    if prep.weight is None and prep.valid is None:
        coef = None
    elif prep.weight is None:
        coef = prep.valid.to(rows.dtype)
    else:
        coef = prep.weight[prep.target]
        if prep.valid is not None:
            coef = torch.where(prep.valid, coef, 0.0)
    if coef is not None:
        rows = rows * coef
    if prep.reduction == "none":
        return rows
    total = rows.sum()
    if prep.reduction == "sum":
        return total
    denom = rows.new_tensor(rows.shape[0]) if coef is None else coef.sum()
    return total / torch.where(denom == 0, 1.0, denom)


def cross_entropy(z: Tensor, prep: Prepared) -> Tensor:
    """Cross entropy of logits ``z`` [N, C] with ``prep``'s target, weight, mask and reduction."""
    if prep.valid is None and prep.weight is None and z.shape[0] > 0:
        return F.cross_entropy(z, prep.target, reduction=prep.reduction)  # the same rule, fused
    return reduce_rows(F.cross_entropy(z, prep.target, reduction="none"), prep)
