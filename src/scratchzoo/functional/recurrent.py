"""Recurrent ops: one fused Function per cell step, and one "scan" Function per sequence that runs it.

A recurrent layer repeats one small computation (a cell step) over time:

    state_t = cell(x_t W_ih^T + b_ih,  h_{t-1} W_hh^T + b_hh,  state_{t-1})

Two kinds of op live here.

* Step ops (`LSTMCellOp`, `GRUCellOp`): one time step, from the gate pre-activations to the new
  state, with the whole backward of the step written out by hand. The cells (nn.LSTMCell, nn.GRUCell)
  call them through the engine, one graph node per step.
* Scan ops (`RNNScan`, `LSTMScan`, `GRUScan`): a whole sequence as one graph node. Forward loops over
  time, running the step op's own `forward` on plain arrays; backward is backpropagation through time
  (BPTT): it walks the steps in reverse, calling each step op's `backward`. The input projection
  x W_ih^T + b_ih is not inside: the layer computes it for all steps with one matrix product before
  the scan (F.linear on the whole (T, B, in) input), and the scan returns its gradient as one array.

Why a scan and not a Python loop over engine nodes: each step needs its own slice of that projection,
and the engine's indexing op gives every slice a gradient the size of the whole sequence (the slice's
gradient padded with zeros). With T steps that is T full-size arrays to allocate and add, ~0.5 s for
the LSTM benchmark (T=64, B=32, H=256), where the scan writes step t's gradient straight into row t.

Variable lengths: `lengths[b]` valid steps in row b, the rest padding. Step t updates row b only when
t < lengths[b]:  state = m * state_new + (1 - m) * state_prev,  m = 1 if t < lengths[b] else 0, and
the output there is m * h_new (zero on padding, as pad_packed_sequence gives). Run in reverse
(t = T-1 ... 0), the same mask keeps row b at its initial state until t = lengths[b] - 1, so the
reverse direction starts at each row's last valid element, with no reordering of the data.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from scratchzoo.autograd import DTypeError, Function, ShapeError, Tensor
from scratchzoo.functional._base import as_tensor
from scratchzoo.functional.elementwise import LeakyReLU, Tanh, sigmoid_from_tanh_half
from scratchzoo.functional.shape import Index


# ============================================================================ taking rows out of a result


def _rows(x: Tensor, key: int | slice) -> Tensor:
    """x[key] for an int or a slice on the first axis: the engine's Index op, whose backward writes dy into
    those rows with a plain assignment (basic indexing picks each row once; no np.add.at)."""
    return Index.apply(x, key=key)


# ============================================================================ step ops


class LSTMCellOp(Function):
    """One LSTM step, fused: gate pre-activations and c_prev in, h and c out (stacked as (2, B, H)).

    gates = x W_ih^T + b_ih + h_prev W_hh^T + b_hh, shape (B, 4H), in PyTorch's row order [i | f | g | o]:
        i = sigma(gates_i)    input gate: how much of the candidate enters the cell
        f = sigma(gates_f)    forget gate: how much of the old cell is kept
        g = tanh(gates_g)     candidate content, in (-1, 1)
        o = sigma(gates_o)    output gate: how much of the cell is shown as h
        c = f * c_prev + i * g
        h = o * tanh(c)
    Backward, with dh and dc the gradients arriving at h and c:
        dc_all  = dc + dh * o * (1 - tanh(c)^2)          (c feeds h as well as the next step)
        di = dc_all * g,  df = dc_all * c_prev,  dg = dc_all * i,  do = dh * tanh(c)
        dgates  = [di * i(1-i) | df * f(1-f) | dg * (1-g^2) | do * o(1-o)]
        dc_prev = dc_all * f
    All four activations come from one tanh: sigma(x) = (1 + tanh(x/2)) / 2, so the sigma columns are
    halved first; then sigma'(x) = (1 - tanh(x/2)^2) / 4 and tanh'(x) = 1 - tanh(x)^2 share one form.
    """

    def forward(self, gates, c_prev):
        H = c_prev.shape[-1]
        half = np.full(4 * H, 0.5, dtype=gates.dtype)
        half[2 * H:3 * H] = 1.0                       # the g columns take a plain tanh
        self.t = np.tanh(gates * half)                # tanh(x/2) for i, f, o; tanh(x) for g
        s = sigmoid_from_tanh_half(self.t)
        self.i, self.f, self.o = s[..., :H], s[..., H:2 * H], s[..., 3 * H:]
        self.g = self.t[..., 2 * H:3 * H]
        self.c_prev = c_prev
        c = self.f * c_prev + self.i * self.g         # c = f * c_prev + i * g
        self.tanh_c = np.tanh(c)
        return np.stack([self.o * self.tanh_c, c])    # h = o * tanh(c)

    def backward(self, grad):
        dh, dc = grad[0], grad[1]
        H = dh.shape[-1]
        dc_all = dc + dh * self.o * (1.0 - self.tanh_c * self.tanh_c)
        d_act = np.empty(dh.shape[:-1] + (4 * H,), dtype=dh.dtype)   # dL/d(i, f, g, o)
        d_act[..., :H] = dc_all * self.g
        d_act[..., H:2 * H] = dc_all * self.c_prev
        d_act[..., 2 * H:3 * H] = dc_all * self.i
        d_act[..., 3 * H:] = dh * self.tanh_c
        slope = np.full(4 * H, 0.25, dtype=dh.dtype)                 # sigma' = (1 - t^2) / 4
        slope[2 * H:3 * H] = 1.0                                     # tanh'  = (1 - t^2)
        d_gates = d_act * (1.0 - self.t * self.t) * slope
        return d_gates, dc_all * self.f


class GRUCellOp(Function):
    """One GRU step, fused: the two projections and h_prev in, h out (PyTorch's formulation).

    gx = x W_ih^T + b_ih and gh = h_prev W_hh^T + b_hh, each (B, 3H) in the row order [r | z | n]:
        r = sigma(gx_r + gh_r)          reset gate: how much of h_prev the candidate may see
        z = sigma(gx_z + gh_z)          update gate: how much of h_prev is kept
        n = tanh(gx_n + r * gh_n)       candidate; r scales W_hn h + b_hn (bias included), as PyTorch
        h = (1 - z) * n + z * h_prev
    Backward, with dh the gradient arriving at h:
        dn = dh * (1 - z),  dz = dh * (h_prev - n),  dh_prev (direct path) = dh * z
        dn_pre = dn * (1 - n^2),  dr = dn_pre * gh_n
        dgx = [dr * r(1-r) | dz * z(1-z) | dn_pre],   dgh = [dr * r(1-r) | dz * z(1-z) | dn_pre * r]
    The gh path into h_prev (through W_hh) is the caller's: dh_prev += dgh @ W_hh.
    """

    def forward(self, gx, gh, h_prev):
        H = h_prev.shape[-1]
        self.t = np.tanh(0.5 * (gx[..., :2 * H] + gh[..., :2 * H]))   # tanh(x/2) for r and z
        rz = sigmoid_from_tanh_half(self.t)
        self.r, self.z = rz[..., :H], rz[..., H:]
        self.gh_n = gh[..., 2 * H:]
        self.n = np.tanh(gx[..., 2 * H:] + self.r * self.gh_n)
        self.h_prev = h_prev
        return self.n + self.z * (h_prev - self.n)                     # (1 - z) * n + z * h_prev

    def backward(self, grad):
        H = grad.shape[-1]
        dn_pre = grad * (1.0 - self.z) * (1.0 - self.n * self.n)
        d_rz = np.empty(grad.shape[:-1] + (2 * H,), dtype=grad.dtype)  # dL/d(r, z)
        d_rz[..., :H] = dn_pre * self.gh_n
        d_rz[..., H:] = grad * (self.h_prev - self.n)
        d_rz *= 0.25 * (1.0 - self.t * self.t)                         # sigma' = (1 - tanh(x/2)^2) / 4
        grad_gx = np.concatenate([d_rz, dn_pre], axis=-1)
        grad_gh = np.concatenate([d_rz, dn_pre * self.r], axis=-1)
        return grad_gx, grad_gh, grad * self.z


# ============================================================================ scan ops (BPTT)


class _Scan(Function):
    """The loop shared by the three scans; a subclass says how one step runs forward and backward.

    Inputs: gx (T, B, G) = the input projection of every step; W_hh (G, H); b_hh (G,) if `has_bias`;
    then the initial state arrays, each (B, H). Output, one array (T + S, B, H): rows 0..T-1 the
    outputs h_t, then the S final state arrays (h_n; for the LSTM also c_n).

    Per step: gh = h_prev W_hh^T + b_hh (one matrix product), then the fused step op. Backward per
    step: the step op's backward, then dh_prev = dgh W_hh (one matrix product). The weight gradients
    wait until the end: dW_hh = sum_t dgh_t^T h_{t-1} is one matrix product over all T*B rows.
    """

    n_states = 1
    gh_is_gx = True   # the step adds gx and gh, so they share one gradient (RNN, LSTM; not GRU)

    def step(self, gx_t: np.ndarray, gh: np.ndarray, state: tuple) -> tuple[tuple, Any]:
        raise NotImplementedError

    def step_backward(self, cell: Any, d_state: list) -> tuple[np.ndarray, np.ndarray, tuple]:
        raise NotImplementedError

    def forward(self, gx, w_hh, *rest, has_bias, lengths, reverse):
        b_hh, state = (rest[0], tuple(rest[1:])) if has_bias else (None, tuple(rest))
        T, B, _ = gx.shape
        H = w_hh.shape[1]
        self.has_bias, self.w_hh, self.gx_shape = has_bias, w_hh, gx.shape
        self.steps = range(T - 1, -1, -1) if reverse else range(T)
        self.mask = None if lengths is None else \
            (np.arange(T)[:, None] < lengths[None, :]).astype(gx.dtype)[..., None]   # (T, B, 1)
        self.h_prev = np.empty((T, B, H), dtype=gx.dtype)   # what W_hh saw at each step, for dW_hh
        self.cells: list[Any] = [None] * T
        y = np.empty((T + self.n_states, B, H), dtype=gx.dtype)
        for t in self.steps:
            self.h_prev[t] = state[0]
            gh = state[0] @ w_hh.T
            if b_hh is not None:
                gh += b_hh
            new, self.cells[t] = self.step(gx[t], gh, state)
            if self.mask is None:
                y[t] = new[0]
            else:                                      # padding: keep the old state, output zero
                m = self.mask[t]
                np.multiply(m, new[0], out=y[t])
                new = tuple(np.where(m > 0, s, old) for s, old in zip(new, state))   # m s + (1 - m) old
            state = new
        y[T:] = np.stack(state)
        return y

    def backward(self, grad):
        T = self.gx_shape[0]
        d_out = grad[:T]
        d_state = [grad[T + k] for k in range(self.n_states)]   # arriving at the final state
        d_gx = np.empty(self.gx_shape, dtype=grad.dtype)
        d_gh = d_gx if self.gh_is_gx else np.empty_like(d_gx)
        for t in reversed(self.steps):
            if self.mask is None:
                d_new, carry = [d_state[0] + d_out[t]] + d_state[1:], None
            else:                                      # m * state_new + (1 - m) * state_prev
                m = self.mask[t]
                d_new = [m * (d_state[0] + d_out[t])] + [m * d for d in d_state[1:]]
                carry = [d - m * d for d in d_state]
            d_gx[t], d_gh_t, direct = self.step_backward(self.cells[t], d_new)
            if not self.gh_is_gx:
                d_gh[t] = d_gh_t
            d_state = [d_gh[t] @ self.w_hh] + list(direct[1:])         # back through gh = h W_hh^T
            if direct[0] is not None:
                d_state[0] += direct[0]
            if carry is not None:
                d_state = [d + c for d, c in zip(d_state, carry)]
        wants = self.needs_input_grad
        rows = d_gh.reshape(-1, d_gh.shape[-1])                         # (T*B, G)
        d_w = rows.T @ self.h_prev.reshape(-1, self.h_prev.shape[-1]) if wants[1] else None
        d_b = (rows.sum(axis=0),) if self.has_bias else ()
        return (d_gx, d_w) + d_b + tuple(d_state)


class RNNScan(_Scan):
    """h_t = act(gx_t + h_{t-1} W_hh^T + b_hh), act = tanh or relu; the step op is Tanh or ReLU itself."""

    def forward(self, gx, w_hh, *rest, nonlinearity, **options):
        self.nonlinearity = nonlinearity
        return super().forward(gx, w_hh, *rest, **options)

    def step(self, gx_t, gh, state):
        gh += gx_t
        if self.nonlinearity == "tanh":
            act = Tanh()
            return (act.forward(gh),), act
        act = LeakyReLU()
        return (act.forward(gh, slope=0.0),), act

    def step_backward(self, act, d_state):
        d_pre = act.backward(d_state[0])
        return d_pre, d_pre, (None,)


class LSTMScan(_Scan):
    """The LSTM over a sequence: LSTMCellOp at each step, gates = gx_t + h_{t-1} W_hh^T + b_hh."""

    n_states = 2

    def step(self, gx_t, gh, state):
        gh += gx_t
        cell = LSTMCellOp()
        hc = cell.forward(gh, state[1])
        return (hc[0], hc[1]), cell

    def step_backward(self, cell, d_state):
        d_gates, dc_prev = cell.backward(np.stack(d_state))
        return d_gates, d_gates, (None, dc_prev)


class GRUScan(_Scan):
    """The GRU over a sequence: GRUCellOp at each step, with gh = h_{t-1} W_hh^T + b_hh kept apart."""

    gh_is_gx = False

    def step(self, gx_t, gh, state):
        cell = GRUCellOp()
        return (cell.forward(gx_t, gh, state[0]),), cell

    def step_backward(self, cell, d_state):
        d_gx, d_gh, dh_direct = cell.backward(d_state[0])
        return d_gx, d_gh, (dh_direct,)


# ============================================================================ public functions


def _same_dtype(name: str, tensors: Sequence[Tensor]) -> None:
    dtype = tensors[0].dtype
    if dtype.kind != "f":
        raise DTypeError(f"{name}: needs floating-point tensors, got {dtype}")
    for t in tensors[1:]:
        if t.dtype != dtype:
            raise DTypeError(f"{name}: cannot mix {dtype} and {t.dtype}; convert one with .to(dtype)")


def _check_shape(name: str, what: str, t: Tensor, shape: tuple[int, ...]) -> None:
    if t.shape != shape:
        raise ShapeError(f"{name}: {what} should have shape {shape}, got {t.shape}")


def lengths_array(lengths: Any, steps: int, batch: int, name: str) -> np.ndarray | None:
    """Check `lengths` (ints, one per row, each in 1..steps); None when every row is full length."""
    if lengths is None:
        return None
    array = np.asarray(lengths.data if isinstance(lengths, Tensor) else lengths)
    if array.dtype.kind not in "iu":
        raise DTypeError(f"{name}: lengths must be integers, got {array.dtype}")
    if array.shape != (batch,):
        raise ShapeError(f"{name}: lengths should have shape ({batch},), one per batch row, got {array.shape}")
    if batch and (array.min() < 1 or array.max() > steps):
        raise ValueError(f"{name}: lengths must lie in 1..{steps} (the sequence length), "
                         f"got min {array.min()} max {array.max()}")
    return None if np.all(array == steps) else array.astype(np.int64)


def lstm_cell_gates(gates: Tensor, c_prev: Tensor) -> tuple[Tensor, Tensor]:
    """One LSTM step from the gate pre-activations (B, 4H) [i | f | g | o] and c_prev (B, H): (h, c).

    c = sigma(f) * c_prev + sigma(i) * tanh(g),  h = sigma(o) * tanh(c)  (see LSTMCellOp).
    """
    gates, c_prev = as_tensor(gates), as_tensor(c_prev)
    _same_dtype("lstm_cell_gates", [gates, c_prev])
    _check_shape("lstm_cell_gates", "gates", gates, c_prev.shape[:-1] + (4 * c_prev.shape[-1],))
    hc = LSTMCellOp.apply(gates, c_prev)
    return _rows(hc, 0), _rows(hc, 1)


def gru_cell(gx: Tensor, gh: Tensor, h_prev: Tensor) -> Tensor:
    """One GRU step: gx = x W_ih^T + b_ih, gh = h_prev W_hh^T + b_hh (each (B, 3H) [r | z | n]) -> h.

    r = sigma(gx_r + gh_r), z = sigma(gx_z + gh_z), n = tanh(gx_n + r * gh_n), h = (1 - z) n + z h_prev.
    """
    gx, gh, h_prev = as_tensor(gx), as_tensor(gh), as_tensor(h_prev)
    _same_dtype("gru_cell", [gx, gh, h_prev])
    shape = h_prev.shape[:-1] + (3 * h_prev.shape[-1],)
    _check_shape("gru_cell", "gx", gx, shape)
    _check_shape("gru_cell", "gh", gh, shape)
    return GRUCellOp.apply(gx, gh, h_prev)


def _scan(op: type[_Scan], name: str, gates: int, gx: Tensor, states: Sequence[Tensor], weight_hh: Tensor,
          bias_hh: Tensor | None, lengths: Any, reverse: bool, **options: Any) -> list[Tensor]:
    gx, weight_hh = as_tensor(gx), as_tensor(weight_hh)
    states = [as_tensor(s) for s in states]
    inputs = [gx, weight_hh] + ([] if bias_hh is None else [as_tensor(bias_hh)]) + states
    _same_dtype(name, inputs)
    if gx.ndim != 3:
        raise ShapeError(f"{name}: gx should be (T, B, {gates}*H), got shape {gx.shape}")
    T, B = gx.shape[:2]
    H = weight_hh.shape[-1]
    _check_shape(name, "weight_hh", weight_hh, (gates * H, H))
    _check_shape(name, "gx", gx, (T, B, gates * H))
    if bias_hh is not None:
        _check_shape(name, "bias_hh", inputs[2], (gates * H,))
    for k, s in enumerate(states):
        _check_shape(name, f"initial state {k}", s, (B, H))
    if T == 0:
        raise ShapeError(f"{name}: needs at least one time step, got gx of shape {gx.shape}")
    y = op.apply(*inputs, has_bias=bias_hh is not None, lengths=lengths_array(lengths, T, B, name),
                 reverse=bool(reverse), **options)
    return [_rows(y, slice(0, T))] + [_rows(y, T + k) for k in range(len(states))]


def rnn_scan(gx: Tensor, h0: Tensor, weight_hh: Tensor, bias_hh: Tensor | None = None, nonlinearity: str = "tanh",
             lengths: Any = None, reverse: bool = False) -> tuple[Tensor, Tensor]:
    """Elman RNN over a sequence: h_t = act(gx_t + h_{t-1} W_hh^T + b_hh), gx = x W_ih^T + b_ih for all t.

    gx (T, B, H), h0 (B, H) -> (outputs (T, B, H), h_n (B, H)). `lengths`: valid steps per row (padding
    gives zero outputs and leaves the state alone); `reverse`: run from t = T-1 down to 0.
    """
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"rnn_scan: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    out, h_n = _scan(RNNScan, "rnn_scan", 1, gx, [h0], weight_hh, bias_hh, lengths, reverse,
                     nonlinearity=nonlinearity)
    return out, h_n


def lstm_scan(gx: Tensor, h0: Tensor, c0: Tensor, weight_hh: Tensor, bias_hh: Tensor | None = None,
              lengths: Any = None, reverse: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """LSTM over a sequence: LSTMCellOp on gates_t = gx_t + h_{t-1} W_hh^T + b_hh at every step.

    gx (T, B, 4H), h0 and c0 (B, H) -> (outputs (T, B, H), h_n, c_n). lengths, reverse: as rnn_scan.
    """
    out, h_n, c_n = _scan(LSTMScan, "lstm_scan", 4, gx, [h0, c0], weight_hh, bias_hh, lengths, reverse)
    return out, h_n, c_n


def gru_scan(gx: Tensor, h0: Tensor, weight_hh: Tensor, bias_hh: Tensor | None = None, lengths: Any = None,
             reverse: bool = False) -> tuple[Tensor, Tensor]:
    """GRU over a sequence: GRUCellOp(gx_t, h_{t-1} W_hh^T + b_hh, h_{t-1}) at every step.

    gx (T, B, 3H), h0 (B, H) -> (outputs (T, B, H), h_n). lengths, reverse: as rnn_scan.
    """
    out, h_n = _scan(GRUScan, "gru_scan", 3, gx, [h0], weight_hh, bias_hh, lengths, reverse)
    return out, h_n
