"""Basic layers: Linear, Embedding, LayerNorm, Dropout, Flatten, Identity and the activations.

Each layer checks its input (a clear error naming the layer) and then calls one functional op; the
engine does the backward.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from scratchzoo import functional as F
from scratchzoo.autograd import DTypeError, ShapeError, Tensor
from scratchzoo.nn import init
from scratchzoo.functional.layers import check_probability
from scratchzoo.nn.module import Module, Parameter, check_input, empty_parameter


class Linear(Module):
    """y = x @ W^T + b, W of shape (out_features, in_features) as in PyTorch."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = empty_parameter(out_features, in_features)
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # PyTorch's default: U(+-1/sqrt(in_features))
        if bias:
            self.bias = init.default_bias_(empty_parameter(out_features), self.weight)
        else:
            self.register_parameter("bias", None)

    def forward(self, x: Tensor) -> Tensor:
        check_input(self, x, last_dim=self.in_features)
        return F.linear(x, self.weight, self.bias)

    def describe(self) -> str:
        return f"Linear({self.in_features}->{self.out_features})"

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Identity(Module):
    """y = x (a placeholder that keeps a model's structure, e.g. when a block is switched off)."""

    def forward(self, x: Tensor) -> Tensor:
        return x


class Flatten(Module):
    """Merge dims start_dim..end_dim into one: (N, C, H, W) -> (N, C*H*W) for a Linear layer."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x: Tensor) -> Tensor:
        return F.flatten(x, self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Dropout(Module):
    """Zero each element with probability p in training and scale the rest by 1/(1-p); identity in eval."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        check_probability("Dropout", p)
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace=False"  # torch's repr; our dropout never overwrites its input


class Embedding(Module):
    """A learned lookup table: row i of `weight` is the vector of token i. Init N(0, 1) as PyTorch;
    the `padding_idx` row starts at zero and never receives a gradient."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None):
        super().__init__()
        if padding_idx is not None and not -num_embeddings <= padding_idx < num_embeddings:
            raise ValueError(f"Embedding: padding_idx must lie in [-{num_embeddings}, {num_embeddings}), got {padding_idx}")
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.padding_idx = None if padding_idx is None else padding_idx % num_embeddings
        self.weight = init.normal_(empty_parameter(num_embeddings, embedding_dim))
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx] = 0

    def forward(self, ids: Tensor) -> Tensor:
        check_input(self, ids, dtype=None)
        if ids.dtype.kind not in "iu":
            raise DTypeError(f"{self.describe()} expected integer ids, got {ids.dtype}")
        if ids.numel() and (ids.data.min() < 0 or ids.data.max() >= self.num_embeddings):
            raise IndexError(f"{self.describe()} expected ids in [0, {self.num_embeddings}), "
                             f"got min {ids.data.min()} max {ids.data.max()}")
        return F.embedding(ids, self.weight, self.padding_idx)

    def extra_repr(self) -> str:
        pad = f", padding_idx={self.padding_idx}" if self.padding_idx is not None else ""
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}"


class LayerNorm(Module):
    """Normalise each sample over its last dims (mean 0, variance 1), then scale by gamma and shift by beta.

    Unlike BatchNorm it never mixes samples or tokens: each token's vector is normalised on its own,
    so padding and batch size have no effect.
    """

    def __init__(self, normalized_shape: int | Sequence[int], eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True):
        super().__init__()
        self.normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.eps, self.elementwise_affine = eps, elementwise_affine
        if elementwise_affine:
            self.weight = Parameter(np.ones(self.normalized_shape, dtype=np.float32))
            if bias:
                self.bias = Parameter(np.zeros(self.normalized_shape, dtype=np.float32))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x: Tensor) -> Tensor:
        n = len(self.normalized_shape)
        check_input(self, x)
        if x.shape[x.ndim - n:] != self.normalized_shape:
            raise ShapeError(f"{self.describe()} expected input ending in {self.normalized_shape}, got shape {x.shape}")
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, "
                f"bias={self.bias is not None}")


class ReLU(Module):
    """y = max(x, 0), elementwise."""

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x)


class LeakyReLU(Module):
    """y = x for x > 0, negative_slope * x otherwise."""

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Sigmoid(Module):
    """y = 1 / (1 + e^-x): squashes to (0, 1), a soft on/off switch."""

    def forward(self, x: Tensor) -> Tensor:
        return F.sigmoid(x)


class Tanh(Module):
    """y = tanh(x): squashes to (-1, 1), centred on 0."""

    def forward(self, x: Tensor) -> Tensor:
        return F.tanh(x)


class GELU(Module):
    """y = x * Phi(x) (Phi the normal CDF); approximate='tanh' uses GPT-2's tanh formula."""

    def __init__(self, approximate: str = "none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(x, self.approximate)

    def extra_repr(self) -> str:
        return f"approximate='{self.approximate}'"


class SiLU(Module):
    """y = x * sigmoid(x) (also called swish)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.silu(x)


class Softmax(Module):
    """y_i = e^x_i / sum_j e^x_j along `dim`: a probability distribution."""

    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return F.softmax(x, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
