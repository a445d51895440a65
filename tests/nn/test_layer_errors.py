"""Layers, containers, caches, state dicts, checkpoints and samplers reject bad arguments with errors that
name the layer (or function), the expected and the given, instead of an IndexError or a NumPy message from
deep inside (or a silently wrong result)."""
from __future__ import annotations

import numpy as np
import pytest

from scratchzoo import io, nn
from scratchzoo.autograd import DTypeError, ShapeError, Tensor
from scratchzoo.models.gpt import GPT, GPTConfig
from scratchzoo.models.rnn import CharLM, CharLMConfig, generate, stream
from scratchzoo.sampling import sample_next

from helpers import rand


def T(*shape: int) -> Tensor:
    return Tensor(rand(*shape).astype(np.float32))


# ============================================================================ positional tables


@pytest.mark.parametrize("layer", [nn.SinusoidalPositionalEncoding(16, max_len=8), nn.LearnedPositionalEmbedding(8, 16)])
def test_positional_table_rejects_a_1d_input_naming_the_layer(layer):
    name = type(layer).__name__
    with pytest.raises(ShapeError, match=rf"{name}\(.*\) expected 2-D or 3-D input, got shape \(16,\)"):
        layer(T(16))
    assert layer(T(5, 16)).shape == (5, 16)  # unbatched (T, d) still works


# ============================================================================ recurrent states


def test_lstm_cell_rejects_a_single_tensor_as_hx():
    cell = nn.LSTMCell(10, 20)
    with pytest.raises(ValueError, match=r"LSTMCell\(10->20\) expected hx as a tuple \(h, c\), "
                                         r"got Tensor of shape \(2, 20\)"):
        cell(T(2, 10), T(2, 20))
    with pytest.raises(ValueError, match=r"LSTMCell\(10->20\) expected hx as a tuple \(h, c\), got 3 states"):
        cell(T(2, 10), (T(2, 20),) * 3)
    h, c = cell(T(2, 10), (T(2, 20), T(2, 20)))
    assert h.shape == c.shape == (2, 20)


def test_lstm_rejects_a_single_tensor_as_hx_with_the_same_check():
    with pytest.raises(ValueError, match=r"LSTM\(10->20\) expected hx as a tuple \(h0, c0\), "
                                         r"got Tensor of shape \(1, 2, 20\)"):
        nn.LSTM(10, 20)(T(4, 2, 10), T(1, 2, 20))


def test_gru_cell_still_takes_a_single_tensor():
    assert nn.GRUCell(10, 20)(T(2, 10), T(2, 20)).shape == (2, 20)


# ============================================================================ KV cache


def test_kv_cache_append_rejects_another_head_count():
    cache = nn.KVCache()
    cache.append("layer0.self", T(1, 2, 3, 4), T(1, 2, 3, 4))
    with pytest.raises(ShapeError, match=r"KVCache.append: slot 'layer0.self' holds keys of shape \(1, 2, 3, 4\) "
                                         r"\(N, H, T, d_head\), so new keys must have shape \(1, 2, T, 4\), "
                                         r"got \(1, 3, 1, 4\)"):
        cache.append("layer0.self", T(1, 3, 1, 4), T(1, 3, 1, 4))
    with pytest.raises(ShapeError, match=r"new values must have shape \(1, 2, T, 4\), got \(1, 2, 1, 5\)"):
        cache.append("layer0.self", T(1, 2, 1, 4), T(1, 2, 1, 5))
    assert cache.length("layer0.self") == 3  # a refused append leaves the cache as it was
    k, _ = cache.append("layer0.self", T(1, 2, 1, 4), T(1, 2, 1, 4))
    assert k.shape == (1, 2, 4, 4)


def test_gpt_cache_reused_with_another_batch_names_the_cache():
    gpt = GPT(GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=16))
    cache = nn.KVCache()
    gpt(Tensor(np.ones((1, 3), np.int64)), cache)
    with pytest.raises(ShapeError, match=r"KVCache.append: slot 'h.0' holds keys of shape \(1, 2, 3, 8\).*"
                                         r"got \(2, 2, 1, 8\).*start a new KVCache"):
        gpt(Tensor(np.ones((2, 1), np.int64)), cache)


