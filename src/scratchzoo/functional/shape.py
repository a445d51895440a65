"""Shape ops (reshape, permute, expand, cast) and indexing and joining (index, cat, stack, split, where)."""
from __future__ import annotations

import builtins
import math
from typing import Any, Sequence

import numpy as np

from scratchzoo.autograd import DTypeError, Function, ShapeError, Tensor, unbroadcast
from scratchzoo.functional._base import _dim, _pair, as_tensor


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
    start, end = _dim(start_dim, x.ndim, "flatten"), _dim(end_dim, x.ndim, "flatten")
    if x.ndim == 0:
        return reshape(x, (1,))
    if start > end:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} "
                         f"for a tensor with {x.ndim} dims")
    return reshape(x, x.shape[:start] + (math.prod(x.shape[start:end + 1]),) + x.shape[end + 1:])


def unsqueeze(x: Tensor, dim: int) -> Tensor:
    dim = _dim(dim, x.ndim, "unsqueeze", new=True)
    return reshape(x, x.shape[:dim] + (1,) + x.shape[dim:])


def squeeze(x: Tensor, dim: int | None = None) -> Tensor:
    if dim is None:
        return reshape(x, tuple(s for s in x.shape if s != 1))
    dim = _dim(dim, x.ndim, "squeeze")
    if x.ndim == 0 or x.shape[dim] != 1:
        return x
    return reshape(x, x.shape[:dim] + x.shape[dim + 1:])


def permute(x: Tensor, dims: Sequence[int]) -> Tensor:
    given = tuple(dims)
    dims = tuple(_dim(d, x.ndim, "permute") for d in given)
    if sorted(dims) != list(range(x.ndim)):
        raise ShapeError(f"permute: expected an order of all {x.ndim} dims of shape {x.shape}, each once, "
                         f"got {given}")
    return Permute.apply(x, dims=dims)


def transpose(x: Tensor, dim0: int, dim1: int) -> Tensor:
    dim0, dim1 = _dim(dim0, x.ndim, "transpose"), _dim(dim1, x.ndim, "transpose")
    if x.ndim == 0:
        return x
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


def _index_key(index: Any) -> Any:
    """Tensors inside an index become their arrays (integer or boolean indexing)."""
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return index


def _is_basic(key: Any) -> bool:
    """Slices, ints, None and Ellipsis select each element at most once (NumPy's basic indexing)."""
    parts = key if isinstance(key, tuple) else (key,)
    return all(part is None or part is Ellipsis or isinstance(part, (int, np.integer, slice)) for part in parts)


class Index(Function):
    """y = x[index] (slices, integers, integer arrays, masks);  dx = zeros with dy scatter-added
    at the indexed places. With integer arrays an element can be picked twice, so np.add.at adds
    repeats up instead of overwriting; basic indexing picks each once, and a plain assignment (about
    100x faster than np.add.at) does."""

    def forward(self, x, key):
        self.shape, self.key = x.shape, key
        return np.asarray(x[key])

    def backward(self, grad):
        out = np.zeros(self.shape, dtype=grad.dtype)
        if _is_basic(self.key):
            out[self.key] = grad
        else:
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
    dim = _dim(dim, tensors[0].ndim, "cat")
    first = tensors[0]
    for t in tensors[1:]:
        if t.dtype != first.dtype:
            raise DTypeError(f"cat: cannot mix {first.dtype} and {t.dtype}")
        if t.ndim != first.ndim or any(a != b for i, (a, b) in enumerate(zip(t.shape, first.shape)) if i != dim):
            raise ShapeError(f"cat: shapes {first.shape} and {t.shape} differ outside dim {dim}")
    return Concat.apply(*tensors, dim=dim)


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("stack: needs at least one tensor, got an empty sequence")
    if any(t.shape != tensors[0].shape for t in tensors):
        raise ShapeError(f"stack: all tensors need one shape, got {[t.shape for t in tensors]}")
    dim = _dim(dim, tensors[0].ndim, "stack", new=True)
    return cat([unsqueeze(t, dim) for t in tensors], dim)


def split(x: Tensor, split_size_or_sections: Any, dim: int = 0) -> list[Tensor]:
    """As torch.split: an int gives chunks of that size (the last may be smaller), a list gives sizes."""
    dim = _dim(dim, x.ndim, "split")
    length = x.shape[dim]
    if isinstance(split_size_or_sections, int):
        if split_size_or_sections < 1:
            raise ValueError(f"split: split_size must be a positive int, got {split_size_or_sections}")
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
    dim = _dim(dim, x.ndim, "chunk")
    if chunks < 1:
        raise ValueError(f"chunk: chunks must be a positive int, got {chunks}")
    return split(x, -(-x.shape[dim] // chunks), dim)


def where(condition: Any, a: Any, b: Any) -> Tensor:
    a, b = _pair("where", a, b)
    condition = np.asarray(condition.data if isinstance(condition, Tensor) else condition, dtype=bool)
    try:
        np.broadcast_shapes(condition.shape, a.shape, b.shape)
    except ValueError:
        raise ShapeError(f"where: condition of shape {condition.shape} does not broadcast with the values' "
                         f"shapes {a.shape} and {b.shape}") from None
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
    weight = as_tensor(weight, op="embedding")
    if weight.ndim != 2:
        raise ShapeError(f"embedding: weight must be 2-D (num_embeddings, embedding_dim), got shape {weight.shape}")
    if ids.size and (ids.min() < 0 or ids.max() >= weight.shape[0]):
        raise IndexError(f"embedding: ids must lie in [0, {weight.shape[0]}), got min {ids.min()} max {ids.max()}")
    return EmbeddingLookup.apply(weight, ids=ids, padding_idx=padding_idx)
