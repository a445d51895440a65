"""The engine: a Tensor over a NumPy array, and Functions that know their own backward.

Every differentiable op is a `Function` subclass (see the `functional` package) with `forward` (arrays in, array
out) and `backward` (gradient of the output in, gradients of the inputs out) side by side. Calling
`SomeOp.apply(tensors...)` runs `forward` and, when gradients are wanted, records the op as the
output's `_ctx`: the recorded ops form the computation graph that `Tensor.backward` walks in reverse.
"""
from __future__ import annotations

import contextlib
import reprlib
from typing import Any, Callable, Iterator, Sequence

import numpy as np

float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
int64 = np.dtype(np.int64)
bool_ = np.dtype(np.bool_)

_grad_enabled = True


def is_grad_enabled() -> bool:
    return _grad_enabled


class _GradMode(contextlib.ContextDecorator):
    """Context manager and decorator that switches graph recording on or off (like torch.no_grad)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def __enter__(self) -> None:
        global _grad_enabled
        self.previous, _grad_enabled = _grad_enabled, self.enabled

    def __exit__(self, *exc: Any) -> None:
        global _grad_enabled
        _grad_enabled = self.previous


def no_grad() -> _GradMode:
    """Inside `with no_grad():` ops record nothing: no graph, no memory kept for backward."""
    return _GradMode(False)


def enable_grad() -> _GradMode:
    return _GradMode(True)


class ShapeError(ValueError):
    """Input shapes that an op or layer cannot accept."""


class DTypeError(TypeError):
    """Mixed or unsupported dtypes (float32 and float64 never mix silently)."""


_NUMERIC_KINDS = "biuf"  # the dtype kinds a tensor holds: bool, signed and unsigned int, float


def _describe(data: Any) -> str:
    """What a value is, for an error message: its type, and an array's dtype."""
    if isinstance(data, (np.ndarray, np.generic)):
        return f"{type(data).__name__} of dtype {data.dtype}"
    return type(data).__name__


def _as_array(data: Any, dtype: Any = None, op: str = "tensor", what: str = "data") -> np.ndarray:
    """Arrays and NumPy scalars keep their dtype (as torch.from_numpy); Python floats become float32,
    ints int64. (NumPy ufuncs turn 0-d arrays into NumPy scalars, so an op's float64 result stays float64.)
    Ragged lists and values that are not numbers (None, strings, objects) are errors naming `op` and `what`
    the value is to it, where NumPy would build an object array or fail far from the cause."""
    if isinstance(data, Tensor):
        data = data.data
    if isinstance(data, np.generic):
        data = np.asarray(data)
    if isinstance(data, np.ndarray):
        array = data
    elif dtype is not None and isinstance(data, (int, float)):  # the hot case, `x * 0.5`: nothing to check
        return np.asarray(data, dtype=dtype)
    else:
        try:
            array = np.asarray(data)
        except ValueError:  # NumPy's "inhomogeneous shape"
            raise ShapeError(f"{op}: nested sequences must be rectangular (the same length at each depth), "
                             f"got {reprlib.repr(data)}") from None
    if array.dtype.kind not in _NUMERIC_KINDS:
        raise DTypeError(f"{op}: {what} must be numeric (a number, a sequence of numbers, an array or a tensor), "
                         f"got {_describe(data)}")
    if dtype is not None:
        return array.astype(dtype, copy=False)
    if array is data:
        return array
    if array.dtype.kind == "f":
        return array.astype(np.float32)
    if array.dtype.kind in "iu":
        return array.astype(np.int64)
    return array


def unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Undo NumPy broadcasting: sum `grad` over the axes that broadcasting added or stretched.

    If x of shape (3, 1) was broadcast to (2, 3, 4), every element of x fed 2*4 outputs, so its
    gradient is the sum of theirs: sum over the new leading axis 0 and the stretched axis 2.
    """
    if grad.shape == shape:
        return grad
    leading = grad.ndim - len(shape)
    stretched = tuple(i + leading for i, n in enumerate(shape) if n == 1 and grad.shape[i + leading] != 1)
    grad = grad.sum(axis=tuple(range(leading)) + stretched, keepdims=True)
    return grad.reshape(shape)


class Function:
    """One node of the graph. Subclasses write `forward(*arrays, **options)` and `backward(grad)`.

    `backward` returns one gradient per tensor input of `forward` (a tuple, or a single array when
    there is one input); `None` means "no gradient for this input". `self.needs_input_grad[i]` tells
    whether input i wants a gradient, so a backward can skip work nobody asked for.
    """

    needs_input_grad: tuple[bool, ...]
    inputs: tuple["Tensor", ...]

    def forward(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad: np.ndarray) -> Any:
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs: "Tensor", **options: Any) -> "Tensor":
        """Run forward on the inputs' arrays; record the op when any input requires grad."""
        fn = cls()
        out = Tensor(fn.forward(*(t.data for t in inputs), **options))
        if _grad_enabled and any(t.requires_grad for t in inputs):
            fn.inputs = inputs
            fn.needs_input_grad = tuple(t.requires_grad for t in inputs)
            out.requires_grad = True
            out._ctx = fn
        return out


