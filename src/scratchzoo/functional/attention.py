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
from scratchzoo.functional._base import as_tensor
from scratchzoo.rng import generator


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
    """The part both ops share: the weights forward, and the softmax + score backward.

    From dL/dw: ds = w * (dw - sum_j dw_j w_j)  (softmax; zero where w is zero, masked or not),
    dq = ds k * scale,  dk = ds^T q * scale.
    """

    def _weights(self, q, k, allowed, additive, scale):
        self.q, self.k, self.scale = q, k, scale
        self.w = _attention_weights(q, k, allowed, additive, scale)
        return self.w

    def _score_grads(self, grad_w):
        w = self.w
        ds = w * (grad_w - (grad_w * w).sum(axis=-1, keepdims=True))
        ds *= ds.dtype.type(self.scale)
        grad_q = unbroadcast(ds @ self.k, self.q.shape) if self.needs_input_grad[0] else None
        grad_k = unbroadcast(_swap(ds) @ self.q, self.k.shape) if self.needs_input_grad[1] else None
        return grad_q, grad_k


class ScaledDotProductAttention(_AttentionBase):
    """y = dropout(w) v with w = softmax(q k^T / sqrt(d) + mask), fused into one graph node.

    Backward (w' = dropout(w) = w * m):  dv = w'^T dy,  dw' = dy v^T,  dw = dw' * m,
    then the shared softmax/score backward gives dq and dk.
    """

    def forward(self, q, k, v, allowed=None, additive=None, scale=1.0, dropout_p=0.0):
        w = self._weights(q, k, allowed, additive, scale)
        self.v_shape, self.drop_mask = v.shape, None
        if dropout_p > 0.0:
            keep = generator().random(w.shape) >= dropout_p
            self.drop_mask = keep.astype(w.dtype) * w.dtype.type(1.0 / (1.0 - dropout_p))
            w = w * self.drop_mask
        self.w_used, self.v = w, v
        return w @ v

    def backward(self, grad):
        grad_v = unbroadcast(_swap(self.w_used) @ grad, self.v_shape) if self.needs_input_grad[2] else None
        if not (self.needs_input_grad[0] or self.needs_input_grad[1]):
            return None, None, grad_v
        grad_w = grad @ _swap(self.v)  # dw' = dy v^T
        if self.drop_mask is not None:
            grad_w = grad_w * self.drop_mask
        grad_q, grad_k = self._score_grads(grad_w)
        return grad_q, grad_k, grad_v


class AttentionWeights(_AttentionBase):
    """w = softmax(q k^T / sqrt(d) + mask), the weights alone (for need_weights and visualisation)."""

    def forward(self, q, k, allowed=None, additive=None, scale=1.0):
        return self._weights(q, k, allowed, additive, scale)

    def backward(self, grad):
        return self._score_grads(grad)


def causal_mask(tq: int, tk: int, past: int = 0) -> np.ndarray:
    """(tq, tk) bool, True = may attend: query i sits at position past + i (after `past` cached positions)
    and sees keys 0..past + i, never a later one. past = 0 is torch's top-left aligned is_causal mask."""
    return np.tril(np.ones((tq, tk), dtype=bool), k=past)


def _masks(attn_mask: Any, is_causal: bool, tq: int, tk: int, dtype: np.dtype) -> tuple[Any, Any]:
    """(allowed bool array or None, additive float array or None) from torch's SDPA conventions."""
    allowed, additive = None, None
    if attn_mask is not None:
        mask = np.asarray(attn_mask.data if isinstance(attn_mask, Tensor) else attn_mask)
        if mask.dtype == np.bool_:
            allowed = mask
        elif mask.dtype.kind == "f":
            additive = mask.astype(dtype, copy=False)
        else:
            raise DTypeError(f"scaled_dot_product_attention: attn_mask must be bool or float, got {mask.dtype}")
        try:
            np.broadcast_shapes(mask.shape[-2:], (tq, tk))
        except ValueError:
            raise ShapeError(f"scaled_dot_product_attention: attn_mask of shape {mask.shape} does not broadcast "
                             f"to scores of shape (..., {tq}, {tk})") from None
    if is_causal:
        causal = causal_mask(tq, tk)
        allowed = causal if allowed is None else (allowed & causal)
    return allowed, additive


def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, attn_mask: Any = None, is_causal: bool = False,
                                 dropout_p: float = 0.0, need_weights: bool = False,
                                 scale: float | None = None) -> Any:
    """softmax(q k^T / sqrt(d_k) + mask) v, one fused op; `(y, weights)` when need_weights.

    attn_mask: bool (True = may attend) or float (added to the scores), broadcasting to (..., Tq, Tk).
    is_causal: query i attends to keys 0..i only. dropout_p: dropout on the weights (pass 0 in eval).
    The weights returned are before dropout (the attention distribution itself).
    """
    q, k, v = as_tensor(q), as_tensor(k), as_tensor(v)
    for name, t in (("k", k), ("v", v)):
        if t.dtype != q.dtype:
            raise DTypeError(f"scaled_dot_product_attention: q is {q.dtype} but {name} is {t.dtype}")
    if q.dtype.kind != "f":
        raise DTypeError(f"scaled_dot_product_attention: needs floating-point tensors, got {q.dtype}")
    if q.ndim < 2 or k.ndim < 2 or v.ndim < 2 or q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ShapeError(f"scaled_dot_product_attention: expected q (..., Tq, d), k (..., Tk, d), v (..., Tk, dv), "
                         f"got q {q.shape}, k {k.shape}, v {v.shape}")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"scaled_dot_product_attention: dropout_p must lie in [0, 1), got {dropout_p}")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    allowed, additive = _masks(attn_mask, is_causal, q.shape[-2], k.shape[-2], q.dtype)
    y = ScaledDotProductAttention.apply(q, k, v, allowed=allowed, additive=additive, scale=scale,
                                        dropout_p=dropout_p)
    if not need_weights:
        return y
    return y, AttentionWeights.apply(q, k, allowed=allowed, additive=additive, scale=scale)
