"""What every loss module holds: ``reduction``, ``ignore_index`` and (most) a ``weight`` buffer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from classaware.functional._checks import check_ignore_index, check_reduction, check_weight


class Loss(nn.Module):
    """Base of the loss modules.

    ``weight`` is a buffer (possibly ``None``): it follows ``.to(device)`` and the state dict,
    and a trainer switches deferred re-weighting (DRW) weights by plain assignment,
    ``loss.weight = torch.tensor([...])`` (checked at the next forward).  Losses without a
    per-class weight (SimLoss) pass ``takes_weight=False`` and have no ``weight`` attribute.
    """

    weight: Tensor | None

    def __init__(
        self,
        *,
        weight: Tensor | Sequence[float] | None = None,
        reduction: str,
        ignore_index: int,
        takes_weight: bool = True,
    ) -> None:
        super().__init__()
        self.reduction = check_reduction(reduction)
        self.ignore_index = check_ignore_index(ignore_index)
        if takes_weight:
            w = check_weight(weight)
            self.register_buffer("weight", None if w is None else w.detach().clone())

    def _ce_args(self) -> dict[str, Any]:
        """``weight`` / ``reduction`` / ``ignore_index`` as keyword arguments of a functional."""
        out: dict[str, Any] = {"reduction": self.reduction, "ignore_index": self.ignore_index}
        if hasattr(self, "weight"):
            out["weight"] = self.weight
        return out

    def extra_repr(self) -> str:
        parts = [f"reduction={self.reduction!r}"]
        if self.ignore_index != -100:
            parts.append(f"ignore_index={self.ignore_index}")
        if getattr(self, "weight", None) is not None:
            parts.append(f"weight=<{self.weight.numel()} classes>")
        return ", ".join(parts)
