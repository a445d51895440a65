"""Transformer parts reject bad options, shapes and dtypes with errors that name the layer, the expected and
the given (instead of a message from an inner layer, or a silently wrong result)."""
from __future__ import annotations

import numpy as np
import pytest

import scratchzoo as sz
from scratchzoo import nn
from scratchzoo.autograd import DTypeError, ShapeError

from helpers import rand


def re_shape(shape: tuple[int, ...]) -> str:
    """A shape as the message prints it, escaped for a regex."""
    return str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")


@pytest.mark.parametrize("layer", [nn.TransformerEncoderLayer, nn.TransformerDecoderLayer])
def test_bad_activation_error_names_the_layer_expected_and_given(layer):
    with pytest.raises(ValueError, match=rf"{layer.__name__}: activation must be 'relu', 'gelu' or a callable, "
                                         r"got 'tanhh'"):
        layer(8, 2, activation="tanhh")


def test_transformer_activation_error_names_the_layer_it_builds():
    with pytest.raises(ValueError, match=r"TransformerEncoderLayer: activation .* got 'swish'"):
        nn.Transformer(8, 2, 1, 1, 16, activation="swish")


@pytest.mark.parametrize("batch_first", [True, False])
def test_transformer_rejects_src_and_tgt_of_different_batch_size(batch_first):
    model = nn.Transformer(8, 2, 1, 1, 16, dropout=0.0, batch_first=batch_first)
    src, tgt = (rand(2, 5, 8), rand(3, 4, 8)) if batch_first else (rand(5, 2, 8), rand(4, 3, 8))
    layout = r"\(N, S, 8\) and tgt \(N, T, 8\)" if batch_first else r"\(S, N, 8\) and tgt \(T, N, 8\)"
    with pytest.raises(ShapeError, match=rf"Transformer expected src {layout} with the same N "
                                         rf"\(batch_first={batch_first}\).*; got src shape {re_shape(src.shape)} "
                                         rf"and tgt shape {re_shape(tgt.shape)}"):
        model(sz.Tensor(src), sz.Tensor(tgt))


def test_transformer_reads_the_batch_size_from_the_axis_batch_first_names():
    src, tgt = sz.Tensor(rand(2, 5, 8)), sz.Tensor(rand(2, 4, 8))  # agree on dim 0 only
    assert nn.Transformer(8, 2, 1, 1, 16, dropout=0.0, batch_first=True).double()(src, tgt).shape == (2, 4, 8)
    with pytest.raises(ShapeError, match=r"Transformer expected src \(S, N, 8\) .*\(batch_first=False\)"):
        nn.Transformer(8, 2, 1, 1, 16, dropout=0.0, batch_first=False).double()(src, tgt)  # N = 5 and 4


@pytest.mark.parametrize("src_shape,tgt_shape", [
    ((2, 5, 8), (2, 4, 6)),   # tgt too narrow
    ((2, 5, 6), (2, 4, 6)),   # both narrower than d_model
    ((2, 5, 8), (4, 8)),      # batched src, unbatched tgt
])
def test_transformer_rejects_src_or_tgt_of_wrong_width_or_rank(src_shape, tgt_shape):
    model = nn.Transformer(8, 2, 1, 1, 16, dropout=0.0, batch_first=True)
    with pytest.raises(ShapeError, match=r"Transformer expected src \(N, S, 8\) and tgt \(N, T, 8\) .*unbatched src "
                                         r"\(S, 8\) and tgt \(T, 8\); got src shape "
                                         + re_shape(src_shape) + " and tgt shape " + re_shape(tgt_shape)):
        model(sz.Tensor(rand(*src_shape)), sz.Tensor(rand(*tgt_shape)))


def test_transformer_accepts_matching_unbatched_src_and_tgt():
    model = nn.Transformer(8, 2, 1, 1, 16, dropout=0.0).double()
    assert model(sz.Tensor(rand(5, 8)), sz.Tensor(rand(4, 8))).shape == (4, 8)


@pytest.mark.parametrize("int_dtype", [np.int64, np.int32, np.bool_])
def test_sinusoidal_encoding_rejects_non_float_input(int_dtype):
    pe = nn.SinusoidalPositionalEncoding(4, max_len=10)
    with pytest.raises(DTypeError, match=r"SinusoidalPositionalEncoding\(d_model=4, max_len=10, batch_first=True\) "
                                         rf"expected floating-point input, got {np.dtype(int_dtype)}"):
        pe(sz.Tensor(np.ones((2, 3, 4), dtype=int_dtype)))


def test_learned_embedding_rejects_non_float_input():
    emb = nn.LearnedPositionalEmbedding(10, 4)
    with pytest.raises(DTypeError, match=r"LearnedPositionalEmbedding\(max_len=10, d_model=4, batch_first=True\) "
                                         r"expected floating-point input, got int64"):
        emb(sz.Tensor(np.ones((2, 3, 4), dtype=np.int64)))
