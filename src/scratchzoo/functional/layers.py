"""The ops behind layers: linear (fused), dropout, layer norm."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from scratchzoo.autograd import DTypeError, Function, ShapeError, Tensor, unbroadcast
from scratchzoo.rng import generator
from scratchzoo.functional._base import _float_tensor, _unary, as_tensor
from scratchzoo.functional.arithmetic import add, mul


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


def dropout_mask(shape: tuple[int, ...], p: float, dtype: np.dtype) -> np.ndarray:
    """m / (1 - p) with m ~ Bernoulli(1 - p) drawn from the library's generator (so manual_seed repeats it):
    1/(1-p) where kept, 0 where dropped, so E[x * mask] = x. Shared by every dropout op (elements, channels,
    attention weights); each says which shape gets one draw."""
    keep = generator().random(shape) >= p
    return keep.astype(dtype) * dtype.type(1.0 / (1.0 - p))


def check_probability(name: str, p: float) -> None:
    """A dropout probability lies in [0, 1]; `name` is the op or layer that was given it."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name}: probability must lie in [0, 1], got {p}")


class Dropout(Function):
    """Training: y = x * m / (1 - p), m ~ Bernoulli(1 - p), so E[y] = x;  dx = dy * m / (1 - p)."""

    def forward(self, x, p):
        self.scaled_mask = dropout_mask(x.shape, p, x.dtype)
        return x * self.scaled_mask

    def backward(self, grad):
        return grad * self.scaled_mask


def apply_dropout(op: type[Function], name: str, x: Tensor, p: float, training: bool) -> Tensor:
    """The rules every dropout variant shares: p in [0, 1]; identity in eval or for p = 0; zeros for p = 1."""
    check_probability(name, p)
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return mul(x, 0.0)
    return _unary(name, op, x, p=p)


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    return apply_dropout(Dropout, "dropout", x, p, training)


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
    """LayerNorm: normalise each sample over its last len(normalized_shape) dims, then y = x_hat * gamma + beta.
    gamma (weight) and beta (bias) have exactly normalized_shape, as in PyTorch (no silent broadcasting)."""
    x = _float_tensor("layer_norm", x)
    normalized_shape = tuple(normalized_shape)
    if x.shape[x.ndim - len(normalized_shape):] != normalized_shape:
        raise ShapeError(f"layer_norm: expected input ending in {normalized_shape}, got shape {x.shape}")
    weight = None if weight is None else as_tensor(weight, x, "layer_norm")
    bias = None if bias is None else as_tensor(bias, x, "layer_norm")
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and p.shape != normalized_shape:
            raise ShapeError(f"layer_norm: {name} must have normalized_shape {normalized_shape}, got shape {p.shape}")
    axes = tuple(range(x.ndim - len(normalized_shape), x.ndim))
    y = LayerNormOp.apply(x, axes=axes, eps=eps)
    if weight is not None:
        y = mul(y, weight)
    if bias is not None:
        y = add(y, bias)
    return y
