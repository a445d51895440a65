"""The ops of Mixture-of-Experts routing: top-k selection, row gathers, softplus (noisy gating's noise scale).

`topk` picks, per row, the k largest entries and their positions (as torch.topk); the values stay in the
graph (a gather, `F.index`), the positions are integers outside it. `softplus` is its own op because the
composition log(1 + e^x) overflows for large x and the stable composition relu(x) + log(1 + e^-|x|) gets
the slope at exactly x = 0 wrong (0 instead of 1/2); noisy gating starts there, with W_noise = 0.
`gather_rows` is x[index] for the dispatch of tokens to experts, with a backward much faster than
np.add.at (what `F.index` uses) when rows are picked a few times each.
"""
from __future__ import annotations

import numpy as np

from scratchzoo.autograd import DTypeError, Function, ShapeError, Tensor
from scratchzoo.functional._base import _dim, _unary
from scratchzoo.functional.arithmetic import ValuesIndices
from scratchzoo.functional.elementwise import stable_sigmoid
from scratchzoo.functional.shape import index


class Softplus(Function):
    """y = log(1 + e^x) = max(x, 0) + log(1 + e^-|x|) (no overflow);  dy/dx = sigmoid(x)."""

    def forward(self, x):
        self.x = x
        return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))

    def backward(self, grad):
        return grad * stable_sigmoid(self.x)


def softplus(x: Tensor) -> Tensor:
    """A smooth, always-positive version of relu: log(1 + e^x) (torch's default beta=1)."""
    return _unary("softplus", Softplus, x)


def topk(x: Tensor, k: int, dim: int = -1) -> ValuesIndices:
    """The k largest entries along `dim`, largest first, and where they are (ties: the lower index first).

    values = x gathered at indices (differentiable: the gradient flows to the chosen entries only);
    indices is an int64 tensor outside the graph, as torch.topk's.
    """
    if x.dtype.kind != "f":
        raise DTypeError(f"topk: needs a floating-point tensor, got {x.dtype}")
    axis = _dim(dim, x.ndim, "topk")
    if not 1 <= k <= x.shape[axis]:
        raise ShapeError(f"topk: k must lie in [1, {x.shape[axis]}] for dim {dim} of shape {x.shape}, got {k}")
    order = np.argsort(-x.data, axis=axis, kind="stable")  # descending; stable keeps ties in index order
    indices = np.take(order, np.arange(k), axis=axis)
    grid = list(np.indices(indices.shape, sparse=True))
    grid[axis] = indices
    return ValuesIndices(index(x, tuple(grid)), Tensor(indices.astype(np.int64)))


class GatherRows(Function):
    """y = x[index] (whole rows, index 1-D);  dx[i] = the sum of dy over the positions that picked row i.

    The backward adds in rounds: round r takes, for every row, its r-th pick. Within a round no row repeats,
    so a plain indexed `+=` is exact; the rounds number as many as the most often picked row (k for MoE
    dispatch), and each is ~20x faster than np.add.at over everything.
    """

    def forward(self, x, index):
        self.index, self.num_rows = index, x.shape[0]
        return x[index]

    def backward(self, grad):
        out = np.zeros((self.num_rows,) + grad.shape[1:], dtype=grad.dtype)
        if self.index.size == 0:
            return out
        order = np.argsort(self.index, kind="stable")
        sorted_index = self.index[order]
        pick = np.empty_like(order)  # pick[p]: how many earlier positions picked the same row as position p
        pick[order] = np.arange(order.size) - np.searchsorted(sorted_index, sorted_index)
        for r in range(int(pick.max()) + 1):
            this_round = pick == r
            out[self.index[this_round]] += grad[this_round]
        return out


def gather_rows(x: Tensor, index: np.ndarray | Tensor) -> Tensor:
    """x[index] along dim 0 (torch.index_select(x, 0, index)): rows may repeat, in any order."""
    index = np.asarray(index.data if isinstance(index, Tensor) else index)
    if index.ndim != 1 or index.dtype.kind not in "iu":
        raise ShapeError(f"gather_rows: index must be a 1-D integer array, got {index.dtype} {index.shape}")
    if x.ndim == 0:
        raise ShapeError("gather_rows: needs a tensor with at least 1 dim, got a 0-d tensor")
    if index.size and (index.min() < 0 or index.max() >= x.shape[0]):
        raise IndexError(f"gather_rows: index must lie in [0, {x.shape[0]}), got min {index.min()} max {index.max()}")
    return GatherRows.apply(x, index=index.astype(np.int64, copy=False))
