"""What docs/en/gpt.md claims about a decoder-only GPT, each as a test."""
from __future__ import annotations

import numpy as np

import scratchzoo as sz
from scratchzoo import functional as F
from scratchzoo.models.gpt import GPT, GPTConfig
from scratchzoo.sampling import sample_next

CONFIG = GPTConfig(vocab_size=13, block_size=16, n_layer=2, n_head=2, n_embd=16)


def model() -> GPT:
    sz.manual_seed(0)
    return GPT(CONFIG).double().eval()


def test_position_i_never_sees_the_tokens_after_it():
    """The causal mask: changing tokens i+1.. leaves the logits of positions 0..i exactly as they were."""
    gpt = model()
    tokens = np.random.default_rng(0).integers(0, 13, size=(1, 12))
    changed = tokens.copy()
    changed[:, 6:] = (changed[:, 6:] + 5) % 13
    a, b = gpt(sz.Tensor(tokens)).data, gpt(sz.Tensor(changed)).data
    np.testing.assert_array_equal(a[:, :6], b[:, :6])
    assert not np.allclose(a[:, 6:], b[:, 6:])  # ... and the positions that do see them change


def test_same_token_at_same_position_gets_the_same_embedding():
    """Token and position embeddings are table lookups: equal (token, position) pairs give equal vectors,
    whatever the rest of the sequence, and the same token at another position gets another vector."""
    gpt = model()
    wte, wpe = gpt.transformer.wte, gpt.transformer.wpe
    a = np.array([[3, 7, 1, 3]])
    b = np.array([[3, 2, 9, 5]])
    pos = sz.Tensor(np.arange(4))
    ea = (wte(sz.Tensor(a)) + wpe(pos)).data
    eb = (wte(sz.Tensor(b)) + wpe(pos)).data
    np.testing.assert_array_equal(ea[0, 0], eb[0, 0])       # token 3 at position 0 in both
    assert not np.array_equal(ea[0, 0], ea[0, 3])          # token 3 at positions 0 and 3 differ by wpe
    np.testing.assert_array_equal(ea[0, 0] - ea[0, 3], wpe.weight.data[0] - wpe.weight.data[3])


def test_temperature_towards_zero_gives_the_argmax():
    logits = np.random.default_rng(1).standard_normal((64, 13))
    sz.manual_seed(0)
    np.testing.assert_array_equal(sample_next(logits, temperature=1e-4), logits.argmax(-1))
    np.testing.assert_array_equal(sample_next(logits, temperature=0), logits.argmax(-1))
    sz.manual_seed(0)
    assert not np.array_equal(sample_next(logits, temperature=1.0), logits.argmax(-1))  # T = 1 does explore


def test_scores_of_a_length_10_input_form_a_10_by_10_matrix():
    """q k^T: entry (i, j) is how much token i attends to token j; the causal softmax zeroes j > i."""
    gpt = model()
    attn = gpt.transformer.h[0].attn
    x = gpt.transformer.wte(sz.Tensor(np.arange(10)[None])) + gpt.transformer.wpe(sz.Tensor(np.arange(10)))
    q, k, v = (attn._heads(t) for t in attn.c_attn(gpt.transformer.h[0].ln_1(x)).split(CONFIG.n_embd, dim=2))
    scores = q @ k.transpose(-1, -2)
    assert scores.shape == (1, CONFIG.n_head, 10, 10)
    out, weights = F.scaled_dot_product_attention(q, k, v, is_causal=True, need_weights=True)
    w = weights.data[0, 0]
    np.testing.assert_array_equal(np.triu(w, 1), 0)
    np.testing.assert_allclose(w.sum(-1), 1.0)
    # softmax(q k^T) v: 10 x d_head per head, the shape of v, each row a mix of the values it may see
    assert out.shape == v.shape == (1, CONFIG.n_head, 10, CONFIG.n_embd // CONFIG.n_head)
    np.testing.assert_allclose(out.data[0, :, 0], v.data[0, :, 0])  # the first token sees only itself


def test_the_fused_qkv_projection_of_gpt2_small_is_3_x_64_x_12_wide():
    """d_head 64, n_head 12 (n_embd 768): one Linear of 3 * 64 * 12 = 2304 outputs, split into q, k, v."""
    gpt2_small = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=12, n_embd=768))
    assert gpt2_small.transformer.h[0].attn.c_attn.weight.shape == (2304, 768)
