"""``DataBundle``: one dataset in memory, split into train / val / test tensors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch is imported when tensors are made (load_data), not on import
    import torch

__all__ = ["DataBundle", "RawData"]


@dataclass
class RawData:
    """What a dataset reader returns (numpy, before caps / val split / imbalance).

    ``x`` is uint8 ``[N, ch, H, W]`` for ``kind == "image"`` and float32 ``[N, D]`` for
    ``kind == "features"``; ``y`` is int64 in ``[0, len(class_names))``.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    kind: str
    source: str


@dataclass
class DataBundle:
    """A dataset in memory as torch tensors, ready to be indexed batch by batch.

    Images are ``torch.uint8`` ``[N, ch, H, W]`` (``kind == "image"``; gray images have
    ``ch == 1``), feature vectors ``torch.float32`` ``[N, D]`` (``kind == "features"``);
    labels are ``torch.int64``.  ``x_train``/``y_train`` are what is left after the validation
    carve-out and the imbalance subsampling; ``x_val`` may have 0 rows.

    ``meta`` records how the splits were made (counts before imbalance, seeds, caps).

    Examples
    --------
    >>> from classaware.data import load_data
    >>> b = load_data({"name": "digits", "val_fraction": 0.1})
    >>> b.kind, b.num_classes, b.input_shape
    ('features', 10, (64,))
    """

    name: str
    class_names: list[str]
    kind: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    source: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(class_names)``)."""
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample: ``x_train.shape[1:]``."""
        return tuple(self.x_train.shape[1:])

    @property
    def train_class_counts(self) -> list[int]:
        """Training samples per class (after imbalance), a list of ``num_classes`` ints."""
        return _counts(self.y_train, self.num_classes)

    @property
    def val_class_counts(self) -> list[int]:
        """Validation samples per class."""
        return _counts(self.y_val, self.num_classes)

    @property
    def test_class_counts(self) -> list[int]:
        """Test samples per class."""
        return _counts(self.y_test, self.num_classes)

    def mean_std(self) -> tuple[list[float], list[float]]:
        """Per-channel (images, on the 0..1 scale) or per-feature mean and std of ``x_train``.

        A zero standard deviation is reported as 1 so that ``(x - mean) / std`` is safe.
        """
        import torch

        x = self.x_train.double()
        if self.kind == "image":
            x = x / 255.0
            dims = [0, 2, 3]
        else:
            dims = [0]
        if x.shape[0] == 0:
            n = x.shape[1]
            return [0.0] * n, [1.0] * n
        mean = x.mean(dim=dims)
        std = x.std(dim=dims, unbiased=False)
        std = torch.where(std > 0, std, torch.ones_like(std))
        return mean.tolist(), std.tolist()

    def summary(self) -> str:
        """One line: name, kind, shape, sizes of the three splits and the class counts."""
        return (f"{self.name}: {self.kind} {list(self.input_shape)}, {self.num_classes} classes, "
                f"train {len(self.y_train)} (per class {self.train_class_counts}), "
                f"val {len(self.y_val)}, test {len(self.y_test)}; from {self.source}")


def _counts(y: torch.Tensor, num_classes: int) -> list[int]:
    return np.bincount(y.detach().cpu().numpy(), minlength=num_classes)[:num_classes].tolist()
