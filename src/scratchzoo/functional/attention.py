"""Scaled dot-product attention as one fused op: y = softmax(q k^T / sqrt(d) + mask) v.

Shapes: q (..., Tq, d), k (..., Tk, d), v (..., Tk, dv) -> y (..., Tq, dv); the leading dims broadcast.
Masks follow torch.nn.functional.scaled_dot_product_attention: a bool mask says True = "may attend",
a float mask is added to the scores (-inf forbids). A row with nothing to attend to gives zeros (and
zero gradients), not the NaN of 0/0.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from scratchzoo.autograd import DTypeError, Function, ShapeError, Tensor, unbroadcast
from scratchzoo.functional._base import _sizes, as_tensor
from scratchzoo.functional.layers import dropout_mask


def _swap(a: np.ndarray) -> np.ndarray:
    return np.swapaxes(a, -1, -2)


def _attention_weights(q: np.ndarray, k: np.ndarray, allowed: np.ndarray | None, additive: np.ndarray | None,
                       scale: float) -> np.ndarray:
    """w = softmax(q k^T * scale + additive, masked where not allowed), stable; fully masked rows -> 0."""
    scores = (q @ _swap(k)) * q.dtype.type(scale)  # s = q k^T / sqrt(d): (..., Tq, Tk)
    if additive is not None:
        scores = scores + additive
    if allowed is not None:
        scores = np.where(allowed, scores, q.dtype.type(-np.inf))
    top = scores.max(axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, q.dtype.type(0))  # fully masked row: no max to subtract
    e = np.exp(scores - top)  # exp(-inf) = 0 for masked entries
    total = e.sum(axis=-1, keepdims=True)
    return e / np.where(total > 0, total, q.dtype.type(1))  # 0 / 1 = 0 on fully masked rows


class _AttentionBase(Function):
    """The part both ops share: the state backward needs, and the softmax + score backward.

    The weights w = softmax(s) of the scores s = q k^T * scale + mask come in ready-made (computed once by
    `scaled_dot_product_attention`, even when both ops use them). From dL/dw:
    ds = w * (dw - sum_j dw_j w_j)  (softmax; zero where w is zero, masked or not),
    d(mask) = ds summed over the axes the float mask was broadcast along (it is added to the scores),
    dq = ds k * scale,  dk = ds^T q * scale.
    """

    mask_input: int  # where the optional float mask sits among the op's tensor inputs

    def _keep(self, q, k, mask, weights, scale):
        self.q, self.k, self.w, self.scale = q, k, weights, scale
        self.mask_shape = None if mask is None else mask.shape  # the mask's values are not needed

    def _score_grads(self, grad_w):
        w = self.w
        ds = w * (grad_w - (grad_w * w).sum(axis=-1, keepdims=True))
        grad_mask = None
        if self.mask_shape is not None and self.needs_input_grad[self.mask_input]:
            grad_mask = unbroadcast(ds, self.mask_shape)
            ds = ds * ds.dtype.type(self.scale)  # not in place: grad_mask may be ds itself
        else:
            ds *= ds.dtype.type(self.scale)
        grad_q = unbroadcast(ds @ self.k, self.q.shape) if self.needs_input_grad[0] else None
        grad_k = unbroadcast(_swap(ds) @ self.q, self.k.shape) if self.needs_input_grad[1] else None
        return grad_q, grad_k, grad_mask


class ScaledDotProductAttention(_AttentionBase):
    """y = dropout(w) v with w = softmax(q k^T / sqrt(d) + mask), fused into one graph node.

    Inputs q, k, v and, when there is one, the float mask (a tensor that may require grad).
    Backward (w' = dropout(w) = w * m):  dv = w'^T dy,  dw' = dy v^T,  dw = dw' * m,
    then the shared softmax/score backward gives dq, dk and d(mask).
    """

    mask_input = 3

    def forward(self, q, k, v, mask=None, *, weights, scale, dropout_p=0.0):
        self._keep(q, k, mask, weights, scale)
        self.v, self.drop_mask = v, None
        if dropout_p > 0.0:
            self.drop_mask = dropout_mask(weights.shape, dropout_p, weights.dtype)  # one draw per weight
            return (weights * self.drop_mask) @ v
        return weights @ v

    def backward(self, grad):
        wants = self.needs_input_grad
        if wants[2]:
            w_used = self.w if self.drop_mask is None else self.w * self.drop_mask  # w' again, not kept
            grad_v = unbroadcast(_swap(w_used) @ grad, self.v.shape)
        else:
            grad_v = None
        if not any(wants[:2] + wants[3:]):  # neither q, k nor a mask wants the score gradient
            return None, None, grad_v, None
        grad_w = grad @ _swap(self.v)  # dw' = dy v^T
        if self.drop_mask is not None:
            grad_w = grad_w * self.drop_mask
        grad_q, grad_k, grad_mask = self._score_grads(grad_w)
        return grad_q, grad_k, grad_v, grad_mask


class AttentionWeights(_AttentionBase):
    """w = softmax(q k^T / sqrt(d) + mask), the weights alone (for need_weights and visualisation).

    Inputs q, k and, when there is one, the float mask; the weights come in computed (shared with the
    ScaledDotProductAttention node of the same call), this node adds their backward to the graph."""

    mask_input = 2

    def forward(self, q, k, mask=None, *, weights, scale):
        self._keep(q, k, mask, weights, scale)
        return weights

    def backward(self, grad):
        return self._score_grads(grad)


def causal_mask(tq: int, tk: int, past: int = 0) -> np.ndarray:
    """(tq, tk) bool, True = may attend: query i sits at position past + i (after `past` cached positions)
    and sees keys 0..past + i, never a later one. past = 0 is torch's top-left aligned is_causal mask."""
    _sizes("causal_mask", (tq, tk, past), "tq, tk and past")
    return np.tril(np.ones((tq, tk), dtype=bool), k=past)


def float_mask(mask: Any, dtype: np.dtype, owner: str, name: str) -> Tensor:
    """A float mask added to the scores, as a Tensor of the scores' dtype: the mask itself when it is a Tensor
    that requires grad (the attention op then returns its gradient, as torch does; it must already have that
    dtype), else a constant cast to it. `owner` and `name` (the op or layer, the argument) name an error."""
    if isinstance(mask, Tensor) and mask.requires_grad:
        if mask.dtype != dtype:
            raise DTypeError(f"{owner}: {name} that requires grad must have the scores' dtype {dtype}, "
                             f"got {mask.dtype}")
        return mask
    array = np.asarray(mask.data if isinstance(mask, Tensor) else mask)
    if array.dtype.kind != "f":
        raise DTypeError(f"{owner}: {name} must be bool or float, got {array.dtype}")
    return Tensor(array.astype(dtype, copy=False))


def _masks(attn_mask: Any, is_causal: bool, scores_shape: tuple[int, ...],
           dtype: np.dtype) -> tuple[np.ndarray | None, Tensor | None]:
    """(allowed: bool array or None, additive: float mask Tensor or None) from torch's SDPA conventions.

    A float mask that is a Tensor requiring grad stays that Tensor (the op returns its gradient, as
    torch does); any other float mask becomes a constant of the scores' dtype. Bool masks are constants.
    """
    allowed, additive = None, None
    if attn_mask is not None:
        mask = np.asarray(attn_mask.data if isinstance(attn_mask, Tensor) else attn_mask)
        if mask.dtype == np.bool_:
            allowed = mask
        else:
            additive = float_mask(attn_mask, dtype, "scaled_dot_product_attention", "attn_mask")
        try:
            fits = mask.ndim <= len(scores_shape) and np.broadcast_shapes(mask.shape, scores_shape) == scores_shape
        except ValueError:
            fits = False
        if not fits:
            raise ShapeError(f"scaled_dot_product_attention: attn_mask of shape {mask.shape} does not broadcast "
                             f"to the scores' shape {scores_shape} (batch..., Tq, Tk)")
    if is_causal:
        causal = causal_mask(*scores_shape[-2:])
        allowed = causal if allowed is None else (allowed & causal)
    return allowed, additive


def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, attn_mask: Any = None, is_causal: bool = False,
                                 dropout_p: float = 0.0, need_weights: bool = False,
                                 scale: float | None = None) -> Any:
    """softmax(q k^T / sqrt(d_k) + mask) v, one fused op; `(y, weights)` when need_weights.

    attn_mask: bool (True = may attend) or float (added to the scores; a Tensor that requires grad gets
    its gradient), broadcasting to the scores (..., Tq, Tk). is_causal: query i attends to keys 0..i only.
    dropout_p: dropout on the weights (pass 0 in eval). The weights returned are before dropout (the
    attention distribution itself); they are computed once and shared by both outputs.
    """
    q, k, v = as_tensor(q), as_tensor(k), as_tensor(v)
    for name, t in (("k", k), ("v", v)):
        if t.dtype != q.dtype:
            raise DTypeError(f"scaled_dot_product_attention: q is {q.dtype} but {name} is {t.dtype}")
    if q.dtype.kind != "f":
        raise DTypeError(f"scaled_dot_product_attention: needs floating-point tensors, got {q.dtype}")
    try:
        if q.ndim < 2 or k.ndim < 2 or v.ndim < 2 or q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
            raise ValueError
        batch = np.broadcast_shapes(q.shape[:-2], k.shape[:-2])
        np.broadcast_shapes(batch, v.shape[:-2])
    except ValueError:
        raise ShapeError(f"scaled_dot_product_attention: expected q (..., Tq, d), k (..., Tk, d), v (..., Tk, dv), "
                         f"got q {q.shape}, k {k.shape}, v {v.shape}") from None
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"scaled_dot_product_attention: dropout_p must lie in [0, 1), got {dropout_p}")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    allowed, additive = _masks(attn_mask, is_causal, batch + (q.shape[-2], k.shape[-2]), q.dtype)
    masks = () if additive is None else (additive,)
    weights = _attention_weights(q.data, k.data, allowed, None if additive is None else additive.data, scale)
    y = ScaledDotProductAttention.apply(q, k, v, *masks, weights=weights, scale=scale, dropout_p=dropout_p)
    if not need_weights:
        return y
    return y, AttentionWeights.apply(q, k, *masks, weights=weights, scale=scale)
