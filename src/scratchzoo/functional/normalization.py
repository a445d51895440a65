"""Batch normalisation as one fused op.

For each channel c, over every value of that channel in the batch (axes N, H, W: all but axis 1),
    mean_c = average,  var_c = average squared deviation (biased),  x_hat = (x - mean_c) / sqrt(var_c + eps)
    y = gamma_c * x_hat + beta_c
A (N, 64, H, W) batch therefore gives 64 means and 64 variances. In training the batch's own statistics
are used and folded into running estimates,
    running = (1 - momentum) * running + momentum * batch_statistic
(the variance with the unbiased m/(m-1) correction, m = N*H*W, as PyTorch); in eval the running
estimates replace the batch statistics, so one sample's output no longer depends on its batch mates.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from scratchzoo.autograd import DTypeError, Function, ShapeError, Tensor
from scratchzoo.functional._base import as_tensor


def _stat_shape(x: np.ndarray) -> tuple[int, ...]:
    """(C,) statistics broadcast against x as (1, C, 1, ...)."""
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


def _as_rows(a: np.ndarray) -> np.ndarray | None:
    """A channels-last array (a convolution's output) as a (pixels, C) view; None for other layouts."""
    moved = np.moveaxis(a, 1, -1)
    return moved.reshape(-1, a.shape[1]) if moved.flags.c_contiguous else None


def channel_sum(a: np.ndarray) -> np.ndarray:
    """sum over every axis but 1: (C,). A channels-last array is summed down the columns of its (pixels, C)
    view; a channels-first one along the rows of its (N, C, rest) view. (einsum rather than ones @ rows:
    a threaded BLAS call waits for its second thread, which a busy 2-core machine may not schedule soon.)"""
    rows = _as_rows(a)
    if rows is not None:
        return np.einsum("mc->c", rows)
    if a.flags.c_contiguous:
        return a.reshape(a.shape[0], a.shape[1], -1).sum(axis=2).sum(axis=0)
    return a.sum(axis=(0,) + tuple(range(2, a.ndim)))


def channel_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """sum over every axis but 1 of a * b, without the temporary a * b: (C,)."""
    rows_a, rows_b = _as_rows(a), _as_rows(b)
    if rows_a is not None and rows_b is not None:
        return np.einsum("mc,mc->c", rows_a, rows_b)
    if a.flags.c_contiguous and b.flags.c_contiguous:
        shape = (a.shape[0], a.shape[1], -1)
        return np.einsum("ncl,ncl->c", a.reshape(shape), b.reshape(shape))
    return channel_sum(a * b)


class BatchNormOp(Function):
    """Fused batch norm: y = x_hat * gamma + beta, with per-channel statistics (see the module docstring).

    Backward, with m values per channel, sums over them and x_hat = (x - mean) * inv_std:
        dgamma = sum(g * x_hat),  dbeta = sum(g)
        training:  dx = gamma * inv_std / m * (m * g - sum(g) - x_hat * sum(g * x_hat))
                   (the mean and variance depend on x too, hence the two correction terms)
        eval:      dx = gamma * inv_std * g   (the running statistics are constants)
    Only x - mean is kept for backward (x_hat is that times inv_std, folded into per-channel factors), and
    every whole-array step works in the input's memory order (channels-last after a convolution).
    """

    def forward(self, x, weight, bias, *, running_mean, running_var, training, momentum, eps):
        shape = _stat_shape(x)
        self.count = m = x.size // x.shape[1]
        self.training = training
        if training:
            mean = channel_sum(x) / x.dtype.type(m)
            centered = x - mean.reshape(shape)
            var = channel_dot(centered, centered) / x.dtype.type(m)  # biased: this batch is normalised by it
            if running_mean is not None:  # in place: the caller's buffers move towards the batch's
                running_mean *= 1 - momentum
                running_mean += momentum * mean
                running_var *= 1 - momentum
                running_var += momentum * var * (m / (m - 1))  # unbiased estimate for inference
        else:
            var = running_var
            centered = x - running_mean.astype(x.dtype, copy=False).reshape(shape)
        self.inv_std = (1.0 / np.sqrt(var + eps)).astype(x.dtype, copy=False)  # (C,)
        self.centered, self.weight = centered, weight
        y = np.multiply(centered, (weight * self.inv_std).reshape(shape))  # x_hat * gamma, in one pass
        y += bias.reshape(shape)
        return y

    def backward(self, grad):
        shape, needs, inv_std = _stat_shape(grad), self.needs_input_grad, self.inv_std
        sum_g = channel_sum(grad) if needs[2] or (needs[0] and self.training) else None
        sum_g_xhat = channel_dot(grad, self.centered) * inv_std if needs[1] or (needs[0] and self.training) else None
        grad_x = None
        if needs[0]:
            scale = self.weight * inv_std  # dy/dx_hat * dx_hat/dx for a constant mean and variance
            grad_x = grad * scale.reshape(shape)
            if self.training:
                m = grad.dtype.type(self.count)
                grad_x -= self.centered * (scale * inv_std * sum_g_xhat / m).reshape(shape)
                grad_x -= (scale * sum_g / m).reshape(shape)
        return grad_x, (sum_g_xhat if needs[1] else None), (sum_g if needs[2] else None)


def batch_norm(x: Tensor, running_mean: Any, running_var: Any, weight: Tensor | None = None,
               bias: Tensor | None = None, training: bool = False, momentum: float = 0.1,
               eps: float = 1e-5) -> Tensor:
    """Batch normalisation of x (N, C, ...) over every axis but the channel axis 1 (PyTorch's signature).

    running_mean / running_var: (C,) arrays or tensors, updated in place when training (or None: then
    training must be True and nothing is tracked). weight/bias (gamma/beta): (C,) or None (1 and 0).
    """
    x = as_tensor(x)
    if x.dtype.kind != "f":
        raise DTypeError(f"batch_norm: needs a floating-point tensor, got {x.dtype}")
    if x.ndim < 2:
        raise ShapeError(f"batch_norm: expected an input (N, C, ...) with at least 2 dims, got shape {x.shape}")
    channels = x.shape[1]
    if training and x.numel() // channels <= 1:
        raise ValueError(f"batch_norm: expected more than 1 value per channel when training, got input shape "
                         f"{x.shape}")
    stats = [None if s is None else (s.data if isinstance(s, Tensor) else np.asarray(s))
             for s in (running_mean, running_var)]
    if (stats[0] is None) != (stats[1] is None):
        raise ValueError("batch_norm: give both running_mean and running_var, or neither")
    if stats[0] is None and not training:
        raise ValueError("batch_norm: eval mode needs running_mean and running_var")
    for name, s in zip(("running_mean", "running_var"), stats):
        if s is not None and s.shape != (channels,):
            raise ShapeError(f"batch_norm: {name} of shape {s.shape}, expected ({channels},) for input {x.shape}")
    params = []
    for name, p, default in (("weight", weight, 1.0), ("bias", bias, 0.0)):
        p = Tensor(np.full(channels, default, dtype=x.dtype)) if p is None else as_tensor(p, x)
        if p.shape != (channels,):
            raise ShapeError(f"batch_norm: {name} of shape {p.shape}, expected ({channels},)")
        if p.dtype != x.dtype:
            raise DTypeError(f"batch_norm: cannot mix input {x.dtype} and {name} {p.dtype}; "
                             "convert one with .to(dtype)")
        params.append(p)
    if momentum is None or not math.isfinite(momentum):
        raise ValueError(f"batch_norm: momentum must be a number, got {momentum} (the modules turn "
                         "momentum=None into the cumulative average 1/num_batches_tracked)")
    return BatchNormOp.apply(x, *params, running_mean=stats[0], running_var=stats[1], training=bool(training),
                             momentum=float(momentum), eps=float(eps))
