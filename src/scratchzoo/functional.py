"""Differentiable ops. Each is a `Function` with its forward and backward side by side.

Reading guide: `forward` receives NumPy arrays and keeps the least it needs for `backward`;
`backward` receives dL/d(output) and returns dL/d(input) for each tensor input, via the chain rule.
Broadcasting is undone in one place, `unbroadcast`. The public functions at the bottom of each
section turn Python numbers and arrays into tensors and check shapes, then call `Op.apply`.
"""
from __future__ import annotations

import builtins
import math
from typing import Any, NamedTuple, Sequence

import numpy as np

from scratchzoo.autograd import DTypeError, Function, ShapeError, Tensor, unbroadcast
from scratchzoo.rng import generator
from scratchzoo.special import erf

# ============================================================================ helpers


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


# ============================================================================ arithmetic


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
    """y = x^e;  dy/dx = e * x^(e-1),  dy/de = x^e * ln(x)."""

    def forward(self, x, e):
        self.x, self.e = x, e
        self.y = np.power(x, e)
        return self.y

    def backward(self, grad):
        grad_x = grad_e = None
        if self.needs_input_grad[0]:
            grad_x = unbroadcast(grad * self.e * np.power(self.x, self.e - 1), self.x.shape)
        if self.needs_input_grad[1]:
            with np.errstate(divide="ignore", invalid="ignore"):
                grad_e = unbroadcast(grad * self.y * np.log(self.x), self.e.shape)
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
    a, b = as_tensor(a), as_tensor(b, a)
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"matmul: both operands need at least 1 dim, got shapes {a.shape} and {b.shape}")
    if a.dtype != b.dtype:
        raise DTypeError(f"matmul: cannot mix {a.dtype} and {b.dtype}; convert one with .to(dtype)")
    inner_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if a.shape[-1] != inner_b:
        raise ShapeError(f"matmul: shapes {a.shape} and {b.shape} cannot be multiplied "
                         f"({a.shape[-1]} != {inner_b})")
    return MatMul.apply(a, b)


# ============================================================================ reductions


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
    return Sum.apply(x, axes=_axes(dim, x.ndim), keepdim=keepdim)


