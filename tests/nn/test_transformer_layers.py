"""Transformer parts: positional encodings, encoder and decoder layers; parity with PyTorch (weights
copied through state_dict; forward and backward; post-LN and pre-LN; relu and gelu; masks)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import scratchzoo as sz
from scratchzoo import nn

from helpers import assert_matches_torch, gradcheck, rand, randomize_

DTYPES = [np.float32, np.float64]



def causal_mask(t, kind="bool"):
    mask = np.triu(np.ones((t, t), dtype=bool), k=1)  # True = may not attend (MHA convention)
    return mask if kind == "bool" else np.where(mask, -np.inf, 0.0)


def padding_mask(lengths, t):
    return np.arange(t)[None, :] >= np.asarray(lengths)[:, None]


def wrap(ours_layer, theirs_layer, masks):
    """Modules that call each layer with the NumPy `masks` converted to each side's kind."""
    class Ours(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = ours_layer

        def forward(self, *xs):
            return self.layer(*xs, **masks)

    class Theirs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = theirs_layer

        def forward(self, *xs):
            converted = {k: (torch.from_numpy(m) if m.dtype == np.bool_ else torch.from_numpy(m).to(xs[0].dtype))
                         for k, m in masks.items()}
            return self.layer(*xs, **converted)
    return Ours(), Theirs()


LAYER_CASES = [  # (norm_first, activation, batch_first)
    (False, "relu", False), (True, "relu", True), (False, "gelu", True), (True, "gelu", False)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm_first,activation,batch_first", LAYER_CASES)
def test_encoder_layer_matches_torch(dtype, norm_first, activation, batch_first):
    args = dict(d_model=8, nhead=2, dim_feedforward=16, dropout=0.0, activation=activation,
                batch_first=batch_first, norm_first=norm_first)
    masks = {"src_mask": causal_mask(5), "src_key_padding_mask": padding_mask([5, 3], 5)}
    theirs = randomize_(torch.nn.TransformerEncoderLayer(**args), scale=0.3)
    ours, theirs = wrap(nn.TransformerEncoderLayer(**args), theirs, masks)
    x = rand(2, 5, 8) if batch_first else rand(5, 2, 8)
    assert_matches_torch(ours, theirs, [x], dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm_first,activation,batch_first", LAYER_CASES)
def test_decoder_layer_matches_torch(dtype, norm_first, activation, batch_first):
    args = dict(d_model=8, nhead=2, dim_feedforward=16, dropout=0.0, activation=activation,
                batch_first=batch_first, norm_first=norm_first)
    masks = {"tgt_mask": causal_mask(4, "float"),  # float masks here, bool in the encoder test
             "tgt_key_padding_mask": np.where(padding_mask([4, 2], 4), -np.inf, 0.0),
             "memory_key_padding_mask": padding_mask([6, 5], 6)}
    theirs = randomize_(torch.nn.TransformerDecoderLayer(**args), scale=0.3)
    ours, theirs = wrap(nn.TransformerDecoderLayer(**args), theirs, masks)
    tgt, memory = (rand(2, 4, 8), rand(2, 6, 8)) if batch_first else (rand(4, 2, 8), rand(6, 2, 8))
    assert_matches_torch(ours, theirs, [tgt, memory], dtype=dtype)


def test_layers_in_eval_mode_with_dropout_match_torch():
    args = dict(d_model=8, nhead=4, dim_feedforward=12, dropout=0.3, batch_first=True)
    ours, theirs = wrap(nn.TransformerDecoderLayer(**args).eval(),
                        randomize_(torch.nn.TransformerDecoderLayer(**args), scale=0.3).eval(),
                        {"tgt_mask": causal_mask(4)})
    ours.eval(), theirs.eval()
    assert_matches_torch(ours, theirs, [rand(3, 4, 8), rand(3, 5, 8)], dtype=np.float64)
    ours, theirs = wrap(nn.TransformerEncoderLayer(**args).eval(),
                        randomize_(torch.nn.TransformerEncoderLayer(**args), scale=0.3).eval(), {})
    ours.eval(), theirs.eval()
    assert_matches_torch(ours, theirs, [rand(3, 4, 8)], dtype=np.float64)


def test_layer_parameter_names_match_torch():
    for ours, theirs in [(nn.TransformerEncoderLayer(8, 2, 16), torch.nn.TransformerEncoderLayer(8, 2, 16)),
                         (nn.TransformerDecoderLayer(8, 2, 16), torch.nn.TransformerDecoderLayer(8, 2, 16))]:
        assert list(ours.state_dict()) == list(theirs.state_dict())


def test_encoder_layer_gradcheck():
    layer = nn.TransformerEncoderLayer(4, 2, 6, dropout=0.0, batch_first=True, norm_first=True).double()
    gradcheck(lambda x: layer(x, src_key_padding_mask=padding_mask([3, 2], 3)), [rand(2, 3, 4)])


def test_dropout_in_training_changes_output_and_is_identity_in_eval():
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.5, batch_first=True).double()
    x = sz.Tensor(rand(2, 5, 8))
    sz.manual_seed(0)
    a, b = layer(x).data, layer(x).data
    assert not np.allclose(a, b)
    layer.eval()
    np.testing.assert_array_equal(layer(x).data, layer(x).data)


def test_bad_activation_is_rejected():
    with pytest.raises(ValueError, match="activation"):
        nn.TransformerEncoderLayer(8, 2, activation="tanhh")


# ============================================================================ positional encodings


def test_sinusoidal_encoding_adds_the_table_in_both_layouts():
    pe = nn.SinusoidalPositionalEncoding(6, max_len=50)
    assert "pe" not in pe.state_dict()  # non-persistent: rebuilt from the formula, never saved
    x = rand(2, 7, 6).astype(np.float32)
    y = pe(sz.Tensor(x))
    np.testing.assert_allclose(y.data - x, np.broadcast_to(pe.pe.data[:7], (2, 7, 6)), atol=1e-6)
    seq_first = nn.SinusoidalPositionalEncoding(6, max_len=50, batch_first=False)
    y2 = seq_first(sz.Tensor(x.transpose(1, 0, 2).copy()))
    np.testing.assert_allclose(y2.data.transpose(1, 0, 2), y.data, rtol=1e-6)
    with pytest.raises(sz.ShapeError):
        pe(sz.Tensor(rand(1, 51, 6).astype(np.float32)))


def test_sinusoidal_encoding_passes_gradient_through():
    pe = nn.SinusoidalPositionalEncoding(5, max_len=10).double()
    gradcheck(pe, [rand(2, 4, 5)])


def test_learned_positional_embedding_learns_one_row_per_position():
    emb = nn.LearnedPositionalEmbedding(10, 4).double()
    assert list(emb.state_dict()) == ["weight"]
    x = sz.Tensor(rand(3, 6, 4), requires_grad=True)
    y = emb(x)
    np.testing.assert_allclose(y.data, x.data + emb.weight.data[:6])
    y.backward(np.ones((3, 6, 4)))
    np.testing.assert_array_equal(emb.weight.grad[:6], 3.0)  # summed over the batch
    np.testing.assert_array_equal(emb.weight.grad[6:], 0.0)  # unused positions get nothing
    seq_first = nn.LearnedPositionalEmbedding(10, 4, batch_first=False).double()
    seq_first.weight.data = emb.weight.data.copy()
    np.testing.assert_allclose(seq_first(sz.Tensor(x.data.transpose(1, 0, 2))).data.transpose(1, 0, 2), y.data)


# ============================================================================ stacks


@pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")  # torch's note on its own fast path
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_matches_torch(dtype, norm_first):
    args = dict(d_model=8, nhead=2, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=12, dropout=0.0,
                batch_first=True, norm_first=norm_first)
    masks = {"tgt_mask": causal_mask(4), "src_key_padding_mask": padding_mask([5, 3], 5),
             "memory_key_padding_mask": padding_mask([5, 3], 5), "tgt_key_padding_mask": padding_mask([4, 3], 4)}
    ours, theirs = wrap(nn.Transformer(**args), randomize_(torch.nn.Transformer(**args), scale=0.3), masks)
    assert_matches_torch(ours, theirs, [rand(2, 5, 8), rand(2, 4, 8)], dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_encoder_and_decoder_stacks_match_torch(dtype):
    layer_args = dict(d_model=8, nhead=4, dim_feedforward=12, dropout=0.0)
    ours, theirs = wrap(nn.TransformerEncoder(nn.TransformerEncoderLayer(**layer_args), 3),
                        randomize_(torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(**layer_args), 3,
                                                               enable_nested_tensor=False), scale=0.3),
                        {"mask": causal_mask(5)})
    assert_matches_torch(ours, theirs, [rand(5, 2, 8)], dtype=dtype)
    ours, theirs = wrap(nn.TransformerDecoder(nn.TransformerDecoderLayer(**layer_args), 2, nn.LayerNorm(8)),
                        randomize_(torch.nn.TransformerDecoder(torch.nn.TransformerDecoderLayer(**layer_args), 2,
                                                               torch.nn.LayerNorm(8)), scale=0.3),
                        {"tgt_mask": causal_mask(3)})
    assert_matches_torch(ours, theirs, [rand(3, 2, 8), rand(6, 2, 8)], dtype=dtype)


def test_stack_layers_are_independent_copies_and_init_is_xavier():
    model = nn.Transformer(16, 2, 2, 1, 32)
    a, b = model.encoder.layers[0], model.encoder.layers[1]
    assert a.linear1.weight is not b.linear1.weight
    assert not np.array_equal(a.linear1.weight.data, b.linear1.weight.data)  # re-drawn after the copy
    bound = np.sqrt(6.0 / (16 + 32))
    assert np.abs(a.linear1.weight.data).max() <= bound
    mask = nn.Transformer.generate_square_subsequent_mask(3).data
    np.testing.assert_array_equal(mask, torch.nn.Transformer.generate_square_subsequent_mask(3).numpy())
