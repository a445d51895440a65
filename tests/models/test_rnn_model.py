"""models/rnn.py: shapes, parity of SequenceClassifier and CharLM with the same models built from torch.nn
(weights through the state dict), and decoding: greedy picks the argmax, the carried state equals
re-reading the whole prefix, sampling honours top-k and the library seed."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import scratchzoo as sz
from scratchzoo.autograd import Tensor, no_grad
from scratchzoo.models.rnn import CharLM, CharLMConfig, SequenceClassifier, SequenceClassifierConfig, generate

from helpers import assert_close, assert_matches_torch, rand

TORCH_CELLS = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}


class TorchSequenceClassifier(torch.nn.Module):
    def __init__(self, cell: str, input_size: int, hidden: int, classes: int, layers: int):
        super().__init__()
        self.rnn = TORCH_CELLS[cell](input_size, hidden, num_layers=layers, batch_first=True)
        self.head = torch.nn.Linear(hidden, classes)

    def forward(self, x):
        _, state = self.rnn(x)
        h_n = state[0] if isinstance(state, tuple) else state
        return self.head(h_n[-1])


class TorchCharLM(torch.nn.Module):
    def __init__(self, cell: str, vocab: int, embed: int, hidden: int):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, embed)
        self.rnn = TORCH_CELLS[cell](embed, hidden, batch_first=True)
        self.head = torch.nn.Linear(hidden, vocab)

    def forward(self, idx):
        output, _ = self.rnn(self.embed(idx))
        return self.head(output)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_shapes(cell):
    classifier = SequenceClassifier(SequenceClassifierConfig(input_size=3, num_classes=5, hidden_size=8, cell=cell,
                                                             num_layers=2))
    assert classifier(Tensor(rand(4, 7, 3).astype(np.float32))).shape == (4, 5)
    lm = CharLM(CharLMConfig(vocab_size=11, embedding_dim=6, hidden_size=8, cell=cell))
    logits, state = lm(Tensor(np.zeros((2, 9), dtype=np.int64)))
    assert logits.shape == (2, 9, 11)
    states = state if isinstance(state, tuple) else (state,)
    assert [s.shape for s in states] == [(1, 2, 8)] * len(states)


def test_unknown_cell_is_refused():
    with pytest.raises(ValueError, match="unknown cell"):
        SequenceClassifier(SequenceClassifierConfig(cell="transformer"))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_sequence_classifier_matches_torch(cell, dtype):
    ours = SequenceClassifier(SequenceClassifierConfig(input_size=3, num_classes=4, hidden_size=6, num_layers=2,
                                                       cell=cell))
    theirs = TorchSequenceClassifier(cell, 3, 6, 4, 2)
    assert_matches_torch(ours, theirs, [rand(5, 12, 3)], dtype=dtype)


class LogitsOnly(sz.nn.Module):
    """CharLM's logits without the state, wrapped so parity checks every parameter gradient by name."""

    def __init__(self, lm: CharLM):
        super().__init__()
        self.lm = lm

    def forward(self, idx):
        return self.lm(idx)[0]


class TorchLogitsOnly(torch.nn.Module):
    def __init__(self, lm: TorchCharLM):
        super().__init__()
        self.lm = lm

    def forward(self, idx):
        return self.lm(idx)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_charlm_matches_torch(cell, dtype):
    ours = LogitsOnly(CharLM(CharLMConfig(vocab_size=13, embedding_dim=5, hidden_size=7, cell=cell)))
    theirs = TorchLogitsOnly(TorchCharLM(cell, 13, 5, 7))
    ids = np.random.default_rng(0).integers(0, 13, size=(3, 10))
    assert_matches_torch(ours, theirs, [ids], dtype=dtype)


def test_greedy_decoding_picks_the_argmax():
    sz.manual_seed(0)
    lm = CharLM(CharLMConfig(vocab_size=9, embedding_dim=4, hidden_size=8, cell="gru"))
    out = generate(lm, [3, 1], max_new_tokens=6, temperature=0)
    with no_grad():
        for t in range(2, len(out)):  # every new id is the highest-scoring entry of y_{t-1}, given the prefix
            logits, _ = lm(Tensor(out[None, :t]))
            assert out[t] == int(np.argmax(logits.data[0, -1]))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_carried_state_equals_rereading_the_prefix(cell):
    sz.manual_seed(1)
    lm = CharLM(CharLMConfig(vocab_size=10, embedding_dim=4, hidden_size=6, cell=cell)).double()
    ids = np.random.default_rng(1).integers(0, 10, size=(2, 12))
    with no_grad():
        whole, whole_state = lm(Tensor(ids))
        first, state = lm(Tensor(ids[:, :5]))
        pieces = [first.data]
        for t in range(5, 12):  # one id at a time, the state carried
            logits, state = lm(Tensor(ids[:, t:t + 1]), state)
            pieces.append(logits.data)
    assert_close("logits", np.concatenate(pieces, axis=1), whole.data, rtol=1e-10, atol=1e-10)
    states = zip(state, whole_state) if isinstance(state, tuple) else [(state, whole_state)]
    for ours, expected in states:
        assert_close("final state", ours.data, expected.data, rtol=1e-10, atol=1e-10)


def test_sampling_uses_top_k_and_the_library_seed():
    lm = CharLM(CharLMConfig(vocab_size=7, embedding_dim=3, hidden_size=5))
    sz.manual_seed(3)
    first = generate(lm, [1], 20, temperature=1.0)
    sz.manual_seed(3)
    assert np.array_equal(first, generate(lm, [1], 20, temperature=1.0))
    assert len(first) == 21 and first[0] == 1
    sz.manual_seed(0)
    hot = generate(lm, [1], 200, temperature=5.0, top_k=2)[1:]
    with no_grad():  # every draw is one of the two best scores given its prefix
        logits, _ = lm(Tensor(np.concatenate([[1], hot[:-1]])[None]))
    best_two = np.argsort(-logits.data[0], axis=-1)[:, :2]
    assert all(token in pair for token, pair in zip(hot, best_two))
    with pytest.raises(ValueError, match="temperature"):
        generate(lm, [1], 3, temperature=-1.0)
