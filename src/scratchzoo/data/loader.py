"""TensorDataset and DataLoader: PyTorch's names, but each batch is gathered in one NumPy step.

A DataLoader walks the dataset's indices in order (or in a random order, `shuffle=True`), cuts them
into batches and hands each batch of indices to the dataset. For a TensorDataset that is a single
fancy index per array, `x[idx]`, so a batch of 512 rows costs one NumPy call, not 512 Python calls.
Shuffling draws from `scratchzoo.rng.generator()`: `scratchzoo.manual_seed` fixes the order, and the
RNG state stored in a checkpoint makes a resumed run see the same order it would have seen.
"""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from scratchzoo.rng import generator


class TensorDataset:
    """Row i of the dataset is (a[i] for a in arrays); all arrays share their first dimension."""

    def __init__(self, *arrays: Any):
        if not arrays:
            raise ValueError("TensorDataset needs at least one array")
        self.arrays = tuple(np.asarray(a) for a in arrays)
        lengths = [len(a) for a in self.arrays]
        if len(set(lengths)) != 1:
            raise ValueError(f"TensorDataset: arrays differ in their first dimension: {lengths}")

    def __len__(self) -> int:
        return len(self.arrays[0])

    def __getitem__(self, index: Any) -> tuple[np.ndarray, ...]:
        """An int gives one row; an index array gives a batch of rows, one fancy index per array."""
        return tuple(a[index] for a in self.arrays)


class DataLoader:
    """Batches of a dataset as tuples of NumPy arrays.

    Works with any dataset that has `__len__` and `__getitem__`; one that accepts an index array
    (TensorDataset does) is indexed once per batch, any other row by row and stacked.
    """

    def __init__(self, dataset: Any, batch_size: int = 1, shuffle: bool = False, drop_last: bool = False):
        if batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be >= 1, got {batch_size}")
        self.dataset, self.batch_size, self.shuffle, self.drop_last = dataset, batch_size, shuffle, drop_last

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)  # ceil(n / batch_size)

    def __iter__(self) -> Iterator[tuple[np.ndarray, ...]]:
        n = len(self.dataset)
        order = generator().permutation(n) if self.shuffle else np.arange(n)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield self._gather(order[start:start + self.batch_size])

    def _gather(self, index: np.ndarray) -> tuple[np.ndarray, ...]:
        if isinstance(self.dataset, TensorDataset):
            return self.dataset[index]
        rows = [self.dataset[int(i)] for i in index]  # a generic dataset: row by row, then stack each field
        if isinstance(rows[0], tuple):
            return tuple(np.stack(field) for field in zip(*rows))
        return (np.stack(rows),)
