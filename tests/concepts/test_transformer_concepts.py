"""What the Transformer chapter claims, checked on the layers and the seq2seq model: the decoder's causal mask
gives zero weight to every future position (so later tokens cannot change earlier predictions), LayerNorm
normalises each token over d_model on its own (other tokens and padding have no effect), attention scores
are divided by sqrt(d_k) with d_k the size of one head, and a (1, 15, 512) decoder output goes through the
final LayerNorm and projection to (1, 15, vocab), as the same weights do in PyTorch. Then the page's other
claims: attention without positions is blind to order, the sinusoidal table's shift-is-a-rotation and
distance-only dot products, the softmax figures behind the sqrt(d_k) scale, BatchNorm's mixing, and label
smoothing's bounded logits."""
from __future__ import annotations

import numpy as np
import torch

import scratchzoo as sz
from scratchzoo import nn
from scratchzoo.models.transformer import Seq2SeqConfig, Seq2SeqTransformer
from scratchzoo.nn.transformer import sinusoidal_table

from helpers import assert_close, rand


def small_model() -> Seq2SeqTransformer:
    sz.manual_seed(0)
    config = Seq2SeqConfig(src_vocab_size=10, tgt_vocab_size=12, d_model=16, nhead=4, num_encoder_layers=2,
                           num_decoder_layers=2, dim_feedforward=32, dropout=0.0, max_len=16)
    return Seq2SeqTransformer(config).double()


def test_decoder_causal_mask_gives_zero_weight_to_every_future_position():
    model = small_model()
    src, tgt_in = np.array([[3, 4, 5, 6, 7]]), np.array([[1, 8, 9, 10, 11, 3]])
    weights = model.attention_maps(src, tgt_in)["decoder_self"]  # (layers, heads, T, T)
    future = np.triu(np.ones((6, 6), dtype=bool), k=1)  # key j > query i
    assert np.all(weights[..., future] == 0.0)  # exactly zero in every layer and head
    assert np.all(weights[..., ~future] > 0.0)
    # so what comes later cannot change an earlier prediction: rewrite tokens 3.. and logits 0..2 stay
    changed = tgt_in.copy()
    changed[0, 3:] = [4, 4, 4]
    assert_close("logits before the change", model(src, changed).data[:, :3], model(src, tgt_in).data[:, :3],
                 1e-12, 1e-12)


def test_layer_norm_normalises_each_token_over_d_model_alone():
    norm = nn.LayerNorm(8).double()
    x = rand(2, 5, 8) * 3 + 1
    y = norm(sz.Tensor(x)).data
    np.testing.assert_allclose(y.mean(-1), 0.0, atol=1e-12)  # per token: mean 0 over d_model
    np.testing.assert_allclose(y.var(-1), 1.0, rtol=1e-4)  # and variance 1 (up to eps)
    expected = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(y, expected, rtol=1e-12)
    # other tokens do not matter: change every other token and sequence, token (1, 2) is unchanged
    other = rand(2, 5, 8) * 100
    other[1, 2] = x[1, 2]
    np.testing.assert_array_equal(norm(sz.Tensor(other)).data[1, 2], y[1, 2])
    # nor does padding: the sequence alone, or padded with junk vectors to length 9, gives the same tokens
    padded = np.concatenate([x[:1], np.full((1, 4, 8), 1e6)], axis=1)
    np.testing.assert_array_equal(norm(sz.Tensor(padded)).data[:, :5], norm(sz.Tensor(x[:1])).data)


def test_attention_scores_are_divided_by_sqrt_of_the_head_size():
    d_model, heads = 12, 3
    d_k = d_model // heads  # 4: each head's queries and keys are 4-dimensional
    mha = nn.MultiheadAttention(d_model, heads, batch_first=True).double()
    x = rand(1, 5, d_model)
    _, weights = mha(sz.Tensor(x), sz.Tensor(x), sz.Tensor(x), average_attn_weights=False)  # (1, H, 5, 5)
    w, b = mha.in_proj_weight.data, mha.in_proj_bias.data
    q = (x[0] @ w[:d_model].T + b[:d_model]).reshape(5, heads, d_k).transpose(1, 0, 2)  # (H, 5, d_k)
    k = (x[0] @ w[d_model:2 * d_model].T + b[d_model:2 * d_model]).reshape(5, heads, d_k).transpose(1, 0, 2)

    def softmax(s):
        e = np.exp(s - s.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    np.testing.assert_allclose(weights.data[0], softmax(q @ k.transpose(0, 2, 1) / np.sqrt(d_k)), rtol=1e-10)
    assert not np.allclose(weights.data[0], softmax(q @ k.transpose(0, 2, 1) / np.sqrt(d_model)))  # not d_model


def test_decoder_output_of_width_512_projects_to_the_vocabulary_as_in_torch():
    sz.manual_seed(0)
    vocab = 10000
    config = Seq2SeqConfig(src_vocab_size=100, tgt_vocab_size=vocab, d_model=512, nhead=8, num_encoder_layers=1,
                           num_decoder_layers=1, dim_feedforward=1024, dropout=0.0, max_len=20)
    model = Seq2SeqTransformer(config)
    src, tgt_in = np.array([[5, 6, 7, 8, 9, 2]]), np.concatenate([[[1]], np.arange(3, 17)[None]], axis=1)
    memory, padding = model.encode(src)
    h = model.transformer.decoder.layers[0](model.pos_encoding(model.tgt_embed(sz.Tensor(tgt_in)) * model.scale),
                                            memory, memory_key_padding_mask=padding, tgt_is_causal=True)
    assert h.shape == (1, 15, 512)  # the last decoder layer's output, one 512-vector per target token
    logits = model.generator(model.transformer.decoder.norm(h))  # final LayerNorm, then project
    assert logits.shape == (1, 15, vocab)
    assert_close("the model's logits", model(src, tgt_in).data, logits.data, 1e-5, 1e-5)
    # the same weights in torch.nn.LayerNorm + torch.nn.Linear give the same scores
    state = model.state_dict()
    norm, projection = torch.nn.LayerNorm(512), torch.nn.Linear(512, vocab)
    norm.load_state_dict({"weight": torch.from_numpy(state["transformer.decoder.norm.weight"]),
                          "bias": torch.from_numpy(state["transformer.decoder.norm.bias"])})
    projection.load_state_dict({"weight": torch.from_numpy(state["generator.weight"]),
                                "bias": torch.from_numpy(state["generator.bias"])})
    with torch.no_grad():
        expected = projection(norm(torch.from_numpy(h.data))).numpy()
    assert_close("logits vs torch", logits.data, expected, 1e-4, 1e-4)


# ============================================================================ claims of the docs page, one by one


def test_attention_without_positions_treats_its_keys_as_a_set():
    """Shuffle the tokens and every self-attention output is the same, shuffled: word order is invisible
    until positions are added (docs section 3)."""
    sz.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, dropout=0.0, batch_first=True).double()
    x = rand(2, 7, 16)
    order = np.random.default_rng(1).permutation(7)
    with sz.no_grad():
        assert_close("shuffled", layer(sz.Tensor(x[:, order])).data, layer(sz.Tensor(x)).data[:, order], 1e-12, 1e-12)