# ============================================================================ masks by the caller's name


def test_encoder_layer_masks_are_reported_by_their_own_names():
    layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True)
    with pytest.raises(ShapeError, match=r"src_mask must have shape \(5, 5\) or \(8, 5, 5\), got \(4, 4\)"):
        layer(T(2, 5, 16), src_mask=np.zeros((4, 4), bool))
    with pytest.raises(ShapeError, match=r"src_key_padding_mask must have shape \(2, 5\), got \(2, 4\)"):
        layer(T(2, 5, 16), src_key_padding_mask=np.zeros((2, 4), bool))


def test_transformer_masks_are_reported_by_their_own_names():
    model = nn.Transformer(16, 4, 1, 1, 32, dropout=0.0, batch_first=True)
    src, tgt = T(2, 5, 16), T(2, 4, 16)
    with pytest.raises(ShapeError, match=r"MultiheadAttention\(.*\): tgt_mask must have shape \(4, 4\) or "
                                         r"\(8, 4, 4\), got \(5, 5\)"):
        model(src, tgt, tgt_mask=np.zeros((5, 5), bool))
    with pytest.raises(ShapeError, match=r"memory_mask must have shape \(4, 5\) or \(8, 4, 5\), got \(4, 4\)"):
        model(src, tgt, memory_mask=np.zeros((4, 4), bool))
    with pytest.raises(ShapeError, match=r"memory_key_padding_mask must have shape \(2, 5\), got \(2, 4\)"):
        model(src, tgt, memory_key_padding_mask=np.zeros((2, 4), bool))
    with pytest.raises(DTypeError, match=r"tgt_mask must be bool or float, got int64"):
        model(src, tgt, tgt_mask=np.zeros((4, 4), np.int64))


def test_multihead_attention_keeps_its_own_mask_names():
    layer = nn.MultiheadAttention(16, 4, batch_first=True)
    x = T(2, 5, 16)
    with pytest.raises(ShapeError, match=r"MultiheadAttention\(.*\): attn_mask must have shape \(5, 5\)"):
        layer(x, x, x, attn_mask=np.zeros((4, 4), bool))


# ============================================================================ load_state_dict


@pytest.mark.parametrize("given, kind, hint", [(nn.Linear(3, 2), "Linear", r" \(this is a module: pass its "
                                                                               r"\.state_dict\(\)\)"),
                                               ([np.zeros((2, 3))], "list", ""), (None, "NoneType", "")])
def test_load_state_dict_rejects_what_is_not_a_mapping(given, kind, hint):
    with pytest.raises(TypeError, match=rf"Linear.load_state_dict: expected a mapping of name -> array, "
                                        rf"got {kind}{hint}$"):
        nn.Linear(3, 2).load_state_dict(given)


def test_load_state_dict_names_the_key_it_cannot_convert_and_loads_nothing():
    layer = nn.Linear(3, 2)
    before = layer.state_dict()
    bad = {"bias": np.ones(2), "weight": np.array([[1, "a", 2], [1, 2, 3]], dtype=object)}
    with pytest.raises(DTypeError, match=r"Linear.load_state_dict: weight: expected values convertible to float32, "
                                         r"got dtype object \(could not convert string to float: 'a'\)"):
        layer.load_state_dict(bad)
    for name, value in layer.state_dict().items():  # not half loaded: the bias is as before too
        np.testing.assert_array_equal(value, before[name])
    layer.load_state_dict({"weight": np.ones((2, 3), dtype=object), "bias": np.zeros(2)})  # numbers convert
    assert layer.weight.dtype == np.float32 and layer.weight.data.sum() == 6


# ============================================================================ io.save_state_dict


def test_save_state_dict_accepts_tensors(tmp_path):
    path = tmp_path / "w.safetensors"
    io.save_state_dict({"w": Tensor(np.arange(3, dtype=np.float32)), "p": nn.Linear(2, 1).weight}, path)
    loaded = io.load_state_dict(path)
    np.testing.assert_array_equal(loaded["w"], np.arange(3, dtype=np.float32))
    assert loaded["p"].shape == (1, 2)


