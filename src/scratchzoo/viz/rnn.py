"""Recurrent-network figures: LSTM gate activations and hidden states over one sequence (matplotlib optional).

Both plotting functions return whether a figure was written (False when matplotlib is missing). They take
a `models.rnn.CharLM` (x: a 1-D sequence of character ids), a `models.rnn.SequenceClassifier` (x: one
sample, (T, features) or (T,)) or, for `plot_gates`, a bare `nn.LSTM` (x: (T, input_size)). Heatmaps put
hidden units down and time across; what is drawn is the top recurrent layer unless `layer` says otherwise.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from scratchzoo.autograd import Tensor, no_grad
from scratchzoo.nn import LSTM, Module, eval_mode, lstm_gates
from scratchzoo.viz import have_matplotlib, new_figure


def _recurrent_input(model: Module, x: Any) -> tuple[Module, Tensor]:
    """The recurrent layer of `model` and what it reads for the one sample `x`, batched: (1, T, F)."""
    rnn = model.rnn if hasattr(model, "rnn") else model
    dtype = next(iter(rnn.parameters())).dtype
    values = np.asarray(x.data if isinstance(x, Tensor) else x)
    if hasattr(model, "embed"):  # a language model: x holds ids
        return rnn, model.embed(Tensor(values.reshape(1, -1).astype(np.int64)))
    if values.ndim == 1:  # (T,): one feature per step
        values = values[:, None]
    return rnn, Tensor(values[None].astype(dtype))


def _batch_first(rnn: Module, sequence: Tensor) -> Tensor:
    """`sequence` (1, T, F) laid out the way `rnn` reads it."""
    return sequence if rnn.batch_first else Tensor(np.swapaxes(sequence.data, 0, 1))


@no_grad()
def hidden_states(model: Module, x: Any) -> np.ndarray:
    """The top recurrent layer's hidden state h_t at every step of one sample, (T, H), in eval mode."""
    with eval_mode(model):
        rnn, sequence = _recurrent_input(model, x)
        output, _ = rnn(_batch_first(rnn, sequence))
    out = output.data if rnn.batch_first else np.swapaxes(output.data, 0, 1)
    return out[0].astype(np.float64)


@no_grad()
def gate_activations(model_or_lstm: Module, x: Any, layer: int | None = None) -> dict[str, np.ndarray]:
    """{'input': i, 'forget': f, 'output': o}, each (T, H), of one LSTM layer (default: the top one)."""
    with eval_mode(model_or_lstm):
        rnn, sequence = _recurrent_input(model_or_lstm, x)
        if not isinstance(rnn, LSTM):
            raise TypeError(f"plot_gates: needs an LSTM (or a model whose .rnn is one), got {type(rnn).__name__}; "
                            "for a GRU or RNN use plot_hidden_states")
        layer = rnn.num_layers - 1 if layer is None else layer
        gates = lstm_gates(rnn, _batch_first(rnn, sequence), layer=layer)
    pick = (lambda g: g.data[0]) if rnn.batch_first else (lambda g: g.data[:, 0])
    return {"input": pick(gates.i).astype(np.float64), "forget": pick(gates.f).astype(np.float64),
            "output": pick(gates.o).astype(np.float64)}


def _time_axis(axis: Any, steps: int, labels: Sequence[str] | None) -> None:
    if labels is not None and len(labels) == steps:
        shown = [{"\n": "\\n", "\t": "\\t", " ": "␣"}.get(ch, ch) for ch in labels]
        axis.set_xticks(np.arange(steps))
        axis.set_xticklabels(shown, fontsize=5, family="monospace")
        axis.tick_params(axis="x", length=0)
    else:
        axis.set_xlabel("time step")


def plot_gates(model_or_lstm: Module, x: Any, path: Path | str, labels: Sequence[str] | None = None,
               layer: int | None = None) -> bool:
    """Three heatmaps (hidden units x time, colour scale fixed to (0, 1)): the input gate i_t, the forget
    gate f_t and the output gate o_t of an LSTM reading one sample. `labels`, one per step (e.g. the
    characters read), name the time axis."""
    if not have_matplotlib():
        return False
    gates = gate_activations(model_or_lstm, x, layer)
    steps, units = gates["input"].shape
    with new_figure(path, figsize=(min(max(6, 0.12 * steps), 16), 2.4 * 3 + 0.6)) as figure:
        axes = figure.subplots(3, 1, squeeze=False)
        for axis, (name, values) in zip(axes[:, 0], gates.items()):
            image = axis.imshow(values.T, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
            axis.set_ylabel(f"{name} gate\nunit", fontsize=8)
            _time_axis(axis, steps, labels)
            figure.colorbar(image, ax=axis, fraction=0.025, pad=0.01)
        figure.suptitle(f"LSTM gate activations over one sequence ({units} units x {steps} steps; 0 closed, 1 open)",
                        fontsize=9)
    return True


def plot_hidden_states(model: Module, x: Any, path: Path | str, labels: Sequence[str] | None = None) -> bool:
    """One heatmap of the top recurrent layer's hidden state h_t (units down, time across) while `model`
    reads one sample; LSTM, GRU and RNN alike."""
    if not have_matplotlib():
        return False
    states = hidden_states(model, x)
    steps, units = states.shape
    limit = float(np.abs(states).max()) or 1.0
    rnn = model.rnn if hasattr(model, "rnn") else model
    with new_figure(path, figsize=(min(max(6, 0.12 * steps), 16), 3.2)) as figure:
        axis = figure.subplots()
        image = axis.imshow(states.T, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        axis.set_ylabel("hidden unit")
        _time_axis(axis, steps, labels)
        figure.colorbar(image, ax=axis, fraction=0.025, pad=0.01)
        figure.suptitle(f"{type(rnn).__name__} hidden state h_t over one sequence ({units} units x {steps} steps)",
                        fontsize=9)
    return True