class Tensor:
    """An n-dimensional array that remembers how it was computed, so it can be differentiated.

    `.data` holds the np.ndarray, `.grad` the accumulated gradient (same shape and dtype) after
    `backward()`, `._ctx` the Function that produced it (None for leaves such as parameters).
    """

    __array_priority__ = 1000  # make `ndarray * Tensor` call Tensor.__rmul__

    def __init__(self, data: Any, requires_grad: bool = False, dtype: Any = None):
        self.data: np.ndarray = _as_array(data, dtype)
        if requires_grad and self.data.dtype.kind != "f":
            raise DTypeError(f"only floating-point tensors can require gradients, got dtype {self.data.dtype}")
        self.requires_grad = requires_grad
        self.grad: np.ndarray | None = None
        self._ctx: Function | None = None
        self._retains_grad = False

    # ---- basic facts -------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    def dim(self) -> int:
        return self.data.ndim

    def size(self, dim: int | None = None) -> Any:
        if dim is None:
            return self.data.shape
        if self.ndim == 0:
            raise IndexError(f"size: a 0-d tensor has no dims, got dim {dim}")
        return self.data.shape[_dim(dim, self.ndim, "size")]

    def numel(self) -> int:
        return self.data.size

    @property
    def is_leaf(self) -> bool:
        return self._ctx is None

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        body = np.array2string(self.data, separator=", ", precision=4, prefix="tensor(")
        extra = f", dtype={self.dtype}" if self.dtype != float32 and self.dtype != int64 else ""
        if self._ctx is not None:
            extra += f", grad_fn=<{type(self._ctx).__name__}>"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    # ---- leaving the graph -----------------------------------------------------------------
    def item(self) -> float:
        if self.data.size != 1:
            raise ShapeError(f"item: a Tensor with {self.data.size} elements (shape {self.shape}) cannot be "
                             "converted to Scalar")
        return self.data.item()

    def numpy(self) -> np.ndarray:
        return self.data

    def tolist(self) -> Any:
        return self.data.tolist()

    def detach(self) -> "Tensor":
        """The same values, cut from the graph: no gradient flows back through the result."""
        return Tensor(self.data)

    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        if requires_grad and self.data.dtype.kind != "f":
            raise DTypeError(f"only floating-point tensors can require gradients, got dtype {self.dtype}")
        self.requires_grad = requires_grad
        return self

    def retain_grad(self) -> None:
        """Keep `.grad` on this non-leaf tensor after backward (leaves always keep theirs)."""
        self._retains_grad = True

    # ---- dtype -------------------------------------------------------------------------------
    def to(self, dtype: Any) -> "Tensor":
        return F.cast(self, np.dtype(dtype))

    def float(self) -> "Tensor":
        return self.to(float32)

    def double(self) -> "Tensor":
        return self.to(float64)

    def long(self) -> "Tensor":
        return Tensor(self.data.astype(np.int64))

    def bool(self) -> "Tensor":
        return Tensor(self.data.astype(np.bool_))

    # ---- backward ----------------------------------------------------------------------------
    def backward(self, grad: Any = None) -> None:
        """Accumulate d(self)/d(leaf) * grad into every leaf's `.grad` (chain rule, reverse order).

        The graph is sorted by an iterative depth-first walk, so a chain thousands of ops long
        never meets Python's recursion limit. Each node's gradient is the sum over its consumers.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad: no input of the graph "
                               "requires grad, or it was computed under no_grad()")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward() without a gradient needs a scalar output, got shape {self.shape}; "
                                   "pass grad= of the same shape")
            grad_array = np.ones_like(self.data)
        else:
            grad_array = _as_array(grad, self.dtype)
            if grad_array.shape != self.shape:
                raise ShapeError(f"backward() got a gradient of shape {grad_array.shape} for a tensor of shape {self.shape}")

        grads: dict[int, np.ndarray] = {id(self): grad_array}
        for node in reversed(self._topological_order()):
            node_grad = grads.pop(id(node), None)
            if node_grad is None:
                continue
            if node._ctx is None or node._retains_grad:
                node._accumulate(node_grad)
            if node._ctx is None:
                continue
            fn = node._ctx
            input_grads = fn.backward(node_grad)
            if not isinstance(input_grads, tuple):
                input_grads = (input_grads,)
            for parent, parent_grad, wanted in zip(fn.inputs, input_grads, fn.needs_input_grad):
                if not wanted or parent_grad is None:
                    continue
                if parent_grad.shape != parent.shape:
                    raise ShapeError(f"{type(fn).__name__}.backward returned a gradient of shape "
                                     f"{parent_grad.shape} for an input of shape {parent.shape}")
                if parent_grad.dtype != parent.dtype:
                    raise DTypeError(f"{type(fn).__name__}.backward returned a gradient of dtype "
                                     f"{parent_grad.dtype} for an input of dtype {parent.dtype}")
                key = id(parent)
                grads[key] = grads[key] + parent_grad if key in grads else parent_grad

    def _accumulate(self, grad: np.ndarray) -> None:
        grad = grad.astype(self.dtype, copy=False)
        self.grad = grad.copy() if self.grad is None else self.grad + grad

    def _topological_order(self) -> list["Tensor"]:
        """Nodes that require grad, each after all of its inputs (iterative post-order DFS)."""
        order: list[Tensor] = []
        visited: set[int] = {id(self)}
        stack: list[tuple[Tensor, Iterator[Tensor]]] = [(self, self._parents())]
        while stack:
            node, parents = stack[-1]
            for parent in parents:
                if id(parent) not in visited:
                    visited.add(id(parent))
                    stack.append((parent, parent._parents()))
                    break
            else:
                stack.pop()
                order.append(node)
        return order

    def _parents(self) -> Iterator["Tensor"]:
        if self._ctx is None:
            return iter(())
        return (t for t in self._ctx.inputs if t.requires_grad)

    def zero_grad(self) -> None:
        self.grad = None

    # ---- arithmetic (Python operators) -------------------------------------------------------
    def __add__(self, other: Any) -> "Tensor":
        return F.add(self, other)

    def __radd__(self, other: Any) -> "Tensor":
        return F.add(other, self)

    def __sub__(self, other: Any) -> "Tensor":
        return F.sub(self, other)

    def __rsub__(self, other: Any) -> "Tensor":
        return F.sub(other, self)

    def __mul__(self, other: Any) -> "Tensor":
        return F.mul(self, other)

    def __rmul__(self, other: Any) -> "Tensor":
        return F.mul(other, self)

    def __truediv__(self, other: Any) -> "Tensor":
        return F.div(self, other)

    def __rtruediv__(self, other: Any) -> "Tensor":
        return F.div(other, self)

    def __neg__(self) -> "Tensor":
        return F.neg(self)

    def __pow__(self, exponent: Any) -> "Tensor":
        return F.pow(self, exponent)

    def __rpow__(self, base: Any) -> "Tensor":
        return F.pow(base, self)

    def __matmul__(self, other: Any) -> "Tensor":
        return F.matmul(self, other)

    def __rmatmul__(self, other: Any) -> "Tensor":
        return F.matmul(other, self)

    def __getitem__(self, index: Any) -> "Tensor":
        return F.index(self, index)

    # Comparisons give boolean tensors outside the graph, as in PyTorch: `(pred == y).float().mean()` is the
    # accuracy. `==` is elementwise too, so tensors in a list are found by identity (`any(t is p ...)`), not `in`.
    def _compare(self, other: Any, op: Callable[[Any, Any], Any]) -> "Tensor":
        other = other.data if isinstance(other, Tensor) else other
        try:
            return Tensor(np.asarray(op(self.data, other)))
        except ValueError:
            raise ShapeError(f"{op.__name__}: shapes {self.shape} and {np.shape(other)} do not broadcast") from None

    def __lt__(self, other: Any) -> "Tensor":
        return self._compare(other, np.less)

    def __le__(self, other: Any) -> "Tensor":
        return self._compare(other, np.less_equal)

    def __gt__(self, other: Any) -> "Tensor":
        return self._compare(other, np.greater)

    def __ge__(self, other: Any) -> "Tensor":
        return self._compare(other, np.greater_equal)

    def eq(self, other: Any) -> "Tensor":
        return self._compare(other, np.equal)

    def ne(self, other: Any) -> "Tensor":
        return self._compare(other, np.not_equal)

    def __eq__(self, other: Any) -> Any:  # type: ignore[override]
        if not isinstance(other, _COMPARABLE):
            return NotImplemented  # `t == None` or `t == "a"` is False, as in PyTorch
        return self.eq(other)

    def __ne__(self, other: Any) -> Any:  # type: ignore[override]
        if not isinstance(other, _COMPARABLE):
            return NotImplemented
        return self.ne(other)

    __hash__ = object.__hash__  # tensors are dict and set keys by identity, as in PyTorch

    def __bool__(self) -> bool:
        """The truth of a one-element tensor; any other size is ambiguous (as in PyTorch), so `if a == b:` on
        two vectors is an error rather than a silent answer: write (a == b).all() or .any()."""
        if self.data.size != 1:
            raise RuntimeError(f"the truth value of a tensor with {self.data.size} elements (shape {self.shape}) "
                               "is ambiguous; use .all() or .any()")
        return bool(self.data.item())

    def all(self) -> "Tensor":
        return Tensor(np.asarray(self.data.all()))

    def any(self) -> "Tensor":
        return Tensor(np.asarray(self.data.any()))

    # ---- methods that forward to functional ------------------------------------------------
    def sum(self, dim: Any = None, keepdim: bool = False) -> "Tensor":
        return F.sum(self, dim, keepdim)

    def mean(self, dim: Any = None, keepdim: bool = False) -> "Tensor":
        return F.mean(self, dim, keepdim)

    def var(self, dim: Any = None, keepdim: bool = False, unbiased: bool = True) -> "Tensor":
        return F.var(self, dim, keepdim, unbiased)

    def std(self, dim: Any = None, keepdim: bool = False, unbiased: bool = True) -> "Tensor":
        return F.sqrt(F.var(self, dim, keepdim, unbiased))

    def max(self, dim: int | None = None, keepdim: bool = False) -> Any:
        return F.max(self, dim, keepdim)

    def min(self, dim: int | None = None, keepdim: bool = False) -> Any:
        return F.min(self, dim, keepdim)

    def argmax(self, dim: int | None = None, keepdim: bool = False) -> "Tensor":
        return F.argmax(self, dim, keepdim)

    def argmin(self, dim: int | None = None, keepdim: bool = False) -> "Tensor":
        return F.argmin(self, dim, keepdim)

    def exp(self) -> "Tensor":
        return F.exp(self)

    def log(self) -> "Tensor":
        return F.log(self)

    def sqrt(self) -> "Tensor":
        return F.sqrt(self)

    def abs(self) -> "Tensor":
        return F.abs(self)

    def clamp(self, min: float | None = None, max: float | None = None) -> "Tensor":
        return F.clamp(self, min, max)

    def tanh(self) -> "Tensor":
        return F.tanh(self)

    def sigmoid(self) -> "Tensor":
        return F.sigmoid(self)

    def relu(self) -> "Tensor":
        return F.relu(self)

    def softmax(self, dim: int = -1) -> "Tensor":
        return F.softmax(self, dim)

    def log_softmax(self, dim: int = -1) -> "Tensor":
        return F.log_softmax(self, dim)

    def reshape(self, *shape: Any) -> "Tensor":
        return F.reshape(self, _shape_args(shape))

    def view(self, *shape: Any) -> "Tensor":
        return F.reshape(self, _shape_args(shape))

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> "Tensor":
        return F.flatten(self, start_dim, end_dim)

    def unsqueeze(self, dim: int) -> "Tensor":
        return F.unsqueeze(self, dim)

    def squeeze(self, dim: int | None = None) -> "Tensor":
        return F.squeeze(self, dim)

    def transpose(self, dim0: int, dim1: int) -> "Tensor":
        return F.transpose(self, dim0, dim1)

    def permute(self, *dims: Any) -> "Tensor":
        return F.permute(self, _shape_args(dims))

    @property
    def T(self) -> "Tensor":
        return F.permute(self, tuple(reversed(range(self.ndim))))

    def expand(self, *shape: Any) -> "Tensor":
        return F.expand(self, _shape_args(shape))

    def split(self, split_size_or_sections: Any, dim: int = 0) -> list["Tensor"]:
        return F.split(self, split_size_or_sections, dim)

    def chunk(self, chunks: int, dim: int = 0) -> list["Tensor"]:
        return F.chunk(self, chunks, dim)

    def masked_fill(self, mask: Any, value: float) -> "Tensor":
        return F.masked_fill(self, mask, value)


_COMPARABLE = (Tensor, np.ndarray, np.generic, int, float, bool, list, tuple)  # what == compares elementwise


def _shape_args(shape: Sequence[Any]) -> tuple[int, ...]:
    """Accept both `x.reshape(2, 3)` and `x.reshape((2, 3))`."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(shape)


