"""Helpers shared by the ops: dims, turning numbers into tensors, checking binary operands."""
from __future__ import annotations

import builtins
from typing import Any

import numpy as np

from scratchzoo.autograd import DTypeError, Function, ShapeError, Tensor


def _dim(dim: Any, ndim: int, op: str = "", new: bool = False) -> int:
    """One dim in [-n, n) -> its index in [0, n), n = ndim (ndim + 1 when `new`: unsqueeze and stack insert a
    dim, so they may name the slot after the last). A 0-d tensor takes 0 and -1, as in PyTorch. Anything else
    is an IndexError naming the op, the dim and ndim: NumPy would wrap it around or fail far from the cause."""
    size = builtins.max(ndim + 1 if new else ndim, 1)
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or not -size <= dim < size:
        prefix = f"{op}: " if op else ""
        raise IndexError(f"{prefix}dim {dim} out of range for a tensor with {ndim} dims "
                         f"(expected a dim in [{-size}, {size - 1}])")
    return int(dim) % size


def _axes(dim: Any, ndim: int, op: str = "") -> tuple[int, ...] | None:
    """dim (an int, a sequence of ints, or None for all) -> sorted axes in [0, ndim), each checked by `_dim`."""
    if dim is None:
        return None
    dims = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
    return tuple(sorted(_dim(d, ndim, op) for d in dims))


def as_tensor(value: Any, like: Tensor | None = None) -> Tensor:
    """A Tensor from a tensor, array or Python number; numbers take the float dtype of `like`."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, np.ndarray):
        return Tensor(value)
    dtype = like.dtype if like is not None and like.dtype.kind == "f" else None
    return Tensor(np.asarray(value, dtype=dtype) if dtype is not None else value)


def _pair(op: str, a: Any, b: Any) -> tuple[Tensor, Tensor]:
    """Tensors for a binary op; float32 and float64 never mix, shapes must broadcast."""
    a = as_tensor(a, b if isinstance(b, Tensor) else None)
    b = as_tensor(b, a)
    if a.dtype.kind == "f" and b.dtype.kind == "f" and a.dtype != b.dtype:
        raise DTypeError(f"{op}: cannot mix {a.dtype} and {b.dtype}; convert one with .to(dtype)")
    if a.dtype.kind != "f" and b.dtype.kind == "f":
        a = Tensor(a.data.astype(b.dtype))
    elif b.dtype.kind != "f" and a.dtype.kind == "f":
        b = Tensor(b.data.astype(a.dtype))
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ShapeError(f"{op}: shapes {a.shape} and {b.shape} do not broadcast") from None
    return a, b

def _unary(op: type[Function], x: Any, **options: Any) -> Tensor:
    x = as_tensor(x)
    if x.dtype.kind != "f":
        raise DTypeError(f"{op.__name__.lower()}: needs a floating-point tensor, got {x.dtype}")
    return op.apply(x, **options)
