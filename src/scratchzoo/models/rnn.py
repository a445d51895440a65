"""Recurrent models: a sequence classifier and a character language model, plus decoding.

A recurrent layer reads a sequence one step at a time and carries a hidden state h from step to step:

  RNN:  h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
  LSTM: gates i, f, o = sigmoid(...), candidate g = tanh(...);  c_t = f * c_{t-1} + i * g,  h_t = o * tanh(c_t)
  GRU:  r, z = sigmoid(...), n = tanh(W_in x_t + b_in + r * (W_hn h_{t-1} + b_hn));  h_t = (1 - z) * n + z * h_{t-1}

(computed in `nn/recurrent.py`, one fused op per step in `functional/recurrent.py`).

SequenceClassifier:  x (N, T, F) -> recurrent layer -> h_T of the last layer (N, H) -> Linear -> logits (N, C)
CharLM:              ids (B, T) -> Embedding (B, T, E) -> recurrent layer (B, T, H) -> Linear -> logits (B, T, V)

`stream` decodes from a CharLM one id at a time (`generate` collects them): greedy (the argmax of y_t at
every step) when temperature is 0, otherwise a draw from softmax(y_t / temperature), optionally restricted
to the top-k scores or the top-p mass (scratchzoo/sampling.py). The state is carried from step to step, so
the prefix is read once, never recomputed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

from scratchzoo.autograd import Tensor, no_grad
from scratchzoo.nn import GRU, LSTM, RNN, Embedding, Linear, Module, check_token_ids, eval_mode
from scratchzoo.sampling import sample_next

CELLS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}


def recurrent_layer(cell: str, input_size: int, hidden_size: int, num_layers: int, dropout: float) -> Module:
    """RNN, LSTM or GRU by name, batch_first (inputs (B, T, features))."""
    if cell not in CELLS:
        raise ValueError(f"unknown cell {cell!r}; choose one of {sorted(CELLS)}")
    return CELLS[cell](input_size, hidden_size, num_layers=num_layers, batch_first=True,
                       dropout=dropout if num_layers > 1 else 0.0)


# ============================================================================ classification


@dataclass
class SequenceClassifierConfig:
    input_size: int = 1
    num_classes: int = 10
    hidden_size: int = 128
    num_layers: int = 1
    cell: str = "gru"  # 'rnn', 'lstm' or 'gru'
    dropout: float = 0.0  # between stacked recurrent layers


class SequenceClassifier(Module):
    """Read the whole sequence, classify from the last hidden state (it has seen every step)."""

    def __init__(self, config: SequenceClassifierConfig):
        super().__init__()
        self.config = config
        self.rnn = recurrent_layer(config.cell, config.input_size, config.hidden_size, config.num_layers,
                                   config.dropout)
        self.head = Linear(config.hidden_size, config.num_classes)

    def forward(self, x: Tensor) -> Tensor:          # x: (N, T, F)
        _, state = self.rnn(x)
        h_n = state[0] if isinstance(state, tuple) else state   # LSTM: (h_n, c_n); classify from h, not c
        return self.head(h_n[-1])                    # h_n: (layers, N, H) -> last layer (N, H) -> (N, C)


# ============================================================================ character language model


@dataclass
class CharLMConfig:
    vocab_size: int = 96
    embedding_dim: int = 64
    hidden_size: int = 256
    num_layers: int = 1
    cell: str = "lstm"
    dropout: float = 0.0


class CharLM(Module):
    """Predict the next character from every prefix: logits at step t score the character at t + 1."""

    def __init__(self, config: CharLMConfig):
        super().__init__()
        self.config = config
        self.embed = Embedding(config.vocab_size, config.embedding_dim)
        self.rnn = recurrent_layer(config.cell, config.embedding_dim, config.hidden_size, config.num_layers,
                                   config.dropout)
        self.head = Linear(config.hidden_size, config.vocab_size)

    def forward(self, idx: Tensor, state: Any = None) -> tuple[Tensor, Any]:   # idx: (B, T) integer ids
        x = self.embed(idx)                          # (B, T, E)
        output, state = self.rnn(x, state)           # (B, T, H); state: h_n or (h_n, c_n), (layers, B, H)
        return self.head(output), state              # logits (B, T, V)


def detach_state(state: Any) -> Any:
    """The same state cut off from the graph: truncated BPTT stops gradients at chunk boundaries."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def check_prompt(model: CharLM, prompt_ids: Any, owner: str) -> np.ndarray:
    """The prompt as a 1-D int64 array, or an error naming `owner`: floats are not silently truncated, nor a
    batch (B, L) flattened into one sequence (the rules of nn.check_token_ids, for one sequence)."""
    return check_token_ids(prompt_ids, owner, "the prompt", model.config.vocab_size, ndim=1)


def stream(model: CharLM, prompt_ids: Sequence[int], max_new_tokens: int, temperature: float = 1.0,
           top_k: int | None = None, top_p: float | None = None) -> Iterator[int]:
    """Yield the `max_new_tokens` ids that continue `prompt_ids`, one at a time (to print as they come).

    The prompt is one sequence (L,) of integer ids in [0, vocab_size), L >= 1; it is read once, and after
    that each step feeds only the newest id with the carried state. Eval mode for the whole generation (the
    caller's mode back after); no graph is recorded.
    """
    prompt = check_prompt(model, prompt_ids, "stream")
    with eval_mode(model):
        state, fed = None, prompt[None, :]                   # (1, T): the prompt first, then one id a step
        for _ in range(max_new_tokens):
            with no_grad():  # around the model only: the caller's code runs between the yields
                logits, state = model(Tensor(fed), state)    # (1, T, V)
            token = int(sample_next(logits.data[:, -1], temperature, top_k, top_p)[0])
            yield token
            fed = np.array([[token]], dtype=np.int64)


def generate(model: CharLM, prompt_ids: Sequence[int], max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None) -> np.ndarray:
    """Continue `prompt_ids` (L,) by `max_new_tokens` ids (`stream`); returns prompt + new ids (1-D int64)."""
    prompt = check_prompt(model, prompt_ids, "generate")
    new = list(stream(model, prompt, max_new_tokens, temperature, top_k, top_p))
    return np.concatenate([prompt, np.array(new, dtype=np.int64)])
