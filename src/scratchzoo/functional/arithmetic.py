"""Arithmetic and reductions: add, sub, mul, div, neg, pow, matmul; sum, mean, var, max, min."""
from __future__ import annotations

import builtins
import math
from typing import Any, NamedTuple

import numpy as np

from scratchzoo.autograd import DTypeError, Function, ShapeError, Tensor, unbroadcast
from scratchzoo.functional._base import _axes, _dim, _float_tensor, _pair, as_tensor


class Add(Function):
    """y = a + b;  dy/da = dy/db = 1 (then summed over broadcast axes)."""

    def forward(self, a, b):
        self.a_shape, self.b_shape = a.shape, b.shape
        return a + b

    def backward(self, grad):
        return unbroadcast(grad, self.a_shape), unbroadcast(grad, self.b_shape)


class Sub(Function):
    """y = a - b;  dy/da = 1, dy/db = -1."""

    def forward(self, a, b):
        self.a_shape, self.b_shape = a.shape, b.shape
        return a - b

    def backward(self, grad):
        return unbroadcast(grad, self.a_shape), unbroadcast(-grad, self.b_shape)


class Mul(Function):
    """y = a * b;  dy/da = b, dy/db = a."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, grad):
        grad_a = unbroadcast(grad * self.b, self.a.shape) if self.needs_input_grad[0] else None
        grad_b = unbroadcast(grad * self.a, self.b.shape) if self.needs_input_grad[1] else None
        return grad_a, grad_b


class Div(Function):
    """y = a / b;  dy/da = 1/b, dy/db = -a/b^2 = -y/b."""

    def forward(self, a, b):
        self.b = b
        self.y = a / b
        self.a_shape = a.shape
        return self.y

    def backward(self, grad):
        grad_over_b = grad / self.b
        grad_a = unbroadcast(grad_over_b, self.a_shape) if self.needs_input_grad[0] else None
        grad_b = unbroadcast(-grad_over_b * self.y, self.b.shape) if self.needs_input_grad[1] else None
        return grad_a, grad_b


class Neg(Function):
    """y = -x;  dy/dx = -1."""

    def forward(self, x):
        return -x

    def backward(self, grad):
        return -grad


class Pow(Function):
    """y = x^e;  dy/dx = e * x^(e-1),  dy/de = x^e * ln(x).

    At a zero base the formulas meet 0 * inf; PyTorch's masks pick the limits, and so do we:
    dy/dx = 0 where e = 0 (x^0 = 1 is flat, also at x = 0), and dy/de = 0 where x = 0 and e >= 0
    (0^e is constant in e there). Elsewhere inf and NaN pass through as PyTorch gives them.
    """

    def forward(self, x, e):
        self.x, self.e = x, e
        with np.errstate(divide="ignore", invalid="ignore"):
            self.y = np.power(x, e)
        return self.y

    def backward(self, grad):
        grad_x = grad_e = None
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.needs_input_grad[0]:
                dx = np.where(self.e == 0, 0.0, self.e * np.power(self.x, self.e - 1)).astype(grad.dtype, copy=False)
                grad_x = unbroadcast(grad * dx, self.x.shape)
            if self.needs_input_grad[1]:
                de = np.where((self.x == 0) & (self.e >= 0), 0.0, self.y * np.log(self.x)).astype(grad.dtype, copy=False)
                grad_e = unbroadcast(grad * de, self.e.shape)
        return grad_x, grad_e


class MatMul(Function):
    """Y = A @ B (batched, broadcasting over leading dims);  dA = dY @ B^T,  dB = A^T @ dY.

    1-D operands are promoted as NumPy does (a vector is a row on the left, a column on the right)
    and the promotion is undone on the gradients.
    """

    def forward(self, a, b):
        self.a, self.b = a, b
        return a @ b

    def backward(self, grad):
        a = self.a[None, :] if self.a.ndim == 1 else self.a
        b = self.b[:, None] if self.b.ndim == 1 else self.b
        if self.b.ndim == 1:  # (first: for vector @ vector the gradient is 0-d)
            grad = np.expand_dims(grad, -1)
        if self.a.ndim == 1:
            grad = np.expand_dims(grad, -2)
        grad_a = grad_b = None
        if self.needs_input_grad[0]:
            grad_a = unbroadcast(grad @ np.swapaxes(b, -1, -2), a.shape).reshape(self.a.shape)
        if self.needs_input_grad[1]:
            grad_b = unbroadcast(np.swapaxes(a, -1, -2) @ grad, b.shape).reshape(self.b.shape)
        return grad_a, grad_b


def add(a: Any, b: Any) -> Tensor:
    return Add.apply(*_pair("add", a, b))


def sub(a: Any, b: Any) -> Tensor:
    return Sub.apply(*_pair("sub", a, b))


def mul(a: Any, b: Any) -> Tensor:
    return Mul.apply(*_pair("mul", a, b))


def div(a: Any, b: Any) -> Tensor:
    return Div.apply(*_pair("div", a, b))


def neg(x: Tensor) -> Tensor:
    return Neg.apply(x)


def pow(x: Any, exponent: Any) -> Tensor:
    return Pow.apply(*_pair("pow", x, exponent))


def matmul(a: Any, b: Any) -> Tensor:
    a, b = as_tensor(a, op="matmul"), as_tensor(b, a, "matmul")
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"matmul: both operands need at least 1 dim, got shapes {a.shape} and {b.shape}")
    if a.dtype != b.dtype:
        raise DTypeError(f"matmul: cannot mix {a.dtype} and {b.dtype}; convert one with .to(dtype)")
    inner_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if a.shape[-1] != inner_b:
        raise ShapeError(f"matmul: shapes {a.shape} and {b.shape} cannot be multiplied "
                         f"({a.shape[-1]} != {inner_b})")
    batch_a, batch_b = a.shape[:-2], b.shape[:-2]  # the leading (batch) dims broadcast, as in NumPy and PyTorch
    if batch_a != batch_b and batch_a and batch_b:
        try:
            np.broadcast_shapes(batch_a, batch_b)
        except ValueError:
            raise ShapeError(f"matmul: shapes {a.shape} and {b.shape} cannot be multiplied (batch dims "
                             f"{batch_a} and {batch_b} do not broadcast)") from None
    return MatMul.apply(a, b)


class Sum(Function):
    """y = sum of x over `axes`;  dy/dx = 1 for every summed element (broadcast the gradient back)."""

    def forward(self, x, axes, keepdim):
        self.shape, self.axes, self.keepdim = x.shape, axes, keepdim
        return np.asarray(x.sum(axis=axes, keepdims=keepdim))

    def backward(self, grad):
        if not self.keepdim and self.axes is not None:
            grad = np.expand_dims(grad, self.axes)
        return np.broadcast_to(grad, self.shape).copy()


class Mean(Function):
    """y = sum(x) / n;  dy/dx = 1/n."""

    def forward(self, x, axes, keepdim):
        self.shape, self.axes, self.keepdim = x.shape, axes, keepdim
        self.count = x.size if axes is None else math.prod(x.shape[a] for a in axes)
        return np.asarray(x.mean(axis=axes, keepdims=keepdim))

    def backward(self, grad):
        if not self.keepdim and self.axes is not None:
            grad = np.expand_dims(grad, self.axes)
        return np.broadcast_to(grad / self.count, self.shape).copy()


class Var(Function):
    """v = sum((x - mean)^2) / (n - correction);  dv/dx = 2 (x - mean) / (n - correction)."""

    def forward(self, x, axes, keepdim, correction):
        self.axes, self.keepdim = axes, keepdim
        count = x.size if axes is None else math.prod(x.shape[a] for a in axes)
        self.denominator = builtins.max(count - correction, 0)
        self.centered = x - x.mean(axis=axes, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray((self.centered ** 2).sum(axis=axes, keepdims=keepdim) / self.denominator)

    def backward(self, grad):
        if not self.keepdim and self.axes is not None:
            grad = np.expand_dims(grad, self.axes)
        scale = 2.0 / self.denominator if self.denominator else math.nan  # n <= correction: NaN, as PyTorch
        return grad * scale * self.centered


class MaxMin(Function):
    """y = max (or min) of x.  Over the whole tensor the gradient is shared evenly among ties
    (PyTorch's rule); along `dim` it goes to the one selected index, the one `indices` reports."""

    def forward(self, x, dim, keepdim, is_max):
        self.shape, self.dim, self.keepdim = x.shape, dim, keepdim
        pick = np.argmax if is_max else np.argmin
        if dim is None:
            y = x.max() if is_max else x.min()
            self.mask = (x == y)
            return np.asarray(y)
        self.indices = np.expand_dims(pick(x, axis=dim), dim)
        y = np.take_along_axis(x, self.indices, axis=dim)
        return y if keepdim else np.squeeze(y, dim)

    def backward(self, grad):
        if self.dim is None:
            return grad * self.mask / int(self.mask.sum())  # a Python int keeps grad's dtype
        out = np.zeros(self.shape, dtype=grad.dtype)
        np.put_along_axis(out, self.indices, grad if self.keepdim else np.expand_dims(grad, self.dim), axis=self.dim)
        return out


class ValuesIndices(NamedTuple):
    """What `max(dim)` and `min(dim)` return, as torch.return_types.max."""
    values: Tensor
    indices: Tensor


def sum(x: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    return Sum.apply(x, axes=_axes(dim, x.ndim, "sum"), keepdim=keepdim)


def mean(x: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    x = _float_tensor("mean", x)
    return Mean.apply(x, axes=_axes(dim, x.ndim, "mean"), keepdim=keepdim)


def var(x: Tensor, dim: Any = None, keepdim: bool = False, unbiased: bool = True) -> Tensor:
    """Variance; `unbiased=True` divides by n - 1 (Bessel's correction), as torch.var does (floats only)."""
    x = _float_tensor("var", x)
    return Var.apply(x, axes=_axes(dim, x.ndim, "var"), keepdim=keepdim, correction=1 if unbiased else 0)


def _max_min(x: Tensor, dim: int | None, keepdim: bool, is_max: bool) -> Any:
    if dim is None:
        return MaxMin.apply(x, dim=None, keepdim=False, is_max=is_max)
    axis = _axes(dim, x.ndim, "max" if is_max else "min")[0]
    values = MaxMin.apply(x, dim=axis, keepdim=keepdim, is_max=is_max)
    pick = np.argmax if is_max else np.argmin
    return ValuesIndices(values, Tensor(pick(x.data, axis=axis, keepdims=keepdim)))


def max(x: Tensor, dim: int | None = None, keepdim: bool = False) -> Any:
    """max(x) is a scalar tensor; max(x, dim) is (values, indices), as in PyTorch."""
    return _max_min(x, dim, keepdim, is_max=True)


def min(x: Tensor, dim: int | None = None, keepdim: bool = False) -> Any:
    return _max_min(x, dim, keepdim, is_max=False)


def _arg_max_min(op: str, x: Tensor, dim: int | None, keepdim: bool) -> Tensor:
    """Indices of the largest (smallest) entry, over the flattened tensor or along `dim` (outside the graph)."""
    pick = np.argmax if op == "argmax" else np.argmin
    if dim is None:
        return Tensor(pick(x.data, axis=None, keepdims=keepdim))
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{op}: dim must be an int or None, got {dim!r}")
    axis = _dim(dim, x.ndim, op)  # a clear IndexError (op, dim, ndim); a 0-d tensor takes 0 or -1
    if x.ndim == 0:  # the one entry is at index 0
        return Tensor(np.zeros((), dtype=np.int64))
    return Tensor(pick(x.data, axis=axis, keepdims=keepdim))


def argmax(x: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    return _arg_max_min("argmax", x, dim, keepdim)


def argmin(x: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    return _arg_max_min("argmin", x, dim, keepdim)
