"""Helpers shared by the ops: dims, turning numbers into tensors, checking binary operands."""
from __future__ import annotations

import builtins
from typing import Any

import numpy as np

from scratchzoo.autograd import DTypeError, Function, ShapeError, Tensor


def _axes(dim: Any, ndim: int) -> tuple[int, ...] | None:
    if dim is None:
        return None
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    for d in dims:
        if not -ndim <= d < builtins.max(ndim, 1):
            raise IndexError(f"dim {d} out of range for a tensor with {ndim} dims")
    return tuple(sorted(d % builtins.max(ndim, 1) for d in dims))


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