def test_save_state_dict_names_a_bad_key_or_value_and_writes_nothing(tmp_path):
    path = tmp_path / "w.safetensors"
    with pytest.raises(TypeError, match=r"save_state_dict: key 1 \(int\) is not a str"):
        io.save_state_dict({1: np.zeros(2, np.float32)}, path)
    with pytest.raises(DTypeError, match=r"save_state_dict: 'w' has dtype object; safetensors stores bool, "
                                         r"integer and float arrays only"):
        io.save_state_dict({"w": np.array(["a", None], dtype=object)}, path)
    assert not path.exists()


def test_save_checkpoint_names_a_bad_model_key(tmp_path):
    with pytest.raises(TypeError, match=r"save_checkpoint: model_state: key 0 \(int\) is not a str"):
        io.save_checkpoint(tmp_path, {0: np.zeros(2, np.float32)}, None, step=1)


# ============================================================================ containers


def test_sequential_index_out_of_range_names_the_container_and_its_length():
    seq = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(IndexError, match=r"Sequential: index 3 is out of range for 1 module \(valid: -1\.\.0\)"):
        seq[3]
    with pytest.raises(IndexError, match=r"Sequential: index -2 is out of range for 1 module"):
        seq[-2]
    assert seq[-1] is seq[0]
    assert len(seq[5:]) == 0


def test_module_list_index_out_of_range_names_the_container():
    layers = nn.ModuleList([nn.Linear(2, 2), nn.ReLU()])
    with pytest.raises(IndexError, match=r"ModuleList: index 2 is out of range for 2 modules"):
        layers[2]
    assert layers[-1] is layers[1] and layers[:1] == [layers[0]]


# ============================================================================ sampling


@pytest.mark.parametrize("shape, top_k", [((5,), None), ((5,), 2), ((2, 3, 5), None), ((2, 0), None)])
def test_sample_next_rejects_logits_that_are_not_batch_by_vocab(shape, top_k):
    with pytest.raises(ShapeError, match=rf"sample_next: logits must have shape \(B, V\) with V >= 1.*"
                                         rf"got {str(shape).replace('(', '[(]').replace(')', '[)]')}"):
        sample_next(np.zeros(shape), top_k=top_k)


def test_sample_next_hints_at_a_batch_of_one_for_a_1d_row():
    with pytest.raises(ShapeError, match=r"pass logits\[None\]"):
        sample_next(np.zeros(5), temperature=0)


# ============================================================================ models/rnn.py prompts


@pytest.fixture
def lm() -> CharLM:
    return CharLM(CharLMConfig(vocab_size=20, embedding_dim=8, hidden_size=8))


@pytest.mark.parametrize("prompt, error, message", [
    ([1.7, 2.9], DTypeError, r"generate: the prompt must hold integer ids, got dtype float64"),
    ("hello", DTypeError, r"generate: the prompt must hold integer ids, got dtype <U5 \(text: encode it"),
    ([[1, 2], [3, 4]], ShapeError, r"generate: the prompt must have shape \(L,\) with L >= 1, got \(2, 2\)"),
    ([], ShapeError, r"generate: the prompt must have shape \(L,\) with L >= 1, got \(0,\)"),
    ([25], IndexError, r"generate: the prompt ids must lie in \[0, 20\), got min 25 max 25"),
], ids=["float", "str", "batch", "empty", "out of range"])
def test_rnn_generate_checks_the_prompt(lm, prompt, error, message):
    with pytest.raises(error, match=message):
        generate(lm, prompt, 2)


def test_rnn_stream_checks_the_prompt_before_the_first_token(lm):
    with pytest.raises(ShapeError, match=r"stream: the prompt must have shape \(L,\)"):
        next(stream(lm, np.array([[1, 2]]), 2))


def test_rnn_generate_still_takes_lists_arrays_and_tensors(lm):
    for prompt in ([1, 2], np.array([1, 2], np.int32), Tensor(np.array([1, 2]))):
        out = generate(lm, prompt, 3, temperature=0)
        assert out.shape == (5,) and out.dtype == np.int64 and list(out[:2]) == [1, 2]


def test_a_negative_mask_size_is_named():
    with pytest.raises(ShapeError, match=r"generate_square_subsequent_mask: sz must be a non-negative int, got -1"):
        nn.Transformer.generate_square_subsequent_mask(-1)
