"""Gradient utilities for training loops."""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from scratchzoo.autograd import Tensor


def clip_grad_norm_(parameters: Tensor | Iterable[Tensor], max_norm: float, norm_type: float = 2.0) -> float:
    """Scale all gradients together so that their total norm is at most max_norm; return the norm before.

    total = || (||g_1||, ..., ||g_n||) ||  (the norm of all gradients as one long vector);
    when total > max_norm, every g is multiplied by max_norm / (total + 1e-6), as torch does.
    norm_type=inf gives the largest |g| entry.
    """
    expected = "clip_grad_norm_ expects a Tensor or an iterable of Tensors (e.g. model.parameters())"
    if not isinstance(parameters, (Tensor, Iterable)):
        raise TypeError(f"{expected}, got {type(parameters).__name__}")
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    for i, p in enumerate(params):
        if not isinstance(p, Tensor):
            raise TypeError(f"{expected}, got {type(p).__name__} at position {i}")
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    norm_type = float(norm_type)
    if norm_type == math.inf:
        total = max(float(np.abs(g).max(initial=0.0)) for g in grads)
    else:
        total = sum(float(np.sum(np.abs(g) ** norm_type)) for g in grads) ** (1.0 / norm_type)
    clip_coef = float(max_norm) / (total + 1e-6)
    if clip_coef < 1.0:
        for g in grads:
            g *= clip_coef
    return total
