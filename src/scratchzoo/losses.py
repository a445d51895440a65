"""Loss functions: fused, numerically stable forms with their backward (part of the engine layer).

The classification losses never exponentiate a raw logit: log-softmax subtracts the row maximum
first (log-sum-exp), so logits of 1e4 give finite losses and gradients.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from scratchzoo.autograd import DTypeError, Function, ShapeError, Tensor, _as_array
from scratchzoo.functional._base import _float_tensor
from scratchzoo.functional.elementwise import stable_sigmoid

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


def _float_target(name: str, input: Tensor, target: Any) -> Tensor:
    """The one rule every loss follows for a float-valued target (values, probabilities, labels in [0, 1]).

    A float Tensor is part of the graph (it may require grad), so it must already have the input's
    dtype: float32 and float64 never mix silently. Anything else (a NumPy array, a list, a number, an
    integer or bool Tensor) carries no graph, so it is taken in the input's dtype, as a constant;
    a target that is not numeric (None, a string) is a DTypeError naming the loss.
    """
    if isinstance(target, Tensor) and target.dtype.kind == "f":
        if target.dtype != input.dtype:
            raise DTypeError(f"{name}: target tensor has dtype {target.dtype} but the input has {input.dtype}; "
                             "convert one with .to(dtype)")
        return target
    return Tensor(_as_array(target, input.dtype, name, "target"))


def mse_loss(input: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Mean squared error: mean((input - target)^2); 'sum' gives N times the mean."""
    input = _float_tensor("mse_loss", input, "input")
    target = _float_target("mse_loss", input, target)
    _same_shape("mse_loss", input, target)
    diff = input - target
    return _reduce(diff * diff, reduction, "mse_loss")