def tensor(data: Any, requires_grad: bool = False, dtype: Any = None) -> Tensor:
    """Build a tensor as torch.tensor does: a copy; Python floats become float32, ints int64."""
    return Tensor(np.array(_as_array(data, dtype), copy=True), requires_grad=requires_grad)


def from_numpy(array: np.ndarray) -> Tensor:
    """Wrap an array without copying, keeping its dtype (torch.from_numpy)."""
    return Tensor(array)


def zeros(*shape: Any, dtype: Any = float32, requires_grad: bool = False) -> Tensor:
    return Tensor(np.zeros(_sizes("zeros", _shape_args(shape)), dtype=dtype), requires_grad)


def ones(*shape: Any, dtype: Any = float32, requires_grad: bool = False) -> Tensor:
    return Tensor(np.ones(_sizes("ones", _shape_args(shape)), dtype=dtype), requires_grad)


def arange(*args: Any, dtype: Any = None) -> Tensor:
    """As torch.arange: int64 when start, end and step are all integers, else float32 (the default dtype)."""
    values = np.arange(*args, dtype=dtype)
    if dtype is None:
        values = values.astype(np.float32 if values.dtype.kind == "f" else np.int64, copy=False)
    return Tensor(values)


# functional builds on Tensor and Function; Tensor's methods call into it once both modules exist.
from scratchzoo import functional as F  # noqa: E402
from scratchzoo.functional._base import _dim, _sizes  # noqa: E402
