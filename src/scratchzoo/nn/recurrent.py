"""Recurrent layers with PyTorch's API: the cells RNNCell, LSTMCell, GRUCell (one time step) and the
sequence layers RNN, LSTM, GRU (stacked, optionally bidirectional, with variable-length batches).

A recurrent layer reads a sequence one step at a time and carries a state from step to step, so the
state at step t summarises x_0 .. x_t and nothing after. The cells compute one step as the formulas
read; the sequence layers compute the input projection of every step with one matrix product, then
hand the loop over time to a scan op (functional/recurrent.py) that runs the same fused step op.

Parameters have PyTorch's names, shapes, gate order and initialisation (every one U(-1/sqrt(H),
1/sqrt(H))), so state dicts move between the two libraries: weight_ih_l{k} (G*H, in), weight_hh_l{k}
(G*H, H), bias_ih_l{k} and bias_hh_l{k} (G*H,), with `_reverse` for the backward direction; the G
blocks of rows are [i | f | g | o] for the LSTM (G=4), [r | z | n] for the GRU (G=3), one for the RNN.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from scratchzoo import functional as F
from scratchzoo.autograd import DTypeError, ShapeError, Tensor, no_grad
from scratchzoo.functional import recurrent as R
from scratchzoo.nn import init
from scratchzoo.nn.module import Module, check_input, empty_parameter

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def _nonlinearity_mode(nonlinearity: str, name: str) -> str:
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"{name}: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    return "RNN_" + nonlinearity.upper()


class LSTMGates(NamedTuple):
    """The four LSTM activations of a step (or of every step): i, f, o in (0, 1), g in (-1, 1)."""

    i: Tensor   # input gate
    f: Tensor   # forget gate
    g: Tensor   # candidate content
    o: Tensor   # output gate


def _gate_activations(gates: Tensor) -> LSTMGates:
    """gates (..., 4H) pre-activations [i | f | g | o] -> sigma(i), sigma(f), tanh(g), sigma(o)."""
    i, f, g, o = F.chunk(gates, 4, dim=-1)
    return LSTMGates(F.sigmoid(i), F.sigmoid(f), F.tanh(g), F.sigmoid(o))


class _Recurrent(Module):
    """What the cells and the sequence layers share: PyTorch's initialisation of their `hidden_size` state."""

    hidden_size: int

    def reset_parameters(self) -> None:
        """PyTorch's init for recurrent layers: every parameter U(-1/sqrt(H), 1/sqrt(H))."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -bound, bound)

    def _unpack_states(self, hx: Any, names: tuple[str, ...]) -> list[Any]:
        """hx as a list of its len(names) states: one state is hx itself; the LSTM's two must come as a tuple
        (h, c), since unpacking a single Tensor would take its rows for states."""
        if len(names) == 1:
            return [hx]
        if not isinstance(hx, (tuple, list)) or len(hx) != len(names):
            got = f"{len(hx)} states" if isinstance(hx, (tuple, list)) else type(hx).__name__
            if isinstance(hx, Tensor):
                got += f" of shape {hx.shape}"
            raise ValueError(f"{self.describe()} expected hx as a tuple ({', '.join(names)}), got {got}")
        return list(hx)


# ============================================================================ cells: one time step


class RNNCellBase(_Recurrent):
    """Shared by the cells: weight_ih (G*H, in), weight_hh (G*H, H), bias_ih, bias_hh (G*H,)."""

    mode = "RNN_TANH"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__()
        if input_size < 1 or hidden_size < 1:
            raise ValueError(f"{type(self).__name__}: input_size and hidden_size must be positive, "
                             f"got {input_size} and {hidden_size}")
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        rows = _GATES[self.mode] * hidden_size
        self.weight_ih = empty_parameter(rows, input_size)
        self.weight_hh = empty_parameter(rows, hidden_size)
        if bias:
            self.bias_ih = empty_parameter(rows)
            self.bias_hh = empty_parameter(rows)
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def _prepare(self, input: Tensor, hx: Any, n_states: int) -> tuple[Tensor, list[Tensor], bool]:
        """Batch the input if it is a single vector; check or create the state(s) of shape (B, H)."""
        check_input(self, input, ndims=(1, 2), last_dim=self.input_size)
        batched = input.ndim == 2
        x = input if batched else F.unsqueeze(input, 0)
        shape = (x.shape[0], self.hidden_size)
        if hx is None:
            return x, [Tensor(np.zeros(shape, dtype=x.dtype)) for _ in range(n_states)], batched
        names = ("h", "c")[:n_states]
        out = []
        for name, s in zip(names, self._unpack_states(hx, names)):
            if not isinstance(s, Tensor):
                raise TypeError(f"{self.describe()} expected a Tensor for {name}, got {type(s).__name__}")
            if s.dtype != x.dtype:
                raise DTypeError(f"{self.describe()} got {x.dtype} input but {s.dtype} state {name}")
            expected = shape if batched else shape[1:]
            if s.shape != expected:
                raise ShapeError(f"{self.describe()} expected state {name} of shape {expected}, got {s.shape}")
            out.append(s if batched else F.unsqueeze(s, 0))
        return x, out, batched

    def describe(self) -> str:
        return f"{type(self).__name__}({self.input_size}->{self.hidden_size})"

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            text += ", bias=False"
        if self.mode == "RNN_RELU":
            text += ", nonlinearity=relu"
        return text


def _unbatch(t: Tensor, batched: bool) -> Tensor:
    return t if batched else F.squeeze(t, 0)


class RNNCell(RNNCellBase):
    """h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh), act = tanh (default) or relu (Elman's RNN)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh"):
        object.__setattr__(self, "mode", _nonlinearity_mode(nonlinearity, "RNNCell"))  # before Module's init
        object.__setattr__(self, "nonlinearity", nonlinearity)
        super().__init__(input_size, hidden_size, bias)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, (h,), batched = self._prepare(input, hx, 1)
        pre = F.linear(x, self.weight_ih, self.bias_ih) + F.linear(h, self.weight_hh, self.bias_hh)
        h = F.tanh(pre) if self.nonlinearity == "tanh" else F.relu(pre)
        return _unbatch(h, batched)


class LSTMCell(RNNCellBase):
    """One LSTM step: (h, c) -> (h', c'), the gates of 4H rows in the order i, f, g, o.

    gates = x W_ih^T + b_ih + h W_hh^T + b_hh;  i, f, o = sigma(.), g = tanh(.)
    c' = f * c + i * g   (forget some of the old memory, write some of the new candidate)
    h' = o * tanh(c')    (show part of the memory as the output)
    `return_gates=True` also returns LSTMGates(i, f, g, o) (for plots of gate activity).
    """

    mode = "LSTM"

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None,
                return_gates: bool = False) -> Any:
        x, (h, c), batched = self._prepare(input, hx, 2)
        gates = F.linear(x, self.weight_ih, self.bias_ih) + F.linear(h, self.weight_hh, self.bias_hh)
        h, c = F.lstm_cell_gates(gates, c)                  # the fused step: see LSTMCellOp
        h, c = _unbatch(h, batched), _unbatch(c, batched)
        if not return_gates:
            return h, c
        return h, c, LSTMGates(*(_unbatch(a, batched) for a in _gate_activations(gates)))


