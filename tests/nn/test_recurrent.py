"""Recurrent layers and ops: parity with torch.nn (RNNCell, LSTMCell, GRUCell, RNN, LSTM, GRU) in forward,
final states and every gradient, float32 and float64; variable lengths against torch's packed sequences;
finite differences for the fused step ops and the scans; the fused ops against the compositions they
replace; long sequences; state-dict interchange; initialisation; dropout; errors that name the layer."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import scratchzoo as sz
from scratchzoo import functional as F
from scratchzoo import nn
from scratchzoo.autograd import DTypeError, ShapeError

from helpers import TOLERANCES, assert_close, assert_matches_torch, gradcheck, rand

DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])

# name -> (our class, torch's class, extra constructor arguments, number of state tensors)
KINDS = {
    "rnn_tanh": (nn.RNN, torch.nn.RNN, {}, 1),
    "rnn_relu": (nn.RNN, torch.nn.RNN, {"nonlinearity": "relu"}, 1),
    "lstm": (nn.LSTM, torch.nn.LSTM, {}, 2),
    "gru": (nn.GRU, torch.nn.GRU, {}, 1),
}
CELLS = {
    "rnn_tanh": (nn.RNNCell, torch.nn.RNNCell, {}, 1),
    "rnn_relu": (nn.RNNCell, torch.nn.RNNCell, {"nonlinearity": "relu"}, 1),
    "lstm": (nn.LSTMCell, torch.nn.LSTMCell, {}, 2),
    "gru": (nn.GRUCell, torch.nn.GRUCell, {}, 1),
}
INPUT, HIDDEN, STEPS, BATCH = 3, 4, 5, 3
LENGTHS = np.array([5, 2, 4])  # unsorted on purpose (enforce_sorted=False on torch's side)


@pytest.fixture(autouse=True)
def _seed_both_libraries() -> None:
    """Same initial weights in every run, whatever ran before (torch's are copied into ours)."""
    torch.manual_seed(0)
    sz.manual_seed(0)


# ============================================================================ wrappers: states and lengths as inputs


def _hx(states: tuple, n_states: int) -> Any:
    if not states:
        return None
    return tuple(states) if n_states == 2 else states[0]


def _flat(output: Any, n_states: int) -> tuple:
    out, final = output
    return (out,) + (tuple(final) if n_states == 2 else (final,))


class OurSequence(nn.Module):
    """rnn(x, hx, lengths=...) with the initial states as separate inputs, outputs flattened."""

    def __init__(self, rnn: nn.Module, n_states: int):
        super().__init__()
        self.rnn, self.n_states = rnn, n_states

    def forward(self, x: sz.Tensor, lengths: Any, *states: sz.Tensor) -> tuple:
        return _flat(self.rnn(x, _hx(states, self.n_states), lengths=lengths), self.n_states)


class TorchSequence(torch.nn.Module):
    """The same through torch; with lengths, the documented path: pack (unsorted), run, pad back."""

    def __init__(self, rnn: torch.nn.Module, n_states: int):
        super().__init__()
        self.rnn, self.n_states = rnn, n_states

    def forward(self, x: torch.Tensor, lengths: Any, *states: torch.Tensor) -> tuple:
        hx = _hx(states, self.n_states)
        if lengths is None:
            return _flat(self.rnn(x, hx), self.n_states)
        first = self.rnn.batch_first
        packed = pack_padded_sequence(x, lengths, batch_first=first, enforce_sorted=False)
        out, final = self.rnn(packed, hx)
        out, _ = pad_packed_sequence(out, batch_first=first, total_length=x.shape[1 if first else 0])
        return _flat((out, final), self.n_states)


def compare_sequence(kind: str, dtype: Any, with_states: bool = False, lengths: np.ndarray | None = None,
                     unbatched: bool = False, **options: Any) -> None:
    ours_cls, torch_cls, extra, n_states = KINDS[kind]
    ours = OurSequence(ours_cls(INPUT, HIDDEN, **extra, **options), n_states)
    theirs = TorchSequence(torch_cls(INPUT, HIDDEN, **extra, **options), n_states)
    layers = options.get("num_layers", 1) * (2 if options.get("bidirectional") else 1)
    if unbatched:
        x, state_shape = rand(STEPS, INPUT), (layers, HIDDEN)
    else:
        x = rand(BATCH, STEPS, INPUT) if options.get("batch_first") else rand(STEPS, BATCH, INPUT)
        state_shape = (layers, BATCH, HIDDEN)
    states = [rand(state_shape) for _ in range(n_states)] if with_states else []
    assert_matches_torch(ours, theirs, [x, lengths] + states, dtype=dtype)


# ============================================================================ sequence layers vs torch


CONFIGS = {
    "default": {},
    "two_layers": {"num_layers": 2},
    "bidirectional": {"bidirectional": True},
    "no_bias": {"bias": False},
    "batch_first": {"batch_first": True},
    "two_layers_bidirectional_batch_first": {"num_layers": 2, "bidirectional": True, "batch_first": True},
}


@DTYPES
@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("kind", list(KINDS))
def test_sequence_layer_matches_torch(kind: str, config: str, dtype: Any) -> None:
    compare_sequence(kind, dtype, **CONFIGS[config])


@DTYPES
@pytest.mark.parametrize("kind", list(KINDS))
def test_sequence_layer_with_initial_states_matches_torch(kind: str, dtype: Any) -> None:
    compare_sequence(kind, dtype, with_states=True, num_layers=2, bidirectional=True)
    compare_sequence(kind, dtype, with_states=True, bias=False, batch_first=True)


@DTYPES
@pytest.mark.parametrize("kind", list(KINDS))
def test_variable_lengths_match_torch_packed_sequences(kind: str, dtype: Any) -> None:
    """Outputs after pad_packed_sequence (zeros on padding) and each row's final state after its last
    valid step; the reverse direction starting at each row's last valid element."""
    compare_sequence(kind, dtype, lengths=LENGTHS)
    compare_sequence(kind, dtype, lengths=LENGTHS, with_states=True, num_layers=2, bidirectional=True)
    compare_sequence(kind, dtype, lengths=LENGTHS, batch_first=True, bidirectional=True)


@pytest.mark.parametrize("kind", list(KINDS))
def test_unbatched_sequence_matches_torch(kind: str) -> None:
    compare_sequence(kind, np.float64, unbatched=True, bidirectional=True)
    compare_sequence(kind, np.float64, unbatched=True, with_states=True, num_layers=2)


def test_full_lengths_equal_no_lengths() -> None:
    lstm = nn.LSTM(INPUT, HIDDEN, bidirectional=True).double()
    x = sz.Tensor(rand(STEPS, BATCH, INPUT))
    out, (h, c) = lstm(x)
    out2, (h2, c2) = lstm(x, lengths=[STEPS] * BATCH)
    for a, b in ((out, out2), (h, h2), (c, c2)):
        np.testing.assert_array_equal(a.data, b.data)


# ============================================================================ padding never leaks


@pytest.mark.parametrize("kind", list(KINDS))
def test_padding_values_never_reach_outputs_or_states(kind: str) -> None:
    ours_cls, _, extra, n_states = KINDS[kind]
    rnn = ours_cls(INPUT, HIDDEN, num_layers=2, bidirectional=True, **extra).double()
    x = rand(STEPS, BATCH, INPUT)
    garbage = x.copy()
    for b, n in enumerate(LENGTHS):
        garbage[n:, b] = 1e3
    clean = _flat(rnn(sz.Tensor(x), lengths=LENGTHS), n_states)         # output, then final state(s)
    dirty = _flat(rnn(sz.Tensor(garbage), lengths=LENGTHS), n_states)
    for a, b in zip(clean, dirty):
        np.testing.assert_array_equal(a.data, b.data)
    for b, n in enumerate(LENGTHS):  # each row alone, cut to its length, gives the same
        alone = _flat(rnn(sz.Tensor(x[:n, b:b + 1])), n_states)
        np.testing.assert_allclose(clean[0].data[:n, b:b + 1], alone[0].data, rtol=1e-12, atol=1e-12)
        assert np.all(clean[0].data[n:, b] == 0)
        for mine, single in zip(clean[1:], alone[1:]):
            np.testing.assert_allclose(mine.data[:, b:b + 1], single.data, rtol=1e-12, atol=1e-12)


# ============================================================================ cells vs torch


class OurCell(nn.Module):
    def __init__(self, cell: nn.Module, n_states: int):
        super().__init__()
        self.cell, self.n_states = cell, n_states

    def forward(self, x: sz.Tensor, *states: sz.Tensor) -> Any:
        return self.cell(x, _hx(states, self.n_states))


class TorchCell(torch.nn.Module):
    def __init__(self, cell: torch.nn.Module, n_states: int):
        super().__init__()
        self.cell, self.n_states = cell, n_states

    def forward(self, x: torch.Tensor, *states: torch.Tensor) -> Any:
        return self.cell(x, _hx(states, self.n_states))


@DTYPES
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("with_states", [True, False], ids=["hx", "no_hx"])
@pytest.mark.parametrize("kind", list(CELLS))
def test_cell_matches_torch(kind: str, with_states: bool, bias: bool, dtype: Any) -> None:
    ours_cls, torch_cls, extra, n_states = CELLS[kind]
    ours = OurCell(ours_cls(INPUT, HIDDEN, bias=bias, **extra), n_states)
    theirs = TorchCell(torch_cls(INPUT, HIDDEN, bias=bias, **extra), n_states)
    states = [rand(BATCH, HIDDEN) for _ in range(n_states)] if with_states else []
    assert_matches_torch(ours, theirs, [rand(BATCH, INPUT)] + states, dtype=dtype)


@pytest.mark.parametrize("kind", list(CELLS))
def test_unbatched_cell_matches_torch(kind: str) -> None:
    ours_cls, torch_cls, extra, n_states = CELLS[kind]
    ours = OurCell(ours_cls(INPUT, HIDDEN, **extra), n_states)
    theirs = TorchCell(torch_cls(INPUT, HIDDEN, **extra), n_states)
    assert_matches_torch(ours, theirs, [rand(INPUT)] + [rand(HIDDEN) for _ in range(n_states)], dtype=np.float64)


@pytest.mark.parametrize("kind", ["rnn_tanh", "lstm", "gru"])
def test_cell_stepped_over_a_sequence_matches_torch(kind: str) -> None:
    """Ten steps of a cell, the state fed back each time: gradients flow back through all of them."""
    ours_cls, torch_cls, _, n_states = CELLS[kind]

    def unroll(cell: Any, x: Any) -> Any:
        state = None
        outputs = []
        for t in range(x.shape[0]):
            state = cell(x[t], state)
            outputs.append(state[0] if n_states == 2 else state)
        return outputs

    class Ours(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cell = ours_cls(INPUT, HIDDEN)

        def forward(self, x: sz.Tensor) -> Any:
            return unroll(self.cell, x)

    class Theirs(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cell = torch_cls(INPUT, HIDDEN)

        def forward(self, x: torch.Tensor) -> Any:
            return unroll(self.cell, x)

    assert_matches_torch(Ours(), Theirs(), [rand(10, BATCH, INPUT)], dtype=np.float32)


# ============================================================================ fused ops: finite differences


def test_lstm_cell_gates_gradcheck() -> None:
    gradcheck(F.lstm_cell_gates, [rand(2, 12), rand(2, 3)])


def test_gru_cell_gradcheck() -> None:
    gradcheck(F.gru_cell, [rand(2, 9), rand(2, 9), rand(2, 3)])


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("lengths", [None, np.array([4, 1, 3])], ids=["full", "lengths"])
@pytest.mark.parametrize("scan", ["rnn_tanh", "rnn_relu", "lstm", "gru"])
def test_scan_gradcheck(scan: str, lengths: Any, reverse: bool) -> None:
    """Every input of a scan: gx, W_hh, b_hh and the initial states, with and without padding."""
    T, B, H = 4, 3, 2
    if scan == "lstm":
        gradcheck(lambda gx, w, b, h0, c0: F.lstm_scan(gx, h0, c0, w, b, lengths=lengths, reverse=reverse),
                  [rand(T, B, 4 * H), rand(4 * H, H), rand(4 * H), rand(B, H), rand(B, H)])
    elif scan == "gru":
        gradcheck(lambda gx, w, b, h0: F.gru_scan(gx, h0, w, b, lengths=lengths, reverse=reverse),
                  [rand(T, B, 3 * H), rand(3 * H, H), rand(3 * H), rand(B, H)])
    else:
        act = scan[4:]
        gradcheck(lambda gx, w, b, h0: F.rnn_scan(gx, h0, w, b, act, lengths=lengths, reverse=reverse),
                  [rand(T, B, H), rand(H, H), rand(H), rand(B, H)])


def test_scan_without_bias_gradcheck() -> None:
    gradcheck(lambda gx, w, h0, c0: F.lstm_scan(gx, h0, c0, w), [rand(3, 2, 8), rand(8, 2), rand(2, 2), rand(2, 2)])


# ============================================================================ fused ops vs compositions


def lstm_step_composed(gates: sz.Tensor, c_prev: sz.Tensor) -> tuple[sz.Tensor, sz.Tensor]:
    i, f, g, o = F.chunk(gates, 4, dim=-1)
    c = F.sigmoid(f) * c_prev + F.sigmoid(i) * F.tanh(g)
    return F.sigmoid(o) * F.tanh(c), c


def gru_step_composed(gx: sz.Tensor, gh: sz.Tensor, h_prev: sz.Tensor) -> sz.Tensor:
    x_r, x_z, x_n = F.chunk(gx, 3, dim=-1)
    h_r, h_z, h_n = F.chunk(gh, 3, dim=-1)
    r, z = F.sigmoid(x_r + h_r), F.sigmoid(x_z + h_z)
    n = F.tanh(x_n + r * h_n)
    return (1.0 - z) * n + z * h_prev


def _run_both(fused: Any, composed: Any, inputs: list[np.ndarray], dtype: Any) -> None:
    rtol, atol = TOLERANCES[np.dtype(dtype)]
    runs = []
    for fn in (fused, composed):
        tensors = [sz.Tensor(x.astype(dtype), requires_grad=True) for x in inputs]
        outs = fn(*tensors)
        outs = list(outs) if isinstance(outs, (tuple, list)) else [outs]
        rng = np.random.default_rng(1234)
        for o in outs:  # backward from each output with its own random upstream gradient
            o.backward(rng.standard_normal(o.shape).astype(dtype))
        runs.append((outs, tensors))
    (a_outs, a_in), (b_outs, b_in) = runs
    for k, (a, b) in enumerate(zip(a_outs, b_outs)):
        assert a.dtype == np.dtype(dtype)
        assert_close(f"output[{k}]", a.data, b.data, rtol, atol)
    for k, (a, b) in enumerate(zip(a_in, b_in)):
        assert a.grad.dtype == np.dtype(dtype)
        assert_close(f"grad of input[{k}]", a.grad, b.grad, rtol, atol)


@DTYPES
def test_lstm_cell_gates_matches_composition(dtype: Any) -> None:
    _run_both(F.lstm_cell_gates, lstm_step_composed, [3 * rand(4, 20), rand(4, 5)], dtype)


@DTYPES
def test_gru_cell_matches_composition(dtype: Any) -> None:
    _run_both(F.gru_cell, gru_step_composed, [2 * rand(4, 15), 2 * rand(4, 15), rand(4, 5)], dtype)


@DTYPES
def test_lstm_scan_matches_a_loop_of_steps(dtype: Any) -> None:
    """The scan (one graph node for the sequence) equals stepping the fused cell op in a Python loop."""
    def looped(gx: sz.Tensor, w: sz.Tensor, b: sz.Tensor, h: sz.Tensor, c: sz.Tensor) -> list[sz.Tensor]:
        outputs = []
        for t in range(gx.shape[0]):
            h, c = F.lstm_cell_gates(gx[t] + F.linear(h, w, b), c)
            outputs.append(h)
        return [F.stack(outputs), h, c]

    _run_both(lambda gx, w, b, h, c: F.lstm_scan(gx, h, c, w, b), looped,
              [rand(6, 3, 16), rand(16, 4), rand(16), rand(3, 4), rand(3, 4)], dtype)


# ============================================================================ long sequences


@pytest.mark.parametrize("kind", list(KINDS))
def test_gradient_flows_through_200_steps(kind: str) -> None:
    ours_cls, _, extra, _ = KINDS[kind]
    rnn = ours_cls(INPUT, 16, **extra)  # wide enough that some ReLU unit is active at step 0
    x = sz.Tensor(rand(200, 4, INPUT).astype(np.float32), requires_grad=True)
    out, final = rnn(x)
    h_n = final[0] if kind == "lstm" else final
    (out.sum() + h_n.sum()).backward()
    for name, p in [("input", x)] + list(rnn.named_parameters()):
        assert p.grad is not None and np.all(np.isfinite(p.grad)), name
    assert np.any(x.grad[0] != 0), "no gradient reached the first step"


# ============================================================================ state dicts, init, dropout


@pytest.mark.parametrize("kind", list(KINDS))
def test_state_dict_keys_equal_torch_and_load_into_torch(kind: str) -> None:
    ours_cls, torch_cls, extra, n_states = KINDS[kind]
    ours = ours_cls(INPUT, HIDDEN, num_layers=2, bidirectional=True, **extra)
    theirs = torch_cls(INPUT, HIDDEN, num_layers=2, bidirectional=True, **extra)
    state = ours.state_dict()
    assert list(state) == list(theirs.state_dict())
    assert {k: v.shape for k, v in state.items()} == {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})  # ours -> torch
    x = rand(STEPS, BATCH, INPUT).astype(np.float32)
    out, _ = ours(sz.Tensor(x))
    expected, _ = theirs(torch.from_numpy(x))
    assert_close("output", out.data, expected.detach().numpy(), *TOLERANCES[np.dtype(np.float32)])


@pytest.mark.parametrize("kind", list(CELLS))
def test_cell_state_dict_keys_equal_torch(kind: str) -> None:
    ours_cls, torch_cls, extra, _ = CELLS[kind]
    assert list(ours_cls(INPUT, HIDDEN, **extra).state_dict()) == list(torch_cls(INPUT, HIDDEN, **extra).state_dict())
    assert list(ours_cls(INPUT, HIDDEN, bias=False, **extra).state_dict()) == ["weight_ih", "weight_hh"]


def test_gate_rows_in_torch_order() -> None:
    """Setting the forget-gate bias block (rows H..2H) means the same in both libraries."""
    assert nn.LSTM(INPUT, HIDDEN).weight_ih_l0.shape == (4 * HIDDEN, INPUT)
    assert nn.GRU(INPUT, HIDDEN).weight_hh_l0.shape == (3 * HIDDEN, HIDDEN)
    ours, theirs = nn.LSTMCell(INPUT, HIDDEN), torch.nn.LSTMCell(INPUT, HIDDEN)
    ours.load_state_dict(theirs.state_dict())
    ours.bias_ih.data[HIDDEN:2 * HIDDEN] = 5.0
    with torch.no_grad():
        theirs.bias_ih[HIDDEN:2 * HIDDEN] = 5.0
    x, c = rand(BATCH, INPUT).astype(np.float32), rand(BATCH, HIDDEN).astype(np.float32)
    h0 = np.zeros_like(c)
    _, c_ours = ours(sz.Tensor(x), (sz.Tensor(h0), sz.Tensor(c)))
    _, c_torch = theirs(torch.from_numpy(x), (torch.from_numpy(h0), torch.from_numpy(c)))
    assert_close("c", c_ours.data, c_torch.detach().numpy(), 1e-4, 1e-5)


def test_default_init_is_uniform_within_one_over_sqrt_hidden() -> None:
    sz.manual_seed(0)
    lstm = nn.LSTM(20, 64, num_layers=2)
    bound = 1 / np.sqrt(64)
    values = np.concatenate([p.data.ravel() for p in lstm.parameters()])
    assert values.dtype == np.float32
    assert np.abs(values).max() <= bound
    assert abs(values.std() - bound / np.sqrt(3)) < 0.02 * bound  # the std of U(-a, a) is a / sqrt(3)
    sz.manual_seed(0)
    again = nn.LSTM(20, 64, num_layers=2)
    assert all(np.array_equal(a, b) for a, b in zip(lstm.state_dict().values(), again.state_dict().values()))


def test_dropout_acts_between_layers_in_training_only() -> None:
    x = sz.Tensor(rand(STEPS, BATCH, INPUT).astype(np.float32))
    lstm = nn.LSTM(INPUT, HIDDEN, num_layers=2, dropout=0.5)
    plain = nn.LSTM(INPUT, HIDDEN, num_layers=2)
    plain.load_state_dict(lstm.state_dict())
    sz.manual_seed(1)
    a, _ = lstm(x)
    sz.manual_seed(2)
    b, _ = lstm(x)
    sz.manual_seed(1)
    a_again, _ = lstm(x)
    assert not np.allclose(a.data, b.data)
    np.testing.assert_array_equal(a.data, a_again.data)
    lstm.eval()
    np.testing.assert_array_equal(lstm(x)[0].data, plain(x)[0].data)
    single = nn.LSTM(INPUT, HIDDEN, dropout=0.5)  # one layer: nothing lies between layers
    single_plain = nn.LSTM(INPUT, HIDDEN)
    single_plain.load_state_dict(single.state_dict())
    np.testing.assert_array_equal(single(x)[0].data, single_plain(x)[0].data)


def test_float64_module_gives_float64_outputs_and_grads() -> None:
    gru = nn.GRU(INPUT, HIDDEN, bidirectional=True).double()
    x = sz.Tensor(rand(STEPS, BATCH, INPUT), requires_grad=True)
    out, h = gru(x)
    (out.sum() + h.sum()).backward()
    assert out.dtype == h.dtype == x.grad.dtype == gru.weight_hh_l0_reverse.grad.dtype == np.float64


def test_repr_like_torch() -> None:
    assert repr(nn.LSTM(3, 4, num_layers=2, batch_first=True)) == \
        repr(torch.nn.LSTM(3, 4, num_layers=2, batch_first=True))
    options = {"num_layers": 2, "bias": False, "dropout": 0.5, "bidirectional": True}
    assert repr(nn.RNN(3, 4, **options)) == repr(torch.nn.RNN(3, 4, **options))
    assert repr(nn.RNNCell(3, 4, nonlinearity="relu")) == repr(torch.nn.RNNCell(3, 4, nonlinearity="relu"))
    assert repr(nn.GRUCell(3, 4, bias=False)) == repr(torch.nn.GRUCell(3, 4, bias=False))
    assert "nonlinearity=relu" in repr(nn.RNN(3, 4, nonlinearity="relu"))  # (torch's RNN leaves it out)


# ============================================================================ errors that name the layer


def test_errors_name_the_layer() -> None:
    lstm = nn.LSTM(INPUT, HIDDEN, num_layers=2)
    x = sz.Tensor(rand(STEPS, BATCH, INPUT).astype(np.float32))
    with pytest.raises(ShapeError, match=r"LSTM\(3->4\).*last dim 3"):
        lstm(sz.Tensor(rand(STEPS, BATCH, 5).astype(np.float32)))
    with pytest.raises(ShapeError, match=r"LSTM\(3->4\).*h0 of shape \(2, 3, 4\)"):
        lstm(x, (sz.zeros(1, BATCH, HIDDEN), sz.zeros(2, BATCH, HIDDEN)))
    with pytest.raises(ValueError, match="tuple"):
        lstm(x, sz.zeros(2, BATCH, HIDDEN))
    with pytest.raises(ValueError, match=r"lengths must lie in 1\.\.5"):
        lstm(x, lengths=[5, 0, 2])
    with pytest.raises(ShapeError, match=r"one per batch row"):
        lstm(x, lengths=[5, 2])
    with pytest.raises(DTypeError, match="float32 parameters"):
        lstm(sz.Tensor(rand(STEPS, BATCH, INPUT)))
    with pytest.raises(ValueError, match="nonlinearity"):
        nn.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="nonlinearity"):
        nn.RNNCell(3, 4, nonlinearity="gelu")
    with pytest.raises(ValueError, match="dropout"):
        nn.GRU(3, 4, dropout=1.5)
    with pytest.raises(ShapeError, match=r"GRUCell\(3->4\).*state h of shape \(3, 4\)"):
        nn.GRUCell(3, 4)(sz.zeros(3, 3), sz.zeros(2, 4))
    with pytest.raises(ShapeError, match="lstm_cell_gates"):
        F.lstm_cell_gates(sz.zeros(2, 7), sz.zeros(2, 2))
    with pytest.raises(DTypeError, match="lstm_scan"):
        F.lstm_scan(sz.zeros(2, 1, 8), sz.zeros(1, 2), sz.zeros(1, 2), sz.zeros(8, 2, dtype=np.float64))