def l1_loss(input: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Mean absolute error: mean(|input - target|)."""
    input = _float_tensor("l1_loss", input, "input")
    target = _float_target("l1_loss", input, target)
    _same_shape("l1_loss", input, target)
    return _reduce((input - target).abs(), reduction, "l1_loss")


class SoftmaxCrossEntropy(Function):
    """Per-row loss l = -sum_c q_c log softmax(z)_c for logits z of shape (M, C).

    The target distribution q is either class indices t with label smoothing eps
    (q = (1 - eps) one_hot(t) + eps / C) or given probabilities t (smoothed the same way,
    q = (1 - eps) t + eps / C). Rows whose index is ignore_index have q = 0.
    Backward, fused: dl/dz = softmax(z) * sum_c q_c - q. Probabilities are an input of the graph
    too: dl/dt_c = -(1 - eps) log softmax(z)_c (indices get no gradient).
    """

    def forward(self, logits, target, is_index, ignore_index, smoothing):
        num_classes = logits.shape[1]
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        self.is_index, self.smoothing = is_index, smoothing
        if is_index:
            self.probs = np.exp(log_probs)
            self.kept = target != ignore_index
            self.target = np.where(self.kept, target, 0)
            picked = np.take_along_axis(log_probs, self.target[:, None], axis=1)[:, 0]
            loss = -(1.0 - smoothing) * picked - smoothing / num_classes * log_probs.sum(axis=1)
            loss = np.where(self.kept, loss, 0.0)
        else:
            self.log_probs = log_probs  # softmax(z) = exp(log_probs), recomputed in backward
            self.q = target * (1.0 - smoothing) + smoothing / num_classes
            loss = -(self.q * log_probs).sum(axis=1)
        return loss.astype(logits.dtype, copy=False)

    def backward(self, grad):
        if self.is_index:
            num_classes = self.probs.shape[1]
            dlogits = self.probs - self.smoothing / num_classes
            rows = np.arange(len(self.target))
            dlogits[rows, self.target] -= 1.0 - self.smoothing
            dlogits *= (grad * self.kept)[:, None]
            return dlogits, None
        dlogits = dtarget = None
        if self.needs_input_grad[0]:
            probs = np.exp(self.log_probs)
            dlogits = grad[:, None] * (probs * self.q.sum(axis=1, keepdims=True) - self.q)
        if self.needs_input_grad[1]:
            dtarget = grad[:, None] * (-(1.0 - self.smoothing) * self.log_probs)
        return dlogits, dtarget


def _class_dim_last(x: Tensor) -> Tensor:
    """(N, C, d1, ...) -> (N * d1 * ..., C): PyTorch puts classes in dim 1; rows are easier."""
    if x.ndim <= 2:
        return x.reshape(-1, x.shape[-1])
    order = (0,) + tuple(range(2, x.ndim)) + (1,)
    return x.permute(order).reshape(-1, x.shape[1])


def _batch_shape(name: str, input: Tensor) -> tuple[int, ...]:
    """(C,) -> (); (N, C, d1, ...) -> (N, d1, ...): the shape of the class-index target. A 0-d input has no
    class dim, so it is a ShapeError naming the loss."""
    if input.ndim == 0:
        raise ShapeError(f"{name}: input needs a class dim, (C,), (N, C) or (N, C, d1, ...), got a 0-d tensor")
    return (input.shape[0],) + input.shape[2:] if input.ndim >= 2 else ()


def _check_class_indices(name: str, input: Tensor, target: np.ndarray, ignore_index: int) -> None:
    """Class indices need the input's batch shape and must lie in [0, C) (or equal ignore_index)."""
    batch_shape = _batch_shape(name, input)
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
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must lie in [0, 1], got {label_smoothing}")
    input = _float_tensor("cross_entropy", input, "input")
    indices = target.data if isinstance(target, Tensor) else np.asarray(target)  # class indices, if integers
    is_index = indices.dtype.kind in "iu"
    batch_shape = _batch_shape("cross_entropy", input)
    if is_index:
        _check_class_indices("cross_entropy", input, indices, ignore_index)
        rows_target = Tensor(indices.reshape(-1))
    else:  # probabilities: a float Tensor keeps its graph (and must match the logits' dtype)
        target = _float_target("cross_entropy", input, target)
        if target.shape != input.shape:
            raise ShapeError(f"cross_entropy: probability targets need the logits' shape {input.shape}, "
                             f"got {target.shape}")
        rows_target = _class_dim_last(target)
    logits = _class_dim_last(input) if input.ndim >= 2 else input.reshape(1, -1)
    losses = SoftmaxCrossEntropy.apply(logits, rows_target, is_index=is_index,
                                       ignore_index=ignore_index, smoothing=label_smoothing)
    if reduction == "mean" and is_index:
        kept = int((rows_target.data != ignore_index).sum())
        return losses.sum() / float(kept) if kept else losses.sum() * float("nan")
    if reduction == "none":
        return losses.reshape(batch_shape)
    return _reduce(losses, reduction, "cross_entropy")


def nll_loss(input: Tensor, target: Any, ignore_index: int = -100, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of log-probabilities: -input[n, target[n]] (averaged over kept rows)."""
    input = _float_tensor("nll_loss", input, "input")
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
    dl/dz = sigmoid(z) - y,  dl/dy = -z (soft targets may require grad, as in PyTorch)."""

    def forward(self, logits, target):
        self.logits, self.target = logits, target
        return np.maximum(logits, 0) - logits * target + np.log1p(np.exp(-np.abs(logits)))

    def backward(self, grad):
        grad_logits = grad_target = None
        if self.needs_input_grad[0]:
            grad_logits = grad * (stable_sigmoid(self.logits) - self.target)  # no overflow at |z| = 1e4
        if self.needs_input_grad[1]:
            grad_target = -grad * self.logits
        return grad_logits, grad_target


def binary_cross_entropy_with_logits(input: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Sigmoid + binary cross-entropy in one stable op; target: probabilities of the input's shape."""
    input = _float_tensor("binary_cross_entropy_with_logits", input, "input")
    target = _float_target("binary_cross_entropy_with_logits", input, target)
    _same_shape("binary_cross_entropy_with_logits", input, target)
    return _reduce(BCEWithLogits.apply(input, target), reduction, "binary_cross_entropy_with_logits")