class GRUCell(RNNCellBase):
    """One GRU step (PyTorch's form), the 3H rows in the order r, z, n:

    r = sigma(W_ir x + b_ir + W_hr h + b_hr),  z = sigma(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn)),  h' = (1 - z) * n + z * h
    """

    mode = "GRU"

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, (h,), batched = self._prepare(input, hx, 1)
        gx = F.linear(x, self.weight_ih, self.bias_ih)     # (B, 3H)
        gh = F.linear(h, self.weight_hh, self.bias_hh)     # (B, 3H), kept apart for r * (W_hn h + b_hn)
        return _unbatch(F.gru_cell(gx, gh, h), batched)    # the fused step: see GRUCellOp


# ============================================================================ sequence layers


class RNNBase(_Recurrent):
    """Shared by RNN, LSTM and GRU: the parameters of every layer and direction, and the forward loop
    over layers. forward(input, hx=None, lengths=None):

    input: (T, B, in), or (B, T, in) with batch_first, or (T, in) for one unbatched sequence.
    hx: initial state (num_layers * num_directions, B, H) (LSTM: a tuple (h0, c0)); zeros if None.
    lengths: valid steps per batch row (ints, each 1..T). Steps past a row's length are padding: they
        never reach the final state, their outputs are zero (as after pad_packed_sequence), and the
        reverse direction starts at the row's last valid step.
    Returns output (T, B, D*H) (batch_first: (B, T, D*H)) and the final state(s) of every layer and
    direction, (num_layers * D, B, H), ordered layer 0 forward, layer 0 reverse, layer 1 forward, ...
    """

    mode = "LSTM"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False):
        super().__init__()
        name = type(self).__name__
        if input_size < 1 or hidden_size < 1 or num_layers < 1:
            raise ValueError(f"{name}: input_size, hidden_size and num_layers must be positive, "
                             f"got {input_size}, {hidden_size}, {num_layers}")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"{name}: dropout must lie in [0, 1], got {dropout}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional = bidirectional
        self.num_directions = 2 if bidirectional else 1
        rows = _GATES[self.mode] * hidden_size
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size * self.num_directions
            for direction in range(self.num_directions):
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                setattr(self, "weight_ih" + suffix, empty_parameter(rows, layer_input))
                setattr(self, "weight_hh" + suffix, empty_parameter(rows, hidden_size))
                if bias:
                    setattr(self, "bias_ih" + suffix, empty_parameter(rows))
                    setattr(self, "bias_hh" + suffix, empty_parameter(rows))
        self.reset_parameters()

    def layer_parameters(self, layer: int, direction: int = 0) -> tuple[Any, Any, Any, Any]:
        """(weight_ih, weight_hh, bias_ih, bias_hh) of one layer and direction (biases None if bias=False)."""
        suffix = f"_l{layer}" + ("_reverse" if direction else "")
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        return tuple(self._parameters.get(n + suffix) for n in names)  # type: ignore[return-value]

    # ---- one layer, one direction ------------------------------------------------------------
    def _scan(self, gx: Tensor, state: list[Tensor], w_hh: Tensor, b_hh: Tensor | None,
              lengths: np.ndarray | None, reverse: bool) -> list[Tensor]:
        if self.mode == "LSTM":
            return list(F.lstm_scan(gx, state[0], state[1], w_hh, b_hh, lengths, reverse))
        if self.mode == "GRU":
            return list(F.gru_scan(gx, state[0], w_hh, b_hh, lengths, reverse))
        return list(F.rnn_scan(gx, state[0], w_hh, b_hh, self.mode[4:].lower(), lengths, reverse))

    # ---- checking the arguments --------------------------------------------------------------
    def _n_states(self) -> int:
        return 2 if self.mode == "LSTM" else 1

    def _initial_states(self, hx: Any, batch: int, dtype: np.dtype, batched: bool) -> list[list[Tensor]] | None:
        """hx -> [state kind][layer * D + direction] of (B, H) tensors; None means zeros."""
        if hx is None:
            return None
        names = ("h0", "c0")[:self._n_states()]
        states = self._unpack_states(hx, names)
        expected = (self.num_layers * self.num_directions, batch, self.hidden_size)
        if not batched:
            expected = expected[:1] + expected[2:]
        out = []
        for name, s in zip(names, states):
            if not isinstance(s, Tensor):
                raise TypeError(f"{self.describe()} expected a Tensor for {name}, got {type(s).__name__}")
            if s.dtype != dtype:
                raise DTypeError(f"{self.describe()} got {dtype} input but {s.dtype} {name}")
            if s.shape != expected:
                raise ShapeError(f"{self.describe()} expected {name} of shape {expected}, got {s.shape}")
            s = s if batched else F.unsqueeze(s, 1)
            out.append([s[k] for k in range(expected[0])])
        return out

    # ---- forward -----------------------------------------------------------------------------
    def _run(self, x: Tensor, states: list[list[Tensor]] | None, lengths: np.ndarray | None,
             stop_layer: int | None = None) -> tuple[Tensor, list[list[Tensor]]]:
        """Layers 0, 1, ... on x (T, B, in) -> (output of the last layer run, final states by kind).

        With stop_layer, stop before that layer and return its input instead."""
        B, H, D = x.shape[1], self.hidden_size, self.num_directions
        finals: list[list[Tensor]] = [[] for _ in range(self._n_states())]
        layer_input = x
        for layer in range(self.num_layers if stop_layer is None else stop_layer):
            outputs = []
            for direction in range(D):
                k = layer * D + direction
                w_ih, w_hh, b_ih, b_hh = self.layer_parameters(layer, direction)
                state = ([Tensor(np.zeros((B, H), dtype=x.dtype)) for _ in finals] if states is None
                         else [kind[k] for kind in states])
                gx = F.linear(layer_input, w_ih, b_ih)    # x_t W_ih^T + b_ih for every t: one product
                out, *final = self._scan(gx, state, w_hh, b_hh, lengths, reverse=direction == 1)
                outputs.append(out)
                for kind, f in zip(finals, final):
                    kind.append(f)
            layer_input = outputs[0] if D == 1 else F.cat(outputs, dim=2)   # (T, B, D*H)
            if self.dropout and self.training and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout)          # between layers only
        return layer_input, finals

    def _sequence(self, input: Tensor, lengths: Any) -> tuple[Tensor, bool, np.ndarray | None]:
        """Check the input; return it time-major (T, B, in), whether it had a batch dim, and lengths."""
        check_input(self, input, ndims=(2, 3), last_dim=self.input_size)
        batched = input.ndim == 3
        if not batched:
            x = F.unsqueeze(input, 1)
        else:
            x = F.transpose(input, 0, 1) if self.batch_first else input
        return x, batched, R.lengths_array(lengths, x.shape[0], x.shape[1], self.describe())

    def forward(self, input: Tensor, hx: Any = None, lengths: Any = None) -> tuple[Tensor, Any]:
        x, batched, lengths = self._sequence(input, lengths)
        states = self._initial_states(hx, x.shape[1], x.dtype, batched)
        output, finals = self._run(x, states, lengths)
        if batched and self.batch_first:
            output = F.transpose(output, 0, 1)
        stacked = [F.stack(kind) for kind in finals]                           # (L*D, B, H)
        if not batched:
            output = F.squeeze(output, 1)
            stacked = [F.squeeze(s, 1) for s in stacked]
        return output, (tuple(stacked) if self.mode == "LSTM" else stacked[0])

    def describe(self) -> str:
        return f"{type(self).__name__}({self.input_size}->{self.hidden_size})"

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            text += f", num_layers={self.num_layers}"
        if self.mode == "RNN_RELU":
            text += ", nonlinearity=relu"
        if not self.bias:
            text += ", bias=False"
        if self.batch_first:
            text += ", batch_first=True"
        if self.dropout:
            text += f", dropout={self.dropout}"
        if self.bidirectional:
            text += ", bidirectional=True"
        return text


