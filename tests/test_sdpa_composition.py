"""The fused F.scaled_dot_product_attention equals the composition of primitive engine ops it replaces,

    s = (q @ k^T) * (1 / sqrt(d));  s = s + float_mask  or  s = masked_fill(s, not allowed, -inf);
    w = softmax(s, -1);  y = w @ v,

in forward and backward (dq, dk, dv) for bool and float masks, causal, and both float dtypes. Rows here
always keep at least one key: there the composition gives NaN (0/0) while the fused op gives zeros."""
from __future__ import annotations

import math

import numpy as np
import pytest

import scratchzoo as sz
from scratchzoo import functional as F

from helpers import TOLERANCES, UPSTREAM_SEED, assert_close, rand

TQ, TK, D = 5, 6, 4


def composed(q, k, v, attn_mask=None, is_causal=False):
    """softmax(q k^T / sqrt(d) + mask) v from matmul, scale, masked_fill / add, softmax and matmul."""
    scores = F.matmul(q, F.transpose(k, -2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
    allowed = None
    if attn_mask is not None and attn_mask.dtype == np.bool_:
        allowed = attn_mask
    elif attn_mask is not None:
        scores = scores + attn_mask.astype(q.dtype)
    if is_causal:
        causal = np.tril(np.ones((q.shape[-2], k.shape[-2]), dtype=bool))
        allowed = causal if allowed is None else allowed & causal
    if allowed is not None:
        scores = F.masked_fill(scores, ~np.broadcast_to(allowed, scores.shape), -np.inf)
    return F.matmul(F.softmax(scores, dim=-1), v)


def bool_mask():
    allowed = rand(2, 1, TQ, TK, seed=7) > -0.5  # per batch, shared by heads
    allowed[..., 0] = True  # every query keeps key 0
    return allowed


def float_mask():
    mask = rand(TQ, TK, seed=8)
    mask[1, 2:] = -np.inf  # -inf forbids; the other values shift the scores
    return mask


CASES = {"none": (None, False), "bool": (bool_mask(), False), "float": (float_mask(), False),
         "causal": (None, True), "bool+causal": (bool_mask(), True)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", list(CASES))
def test_fused_attention_equals_its_composition(dtype, case):
    attn_mask, is_causal = CASES[case]
    arrays = [rand(2, 3, TQ, D), rand(2, 3, TK, D), rand(2, 3, TK, 5)]  # q, k, v: (N, H, T, d)
    upstream = np.random.default_rng(UPSTREAM_SEED).standard_normal((2, 3, TQ, 5)).astype(dtype)
    results = []
    for fn in (F.scaled_dot_product_attention, composed):
        q, k, v = (sz.Tensor(a.astype(dtype), requires_grad=True) for a in arrays)
        y = fn(q, k, v, attn_mask=attn_mask, is_causal=is_causal)
        y.backward(upstream)
        results.append([y.data, q.grad, k.grad, v.grad])
    rtol, atol = TOLERANCES[np.dtype(dtype)]
    for name, fused, reference in zip(["y", "dq", "dk", "dv"], *results):
        assert fused.dtype == dtype
        assert_close(f"{case} {name}", fused, reference, rtol, atol)
