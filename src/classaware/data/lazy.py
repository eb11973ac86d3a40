"""Data read sample by sample: :class:`LazySplit`, :func:`read_batches` and :func:`from_datasets`.

A :class:`LazySplit` stands where an in-memory split holds a tensor ``x`` (``DataBundle.x_train``,
...): a ``torch.utils.data.Dataset`` whose item ``i`` is ``(x_i, y_i)``, and the positions of
this split in it.  It has the metadata of a tensor (``shape``, ``dtype``, ``dim()``,
``device``, ``len``) and is indexed like one (``split[keep]`` with an index array or a slice
gives a sub-split, so caps, the validation split and the imbalance subsample of
:func:`~classaware.data.load_data` work on it unchanged); the samples themselves are only read
in batches, by :func:`read_batches`, in ``workers`` ``DataLoader`` processes.

Determinism: the batches are fixed lists of positions, decoded by the workers and delivered in
order, so the tensors a run sees do not depend on the number of workers; random augmentation
is applied afterwards to the whole batch by the trainer (with the run's data generator), exactly
as for in-memory data.  The DataLoader is given its own generator (``seed``), so reading never
draws from torch's global random state.

Example
-------
>>> import torch
>>> from torch.utils.data import TensorDataset
>>> ds = TensorDataset(torch.arange(12.).reshape(6, 2), torch.tensor([0, 1, 0, 1, 0, 1]))
>>> split = LazySplit(ds, range(6))
>>> split.shape, split[[1, 3]].shape
(torch.Size([6, 2]), torch.Size([2, 2]))
>>> [b.tolist() for b in read_batches(split, [[0, 1], [5]])]
[[[0.0, 1.0], [2.0, 3.0]], [[10.0, 11.0]]]
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from classaware.errors import ConfigError

__all__ = ["DatasetSource", "LazySplit", "from_datasets", "is_lazy", "iter_chunks",
           "read_batches"]


def _input_of(item: Any) -> Tensor:
    x = item[0] if isinstance(item, (tuple, list)) else item
    return x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))


@dataclass
class _Failed:
    """What a worker hands back instead of a batch when reading a sample was a ConfigError (a
    corrupt image, ...): the main process raises it, so the user sees its one line."""

    message: str


class _Guarded:
    """``dataset`` whose ConfigErrors come back as :class:`_Failed` items (picklable)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Any:
        try:
            return self.dataset[i]
        except ConfigError as exc:
            return _Failed(str(exc))


def _stack_inputs(items: list[Any]) -> Tensor | _Failed:
    """DataLoader ``collate_fn``: the inputs of ``(x, y)`` items stacked into one batch."""
    failed = [it for it in items if isinstance(it, _Failed)]
    return failed[0] if failed else torch.stack([_input_of(it) for it in items])


class LazySplit:
    """The samples at ``positions`` of ``dataset`` (item ``i`` = ``(x_i, y_i)``), read on demand.

    Parameters
    ----------
    dataset : torch.utils.data.Dataset
        Map-style: ``len(dataset)`` and ``dataset[i] -> (x, y)`` (x a tensor or array; y is
        not used here, labels are kept in memory by the caller).
    positions : sequence of int
        Which items belong to this split, in order.
    sample_shape, dtype : optional
        One sample's shape and dtype; read from ``dataset[positions[0]]`` when not given (an
        empty split needs them given, else ``(0,)``/float32).
    """

    def __init__(self, dataset: Any, positions: Iterable[int],
                 sample_shape: Sequence[int] | None = None,
                 dtype: torch.dtype | None = None) -> None:
        self.dataset = dataset
        self.positions = np.asarray(list(positions) if not isinstance(positions, np.ndarray)
                                    else positions, dtype=np.int64)
        if sample_shape is None or dtype is None:
            first = (_input_of(dataset[int(self.positions[0])]) if len(self.positions)
                     else torch.zeros(0))
            sample_shape = tuple(first.shape) if sample_shape is None else sample_shape
            dtype = first.dtype if dtype is None else dtype
        self.sample_shape = tuple(int(s) for s in sample_shape)
        self.dtype = dtype
        self.device = torch.device("cpu")

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.positions), *self.sample_shape))

    def __len__(self) -> int:
        return len(self.positions)

    def dim(self) -> int:
        return 1 + len(self.sample_shape)

    def __getitem__(self, key: Any) -> LazySplit:
        """A sub-split: ``key`` is a slice, or an integer index array/list/tensor."""
        if isinstance(key, Tensor):
            key = key.cpu().numpy()
        if not isinstance(key, slice):
            key = np.asarray(key)
            key = (np.flatnonzero(key) if key.dtype == np.bool_
                   else key.astype(np.int64).reshape(-1))
        return LazySplit(self.dataset, self.positions[key], self.sample_shape, self.dtype)

    def __repr__(self) -> str:
        return (f"LazySplit({type(self.dataset).__name__}, {len(self)} samples of "
                f"{list(self.sample_shape)} {self.dtype})")


def is_lazy(x: Any) -> bool:
    """True for a :class:`LazySplit` (False for an in-memory tensor)."""
    return isinstance(x, LazySplit)


