"""Elementwise functions (exp, log, activations) and the softmax family."""
from __future__ import annotations

import math

import numpy as np

from scratchzoo.autograd import Function, Tensor
from scratchzoo.special import erf
from scratchzoo.functional._base import _dim, _unary


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


def sigmoid_from_tanh_half(t: np.ndarray) -> np.ndarray:
    """sigma(x) given t = tanh(x/2):  1 / (1 + e^-x) = (1 + tanh(x/2)) / 2.  For ops that already hold
    tanh(x/2), such as the fused LSTM and GRU steps, which take every gate's tanh in one call."""
    return 0.5 * (1.0 + t)


def stable_sigmoid(x: np.ndarray) -> np.ndarray:
    """sigma(x) = 1 / (1 + e^-x) of a NumPy array, as (1 + tanh(x/2)) / 2: e^-x overflows for x < -88 in
    float32 (a warning, and inf on the way), tanh never does. The one place the formula is written: every
    op that needs a sigmoid in forward or backward (Sigmoid, SiLU, softplus, the losses) calls this."""
    return sigmoid_from_tanh_half(np.tanh(0.5 * x))


class Sigmoid(Function):
    """y = 1 / (1 + e^-x);  dy/dx = y (1 - y).  Computed by `stable_sigmoid`: no overflow."""

    def forward(self, x):
        self.y = stable_sigmoid(x)
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


# Abramowitz & Stegun 7.1.26: erfc(z) ~ t (a1 + t (a2 + t (a3 + t (a4 + t a5)))) exp(-z^2), t = 1 / (1 + p z),
# for z >= 0, within 1.5e-7 of the true value (float32 keeps ~6e-8 itself).
_AS_P = 0.3275911
_AS_A = (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)  # a5, a4, a3, a2, a1
_GELU_BLOCK = 32768  # elements per block: the block's temporaries stay in the CPU cache between the passes


def normal_cdf_and_kernel_float32(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Phi(x), exp(-x^2 / 2)) of a float32 array, computed together in cache-sized blocks.

    With z = |x| / sqrt(2): exp(-z^2) = exp(-x^2 / 2) is both A&S 7.1.26's factor of erfc(z) and (up to
    1 / sqrt(2 pi)) the normal density phi(x) that GELU's backward needs, so one exp serves both.
    Phi(-|x|) = erfc(z) / 2, and Phi(x) = 1 - Phi(-|x|) for x >= 0.
    """
    flat = np.ascontiguousarray(x).reshape(-1)
    cdf, kernel = np.empty_like(flat), np.empty_like(flat)
    for start in range(0, flat.size, _GELU_BLOCK):
        xs, cs, es = (a[start:start + _GELU_BLOCK] for a in (flat, cdf, kernel))
        np.multiply(xs, xs, out=es)
        es *= -0.5
        np.exp(es, out=es)                          # exp(-x^2 / 2)
        t = np.abs(xs)
        t *= _AS_P / math.sqrt(2.0)
        t += 1.0
        np.reciprocal(t, out=t)                     # t = 1 / (1 + p z)
        h = t * _AS_A[0]
        for a in _AS_A[1:]:
            h += a
            h *= t                                  # Horner: t (a1 + t (a2 + ... + t a5))
        h *= es
        h *= 0.5                                    # Phi(-|x|) = erfc(z) / 2, at most 1/2
        np.subtract(0.5, h, out=h)
        np.copysign(h, xs, out=h)
        np.add(h, 0.5, out=cs)                      # Phi(x) = 1/2 + sign(x) (1/2 - Phi(-|x|))
    return cdf.reshape(x.shape), kernel.reshape(x.shape)


class GELU(Function):
    """y = x * Phi(x), Phi the standard normal CDF;  dy/dx = Phi(x) + x * phi(x).

    approximate='tanh' uses Phi(x) ~ (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2 (GPT-2's form).
    Exact GELU in float32 takes Phi and exp(-x^2/2) from `normal_cdf_and_kernel_float32` (one exp, cache-
    blocked; it was a quarter of a GPT training step when computed through the float64 erf); float64 uses
    special.erf (Cody, ~1e-16).
    """

    def forward(self, x, approximate):
        self.x, self.approximate = x, approximate
        if approximate == "tanh":
            inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)
            self.t = np.tanh(inner)
            return 0.5 * x * (1.0 + self.t)
        if x.dtype == np.float32:
            self.cdf, self.kernel = normal_cdf_and_kernel_float32(x)
        else:
            self.cdf, self.kernel = 0.5 * (1.0 + erf(x * (1.0 / math.sqrt(2.0)))), None
        return x * self.cdf

    def backward(self, grad):
        x = self.x
        if self.approximate == "tanh":
            d_inner = math.sqrt(2.0 / math.pi) * (1.0 + 3 * 0.044715 * x * x)
            return grad * (0.5 * (1.0 + self.t) + 0.5 * x * (1.0 - self.t * self.t) * d_inner)
        kernel = np.exp(-0.5 * x * x) if self.kernel is None else self.kernel  # exp(-x^2 / 2)
        d = x * kernel
        d *= 1.0 / math.sqrt(2.0 * math.pi)             # x phi(x)
        d += self.cdf
        d *= grad                                       # dy (Phi(x) + x phi(x))
        return d


class SiLU(Function):
    """y = x * sigmoid(x);  dy/dx = s + x s (1 - s) = s (1 + x (1 - s))."""

    def forward(self, x):
        self.x = x
        self.s = stable_sigmoid(x)
        return x * self.s

    def backward(self, grad):
        return grad * self.s * (1.0 + self.x * (1.0 - self.s))


def exp(x: Tensor) -> Tensor:
    return _unary("exp", Exp, x)


def log(x: Tensor) -> Tensor:
    return _unary("log", Log, x)


def sqrt(x: Tensor) -> Tensor:
    return _unary("sqrt", Sqrt, x)


def abs(x: Tensor) -> Tensor:
    return _unary("abs", Abs, x)


def clamp(x: Tensor, min: float | None = None, max: float | None = None) -> Tensor:
    if min is None and max is None:
        raise ValueError("clamp: give at least one of min and max")
    return _unary("clamp", Clamp, x, low=min, high=max)


def tanh(x: Tensor) -> Tensor:
    return _unary("tanh", Tanh, x)


def sigmoid(x: Tensor) -> Tensor:
    return _unary("sigmoid", Sigmoid, x)


def relu(x: Tensor) -> Tensor:
    return _unary("relu", LeakyReLU, x, slope=0.0)


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    return _unary("leaky_relu", LeakyReLU, x, slope=float(negative_slope))


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return _unary("gelu", GELU, x, approximate=approximate)


def silu(x: Tensor) -> Tensor:
    return _unary("silu", SiLU, x)


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
    return _unary("softmax", Softmax, x, dim=_dim(dim, x.ndim, "softmax"))


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    return _unary("log_softmax", LogSoftmax, x, dim=_dim(dim, x.ndim, "log_softmax"))
