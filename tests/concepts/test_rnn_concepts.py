"""The claims the RNN, LSTM and GRU pages make, each checked on the layers themselves.

- The state at step t summarises x_0 .. x_t: it changes when an earlier input changes and never when a
  later one does (and in a bidirectional layer the reverse direction is the mirror image).
- LSTM gates are sigmoids, so each lies in (0, 1) and acts as a soft switch; the candidate is a tanh,
  in (-1, 1), centred on zero, so it can add or remove.
- The cell state c is long-term memory: with the forget gate at 1 and the input gate at 0 it is
  carried unchanged over any number of steps, while h (short-term, o * tanh(c)) still moves with o.
- A GRU's new state is a mix (1 - z) * n + z * h_prev: with z at 1 the old state is kept as is.
- The plain RNN's gradient shrinks geometrically with the distance; an open forget gate carries it.
- Truncated BPTT: a detached state carries the values into the next window but no gradient back.
"""
from __future__ import annotations

import numpy as np
import pytest

import scratchzoo as sz
from scratchzoo import nn
from scratchzoo.models.rnn import detach_state

from helpers import rand

T, B, IN, H = 8, 2, 3, 5
KINDS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


@pytest.fixture(autouse=True)
def _seed() -> None:
    sz.manual_seed(0)  # the same initial weights in every run


def _output(layer: nn.Module, x: np.ndarray) -> np.ndarray:
    with sz.no_grad():
        return layer(sz.Tensor(x))[0].data


@pytest.mark.parametrize("kind", list(KINDS))
def test_state_at_t_depends_on_the_past_only(kind: str) -> None:
    layer = KINDS[kind](IN, H, num_layers=2).double()
    x = rand(T, B, IN)
    base = _output(layer, x)
    t = 4
    later = x.copy()
    later[t + 1] += 1.0                       # perturb the step after t
    np.testing.assert_array_equal(_output(layer, later)[:t + 1], base[:t + 1])
    earlier = x.copy()
    earlier[0] += 1.0                         # perturb the very first step
    changed = np.abs(_output(layer, earlier) - base).max(axis=(1, 2))
    assert np.all(changed > 1e-8), "every step from 0 on should feel x_0"


@pytest.mark.parametrize("kind", list(KINDS))
def test_gradient_of_h_t_reaches_exactly_the_inputs_up_to_t(kind: str) -> None:
    layer = KINDS[kind](IN, H).double()
    t = 5
    x = sz.Tensor(rand(T, B, IN), requires_grad=True)
    out, _ = layer(x)
    out[t].sum().backward()
    reach = np.abs(x.grad).max(axis=(1, 2))
    assert np.all(reach[:t + 1] > 0), f"d h_{t} / d x_s should be nonzero for s <= {t}: {reach}"
    assert np.all(reach[t + 1:] == 0), f"d h_{t} / d x_s should be zero for s > {t}: {reach}"


def test_reverse_direction_depends_on_the_future_only() -> None:
    layer = nn.GRU(IN, H, bidirectional=True).double()
    x = rand(T, B, IN)
    base = _output(layer, x)
    t = 3
    earlier = x.copy()
    earlier[t - 1] += 1.0
    out = _output(layer, earlier)
    np.testing.assert_array_equal(out[t:, :, H:], base[t:, :, H:])    # reverse half: steps >= t unchanged
    assert np.abs(out[t:, :, :H] - base[t:, :, :H]).max() > 1e-8     # forward half: changed


def test_lstm_cell_gates_lie_in_their_ranges() -> None:
    cell = nn.LSTMCell(IN, H).double()
    x = sz.Tensor(2 * rand(16, IN))
    state = (sz.Tensor(rand(16, H)), sz.Tensor(rand(16, H)))
    h, c, gates = cell(x, state, return_gates=True)
    for name in ("i", "f", "o"):
        value = getattr(gates, name).data
        assert value.shape == (16, H)
        assert np.all((value > 0) & (value < 1)), f"sigmoid gate {name} outside (0, 1)"
    assert np.all((gates.g.data > -1) & (gates.g.data < 1)), "tanh candidate outside (-1, 1)"
    assert np.all(np.abs(h.data) < 1)                               # h = o * tanh(c)
    # the gates returned are the ones the step used: c = f * c_prev + i * g, h = o * tanh(c)
    np.testing.assert_allclose(c.data, gates.f.data * state[1].data + gates.i.data * gates.g.data, rtol=1e-12)
    np.testing.assert_allclose(h.data, gates.o.data * np.tanh(c.data), rtol=1e-12)