def read_batches(x: Tensor | LazySplit, batches: Iterable[Sequence[int] | Tensor], *,
                 workers: int = 0, seed: int = 0, pin_memory: bool = False) -> Iterator[Tensor]:
    """The batches ``x[b]`` for ``b`` in ``batches`` (index lists), in order.

    A tensor is indexed directly; a :class:`LazySplit` is read by a ``DataLoader`` with
    ``workers`` processes (0: in this process) whose batch sampler is ``batches``; its random
    generator is seeded with ``seed`` (the global torch state is never drawn from).
    """
    if not is_lazy(x):
        for b in batches:
            yield x[b]
        return
    assert isinstance(x, LazySplit)
    from torch.utils.data import DataLoader

    plan = [x.positions[np.asarray(b.cpu() if isinstance(b, Tensor) else b, dtype=np.int64)]
            .tolist() for b in batches]
    if not plan:
        return
    loader = DataLoader(_Guarded(x.dataset), batch_sampler=plan, num_workers=workers,
                        collate_fn=_stack_inputs, pin_memory=pin_memory,
                        generator=torch.Generator().manual_seed(int(seed) % 2**63))
    it = iter(loader)
    try:
        for batch in it:
            if isinstance(batch, _Failed):
                raise ConfigError(batch.message)
            yield batch
    finally:
        del it  # a stopped epoch (or a failed read) shuts its workers down now


def iter_chunks(x: Tensor | LazySplit, size: int, *, workers: int = 0,
                pin_memory: bool = False) -> Iterator[Tensor]:
    """``x`` in consecutive chunks of ``size`` rows (evaluation, normaliser statistics)."""
    n = x.shape[0]
    if not is_lazy(x):
        for start in range(0, n, size):
            yield x[start:start + size]
        return
    yield from read_batches(x, [range(s, min(n, s + size)) for s in range(0, n, size)],
                            workers=workers, pin_memory=pin_memory)


# ---------------------------------------------------------------------------------------------
# your own Datasets
@dataclass
class DatasetSource:
    """A train and a test ``Dataset`` with class names, for ``classaware.train(cfg, data=...)``.

    Made by :func:`from_datasets`; ``raw()`` gives the :class:`~classaware.data.bundle.RawData`
    that :func:`~classaware.data.load_data` splits with the run's ``[data]`` keys.
    """

    train: Any
    test: Any
    class_names: list[str]
    train_labels: np.ndarray
    test_labels: np.ndarray

    def raw(self) -> Any:
        from classaware.data.bundle import RawData

        x_tr = LazySplit(self.train, range(len(self.train)))
        x_te = LazySplit(self.test, range(len(self.test)), x_tr.sample_shape, x_tr.dtype)
        if len(x_te) and tuple(_input_of(self.test[0]).shape) != x_tr.sample_shape:
            raise ConfigError(f"test: its samples have shape {list(_input_of(self.test[0]).shape)}"
                              f", the training samples {list(x_tr.sample_shape)}")
        kind = "image" if len(x_tr.sample_shape) == 3 else "features"
        return RawData(x_tr, self.train_labels, x_te, self.test_labels, list(self.class_names),
                       kind, f"Python datasets ({type(self.train).__name__}, "
                             f"{type(self.test).__name__})")


def _labels(ds: Any, what: str, num_classes: int) -> np.ndarray:
    """``ds.targets`` when the dataset has it (torchvision's convention), else ``y`` of every
    item (one pass that reads each sample)."""
    if hasattr(ds, "targets"):
        y = np.asarray(torch.as_tensor(ds.targets).cpu().numpy()).reshape(-1)
    else:
        y = np.array([int(torch.as_tensor(ds[i][1])) for i in range(len(ds))], dtype=np.int64)
    if len(y) != len(ds):
        raise ConfigError(f"{what}: {len(y)} labels for {len(ds)} items")
    if not np.issubdtype(y.dtype, np.integer) or (len(y) and (y.min() < 0 or y.max() >= num_classes)):
        raise ConfigError(f"{what}: labels must be integers in [0, {num_classes}) (one per class "
                          f"name), got values from {y.min()} to {y.max()}")
    return y.astype(np.int64)


def from_datasets(train: Any, test: Any, class_names: Sequence[str]) -> DatasetSource:
    """Your own ``torch.utils.data.Dataset`` pair as the data of a run.

    ``classaware.train(cfg, data=from_datasets(train_ds, test_ds, class_names=[...]))`` trains on
    them: the run's ``[data]`` keys still apply to ``train`` (``max_train``, ``val_fraction``,
    ``imbalance``, ``max_test`` on ``test``), samples are read by ``data.workers`` DataLoader
    processes, and the saved config records ``data.name = "python"`` (re-evaluate from Python:
    ``evaluate_run(run_dir, data=...)``).

    Parameters
    ----------
    train, test : Dataset
        Map-style datasets whose item ``i`` is ``(x, y)``: ``x`` a tensor (or array) of the same
        shape for every item — ``[ch, H, W]`` is an image, anything else a feature vector —
        ``y`` an integer class index.  A ``targets`` attribute (a list/array of the labels)
        saves a pass that reads every item to learn them.  Random transforms inside the dataset
        are the dataset's own business (classaware's augmentation is off by default for such
        data: ``train.augment = "auto"``).
    class_names : sequence of str
        The name of every class, index = label.

    Returns
    -------
    DatasetSource

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> tr = TensorDataset(torch.randn(20, 4), torch.arange(20) % 2)
    >>> src = from_datasets(tr, tr, ["even", "odd"])
    >>> src.train_labels[:4].tolist(), src.raw().kind
    ([0, 1, 0, 1], 'features')
    """
    names = [str(n) for n in class_names]
    if not names or len(set(names)) != len(names):
        raise ConfigError(f"class_names: expected distinct names, one per class, got {names!r}")
    for what, ds in (("train", train), ("test", test)):
        if not (hasattr(ds, "__len__") and hasattr(ds, "__getitem__")):
            raise ConfigError(f"{what}: expected a map-style torch Dataset (len and [i]), got "
                              f"{type(ds).__name__}")
    if len(train) == 0:
        raise ConfigError("train: the dataset is empty")
    return DatasetSource(train, test, names, _labels(train, "train", len(names)),
                         _labels(test, "test", len(names)))