def mean(x: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    if x.dtype.kind != "f":
        raise DTypeError(f"mean: needs a floating-point tensor, got {x.dtype}")
    return Mean.apply(x, axes=_axes(dim, x.ndim), keepdim=keepdim)


def var(x: Tensor, dim: Any = None, keepdim: bool = False, unbiased: bool = True) -> Tensor:
    """Variance; `unbiased=True` divides by n - 1 (Bessel's correction), as torch.var does."""
    return Var.apply(x, axes=_axes(dim, x.ndim), keepdim=keepdim, correction=1 if unbiased else 0)


def _max_min(x: Tensor, dim: int | None, keepdim: bool, is_max: bool) -> Any:
    if dim is None:
        return MaxMin.apply(x, dim=None, keepdim=False, is_max=is_max)
    axis = _axes(dim, x.ndim)[0]
    values = MaxMin.apply(x, dim=axis, keepdim=keepdim, is_max=is_max)
    pick = np.argmax if is_max else np.argmin
    return ValuesIndices(values, Tensor(pick(x.data, axis=axis, keepdims=keepdim)))


def max(x: Tensor, dim: int | None = None, keepdim: bool = False) -> Any:
    """max(x) is a scalar tensor; max(x, dim) is (values, indices), as in PyTorch."""
    return _max_min(x, dim, keepdim, is_max=True)


def min(x: Tensor, dim: int | None = None, keepdim: bool = False) -> Any:
    return _max_min(x, dim, keepdim, is_max=False)


def argmax(x: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    return Tensor(np.argmax(x.data, axis=dim, keepdims=keepdim))


def argmin(x: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    return Tensor(np.argmin(x.data, axis=dim, keepdims=keepdim))


# ============================================================================ elementwise


class Exp(Function):
    """y = e^x;  dy/dx = y."""

    def forward(self, x):
        self.y = np.exp(x)
        return self.y

    def backward(self, grad):
        return grad * self.y


class Log(Function):
    """y = ln x;  dy/dx = 1/x."""

    def forward(self, x):
        self.x = x
        return np.log(x)

    def backward(self, grad):
        return grad / self.x


class Sqrt(Function):
    """y = sqrt(x);  dy/dx = 1 / (2 y)."""

    def forward(self, x):
        self.y = np.sqrt(x)
        return self.y

    def backward(self, grad):
        return grad / (2.0 * self.y)


class Abs(Function):
    """y = |x|;  dy/dx = sign(x) (0 at 0, as PyTorch)."""

    def forward(self, x):
        self.sign = np.sign(x)
        return np.abs(x)

    def backward(self, grad):
        return grad * self.sign


class Clamp(Function):
    """y = min(max(x, low), high);  dy/dx = 1 inside [low, high], 0 where clipped."""

    def forward(self, x, low, high):
        self.inside = np.ones(x.shape, dtype=bool)
        if low is not None:
            self.inside &= x >= low
        if high is not None:
            self.inside &= x <= high
        return np.clip(x, low, high)

    def backward(self, grad):
        return grad * self.inside


class Tanh(Function):
    """y = tanh(x);  dy/dx = 1 - y^2 (reuse y: no second tanh in backward)."""

    def forward(self, x):
        self.y = np.tanh(x)
        return self.y

    def backward(self, grad):
        return grad * (1.0 - self.y * self.y)


class Sigmoid(Function):
    """y = 1 / (1 + e^-x);  dy/dx = y (1 - y).  Computed as (1 + tanh(x/2)) / 2: no overflow."""

    def forward(self, x):
        self.y = 0.5 * (1.0 + np.tanh(0.5 * x))
        return self.y

    def backward(self, grad):
        return grad * self.y * (1.0 - self.y)


class LeakyReLU(Function):
    """y = x if x > 0 else slope * x;  dy/dx = 1 or slope.  slope = 0 is ReLU."""

    def forward(self, x, slope):
        self.positive, self.slope = x > 0, slope
        if slope == 0.0:
            return x * self.positive
        return np.where(self.positive, x, x * x.dtype.type(slope))

    def backward(self, grad):
        if self.slope == 0.0:
            return grad * self.positive
        return np.where(self.positive, grad, grad * grad.dtype.type(self.slope))


class GELU(Function):
    """y = x * Phi(x), Phi the standard normal CDF;  dy/dx = Phi(x) + x * phi(x).

    approximate='tanh' uses Phi(x) ~ (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2 (GPT-2's form).
    """

    def forward(self, x, approximate):
        self.x, self.approximate = x, approximate
        if approximate == "tanh":
            inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)
            self.t = np.tanh(inner)
            return 0.5 * x * (1.0 + self.t)
        self.cdf = 0.5 * (1.0 + erf(x * (1.0 / math.sqrt(2.0))))
        return x * self.cdf

    def backward(self, grad):
        x = self.x
        if self.approximate == "tanh":
            d_inner = math.sqrt(2.0 / math.pi) * (1.0 + 3 * 0.044715 * x * x)
            return grad * (0.5 * (1.0 + self.t) + 0.5 * x * (1.0 - self.t * self.t) * d_inner)
        pdf = np.exp(-0.5 * x * x) * (1.0 / math.sqrt(2.0 * math.pi))
        return grad * (self.cdf + x * pdf)


class SiLU(Function):
    """y = x * sigmoid(x);  dy/dx = s + x s (1 - s) = s (1 + x (1 - s))."""

    def forward(self, x):
        self.x = x
        self.s = 0.5 * (1.0 + np.tanh(0.5 * x))
        return x * self.s

    def backward(self, grad):
        return grad * self.s * (1.0 + self.x * (1.0 - self.s))


def _unary(op: type[Function], x: Any, **options: Any) -> Tensor:
    x = as_tensor(x)
    if x.dtype.kind != "f":
        raise DTypeError(f"{op.__name__.lower()}: needs a floating-point tensor, got {x.dtype}")
    return op.apply(x, **options)


def exp(x: Tensor) -> Tensor:
    return _unary(Exp, x)


def log(x: Tensor) -> Tensor:
    return _unary(Log, x)


def sqrt(x: Tensor) -> Tensor:
    return _unary(Sqrt, x)


def abs(x: Tensor) -> Tensor:
    return _unary(Abs, x)


def clamp(x: Tensor, min: float | None = None, max: float | None = None) -> Tensor:
    if min is None and max is None:
        raise ValueError("clamp: give at least one of min and max")
    return _unary(Clamp, x, low=min, high=max)


def tanh(x: Tensor) -> Tensor:
    return _unary(Tanh, x)


def sigmoid(x: Tensor) -> Tensor:
    return _unary(Sigmoid, x)


def relu(x: Tensor) -> Tensor:
    return _unary(LeakyReLU, x, slope=0.0)


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    return _unary(LeakyReLU, x, slope=float(negative_slope))


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return _unary(GELU, x, approximate=approximate)


def silu(x: Tensor) -> Tensor:
    return _unary(SiLU, x)


# ============================================================================ softmax family


class Softmax(Function):
    """y_i = e^(x_i - max) / sum_j e^(x_j - max);  dx = y * (dy - sum(dy * y))."""

    def forward(self, x, dim):
        self.dim = dim
        shifted = np.exp(x - x.max(axis=dim, keepdims=True))  # subtracting the max avoids overflow
        self.y = shifted / shifted.sum(axis=dim, keepdims=True)
        return self.y

    def backward(self, grad):
        return self.y * (grad - (grad * self.y).sum(axis=self.dim, keepdims=True))


class LogSoftmax(Function):
    """y = x - logsumexp(x);  dx = dy - softmax(x) * sum(dy)."""

    def forward(self, x, dim):
        self.dim = dim
        shifted = x - x.max(axis=dim, keepdims=True)
        y = shifted - np.log(np.exp(shifted).sum(axis=dim, keepdims=True))
        self.softmax = np.exp(y)
        return y

    def backward(self, grad):
        return grad - self.softmax * grad.sum(axis=self.dim, keepdims=True)


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    return _unary(Softmax, x, dim=_axes(dim, x.ndim)[0])


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    return _unary(LogSoftmax, x, dim=_axes(dim, x.ndim)[0])


# ============================================================================ shape


class Reshape(Function):
    """Same elements, new shape; the gradient is reshaped back."""

    def forward(self, x, shape):
        self.in_shape = x.shape
        return x.reshape(shape)

    def backward(self, grad):
        return grad.reshape(self.in_shape)


class Permute(Function):
    """Reorder axes; the gradient is permuted by the inverse order."""

    def forward(self, x, dims):
        self.inverse = tuple(np.argsort(dims))
        return np.transpose(x, dims)

    def backward(self, grad):
        return np.transpose(grad, self.inverse)


class Expand(Function):
    """Broadcast x to a larger shape (no copy); the gradient sums over the broadcast axes."""

    def forward(self, x, shape):
        self.in_shape = x.shape
        return np.broadcast_to(x, shape)

    def backward(self, grad):
        return unbroadcast(grad, self.in_shape)


class Cast(Function):
    """Change the float dtype; the gradient goes back in the input's dtype."""

    def forward(self, x, dtype):
        self.in_dtype = x.dtype
        return x.astype(dtype)

    def backward(self, grad):
        return grad.astype(self.in_dtype)


def reshape(x: Tensor, shape: Sequence[int]) -> Tensor:
    shape = tuple(int(s) for s in shape)
    known = math.prod(s for s in shape if s != -1)
    if shape.count(-1) > 1 or (-1 in shape and (known == 0 or x.numel() % known)) or \
            (-1 not in shape and known != x.numel()):
        raise ShapeError(f"reshape: cannot view shape {x.shape} ({x.numel()} elements) as {shape}")
    return Reshape.apply(x, shape=shape)


def flatten(x: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    if x.ndim == 0:
        return reshape(x, (1,))
    start, end = start_dim % x.ndim, end_dim % x.ndim
    return reshape(x, x.shape[:start] + (math.prod(x.shape[start:end + 1]),) + x.shape[end + 1:])


def unsqueeze(x: Tensor, dim: int) -> Tensor:
    if not -(x.ndim + 1) <= dim <= x.ndim:
        raise IndexError(f"unsqueeze: dim {dim} out of range for a tensor with {x.ndim} dims")
    dim = dim % (x.ndim + 1)
    return reshape(x, x.shape[:dim] + (1,) + x.shape[dim:])


def squeeze(x: Tensor, dim: int | None = None) -> Tensor:
    if dim is None:
        return reshape(x, tuple(s for s in x.shape if s != 1))
    dim = _axes(dim, x.ndim)[0]
    if x.shape[dim] != 1:
        return x
    return reshape(x, x.shape[:dim] + x.shape[dim + 1:])


def permute(x: Tensor, dims: Sequence[int]) -> Tensor:
    dims = tuple(d % x.ndim for d in dims)
    if sorted(dims) != list(range(x.ndim)):
        raise ShapeError(f"permute: {tuple(dims)} is not an order of the {x.ndim} dims of shape {x.shape}")
    return Permute.apply(x, dims=dims)


def transpose(x: Tensor, dim0: int, dim1: int) -> Tensor:
    dims = list(range(x.ndim))
    dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
    return permute(x, dims)


def expand(x: Tensor, shape: Sequence[int]) -> Tensor:
    """Like torch.expand: -1 keeps a size; only size-1 dims (or new leading dims) can grow."""
    shape = tuple(shape)
    offset = len(shape) - x.ndim
    if offset < 0:
        raise ShapeError(f"expand: cannot expand shape {x.shape} to fewer dims {shape}")
    if -1 in shape[:offset]:
        raise ShapeError(f"expand: -1 is not allowed in a new leading dim, got {shape} for shape {x.shape}")
    target = tuple(x.shape[i - offset] if s == -1 else s for i, s in enumerate(shape))
    try:
        np.broadcast_shapes(x.shape, target)
        if np.broadcast_shapes(x.shape, target) != target:
            raise ValueError
    except ValueError:
        raise ShapeError(f"expand: cannot expand shape {x.shape} to {shape}") from None
    return Expand.apply(x, shape=target)


broadcast_to = expand


def cast(x: Tensor, dtype: np.dtype) -> Tensor:
    if x.dtype == dtype:
        return x
    if x.dtype.kind != "f" or dtype.kind != "f":
        return Tensor(x.data.astype(dtype))
    return Cast.apply(x, dtype=dtype)


# ============================================================================ indexing and joining


def _index_key(index: Any) -> Any:
    """Tensors inside an index become their arrays (integer or boolean indexing)."""
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return index


class Index(Function):
    """y = x[index] (slices, integers, integer arrays, masks);  dx = zeros with dy scatter-added
    at the indexed places. np.add.at adds repeated indices up instead of overwriting them."""

    def forward(self, x, key):
        self.shape, self.key = x.shape, key
        return np.asarray(x[key])

    def backward(self, grad):
        out = np.zeros(self.shape, dtype=grad.dtype)
        np.add.at(out, self.key, grad)
        return out


class Concat(Function):
    """y = concatenation along `dim`;  each input's gradient is its slice of dy."""

    def forward(self, *xs, dim):
        self.dim = dim
        self.boundaries = np.cumsum([x.shape[dim] for x in xs])[:-1]
        return np.concatenate(xs, axis=dim)

    def backward(self, grad):
        return tuple(np.split(grad, self.boundaries, axis=self.dim))


class Where(Function):
    """y = where(condition, a, b);  da = dy where condition, db = dy elsewhere."""

    def forward(self, a, b, condition):
        self.condition, self.a_shape, self.b_shape = condition, a.shape, b.shape
        return np.where(condition, a, b)

    def backward(self, grad):
        zero = np.zeros((), dtype=grad.dtype)
        return (unbroadcast(np.where(self.condition, grad, zero), self.a_shape),
                unbroadcast(np.where(self.condition, zero, grad), self.b_shape))


class MaskedFill(Function):
    """y = x with `value` where mask is true;  dx = dy where mask is false, 0 where filled."""

    def forward(self, x, mask, value):
        self.mask = mask
        return np.where(mask, x.dtype.type(value), x)

    def backward(self, grad):
        return np.where(self.mask, np.zeros((), dtype=grad.dtype), grad)


class EmbeddingLookup(Function):
    """y = W[ids] (one row per id);  dW = dy scatter-added into the looked-up rows."""

    def forward(self, weight, ids, padding_idx):
        self.ids, self.num_rows, self.padding_idx = ids, weight.shape[0], padding_idx
        return weight[ids]

    def backward(self, grad):
        flat_grad = grad.reshape(-1, grad.shape[-1])
        ids = self.ids.reshape(-1)
        out = np.zeros((self.num_rows, grad.shape[-1]), dtype=grad.dtype)
        np.add.at(out, ids, flat_grad)
        if self.padding_idx is not None:
            out[self.padding_idx] = 0  # the padding row never learns, as in PyTorch
        return out


def index(x: Tensor, index: Any) -> Tensor:
    key = _index_key(index)
    try:
        x.data[key]
    except IndexError as error:
        raise IndexError(f"index: {error} (tensor of shape {x.shape})") from None
    return Index.apply(x, key=key)


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("cat: needs at least one tensor")
    dim = _axes(dim, tensors[0].ndim)[0]
    first = tensors[0]
    for t in tensors[1:]:
        if t.dtype != first.dtype:
            raise DTypeError(f"cat: cannot mix {first.dtype} and {t.dtype}")
        if t.ndim != first.ndim or any(a != b for i, (a, b) in enumerate(zip(t.shape, first.shape)) if i != dim):
            raise ShapeError(f"cat: shapes {first.shape} and {t.shape} differ outside dim {dim}")
    return Concat.apply(*tensors, dim=dim)


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    tensors = [as_tensor(t) for t in tensors]
    if any(t.shape != tensors[0].shape for t in tensors):
        raise ShapeError(f"stack: all tensors need one shape, got {[t.shape for t in tensors]}")
    dim = dim % (tensors[0].ndim + 1)
    return cat([unsqueeze(t, dim) for t in tensors], dim)


def split(x: Tensor, split_size_or_sections: Any, dim: int = 0) -> list[Tensor]:
    """As torch.split: an int gives chunks of that size (the last may be smaller), a list gives sizes."""
    dim = _axes(dim, x.ndim)[0]
    length = x.shape[dim]
    if isinstance(split_size_or_sections, int):
        sizes = [builtins.min(split_size_or_sections, length - start)
                 for start in range(0, length, split_size_or_sections)]
    else:
        sizes = list(split_size_or_sections)
        if builtins.sum(sizes) != length:
            raise ShapeError(f"split: sizes {sizes} do not add up to {length}, the size of dim {dim} of {x.shape}")
    pieces, start = [], 0
    for size in sizes:
        key = (slice(None),) * dim + (slice(start, start + size),)
        pieces.append(Index.apply(x, key=key))
        start += size
    return pieces


def chunk(x: Tensor, chunks: int, dim: int = 0) -> list[Tensor]:
    return split(x, -(-x.shape[dim] // chunks), dim)


def where(condition: Any, a: Any, b: Any) -> Tensor:
    a, b = _pair("where", a, b)
    condition = np.asarray(condition.data if isinstance(condition, Tensor) else condition, dtype=bool)
    return Where.apply(a, b, condition=condition)


def masked_fill(x: Tensor, mask: Any, value: float) -> Tensor:
    mask = np.asarray(mask.data if isinstance(mask, Tensor) else mask, dtype=bool)
    try:
        if np.broadcast_shapes(mask.shape, x.shape) != x.shape:
            raise ValueError
    except ValueError:
        raise ShapeError(f"masked_fill: mask of shape {mask.shape} does not broadcast to {x.shape}") from None
    return MaskedFill.apply(x, mask=mask, value=value)


def embedding(ids: Any, weight: Tensor, padding_idx: int | None = None) -> Tensor:
    ids = np.asarray(ids.data if isinstance(ids, Tensor) else ids)
    if ids.dtype.kind not in "iu":
        raise DTypeError(f"embedding: ids must be integers, got {ids.dtype}")
    if ids.size and (ids.min() < 0 or ids.max() >= weight.shape[0]):
        raise IndexError(f"embedding: ids must lie in [0, {weight.shape[0]}), got min {ids.min()} max {ids.max()}")
    return EmbeddingLookup.apply(weight, ids=ids, padding_idx=padding_idx)


# ============================================================================ layers' ops


def _rows(a: np.ndarray) -> np.ndarray:
    """(..., n) -> (M, n), M the product of the leading dims (1 for a vector); a view when possible."""
    return a.reshape(math.prod(a.shape[:-1]), a.shape[-1])


class LinearOp(Function):
    """y = x @ W^T + b, fused: one op instead of transpose, matmul and add.

    With x's leading dims flattened into rows (X: (M, in), G = dL/dy: (M, out), W: (out, in)):
        dX = G @ W,   dW = G^T @ X,   db = sum of G over the rows.
    Each is one BLAS call on 2-D arrays (W^T and G^T are strided views, not copies), and dW comes out
    in W's own (out, in) layout. Fused because in the MLP benchmark (benchmarks/vs_torch.py) the
    composition's transpose and add nodes (6 of its 15 graph nodes) made the three layers' forward and
    backward ~20% slower; tests/test_fused_ops.py keeps the two equal.
    """

    def forward(self, x, weight, bias=None):
        self.x, self.weight = x, weight
        y = _rows(x) @ weight.T  # (M, in) @ (in, out): one GEMM whatever the leading dims
        if bias is not None:
            self.bias_shape = bias.shape
            y += bias  # y is fresh: add the bias in place
        return y.reshape(x.shape[:-1] + weight.shape[:1])

    def backward(self, grad):
        rows = _rows(grad)  # G: (M, out)
        grad_x = (rows @ self.weight).reshape(self.x.shape) if self.needs_input_grad[0] else None
        grad_w = rows.T @ _rows(self.x) if self.needs_input_grad[1] else None
        if len(self.needs_input_grad) == 2:
            return grad_x, grad_w
        grad_b = unbroadcast(rows.sum(axis=0), self.bias_shape) if self.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = x @ W^T + b, with W of shape (out_features, in_features) and b of shape (out_features,)."""
    x = as_tensor(x)
    weight = as_tensor(weight, x)
    inputs = (x, weight) if bias is None else (x, weight, as_tensor(bias, x))
    for t in inputs[1:]:
        if t.dtype != x.dtype:
            raise DTypeError(f"linear: cannot mix input {x.dtype} and parameter {t.dtype}; convert one with .to(dtype)")
    if x.ndim == 0 or weight.ndim != 2 or x.shape[-1] != weight.shape[1]:
        raise ShapeError(f"linear: input of shape {x.shape} does not fit a weight of shape {weight.shape} "
                         "(expected input (..., in_features), weight (out_features, in_features))")
    if bias is not None and inputs[2].shape not in ((weight.shape[0],), ()):
        raise ShapeError(f"linear: bias of shape {inputs[2].shape} does not fit a weight of shape {weight.shape} "
                         f"(expected ({weight.shape[0]},))")
    return LinearOp.apply(*inputs)


class Dropout(Function):
    """Training: y = x * m / (1 - p), m ~ Bernoulli(1 - p), so E[y] = x;  dx = dy * m / (1 - p)."""

    def forward(self, x, p):
        keep = generator().random(x.shape) >= p
        self.scaled_mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - p))
        return x * self.scaled_mask

    def backward(self, grad):
        return grad * self.scaled_mask


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: probability must lie in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return mul(x, 0.0)
    return _unary(Dropout, x, p=p)


class LayerNormOp(Function):
    """x_hat = (x - mean) / sqrt(var + eps) over the last dims (biased variance), fused.

    dx = (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat)) / sqrt(var + eps), with means over
    the normalised dims: one formula instead of the dozen ops of the composition.
    """

    def forward(self, x, axes, eps):
        self.axes = axes
        mu = x.mean(axis=axes, keepdims=True)
        centered = x - mu
        self.inv_std = 1.0 / np.sqrt((centered * centered).mean(axis=axes, keepdims=True) + x.dtype.type(eps))
        self.x_hat = centered * self.inv_std
        return self.x_hat

    def backward(self, grad):
        x_hat = self.x_hat
        return self.inv_std * (grad - grad.mean(axis=self.axes, keepdims=True)
                               - x_hat * (grad * x_hat).mean(axis=self.axes, keepdims=True))


def layer_norm(x: Tensor, normalized_shape: Sequence[int], weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """LayerNorm: normalise each sample over its last len(normalized_shape) dims, then y = x_hat * gamma + beta."""
    normalized_shape = tuple(normalized_shape)
    if x.shape[x.ndim - len(normalized_shape):] != normalized_shape:
        raise ShapeError(f"layer_norm: expected input ending in {normalized_shape}, got shape {x.shape}")
    axes = tuple(range(x.ndim - len(normalized_shape), x.ndim))
    y = _unary(LayerNormOp, x, axes=axes, eps=eps)
    if weight is not None:
        y = mul(y, weight)
    if bias is not None:
        y = add(y, bias)
    return y


# losses live in their own module; re-exported so `F.cross_entropy` reads as in PyTorch
from scratchzoo.losses import (  # noqa: E402,F401
    binary_cross_entropy_with_logits, cross_entropy, l1_loss, mse_loss, nll_loss)