def test_lstm_gates_over_a_sequence_match_the_layer() -> None:
    """nn.lstm_gates traces i, f, g, o of a layer at every step; they rebuild the layer's own c and h."""
    lstm = nn.LSTM(IN, H, num_layers=2, batch_first=True).double()
    x = sz.Tensor(rand(B, T, IN))
    out, (h_n, c_n) = lstm(x)
    gates = nn.lstm_gates(lstm, x, layer=1)
    assert gates.i.shape == (B, T, H)
    c = np.zeros((B, H))
    for t in range(T):
        c = gates.f.data[:, t] * c + gates.i.data[:, t] * gates.g.data[:, t]
        np.testing.assert_allclose(out.data[:, t], gates.o.data[:, t] * np.tanh(c), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(c_n.data[1], c, rtol=1e-10, atol=1e-12)
    for name in ("i", "f", "o"):
        assert np.all((getattr(gates, name).data > 0) & (getattr(gates, name).data < 1))


def test_forget_gate_one_and_input_gate_zero_keep_the_cell_for_100_steps() -> None:
    cell = nn.LSTMCell(IN, H).double()
    cell.bias_ih.data[:H] = -100.0            # input gate i = sigma(-100 + ...) = 0
    cell.bias_ih.data[H:2 * H] = 100.0        # forget gate f = sigma(100 + ...) = 1
    c0 = rand(B, H)
    h, c = sz.Tensor(np.zeros((B, H))), sz.Tensor(c0)
    hs = []
    for step in range(100):
        h, c = cell(sz.Tensor(rand(B, IN)), (h, c))
        np.testing.assert_allclose(c.data, c0, rtol=0, atol=1e-12, err_msg=f"cell changed at step {step}")
        hs.append(h.data)
    assert np.std(np.stack(hs), axis=0).min() > 0, "h = o * tanh(c) still follows the output gate"
    # the same through the sequence layer: c_n after 100 steps is c0
    lstm = nn.LSTM(IN, H).double()
    lstm.bias_ih_l0.data[:H], lstm.bias_ih_l0.data[H:2 * H] = -100.0, 100.0
    _, (_, c_n) = lstm(sz.Tensor(rand(100, B, IN)), (sz.Tensor(np.zeros((1, B, H))), sz.Tensor(c0[None])))
    np.testing.assert_allclose(c_n.data[0], c0, rtol=0, atol=1e-12)


def test_gru_update_gate_one_keeps_the_state() -> None:
    cell = nn.GRUCell(IN, H).double()
    cell.bias_ih.data[H:2 * H] = 100.0        # z = sigma(100 + ...) = 1: h' = z * h + (1 - z) * n = h
    h0 = sz.Tensor(rand(B, H))
    h = h0
    for _ in range(50):
        h = cell(sz.Tensor(rand(B, IN)), h)
    np.testing.assert_allclose(h.data, h0.data, rtol=0, atol=1e-12)


def _gradient_reach(layer: nn.Module, steps: int) -> np.ndarray:
    """|d sum(h_last) / d x_s| for each step s of one sequence (index 0: the last step, k: k steps back)."""
    x = sz.Tensor(rand(steps, 1, IN), requires_grad=True)
    out, _ = layer(x)
    out[-1].sum().backward()
    return np.abs(x.grad).reshape(steps, -1).sum(axis=1)[::-1]


def test_the_plain_rnns_gradient_shrinks_geometrically_and_an_open_forget_gate_carries_it() -> None:
    """Through T steps the plain RNN's gradient is multiplied T times by W_hh and tanh's slope: here it falls
    by orders of magnitude every 10 steps. The LSTM's cell changes additively; with the forget gate open
    (f = sigma(5) = 0.993) the gradient reaches 50 steps back about as strong as 1 step back."""
    rnn = nn.RNN(IN, 16).double()
    reach = _gradient_reach(rnn, 60)
    assert np.all(reach[10:60:10] < 1e-2 * reach[0:50:10]), reach[::10]  # each 10 steps: below 1/100
    lstm = nn.LSTM(IN, 16).double()
    lstm.bias_ih_l0.data[16:32] = 5.0  # forget-gate bias (gates in the order i, f, g, o)
    reach = _gradient_reach(lstm, 60)
    assert reach[50] > 0.1 * reach[1], reach[::10]


def test_truncated_bptt_stops_the_gradient_at_the_window_boundary() -> None:
    """recipes/rnn.py carries the state from one window to the next through models/rnn.py detach_state: the
    next window starts from the same values, but its loss sends no gradient into the window before."""
    lstm = nn.LSTM(IN, H).double()
    first = sz.Tensor(rand(6, B, IN), requires_grad=True)
    second = sz.Tensor(rand(6, B, IN))
    _, state = lstm(first)
    carried = detach_state(state)
    assert all(np.array_equal(a.data, b.data) for a, b in zip(carried, state))  # the memory is kept
    out, _ = lstm(second, carried)
    out.sum().backward()
    assert first.grad is None  # truncated: at most one window of steps back
    out, _ = lstm(second, state)  # not detached: the gradient flows into the first window
    out.sum().backward()
    assert np.abs(first.grad).sum() > 0
