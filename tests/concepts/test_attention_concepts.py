"""What attention means, checked directly: causal masks hide the future exactly, scores are scaled by
sqrt(d_k), the sinusoidal table follows the paper's formula, and a row with nothing to attend to is zero."""
from __future__ import annotations

import numpy as np

import scratchzoo as sz
from scratchzoo import functional as F
from scratchzoo import nn

from helpers import rand


def test_causal_mask_gives_exactly_zero_weight_to_every_future_position():
    q, k, v = (sz.Tensor(rand(2, 3, 7, 4)) for _ in range(3))
    _, w = F.scaled_dot_product_attention(q, k, v, is_causal=True, need_weights=True)
    future = np.triu(np.ones((7, 7), dtype=bool), k=1)  # key j > query i
    assert np.all(w.data[..., future] == 0.0)  # exactly zero, not merely small
    assert np.all(w.data[..., ~future] > 0.0)
    np.testing.assert_allclose(w.data.sum(-1), 1.0)
    # and so the output at position i does not change when the future (keys/values after i) changes
    v2 = sz.Tensor(v.data.copy())
    k2 = sz.Tensor(k.data.copy())
    v2.data[..., 4:, :] += 10.0
    k2.data[..., 4:, :] -= 3.0
    y1 = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    y2 = F.scaled_dot_product_attention(q, k2, v2, is_causal=True)
    np.testing.assert_array_equal(y1.data[..., :4, :], y2.data[..., :4, :])


def test_mha_causal_mask_hides_the_future_in_every_head():
    mha = nn.MultiheadAttention(8, 4, batch_first=True).double()
    x = sz.Tensor(rand(2, 6, 8))
    _, w = mha(x, x, x, attn_mask=np.triu(np.ones((6, 6), dtype=bool), k=1), average_attn_weights=False)
    assert w.shape == (2, 4, 6, 6)
    assert np.all(w.data[..., np.triu(np.ones((6, 6), dtype=bool), k=1)] == 0.0)


def test_scores_are_divided_by_sqrt_dk():
    d_k = 16
    q, k = rand(5, d_k), rand(6, d_k)
    _, w = F.scaled_dot_product_attention(sz.Tensor(q), sz.Tensor(k), sz.Tensor(rand(6, 3)), need_weights=True)
    scores = q @ k.T / np.sqrt(d_k)
    expected = np.exp(scores - scores.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(w.data, expected, rtol=1e-12)
    unscaled = np.exp(q @ k.T - (q @ k.T).max(-1, keepdims=True))
    assert not np.allclose(w.data, unscaled / unscaled.sum(-1, keepdims=True))  # the scale is really there


def test_sinusoidal_table_follows_the_formula():
    d_model, max_len = 10, 30
    pe = nn.SinusoidalPositionalEncoding(d_model, max_len).pe.data
    for pos in (0, 1, 7, 29):
        for i in range(d_model // 2):
            angle = pos / 10000 ** (2 * i / d_model)
            assert np.isclose(pe[pos, 2 * i], np.sin(angle), atol=1e-6)
            assert np.isclose(pe[pos, 2 * i + 1], np.cos(angle), atol=1e-6)
    assert np.all(pe[0, 0::2] == 0) and np.all(pe[0, 1::2] == 1)  # position 0: sin 0, cos 0


def test_fully_masked_row_gives_zeros_not_nan():
    mask = np.ones((4, 5), dtype=bool)
    mask[2] = False  # query 2 may attend nowhere
    q, k, v = sz.Tensor(rand(4, 3), requires_grad=True), sz.Tensor(rand(5, 3)), sz.Tensor(rand(5, 2))
    y, w = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, need_weights=True)
    assert np.all(np.isfinite(y.data)) and np.all(y.data[2] == 0) and np.all(w.data[2] == 0)
    y.backward(np.ones_like(y.data))
    assert np.all(np.isfinite(q.grad)) and np.all(q.grad[2] == 0)
