"""Attention: the fused scaled dot-product op and MultiheadAttention, parity with PyTorch (forward and
backward, float32 and float64, masks) and finite-difference gradients."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import scratchzoo as sz
from scratchzoo import functional as F
from scratchzoo import nn

from helpers import assert_matches_torch, gradcheck, rand, randomize_

DTYPES = [np.float32, np.float64]


def sdpa_pair(attn_mask=None, **options):
    """(ours, torch's) SDPA with the mask as a constant on each side (a NumPy array turned into each's kind)."""
    def ours(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, **options)

    def theirs(q, k, v):
        mask = None
        if attn_mask is not None:
            mask = torch.from_numpy(attn_mask)
            mask = mask if mask.dtype == torch.bool else mask.to(q.dtype)
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, **options)
    return ours, theirs


def bool_mask(*shape, seed=0):
    mask = np.random.default_rng(seed).random(shape) > 0.4
    mask[..., 0] = True  # every row attends somewhere (torch gives NaN on fully masked rows in some paths)
    return mask


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["plain", "causal", "bool", "float", "cross"])
def test_sdpa_matches_torch(dtype, case):
    tq, tk = (5, 7) if case == "cross" else (6, 6)
    inputs = [rand(2, 3, tq, 4), rand(2, 3, tk, 4), rand(2, 3, tk, 5)]
    mask = {"bool": bool_mask(2, 1, tq, tk), "float": rand(tq, tk)}.get(case)
    ours, theirs = sdpa_pair(mask, is_causal=case == "causal")
    assert_matches_torch(ours, theirs, inputs, dtype=dtype)


def test_sdpa_causal_with_different_lengths_matches_torch():
    ours, theirs = sdpa_pair(is_causal=True)
    assert_matches_torch(ours, theirs, [rand(2, 3, 4), rand(2, 6, 4), rand(2, 6, 2)], dtype=np.float64)


@pytest.mark.parametrize("case", ["plain", "causal", "bool", "float"])
def test_sdpa_gradcheck(case):
    mask = {"bool": bool_mask(3, 4), "float": rand(3, 4)}.get(case)
    tk = 4

    def fn(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=case == "causal")
    gradcheck(fn, [rand(2, 3, 5), rand(2, tk, 5), rand(2, tk, 2)])


def test_sdpa_weights_gradcheck_and_match_softmax():
    def fn(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, need_weights=True)
    gradcheck(fn, [rand(2, 4, 3), rand(2, 4, 3), rand(2, 4, 2)])
    q, k = rand(2, 4, 3), rand(2, 4, 3)
    _, w = F.scaled_dot_product_attention(sz.Tensor(q), sz.Tensor(k), sz.Tensor(rand(2, 4, 2)), need_weights=True)
    expected = torch.softmax(torch.from_numpy(q) @ torch.from_numpy(k).transpose(-1, -2) / np.sqrt(3), -1)
    np.testing.assert_allclose(w.data, expected.numpy(), rtol=1e-12, atol=1e-12)


def test_sdpa_fully_masked_row_gives_zero_output_and_grads():
    mask = np.ones((3, 4), dtype=bool)
    mask[1] = False
    q, k, v = (sz.Tensor(rand(3, 2), requires_grad=True), sz.Tensor(rand(4, 2), requires_grad=True),
               sz.Tensor(rand(4, 2), requires_grad=True))
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert np.all(np.isfinite(y.data)) and np.all(y.data[1] == 0)
    y.backward(np.ones((3, 2)))
    assert np.all(q.grad[1] == 0)
    for g in (q.grad, k.grad, v.grad):
        assert np.all(np.isfinite(g))
    gradcheck(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, attn_mask=mask),
              [rand(3, 2), rand(4, 2), rand(4, 2)])


def test_sdpa_dropout_keeps_expectation_and_gradcheck_with_fixed_seed():
    q, k, v = rand(1, 4, 3), rand(1, 6, 3), rand(1, 6, 2)
    exact = F.scaled_dot_product_attention(sz.Tensor(q), sz.Tensor(k), sz.Tensor(v)).data
    sz.manual_seed(0)
    runs = [F.scaled_dot_product_attention(sz.Tensor(q), sz.Tensor(k), sz.Tensor(v), dropout_p=0.3).data
            for _ in range(3000)]
    np.testing.assert_allclose(np.mean(runs, axis=0), exact, atol=0.05)

    def fn(a, b, c):
        sz.manual_seed(7)  # the same dropout mask on every call
        return F.scaled_dot_product_attention(a, b, c, dropout_p=0.3)
    gradcheck(fn, [q, k, v])


def test_sdpa_rejects_bad_shapes():
    with pytest.raises(sz.ShapeError):
        F.scaled_dot_product_attention(sz.Tensor(rand(2, 3)), sz.Tensor(rand(4, 2)), sz.Tensor(rand(4, 2)))


@pytest.mark.parametrize("mask_shape", [(3, 5, 5), (2, 2, 5, 5), (5, 4)], ids=["batch 3 for 2", "extra dim", "Tk"])
def test_sdpa_rejects_a_mask_that_does_not_broadcast_to_the_scores(mask_shape):
    q = sz.Tensor(rand(2, 5, 4))
    expected = re.escape(f"scaled_dot_product_attention: attn_mask of shape {mask_shape}") + r".*\(2, 5, 5\)"
    with pytest.raises(sz.ShapeError, match=expected):
        F.scaled_dot_product_attention(q, q, q, attn_mask=rand(*mask_shape))


def test_sdpa_rejects_a_mask_requiring_grad_of_another_dtype():
    q = sz.Tensor(rand(2, 5, 4).astype(np.float32))
    with pytest.raises(sz.DTypeError, match="attn_mask.*float32.*float64"):
        F.scaled_dot_product_attention(q, q, q, attn_mask=sz.Tensor(rand(5, 5), requires_grad=True))


# ---------------------------------------------------------------------------- a float mask that learns
# torch returns a gradient for a float attn_mask that requires grad (a learned bias such as ALiBi's or T5's):
# the mask is added to the scores, so d(mask) = d(scores) summed over the axes it was broadcast along.

MASK_SHAPES = {"(T, S)": (6, 7), "(N, 1, T, S)": (2, 1, 6, 7), "(N, H, T, S)": (2, 3, 6, 7)}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", list(MASK_SHAPES))
@pytest.mark.parametrize("hide_future", [False, True], ids=["", "-inf above the diagonal"])
def test_sdpa_float_mask_gradient_matches_torch(dtype, shape, hide_future):
    def ours(q, k, v, mask):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

    def theirs(q, k, v, mask):
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    mask = rand(*MASK_SHAPES[shape])
    if hide_future:  # -inf entries: no weight there, so no gradient either
        mask = np.where(np.tril(np.ones((6, 7), dtype=bool)), mask, -np.inf)
    assert_matches_torch(ours, theirs, [rand(2, 3, 6, 4), rand(2, 3, 7, 4), rand(2, 3, 7, 5), mask], dtype=dtype)


@pytest.mark.parametrize("shape", [(3, 4), (2, 1, 4), (2, 3, 4)], ids=str)
@pytest.mark.parametrize("need_weights", [False, True], ids=["y", "y and weights"])
def test_sdpa_float_mask_gradcheck(shape, need_weights):
    def fn(q, k, v, mask):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=True, need_weights=need_weights)
    gradcheck(fn, [rand(2, 3, 5), rand(2, 4, 5), rand(2, 4, 2), rand(*shape)])


def test_sdpa_float_mask_gradient_with_dropout_gradcheck():
    def fn(q, k, v, mask):
        sz.manual_seed(7)  # the same dropout mask on every call
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=0.3)
    gradcheck(fn, [rand(1, 4, 3), rand(1, 6, 3), rand(1, 6, 2), rand(4, 6)])


def test_sdpa_need_weights_computes_the_softmax_once(monkeypatch):
    from scratchzoo.functional import attention
    calls = []
    real = attention._attention_weights
    monkeypatch.setattr(attention, "_attention_weights", lambda *a: calls.append(1) or real(*a))
    q = sz.Tensor(rand(2, 4, 3), requires_grad=True)
    y, w = F.scaled_dot_product_attention(q, q, q, is_causal=True, need_weights=True)
    assert len(calls) == 1
    layer = nn.MultiheadAttention(6, 2, batch_first=True)
    x = sz.Tensor(rand(2, 4, 6).astype(np.float32))
    layer(x, x, x)  # need_weights=True, torch's default
    assert len(calls) == 2


# ============================================================================ MultiheadAttention



def mha_pair(embed_dim=8, num_heads=2, batch_first=False, bias=True, masks=None, mask_inputs=(), **options):
    """(ours, torch's) MHA with torch's weights; `masks` (NumPy arrays by name) are constants on each side;
    `mask_inputs` names masks that come as extra inputs after q, k, v (so that they can require grad)."""
    masks = masks or {}
    ours_module = nn.MultiheadAttention(embed_dim, num_heads, bias=bias, batch_first=batch_first)
    theirs_module = randomize_(torch.nn.MultiheadAttention(embed_dim, num_heads, bias=bias, batch_first=batch_first),
                               scale=0.5)

    class Ours(nn.Module):
        def __init__(self):
            super().__init__()
            self.mha = ours_module

        def forward(self, q, k, v, *extra):
            return self.mha(q, k, v, **masks, **dict(zip(mask_inputs, extra)), **options)

    class Theirs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.mha = theirs_module

        def forward(self, q, k, v, *extra):
            dtype = q.dtype
            converted = {name: torch.from_numpy(m) if m.dtype == np.bool_ else torch.from_numpy(m).to(dtype)
                         for name, m in masks.items()}
            return self.mha(q, k, v, **converted, **dict(zip(mask_inputs, extra)), **options)
    return Ours(), Theirs()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch_first", [False, True])
def test_mha_self_attention_matches_torch(dtype, batch_first):
    x = rand(2, 5, 8) if batch_first else rand(5, 2, 8)
    ours, theirs = mha_pair(batch_first=batch_first)
    assert_matches_torch(ours, theirs, [x, x.copy(), x.copy()], dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mha_cross_attention_matches_torch(dtype):
    ours, theirs = mha_pair(embed_dim=12, num_heads=3, batch_first=True)
    assert_matches_torch(ours, theirs, [rand(2, 4, 12), rand(2, 7, 12), rand(2, 7, 12)], dtype=dtype)


@pytest.mark.parametrize("kind", ["bool", "float"])
@pytest.mark.parametrize("average", [True, False])
def test_mha_masks_match_torch(kind, average):
    causal = np.triu(np.ones((5, 6), dtype=bool), k=1)  # True = may not attend
    padding = np.zeros((2, 6), dtype=bool)
    padding[0, 4:] = True
    padding[1, 5:] = True
    if kind == "float":
        causal, padding = np.where(causal, -np.inf, 0.0), np.where(padding, -np.inf, rand(2, 6) * 0.1)
    ours, theirs = mha_pair(masks={"attn_mask": causal, "key_padding_mask": padding}, average_attn_weights=average)
    assert_matches_torch(ours, theirs, [rand(5, 2, 8), rand(6, 2, 8), rand(6, 2, 8)], dtype=np.float64)


def test_mha_per_head_mask_and_no_weights_match_torch():
    mask = np.random.default_rng(1).random((2 * 2, 4, 4)) > 0.6
    mask[..., 0] = False  # every row attends somewhere
    ours, theirs = mha_pair(batch_first=True, bias=False, masks={"attn_mask": mask}, need_weights=False)
    x = rand(2, 4, 8)
    assert_matches_torch(ours, theirs, [x, x.copy(), x.copy()], dtype=np.float64)


def test_mha_unbatched_matches_torch():
    ours, theirs = mha_pair()
    assert_matches_torch(ours, theirs, [rand(5, 8), rand(3, 8), rand(3, 8)], dtype=np.float64)


def test_mha_is_causal_without_mask_is_the_causal_mask():
    layer = nn.MultiheadAttention(8, 2, batch_first=True).double()
    x = sz.Tensor(rand(1, 5, 8))
    _, w = layer(x, x, x, is_causal=True)
    assert np.all(w.data[0][np.triu_indices(5, 1)] == 0)
    _, expected = layer(x, x, x, attn_mask=np.triu(np.ones((5, 5), dtype=bool), k=1))
    np.testing.assert_array_equal(w.data, expected.data)


def test_mha_init_and_state_dict_keys_as_torch():
    ours, theirs = nn.MultiheadAttention(16, 4), torch.nn.MultiheadAttention(16, 4)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert np.all(ours.in_proj_bias.data == 0) and np.all(ours.out_proj.bias.data == 0)
    bound = np.sqrt(6.0 / (16 + 48))
    assert np.abs(ours.in_proj_weight.data).max() <= bound and np.abs(ours.in_proj_weight.data).max() > 0.8 * bound


def test_mha_gradcheck():
    layer = nn.MultiheadAttention(4, 2, batch_first=True).double()
    mask = np.array([[False, False, True], [False, False, False]])

    def fn(q, kv):
        return layer(q, kv, kv, key_padding_mask=mask)
    gradcheck(fn, [rand(2, 2, 4), rand(2, 3, 4)])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["attn_mask (L, S)", "attn_mask (N * H, L, S)", "key_padding_mask",
                                  "both, no weights"])
def test_mha_float_mask_gradient_matches_torch(dtype, case):
    """torch's MultiheadAttention passes a gradient to a float mask that requires grad; so does ours."""
    names = {"attn_mask (L, S)": ["attn_mask"], "attn_mask (N * H, L, S)": ["attn_mask"],
             "key_padding_mask": ["key_padding_mask"], "both, no weights": ["attn_mask", "key_padding_mask"]}[case]
    shapes = {"attn_mask": (2 * 2, 5, 6) if "N * H" in case else (5, 6), "key_padding_mask": (2, 6)}
    options = {"need_weights": False} if "no weights" in case else {}
    ours, theirs = mha_pair(mask_inputs=names, **options)
    inputs = [rand(5, 2, 8), rand(6, 2, 8), rand(6, 2, 8)] + [rand(*shapes[name]) for name in names]
    assert_matches_torch(ours, theirs, inputs, dtype=dtype)


def test_mha_float_mask_gradcheck():
    layer = nn.MultiheadAttention(4, 2, batch_first=True).double()

    def fn(x, mask, padding):
        return layer(x, x, x, attn_mask=mask, key_padding_mask=padding)
    gradcheck(fn, [rand(2, 3, 4), rand(3, 3), rand(2, 3)])


def test_mha_rejects_mixed_batched_and_unbatched_inputs():
    layer = nn.MultiheadAttention(8, 2)
    query, key = sz.Tensor(rand(5, 8).astype(np.float32)), sz.Tensor(rand(3, 2, 8).astype(np.float32))
    message = r"MultiheadAttention\(embed_dim=8, num_heads=2.*query \(5, 8\), key \(3, 2, 8\)"
    with pytest.raises(sz.ShapeError, match=message):
        layer(query, key, key)
    with pytest.raises(sz.ShapeError, match=r"MultiheadAttention\(embed_dim=8.*query \(3, 2, 8\), key \(5, 8\)"):
        layer(key, query, query)


def test_mha_rejects_bad_masks():
    layer = nn.MultiheadAttention(8, 2)
    x = sz.Tensor(rand(5, 2, 8).astype(np.float32))
    with pytest.raises(sz.ShapeError):
        layer(x, x, x, attn_mask=np.zeros((4, 5), dtype=bool))
    with pytest.raises(sz.ShapeError):
        layer(x, x, x, key_padding_mask=np.zeros((5, 2), dtype=bool))
