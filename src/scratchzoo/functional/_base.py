"""Helpers shared by the ops: dims, turning numbers into tensors, checking binary operands."""
from __future__ import annotations

import builtins
from typing import Any

import numpy as np

from scratchzoo.autograd import DTypeError, Function, ShapeError, Tensor, _as_array


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


def _sizes(op: str, sizes: tuple[Any, ...], names: str = "sizes") -> tuple[int, ...]:
    """Sizes of a new array (dims, sequence lengths) are non-negative ints; else a ShapeError naming `op`, where
    NumPy would say only "negative dimensions are not allowed". `names` says what the sizes are to `op`."""
    if not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0 for s in sizes):
        raise ShapeError(f"{op}: {names} must be non-negative ints, got {sizes}")
    return sizes


def as_tensor(value: Any, like: Tensor | None = None, op: str = "as_tensor") -> Tensor:
    """A Tensor from a tensor, array or Python number; numbers take the float dtype of `like`, arrays keep theirs.
    None, strings and other non-numbers are a DTypeError (a TypeError) naming `op` and the value's type."""
    if isinstance(value, Tensor):
        return value
    dtype = like.dtype if like is not None and like.dtype.kind == "f" and not isinstance(value, np.ndarray) else None
    return Tensor(_as_array(value, dtype, op, "operand"))


def _float_tensor(op: str, x: Any, what: str = "tensor") -> Tensor:
    """x as a Tensor that must be floating point (an op computing a real-valued function of it); `what` x is to `op`."""
    x = as_tensor(x, op=op)
    if x.dtype.kind != "f":
        raise DTypeError(f"{op}: needs a floating-point {what}, got {x.dtype}")
    return x


def _pair(op: str, a: Any, b: Any) -> tuple[Tensor, Tensor]:
    """Tensors for a binary op; float32 and float64 never mix, shapes must broadcast."""
    a = as_tensor(a, b if isinstance(b, Tensor) else None, op)
    b = as_tensor(b, a, op)
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


def _unary(name: str, op: type[Function], x: Any, **options: Any) -> Tensor:
    """Apply a one-input op to a floating-point tensor; `name` is the public op that errors name."""
    return op.apply(_float_tensor(name, x), **options)