class RNN(RNNBase):
    """Elman RNN, stacked: h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), act tanh or relu.

    Returns (output, h_n). See RNNBase for the arguments, shapes and `lengths`.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False):
        object.__setattr__(self, "mode", _nonlinearity_mode(nonlinearity, "RNN"))
        object.__setattr__(self, "nonlinearity", nonlinearity)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional)


class LSTM(RNNBase):
    """LSTM, stacked: at each step the gates i, f, g, o (rows in that order) update a cell c and h:

    c_t = f * c_{t-1} + i * g   (long-term memory: changed only as much as f and i allow)
    h_t = o * tanh(c_t)         (short-term memory: what this step shows to the next layer and step)
    Returns (output, (h_n, c_n)). See RNNBase for the arguments, shapes and `lengths`.
    """

    mode = "LSTM"


class GRU(RNNBase):
    """GRU, stacked: r, z, n (rows in that order); h_t = (1 - z) * n + z * h_{t-1}.

    Returns (output, h_n). See RNNBase for the arguments, shapes and `lengths`.
    """

    mode = "GRU"


# ============================================================================ looking inside an LSTM


def lstm_gates(lstm: LSTM, input: Tensor, hx: tuple[Tensor, Tensor] | None = None, layer: int = 0,
               direction: int = 0) -> LSTMGates:
    """The gate activations of one layer and direction of `lstm` at every step of `input`, for plots.

    Runs without recording a graph; returns LSTMGates(i, f, g, o), each (T, B, H) (batch_first:
    (B, T, H); unbatched input: (T, H)). Equal, step for step, to what LSTM.forward computes.
    """
    if not isinstance(lstm, LSTM):
        raise TypeError(f"lstm_gates: expected an LSTM, got {type(lstm).__name__} (for an LSTMCell use "
                        "forward(..., return_gates=True))")
    if not 0 <= layer < lstm.num_layers or not 0 <= direction < lstm.num_directions:
        raise ValueError(f"lstm_gates: {lstm.describe()} has layers 0..{lstm.num_layers - 1} and directions "
                         f"0..{lstm.num_directions - 1}, got layer {layer}, direction {direction}")
    with no_grad():
        x, batched, _ = lstm._sequence(input, None)
        states = lstm._initial_states(hx, x.shape[1], x.dtype, batched)
        layer_input, _ = lstm._run(x, states, None, stop_layer=layer)
        w_ih, w_hh, b_ih, b_hh = lstm.layer_parameters(layer, direction)
        k = layer * lstm.num_directions + direction
        shape = (x.shape[1], lstm.hidden_size)
        h, c = ([Tensor(np.zeros(shape, dtype=x.dtype))] * 2 if states is None else [kind[k] for kind in states])
        gx = F.linear(layer_input, w_ih, b_ih)
        steps = range(x.shape[0] - 1, -1, -1) if direction else range(x.shape[0])
        trace: list[LSTMGates | None] = [None] * x.shape[0]
        for t in steps:
            gates = gx[t] + F.linear(h, w_hh, b_hh)
            trace[t] = _gate_activations(gates)
            h, c = F.lstm_cell_gates(gates, c)
        result = [F.stack([step[n] for step in trace]) for n in range(4)]    # each (T, B, H)
        if batched and lstm.batch_first:
            result = [F.transpose(r, 0, 1) for r in result]
        if not batched:
            result = [F.squeeze(r, 1) for r in result]
        return LSTMGates(*result)