def test_a_shift_is_a_rotation_and_dot_products_depend_on_the_distance_only():
    """(pe_2i, pe_2i+1)(pos + k) = R(k w_i) (pe_2i, pe_2i+1)(pos), w_i = 10000^(-2i/d); and
    pe_p . pe_q = sum_i cos(w_i (p - q)) (docs section 3)."""
    d, k = 16, 5
    pe = sinusoidal_table(60, d)
    omega = 10000.0 ** (-np.arange(0, d, 2) / d)
    sin, cos = pe[:, 0::2], pe[:, 1::2]  # (positions, d / 2): each pair as a point on a circle
    c, s = np.cos(k * omega), np.sin(k * omega)
    assert np.allclose(sin[k:], c * sin[:-k] + s * cos[:-k]) and np.allclose(cos[k:], -s * sin[:-k] + c * cos[:-k])
    p, q = np.meshgrid(np.arange(60), np.arange(60), indexing="ij")
    assert np.allclose(pe @ pe.T, np.cos(omega * (p - q)[..., None]).sum(-1))


def test_unscaled_scores_make_softmax_nearly_one_hot():
    """16 random keys, d_k = 64, entries N(0, 1): the largest softmax weight averages about 0.84 without the
    1/sqrt(d_k) scale and 0.25 with it; sum_j w_j (1 - w_j), the size of softmax's gradient, goes from
    about 0.22 to 0.87 (docs section 4; 10,000 draws)."""
    rng = np.random.default_rng(0)
    q, k = rng.standard_normal((10_000, 1, 64)), rng.standard_normal((10_000, 16, 64))
    scores = (q @ k.transpose(0, 2, 1))[:, 0]  # (draws, 16)
    for scale, largest, spread in ((1.0, 0.84, 0.22), (1 / 8, 0.25, 0.87)):
        w = np.exp(scale * scores - (scale * scores).max(-1, keepdims=True))
        w /= w.sum(-1, keepdims=True)
        assert abs(w.max(-1).mean() - largest) < 0.01 and abs((w * (1 - w)).sum(-1).mean() - spread) < 0.01


def test_batchnorm_would_mix_other_sequences_and_padding_into_a_token():
    """BatchNorm averages each feature over the batch and the positions: changing another sequence, or
    appending padding, moves a token's output; LayerNorm's does not move (docs section 7)."""
    x = rand(2, 5, 8)
    batch_norm, layer_norm = nn.BatchNorm1d(8).double(), nn.LayerNorm(8).double()

    def token(norm, inputs: np.ndarray) -> np.ndarray:  # sequence 0, position 1
        if isinstance(norm, nn.BatchNorm1d):
            return norm(sz.Tensor(inputs.transpose(0, 2, 1))).data.transpose(0, 2, 1)[0, 1]
        return norm(sz.Tensor(inputs)).data[0, 1]

    other = x.copy()
    other[1] += 3.0
    padded = np.concatenate([x, np.zeros((2, 3, 8))], axis=1)
    for changed in (other, padded):
        assert not np.allclose(token(batch_norm, changed), token(batch_norm, x))
        assert np.allclose(token(layer_norm, changed), token(layer_norm, x))


def test_label_smoothing_keeps_the_logits_bounded():
    """Without smoothing the loss falls forever as the right logit grows; with eps it is lowest at the finite
    margin m* = log((1 - eps + eps / V) / (eps / V)), where the model gives the target 1 - eps + eps / V
    (docs section 10)."""
    vocab, eps = 5, 0.1

    def slope(margin: float, smoothing: float) -> float:
        logits = sz.Tensor(np.array([[margin, 0.0, 0.0, 0.0, 0.0]]), requires_grad=True)
        sz.losses.cross_entropy(logits, np.array([0]), label_smoothing=smoothing).backward()
        return float(logits.grad[0, 0])

    best = np.log((1 - eps + eps / vocab) / (eps / vocab))
    assert all(slope(m, 0.0) < 0 for m in (1.0, 10.0, 30.0))  # always worth growing
    assert slope(best - 1, eps) < 0 and abs(slope(best, eps)) < 1e-12 and slope(best + 1, eps) > 0
