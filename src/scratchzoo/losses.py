"""Loss functions: fused, numerically stable forms with their backward (part of the engine layer).

The classification losses never exponentiate a raw logit: log-softmax subtracts the row maximum
first (log-sum-exp), so logits of 1e4 give finite losses and gradients.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from scratchzoo import functional as F
from scratchzoo.autograd import DTypeError, Function, ShapeError, Tensor

_REDUCTIONS = ("mean", "sum", "none")


def _reduce(loss: Tensor, reduction: str, name: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"{name}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _same_shape(name: str, input: Tensor, target: Tensor) -> None:
    if input.shape != target.shape:
        raise ShapeError(f"{name}: input and target need the same shape, got {input.shape} and {target.shape}")


def mse_loss(input: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Mean squared error: mean((input - target)^2); 'sum' gives N times the mean."""
    target = F.as_tensor(target, input)
    _same_shape("mse_loss", input, target)
    diff = input - target
    return _reduce(diff * diff, reduction, "mse_loss")


def l1_loss(input: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Mean absolute error: mean(|input - target|)."""
    target = F.as_tensor(target, input)
    _same_shape("l1_loss", input, target)
    return _reduce((input - target).abs(), reduction, "l1_loss")


class SoftmaxCrossEntropy(Function):
    """Per-row loss l = -sum_c q_c log softmax(z)_c for logits z of shape (M, C).

    The target distribution q is either class indices with label smoothing eps
    (q = (1 - eps) one_hot + eps / C) or given probabilities (smoothed the same way).
    Backward, fused: dl/dz = softmax(z) * sum_c q_c - q. Rows whose index is ignore_index have q = 0.
    """

    def forward(self, logits, target, is_index, ignore_index, smoothing):
        num_classes = logits.shape[1]
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        self.probs = np.exp(log_probs)
        if is_index:
            self.kept = target != ignore_index
            self.target = np.where(self.kept, target, 0)
            picked = np.take_along_axis(log_probs, self.target[:, None], axis=1)[:, 0]
            loss = -(1.0 - smoothing) * picked - smoothing / num_classes * log_probs.sum(axis=1)
            loss = np.where(self.kept, loss, 0.0)
        else:
            self.q = target * (1.0 - smoothing) + smoothing / num_classes
            loss = -(self.q * log_probs).sum(axis=1)
        self.is_index, self.smoothing = is_index, smoothing
        return loss.astype(logits.dtype, copy=False)

    def backward(self, grad):
        num_classes = self.probs.shape[1]
        if self.is_index:
            dlogits = self.probs - self.smoothing / num_classes
            rows = np.arange(len(self.target))
            dlogits[rows, self.target] -= 1.0 - self.smoothing
            dlogits *= (grad * self.kept)[:, None]
            return dlogits
        return grad[:, None] * (self.probs * self.q.sum(axis=1, keepdims=True) - self.q)


def _class_dim_last(x: Tensor) -> Tensor:
    """(N, C, d1, ...) -> (N * d1 * ..., C): PyTorch puts classes in dim 1; rows are easier."""
    if x.ndim <= 2:
        return x.reshape(-1, x.shape[-1])
    order = (0,) + tuple(range(2, x.ndim)) + (1,)
    return x.permute(order).reshape(-1, x.shape[1])


def _batch_shape(input: Tensor) -> tuple[int, ...]:
    """(C,) -> (); (N, C, d1, ...) -> (N, d1, ...): the shape of the class-index target."""
    return (input.shape[0],) + input.shape[2:] if input.ndim >= 2 else ()


def _check_class_indices(name: str, input: Tensor, target: np.ndarray, ignore_index: int) -> None:
    """Class indices need the input's batch shape and must lie in [0, C) (or equal ignore_index)."""
    batch_shape = _batch_shape(input)
    if target.shape != batch_shape:
        raise ShapeError(f"{name}: input of shape {input.shape} needs class indices of shape "
                         f"{batch_shape}, got {target.shape}")
    classes = target[target != ignore_index]
    num_classes = input.shape[1] if input.ndim >= 2 else input.shape[0]
    if classes.size and (classes.min() < 0 or classes.max() >= num_classes):
        raise IndexError(f"{name}: class indices must lie in [0, {num_classes}), "
                         f"got min {classes.min()} max {classes.max()}")


def cross_entropy(input: Tensor, target: Any, ignore_index: int = -100, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """Softmax + negative log-likelihood in one stable op, with PyTorch's shapes and options.

    input: (C,), (N, C) or (N, C, d1, ...) logits. target: class indices of shape (), (N,) or
    (N, d1, ...), or probabilities of the input's shape. With indices, 'mean' averages over the rows
    that are not ignore_index.
    """
    target = target if isinstance(target, Tensor) else Tensor(np.asarray(target))
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must lie in [0, 1], got {label_smoothing}")
    if input.dtype.kind != "f":
        raise DTypeError(f"cross_entropy: logits must be floating point, got {input.dtype}")
    is_index = target.dtype.kind in "iu"
    batch_shape = _batch_shape(input)
    if not is_index and target.shape != input.shape:
        raise ShapeError(f"cross_entropy: probability targets need the logits' shape {input.shape}, got {target.shape}")
    if is_index:
        _check_class_indices("cross_entropy", input, target.data, ignore_index)
        rows_target = target.data.reshape(-1)
    else:
        rows_target = _class_dim_last(F.as_tensor(target, input)).data.astype(input.dtype, copy=False)
    logits = _class_dim_last(input) if input.ndim >= 2 else input.reshape(1, -1)
    losses = SoftmaxCrossEntropy.apply(logits, target=rows_target, is_index=is_index,
                                       ignore_index=ignore_index, smoothing=label_smoothing)
    if reduction == "mean" and is_index:
        kept = int((rows_target != ignore_index).sum())
        return losses.sum() / float(kept) if kept else losses.sum() * float("nan")
    if reduction == "none":
        return losses.reshape(batch_shape)
    return _reduce(losses, reduction, "cross_entropy")


def nll_loss(input: Tensor, target: Any, ignore_index: int = -100, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of log-probabilities: -input[n, target[n]] (averaged over kept rows)."""
    target = np.asarray(target.data if isinstance(target, Tensor) else target)
    if target.dtype.kind not in "iu":
        raise DTypeError(f"nll_loss: target must hold class indices (integers), got {target.dtype}")
    _check_class_indices("nll_loss", input, target, ignore_index)
    log_probs = _class_dim_last(input) if input.ndim >= 2 else input.reshape(1, -1)
    rows_target = target.reshape(-1)
    kept = rows_target != ignore_index
    picked = log_probs[np.arange(rows_target.size), np.where(kept, rows_target, 0)]
    losses = -picked * Tensor(kept.astype(input.dtype))
    if reduction == "mean":
        return losses.sum() / float(kept.sum())
    if reduction == "none":
        return losses.reshape(target.shape)
    return _reduce(losses, reduction, "nll_loss")


class BCEWithLogits(Function):
    """l = max(z, 0) - z*y + log(1 + e^-|z|)  (= -y log s(z) - (1-y) log(1 - s(z)), never overflows);
    dl/dz = sigmoid(z) - y."""

    def forward(self, logits, target):
        self.target = target
        self.sigmoid = 0.5 * (1.0 + np.tanh(0.5 * logits))
        return np.maximum(logits, 0) - logits * target + np.log1p(np.exp(-np.abs(logits)))

    def backward(self, grad):
        return grad * (self.sigmoid - self.target)


def binary_cross_entropy_with_logits(input: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    target = F.as_tensor(target, input)
    _same_shape("binary_cross_entropy_with_logits", input, target)
    return _reduce(BCEWithLogits.apply(input, target=target.data.astype(input.dtype, copy=False)),
                   reduction, "binary_cross_entropy_with_logits")
